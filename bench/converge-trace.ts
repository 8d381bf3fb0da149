// Where `service create --replicas N` spends its time: one lab host, the real CLI, and an etcd watch
// (the manager's own certificates) that timestamps every stored task revision. Diagnostics, not a benchmark.
//
//   node_modules/.bin/node bench/converge-trace.ts [--replicas 1,50] [--runtime native|runc] [--network none] [--keep-log FILE]
//        [--cpu-prof DIR]   (gantryd and its helpers write V8 CPU profiles there when the lab goes down)
//        [--perf FILE]      (`perf record -a -g` from the create to the last RUNNING, per N: FILE.N)
//        [--strace FILE]    (`strace -f` of gantryd, its threads but not its children, over the same window: FILE.N)
//
// Prints, per N, milestones in ms from spawning `gantry service create -d` (median / max over the N
// tasks): service stored, task created (NEW), PENDING, ASSIGNED, and per worker state the worker's
// own timestamp of that transition (status.timestamp, same host clock) and when it was stored.
import { spawn } from 'node:child_process';
import { copyFileSync, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { loadNodeCerts } from '../manager/ca/node-certs.ts';
import { EtcdStore } from '../manager/store/etcd.ts';
import { formCluster, gantryOk, until } from '../deploy/lab/lab-cluster.ts';
import { cleanupLabs, Lab, REPO_ROOT } from '../deploy/lab/lab-hosts.ts';
import { TaskState } from '../proto/gen/gantry/v1/objects.ts';
import { busyboxRootfsTar } from '../test/helpers/lab-rootfs.ts';
import { buildCli } from '../cli/bundle.ts';
import { cpuAccount, parentPid, settle } from './host-cpu.ts';

/** The CLI a user runs: the installed bundle, built fresh at the start of main(). */
let cliEntry = '';

const IMAGE = 'gantry-bench/busybox:1';

function arg(n: string): string | undefined {
  const i = process.argv.indexOf(`--${n}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const STATE_NAMES = Object.fromEntries(Object.entries(TaskState).map(([k, v]) => [v, k.replace('TASK_STATE_', '')]));

function stats(xs: number[]): string {
  if (!xs.length) return '-';
  const v = [...xs].sort((a, b) => a - b);
  const q = (f: number) => v[Math.min(v.length - 1, Math.floor(v.length * f))].toFixed(0);
  return `${q(0.5)} / ${v[v.length - 1].toFixed(0)}${v.length > 4 ? ` (first ${v[0].toFixed(0)}, p25 ${q(0.25)}, p75 ${q(0.75)})` : ''}`;
}

const now = () => performance.timeOrigin + performance.now();

/** Child mode, run inside the host's netns: one JSON line per stored service/task revision. */
async function watchEtcd(dataDir: string): Promise<void> {
  const member = JSON.parse(readFileSync(path.join(dataDir, 'etcd', 'member.json'), 'utf8')) as { host: string; clientPort: number };
  const tls = await loadNodeCerts(dataDir);
  const store = await EtcdStore.open({ endpoints: [`https://${member.host}:${member.clientPort}`], tls, managerId: 'trace' });
  store.subscribe((events) => {
    const t = now();
    for (const e of events) {
      if (e.op !== 'put') continue;
      if (e.kind === 'services') process.stdout.write(`${JSON.stringify({ t, kind: 'service', id: e.object.id, name: e.object.spec?.name })}\n`);
      if (e.kind === 'tasks') process.stdout.write(`${JSON.stringify({ t, kind: 'task', id: e.object.id, service: e.object.serviceId, state: e.object.status?.state ?? 0, ts: Number(e.object.status?.timestamp ?? 0), err: e.object.status?.err || undefined })}\n`);
    }
  });
  process.stdout.write('ready\n');
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on('end', resolve));
  await store.close();
}

/** Starts a recorder (perf, strace) that writes its file until SIGINT; the returned function stops it and waits for the file. */
async function startRecorder(cmd: string, args: string[]): Promise<() => Promise<void>> {
  const p = spawn(cmd, args, { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 300)); // perf opens its events, strace attaches
  return () =>
    new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGINT');
    });
}

/** A system-wide `perf record -g`. */
const startPerf = (file: string) => startRecorder('perf', ['record', '-a', '-g', '-q', '-o', file]);

/** `strace -tt` on each of the daemon's threads (not its children). */
const startStrace = (pid: number, file: string) => startRecorder('strace', ['-tt', '-o', file, ...readdirSync(`/proc/${pid}/task`).flatMap((t) => ['-p', t])]);

type Line = { t: number; kind: 'service' | 'task'; id: string; name?: string; service?: string; state?: number; ts?: number; err?: string };

