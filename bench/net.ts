// bench/net.ts — the routing mesh against going straight to a task (wrk, requests/s and latency),
// and what network setup adds to a container start (NetworkManager.attach/detach with gantry-net vs
// ip/nsenter, interleaved; gantry-exec run `true` with and without a network).
//
//   node_modules/.bin/node bench/net.ts [--only setup|mesh] [--seconds 5] [--connections 16] [--attaches 10] [--rounds 3]
//
// Everything runs inside lab network namespaces (deploy/lab) and a scratch netns this script
// makes and removes; nothing is sent outside them.
import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run } from '../deploy/lab/sys.ts';
import type { NetworkState } from '../proto/gen/gantry/v1/network.ts';
import { EndpointMode, type Task } from '../proto/gen/gantry/v1/objects.ts';
import { type ClusterLab, gantryOk, IMAGE, live, ps, startClusterLab, stopClusterLab, until } from '../test/helpers/lab.ts';
import { NetworkManager } from '../worker/network/manager.ts';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

interface WrkResult {
  rps: number;
  latencyMs: number;
  errors: string;
}

function parseWrk(out: string): WrkResult {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const lat = /Latency\s+([\d.]+)(us|ms|s)/.exec(out);
  const f = lat ? { us: 0.001, ms: 1, s: 1000 }[lat[2] as 'us' | 'ms' | 's'] : 0;
  const errors = /Socket errors:.*|Non-2xx.*/.exec(out)?.[0] ?? '';
  return { rps, latencyMs: lat ? Number(lat[1]) * f : 0, errors };
}

async function wrk(c: ClusterLab, hostIndex: number, url: string, seconds: number, conns: number): Promise<WrkResult> {
  const r = await c.lab.hosts[hostIndex].exec(['wrk', '-t2', `-c${conns}`, `-d${seconds}s`, url], { timeoutMs: (seconds + 30) * 1000 });
  if (r.code !== 0) throw new Error(`wrk ${url}: ${r.stderr || r.stdout}`);
  return parseWrk(r.stdout);
}

/** The mesh: from a host without the task, to its published port vs to the task's ingress address. */
async function mesh(seconds: number, conns: number): Promise<void> {
  let c: ClusterLab | undefined;
  try {
    c = await startClusterLab({ hosts: 3 });
    const [h0, , h2] = c.lab.hosts;
    await gantryOk(c.manager, ['service', 'create', '-d', '--name', 'web', '--publish', '8080:80', '--constraint', `node.hostname==${h0.name}`, IMAGE,
      'sh', '-c', 'mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www']);
    const cl = c;
    await until(async () => live(await ps(cl.manager, 'web')).length === 1 || 'web not running', 60_000);
    const usage = JSON.parse(await gantryOk(c.manager, ['network', 'inspect', 'ingress']))[0];
    const taskIp = (usage.tasks as string[]).find((t) => t.includes('(web.'))?.split(' ').pop();
    if (!taskIp) throw new Error(`no ingress address for web: ${JSON.stringify(usage.tasks)}`);
    await until(async () => (await h2.exec(['timeout', '3', '/bin/busybox', 'wget', '-qO-', `http://${h2.ip}:8080/`])).code === 0 || 'mesh not answering', 30_000);
    // warm up both paths, then measure each twice, interleaved
    await wrk(c, 2, `http://${h2.ip}:8080/`, 1, conns);
    await wrk(c, 2, `http://${taskIp}/`, 1, conns);
    const rounds: { mesh: WrkResult; direct: WrkResult }[] = [];
    for (let i = 0; i < 2; i++) {
      const m = await wrk(c, 2, `http://${h2.ip}:8080/`, seconds, conns);
      const d = await wrk(c, 2, `http://${taskIp}/`, seconds, conns);
      rounds.push({ mesh: m, direct: d });
    }
    const avg = (k: 'mesh' | 'direct', f: 'rps' | 'latencyMs') => rounds.reduce((a, r) => a + r[k][f], 0) / rounds.length;
    console.log(`routing mesh (wrk -t2 -c${conns} -d${seconds}s, from ${h2.name}, task on ${h0.name}, busybox httpd, new connection per request):`);
    console.log(`  mesh    http://${h2.ip}:8080/  ${avg('mesh', 'rps').toFixed(0)} req/s  avg latency ${avg('mesh', 'latencyMs').toFixed(2)} ms ${rounds.map((r) => r.mesh.errors).filter(Boolean).join(' ')}`);
    console.log(`  direct  http://${taskIp}/      ${avg('direct', 'rps').toFixed(0)} req/s  avg latency ${avg('direct', 'latencyMs').toFixed(2)} ms ${rounds.map((r) => r.direct.errors).filter(Boolean).join(' ')}`);
    console.log(`  ratio mesh/direct: ${(avg('mesh', 'rps') / avg('direct', 'rps')).toFixed(3)} (goal >= 0.9)`);
  } finally {
    await stopClusterLab(c);
  }
}

