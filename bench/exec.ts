// bench/exec.ts — gantry-exec against crun and runc in the same run: start-to-exit of `true`
// (plain and overlayfs root), 100 containers to running (sequential, 4 at a time), unshare floor.
// Usage: node_modules/.bin/node bench/exec.ts [--runs N] [--rounds R]
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultSeccompProfile } from '../worker/runtime/seccomp-default.ts';
import type { Job } from './exec-worker.ts';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..');
const GX = join(repo, 'native-exec', 'build', 'gantry-exec');
const WORKER = join(here, 'exec-worker.ts');
const NODE = process.execPath;

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const RUNS = arg('--runs', 10); // per round
const ROUNDS = arg('--rounds', 5);

function spec(args: string[], rootPath: string) {
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false, user: { uid: 0, gid: 0 }, args, env: ['PATH=/bin'], cwd: '/',
      capabilities: Object.fromEntries(['bounding', 'effective', 'permitted'].map((k) => [k, ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE']])),
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }], noNewPrivileges: true,
    },
    root: { path: rootPath, readonly: true },
    hostname: 'bench',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
    ],
    linux: {
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      namespaces: ['pid', 'network', 'ipc', 'uts', 'mount'].map((type) => ({ type })),
      maskedPaths: ['/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/sched_debug', '/sys/firmware', '/proc/scsi'],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
      // Docker's default profile, as every gantry task gets (each runtime compiles or caches it its own way)
      seccomp: defaultSeccompProfile(new Set(['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'])),
    },
  };
}

function setup(work: string) {
  const lower = join(work, 'rootfs');
  for (const d of ['bin', 'proc', 'dev', 'sys', 'tmp']) mkdirSync(join(lower, d), { recursive: true });
  copyFileSync('/bin/busybox', join(lower, 'bin', 'busybox'));
  chmodSync(join(lower, 'bin', 'busybox'), 0o755);
  for (const a of ['sh', 'true', 'sleep']) symlinkSync('busybox', join(lower, 'bin', a));
  const merged = join(work, 'merged');
  mkdirSync(merged);
  const bundles: Record<string, string> = {};
  const make = (name: string, args: string[], root: string) => {
    const b = join(work, name);
    mkdirSync(b);
    writeFileSync(join(b, 'config.json'), JSON.stringify(spec(args, root)));
    bundles[name] = b;
  };
  make('true', ['true'], lower);
  make('true-ovl', ['true'], merged);
  make('sleep', ['sleep', '1000'], lower);
  return { lower, merged, scratch: join(work, 'scratch'), bundles };
}

type Runtime = { name: string; argv: string[]; wrap: boolean; floor?: boolean };

function runWorker(rt: Runtime, job: Job): number[] {
  const json = JSON.stringify(job);
  const r = rt.wrap
    ? spawnSync('unshare', ['-m', 'sh', '-c', 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$0" "$1" "$2"', NODE, WORKER, json], { encoding: 'utf8' })
    : spawnSync(NODE, [WORKER, json], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${rt.name}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const fmt = (x: number) => x.toFixed(2).padStart(8);

function main() {
  if (spawnSync('make', ['-C', join(repo, 'native-exec')], { stdio: 'inherit' }).status !== 0) throw new Error('make -C native-exec failed');
  const work = mkdtempSync(join(tmpdir(), 'gx-bench-'));
  chmodSync(work, 0o755);
  const env = setup(work);
  const roots = Object.fromEntries(['gx', 'runc', 'crun'].map((n) => [n, join(work, `state-${n}`)]));
  const runtimes: Runtime[] = [
    { name: 'gantry-exec', argv: [GX, '--root', roots.gx], wrap: false },
    { name: 'crun', argv: ['crun', '--root', roots.crun], wrap: true },
    { name: 'runc', argv: ['runc', '--root', roots.runc], wrap: false },
  ];
  const floor: Runtime = { name: 'unshare floor', argv: ['unshare', '--pid', '--fork', '--net', '--ipc', '--uts', '--mount', 'true'], wrap: false, floor: true };
  console.log(`gantry-exec bench: ${ROUNDS} rounds x ${RUNS} runs, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  try {
    for (const overlay of [false, true]) {
      const samples: Record<string, number[]> = {};
      for (let round = 0; round < ROUNDS; round++) {
        for (const rt of [...runtimes, floor]) {
          if (rt.floor && overlay) continue;
          const job: Job = {
            kind: 'true', runtime: rt.argv, floor: !!rt.floor, bundle: overlay ? env.bundles['true-ovl'] : env.bundles.true, runs: RUNS,
            idPrefix: `b-${rt.name.split(' ')[0]}-${overlay ? 'o' : 'p'}-${round}`,
            overlay: overlay ? { lower: env.lower, merged: env.merged, scratch: env.scratch } : undefined,
          };
          (samples[rt.name] ??= []).push(...runWorker(rt, job));
        }
      }
      console.log(`\nstart-to-exit of \`true\`, ${overlay ? 'overlayfs root (mount+run+umount)' : 'plain directory root'}: median ms (p10..p90) over ${ROUNDS * RUNS}`);
      for (const [name, xs] of Object.entries(samples)) {
        const s = [...xs].sort((a, b) => a - b);
        console.log(`  ${name.padEnd(14)}${fmt(median(xs))}   (${s[Math.floor(s.length * 0.1)].toFixed(2)}..${s[Math.floor(s.length * 0.9)].toFixed(2)})`);
      }
      const g = median(samples['gantry-exec']);
      console.log(`  ratio gantry-exec/crun = ${(g / median(samples.crun)).toFixed(2)}, gantry-exec/runc = ${(g / median(samples.runc)).toFixed(2)}`);
    }
    for (const parallel of [1, 4]) {
      console.log(`\n100 containers created+started to running, ${parallel === 1 ? 'sequentially' : '4 at a time'}: total ms (per container)`);
      const totals: Record<string, number> = {};
      for (const rt of runtimes) {
        const [t] = runWorker(rt, { kind: 'start', runtime: rt.argv, floor: false, bundle: env.bundles.sleep, runs: 100, idPrefix: `s-${rt.name}-${parallel}`, parallel });
        totals[rt.name] = t;
        console.log(`  ${rt.name.padEnd(14)}${fmt(t)}   (${(t / 100).toFixed(2)})`);
      }
      console.log(`  ratio gantry-exec/crun = ${(totals['gantry-exec'] / totals.crun).toFixed(2)}, gantry-exec/runc = ${(totals['gantry-exec'] / totals.runc).toFixed(2)}`);
    }
  } finally {
    spawnSync('umount', [env.merged], { stdio: 'ignore' });
    rmSync(work, { recursive: true, force: true });
  }
}

main();
