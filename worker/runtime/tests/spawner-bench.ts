// Benchmark (not a test): the Node helper (spawner-child.ts) against gantry-spawn, interleaved in one run,
// from a ~150 MB Node process as gantryd is: batches of 50 concurrent commands, and 50 overlay mount+unmount.
//   node_modules/.bin/node worker/runtime/tests/spawner-bench.ts [--rounds 5] [--batches 10] [--cmd /bin/true]
// Prints per kind: wall ms per batch of 50, the helper's CPU ms per batch (utime+stime from /proc/<pid>/stat; and
// cutime+cstime: its commands, and mount(8) for the Node helper, whose mount(2) kernel time gantry-spawn pays itself),
// this process's CPU ms per batch; then the native/node ratios. Mounts need root.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { defaultGantryExecPath } from '../runtime-oci.ts';
import { type HelperKind, Spawner } from '../spawner.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, batches: { type: 'string', default: '10' }, cmd: { type: 'string' } } });
const ROUNDS = Number(values.rounds);
const BATCHES = Number(values.batches);
const [CMD, ...ARGS] = values.cmd ? values.cmd.split(' ') : [defaultGantryExecPath(), 'state', 'x'];
const TICK_MS = 1000 / 100; // USER_HZ

// ~150 MB resident, as gantryd: the fork cost of the process that forks grows with it
const ballast: number[][] = [];
for (let i = 0; i < 40; i++) ballast.push(new Array(128 * 1024).fill(i + 0.5));

/** [the helper's own CPU ms, its reaped children's (the commands, mount(8))] */
function cpuMs(pid: number): [number, number] {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return [(Number(f[11]) + Number(f[12])) * TICK_MS, (Number(f[13]) + Number(f[14])) * TICK_MS]; // utime stime cutime cstime (fields 14-17)
}

type Sample = { wall: number; helperCpu: number; childCpu: number; selfCpu: number };
const results: Record<string, Record<HelperKind, Sample[]>> = { exec: { native: [], node: [] }, mount: { native: [], node: [] } };

async function measure(sp: Spawner, work: () => Promise<void>): Promise<Sample> {
  const [pid] = sp.helperPids();
  const [h0, c0] = cpuMs(pid);
  const s0 = process.cpuUsage();
  const t0 = performance.now();
  await work();
  const wall = performance.now() - t0;
  const s = process.cpuUsage(s0);
  const [h1, c1] = cpuMs(pid);
  return { wall, helperCpu: h1 - h0, childCpu: c1 - c0, selfCpu: (s.user + s.system) / 1000 };
}

const dir = mkdtempSync(join(tmpdir(), 'spawner-bench-'));
mkdirSync(join(dir, 'lower'));
writeFileSync(join(dir, 'lower', 'f'), 'x');

try {
  for (let round = 0; round < ROUNDS; round++) {
    const order: HelperKind[] = round % 2 ? ['node', 'native'] : ['native', 'node'];
    for (const kind of order) {
      const sp = new Spawner(1, { kind });
      if (sp.helperKind() !== kind) throw new Error(`${kind} helper not available (make -C native-exec)`);
      await sp.run('/bin/true', []); // started and warm
      results.exec[kind].push(
        await measure(sp, async () => {
          for (let b = 0; b < BATCHES; b++) {
            const rs = await Promise.all(Array.from({ length: 50 }, () => sp.run(CMD, ARGS)));
            if (rs.some((r) => /spawner helper|ENOENT/.test(r.stderr))) throw new Error(`a call failed: ${rs.find((r) => r.stderr)?.stderr}`);
          }
        }),
      );
      const m = sp.mounter();
      const dirs = Array.from({ length: 50 }, (_, i) => join(dir, `${kind}-${round}-${i}`));
      for (const d of dirs) mkdirSync(d);
      results.mount[kind].push(
        await measure(sp, async () => {
          await Promise.all(dirs.map((containerDir) => m.mountRootfs({ lowerDirs: [join(dir, 'lower')], containerDir, volatile: true })));
          await Promise.all(dirs.map((d) => m.unmountRootfs(d)));
        }),
      );
      sp.close();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const per = (n: number) => (s: Sample[], k: keyof Sample) => median(s.map((x) => x[k])) / n;
console.log(`command: ${[CMD, ...ARGS].join(' ')}; ${ROUNDS} interleaved rounds; medians; RSS here ${Math.round(process.memoryUsage().rss / 2 ** 20)} MB`);
for (const [what, n] of [['exec', BATCHES], ['mount', 1]] as const) {
  const f = per(n);
  const row = (k: HelperKind) => results[what][k];
  const line = (k: HelperKind) =>
    `${what.padEnd(5)} ${k.padEnd(6)} wall ${f(row(k), 'wall').toFixed(1)} ms, helper CPU ${f(row(k), 'helperCpu').toFixed(1)} ms, its children ${f(row(k), 'childCpu').toFixed(1)} ms, this process CPU ${f(row(k), 'selfCpu').toFixed(1)} ms  (per 50 ${what === 'exec' ? 'commands' : 'mount+unmount'})`;
  console.log(line('node'));
  console.log(line('native'));
  const ratio = (k: keyof Sample) => (f(row('native'), k) / Math.max(f(row('node'), k), 0.01)).toFixed(2);
  console.log(`${what.padEnd(5)} native/node: wall ${ratio('wall')}, helper CPU ${ratio('helperCpu')}, this process CPU ${ratio('selfCpu')}`);
}
void ballast;