const median = (xs: number[]) => {
  const v = [...xs].sort((a, b) => a - b);
  return v.length ? (v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2) : Number.NaN;
};

const GANTRY_EXEC = new URL('../native-exec/build/gantry-exec', import.meta.url).pathname;

/** An OCI bundle running busybox `true`, in its own new netns (none) or the one at `netns`. */
function bundle(dir: string, rootfs: string, netns?: string): string {
  mkdirSync(dir, { recursive: true });
  const caps = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];
  const config = {
    ociVersion: '1.0.2',
    process: { terminal: false, user: { uid: 0, gid: 0 }, args: ['true'], env: ['PATH=/bin'], cwd: '/', capabilities: { bounding: caps, effective: caps, permitted: caps }, noNewPrivileges: true },
    root: { path: rootfs, readonly: true },
    hostname: 'bench',
    mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }],
    linux: { namespaces: [...['pid', 'ipc', 'uts', 'mount'].map((type) => ({ type })), netns ? { type: 'network', path: netns } : { type: 'network' }] },
  };
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

function runTrue(root: string, bundleDir: string, id: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(GANTRY_EXEC, ['--root', root, 'run', '--bundle', bundleDir, id], (err, _out, stderr) => (err ? reject(new Error(`gantry-exec run ${id}: ${stderr || err.message}`)) : resolve()));
  });
}

type SetupCase = { name: string; overlay: boolean; vip: boolean };
const CASES: SetupCase[] = [
  { name: 'bridge only', overlay: false, vip: false },
  { name: 'bridge + overlay', overlay: true, vip: false },
  { name: 'bridge + overlay + VIP rules', overlay: true, vip: true },
];
const MODES = [
  { name: 'gantry-net', helper: true },
  { name: 'ip/nsenter', helper: false },
] as const;

function probeState(c: SetupCase, taskIds: string[]): NetworkState {
  return {
    nodeId: 'benchprobe',
    nodeAddr: '127.0.0.1',
    networks: [
      { id: 'br', name: 'bridge', driver: 'bridge', subnet: '172.16.0.0/12', vni: 0, ingress: false, nodeAddr: '172.31.250.0/24', peers: [] },
      { id: 'ov', name: 'ov', driver: 'overlay', subnet: '10.250.0.0/16', vni: 9999, ingress: false, nodeAddr: '', peers: [] },
    ],
    // a VIP service on the overlay: every container attached to it gets the nat rules in its netns
    services: c.vip ? [{ id: 'vipsvc', name: 'vip', mode: EndpointMode.ENDPOINT_MODE_VIP, vips: { ov: '10.250.255.250' }, tasks: [1, 2, 3].map((i) => ({ taskId: `t${i}`, nodeId: 'other', addrs: { ov: `10.250.254.${i}` } })), ports: [] }] : [],
    localTasks: taskIds,
  };
}

function probeTask(id: string, i: number, overlay: boolean): Task {
  return { id, serviceId: 'svc', networks: overlay ? [{ networkId: 'ov', addresses: [`10.250.${Math.floor(i / 250)}.${(i % 250) + 2}/16`], aliases: [] }] : [], spec: { networks: [] } } as unknown as Task;
}

/**
 * Inside a scratch netns, in rounds, the modes interleaved: per case, attach then detach n containers
 * with a fresh NetworkManager (gantry-net, then ip/nsenter); and container starts (gantry-exec run
 * `true`) without a network, and with attach + run joining the netns, per mode.
 */