async function main(): Promise<void> {
  cliEntry = await buildCli();
  const replicas = (arg('replicas') ?? '1,50').split(',').map(Number);
  const network = arg('network');
  const tar = busyboxRootfsTar();
  await cleanupLabs();
  const prof = arg('cpu-prof');
  const lab = await Lab.up({ hosts: 1, runtime: arg('runtime'), env: prof ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${prof}` } : undefined });
  try {
    const h = await formCluster(lab);
    await gantryOk(h, ['image', 'import', tar, IMAGE]);
    const w = spawn('nsenter', [`--net=/run/netns/${h.ns}`, '--', process.execPath, path.join(REPO_ROOT, 'bench/converge-trace.ts'), '--watch-etcd', h.dataDir], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines: Line[] = [];
    let buf = '';
    let ready!: () => void;
    const isReady = new Promise<void>((r) => (ready = r));
    w.stdout.on('data', (d) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const l = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (l === 'ready') ready();
        else lines.push(JSON.parse(l) as Line);
      }
    });
    await isReady;
    try {
      for (const [round, n] of replicas.entries()) {
        const name = `trace${n}x${round}`;
        lines.length = 0;
        const env = { ...process.env, GANTRY_HOST: `unix://${h.socket}` };
        const flags = network ? ['--network', network] : [];
        const perf = arg('perf') ? await startPerf(`${arg('perf')}.${n}`) : undefined;
        const strace = arg('strace') ? await startStrace(h.pid() ?? 0, `${arg('strace')}.${n}`) : undefined;
        // gantryd, and what it runs for the whole converge (etcd, gantry-spawn, gantry-net); this bench with
        // the CLI it runs, and its etcd watch; 'rest' is the containers' own processes (gantry-exec, monitors)
        const daemon = h.pid() ?? 0;
        const helpers = h.processes().map((p) => p.pid).filter((p) => parentPid(p) === daemon);
        const cpu = cpuAccount([[daemon, 'gantryd'], [process.pid, 'bench+CLI'], [w.pid ?? 0, 'etcd-watch'], ...helpers]);
        const t0 = now();
        const cliExit = await new Promise<number>((resolve, reject) => {
          const c = spawn(process.execPath, [cliEntry, 'service', 'create', '-d', '--no-resolve-image', ...flags, '--name', name, '--replicas', String(n), IMAGE, 'sleep', '1d'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
          c.on('exit', (code) => (code === 0 ? resolve(now() - t0) : reject(new Error(`create exited ${code}`))));
        });
        let serviceId = '';
        const stored = new Map<string, Map<number, number>>();
        const workerTs = new Map<string, Map<number, number>>();
        const errors: string[] = [];
        let serviceAt = -1;
        await until(() => {
          for (const l of lines.splice(0)) {
            if (l.kind === 'service' && l.name === name && !serviceId) {
              serviceId = l.id;
              serviceAt = l.t - t0;
            }
            if (l.kind !== 'task' || !serviceId || l.service !== serviceId) continue;
            const st = l.state ?? 0;
            const m = stored.get(l.id) ?? new Map<number, number>();
            stored.set(l.id, m);
            if (!m.has(st)) m.set(st, l.t - t0);
            const e = `task ${l.id} ${STATE_NAMES[st]}: ${l.err}`;
            if (l.err && !errors.includes(e)) errors.push(e);
            if (l.ts && st >= TaskState.TASK_STATE_ACCEPTED) {
              const wm = workerTs.get(l.id) ?? new Map<number, number>();
              workerTs.set(l.id, wm);
              if (!wm.has(st)) wm.set(st, l.ts - t0);
            }
          }
          const running = [...stored.values()].filter((m) => m.has(TaskState.TASK_STATE_RUNNING)).length;
          return running >= n || `${running}/${n} running`;
        }, 300_000, 10);
        const used = cpu();
        await perf?.();
        await strace?.();
        const done = Math.max(...[...stored.values()].map((m) => m.get(TaskState.TASK_STATE_RUNNING) ?? 0));
        console.log(`\nN=${n}: CLI exited ${cliExit.toFixed(0)} ms, service stored ${serviceAt.toFixed(0)} ms, last RUNNING stored ${done.toFixed(0)} ms   (ms from spawning the CLI: median / max over tasks, and the first and quartiles)`);
        const states = [...new Set([...stored.values()].flatMap((m) => [...m.keys()]))].sort((a, b) => a - b);
        for (const st of states) {
          const s = [...stored.values()].map((m) => m.get(st)).filter((x): x is number => x !== undefined);
          const wt = [...workerTs.values()].map((m) => m.get(st)).filter((x): x is number => x !== undefined);
          console.log(`  ${String(STATE_NAMES[st]).padEnd(10)} stored ${stats(s).padEnd(44)} (${s.length})   worker ts ${stats(wt)} (${wt.length})`);
        }
        console.log(`  CPU ms: ${Object.entries(used).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ')}`);
        for (const e of errors) console.log(`  error: ${e}`);
        await gantryOk(h, ['service', 'rm', name]);
        await until(() => h.processes((a) => a[0] === 'sleep' && a[1] === '1d').length === 0 || 'containers left', 120_000, 100);
        await settle();
      }
    } finally {
      w.stdin.end();
      await new Promise((r) => w.once('exit', r));
    }
  } finally {
    if (prof) await lab.host(0).stop(); // a graceful exit writes the profiles (down() kills)
    const keep = arg('keep-log');
    if (keep) copyFileSync(lab.host(0).logFile, keep);
    await lab.down();
  }
}

(arg('watch-etcd') ? watchEtcd(arg('watch-etcd')!) : main()).then(
  () => process.exit(0),
  (e: Error) => {
    console.error(`converge-trace: ${e.stack}`);
    process.exit(1);
  },
);