async function attachProbe(n: number, rounds: number): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-bench-net-'));
  const netnsDir = path.join(dir, 'netns');
  const setup = new Map<string, { attach: number[]; detach: number[] }>();
  const start = new Map<string, number[]>();
  const push = (m: Map<string, number[]>, k: string, v: number) => m.set(k, [...(m.get(k) ?? []), v]);
  const rootfs = path.join(dir, 'rootfs');
  for (const d of ['bin', 'proc', 'dev', 'sys', 'tmp']) mkdirSync(path.join(rootfs, d), { recursive: true });
  copyFileSync('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
  chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
  symlinkSync('busybox', path.join(rootfs, 'bin', 'true'));
  const runRoot = path.join(dir, 'state');
  const noNet = bundle(path.join(dir, 'b-none'), rootfs);
  let seq = 0;
  const log: string[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      for (const c of CASES) {
        for (const mode of MODES) {
          const nm = new NetworkManager({ nodeId: 'benchprobe', netnsDir, dns: false, netHelper: mode.helper, log: (m) => log.push(m) });
          try {
            const tasks = Array.from({ length: n + 1 }, (_, i) => probeTask(`benchtask${String(seq++).padStart(16, '0')}`, i, c.overlay));
            nm.setState(probeState(c, tasks.map((t) => t.id)));
            await nm.attach(tasks[0]); // warm-up: bridge, chains, overlay devices
            const key = `${c.name}|${mode.name}`;
            const s = setup.get(key) ?? { attach: [], detach: [] };
            setup.set(key, s);
            for (const t of tasks.slice(1)) {
              const t0 = performance.now();
              await nm.attach(t);
              s.attach.push(performance.now() - t0);
            }
            for (const t of tasks.slice(1)) {
              const t0 = performance.now();
              await nm.detach(t.id);
              s.detach.push(performance.now() - t0);
            }
            if (c.overlay) continue;
            // container start: without a network, and attach + run in the attached netns; which goes
            // first alternates, so neither always follows the other's teardown
            for (let i = 0; i < n; i++) {
              const withoutNet = async () => {
                const t0 = performance.now();
                await runTrue(runRoot, noNet, `none-${seq++}`);
                push(start, `none|${mode.name}`, performance.now() - t0);
              };
              if (i % 2 === 0) await withoutNet();
              const t = probeTask(`benchtask${String(seq++).padStart(16, '0')}`, i, false);
              nm.setState(probeState(c, [t.id]));
              const t1 = performance.now();
              const a = await nm.attach(t);
              const attachMs = performance.now() - t1;
              if (a.network.mode !== 'path') throw new Error('attach gave no netns path');
              const b = bundle(path.join(dir, `b-${t.id}`), rootfs, a.network.path);
              const t2 = performance.now();
              await runTrue(runRoot, b, `net-${seq++}`);
              const runMs = performance.now() - t2;
              push(start, `${mode.name}|attach`, attachMs);
              push(start, `${mode.name}|run`, runMs);
              push(start, mode.name, attachMs + runMs); // the bundle write is not part of either
              await nm.detach(t.id);
              if (i % 2 === 1) await withoutNet();
            }
          } finally {
            await nm.teardown();
          }
        }
      }
    }
    const f = (x: number) => x.toFixed(1).padStart(6);
    console.log(`  per container, median ms over ${rounds} rounds x ${n} (modes interleaved, a fresh NetworkManager each):`);
    console.log(`  ${'case'.padEnd(30)} ${'gantry-net attach/detach'.padStart(26)} ${'ip/nsenter attach/detach'.padStart(26)}  attach ratio`);
    for (const c of CASES) {
      const h = setup.get(`${c.name}|gantry-net`);
      const i = setup.get(`${c.name}|ip/nsenter`);
      if (!h || !i) continue;
      console.log(`  ${c.name.padEnd(30)} ${f(median(h.attach))} / ${f(median(h.detach))}            ${f(median(i.attach))} / ${f(median(i.detach))}          ${(median(h.attach) / median(i.attach)).toFixed(2)}`);
    }
    console.log(`  container start (gantry-exec run \`true\`, bridge network), median ms over ${rounds} x ${n}, interleaved with starts without a network:`);
    for (const mode of MODES) {
      const none = median(start.get(`none|${mode.name}`) ?? []);
      const m = median(start.get(mode.name) ?? []);
      const parts = `attach ${f(median(start.get(`${mode.name}|attach`) ?? []))} + run ${f(median(start.get(`${mode.name}|run`) ?? []))}`;
      console.log(`    ${mode.name.padEnd(10)}  without network ${f(none)}   with (${parts}) ${f(m)}   network adds ${f(m - none)} ms${mode.helper ? ' (goal < 10)' : ''}`);
    }
    const notes = [...new Set(log.filter((l) => /not found|fail/.test(l)))];
    if (notes.length) console.log(`  notes: ${notes.join(' | ')}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function setupCost(n: number, rounds: number): Promise<void> {
  const ns = `gantry-bench-${process.pid}`;
  await run('ip', ['netns', 'add', ns]);
  try {
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    console.log(`network setup per container (NetworkManager.attach/detach in scratch netns ${ns}: netns + veths + addresses + route + VIP rules), load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}:`);
    const r = await run('nsenter', [`--net=/run/netns/${ns}`, '--', process.execPath, import.meta.filename, '--attach-probe', String(n), '--rounds', String(rounds)], { timeoutMs: 900_000 });
    process.stdout.write(r.stdout);
    if (r.code !== 0) console.log(`  probe failed: ${r.stderr.trim()}`);
  } finally {
    await run('ip', ['netns', 'del', ns]);
  }
}

if (process.argv.includes('--attach-probe')) {
  await attachProbe(arg('attach-probe', 10), arg('rounds', 3));
} else {
  const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : '';
  if (only !== 'mesh') await setupCost(arg('attaches', 10), arg('rounds', 3));
  if (only !== 'setup') await mesh(arg('seconds', 5), arg('connections', 16));
}
