// bench/exec-worker.ts — times one runtime for bench/exec.ts: runs `true` N times (plain or
// overlayfs root) or starts 100 containers (sequential or 4 at a time); prints samples as JSON.
// Run by exec.ts, directly or (crun) inside `unshare -m` without the cgroup2 mount.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export type Job = {
  kind: 'true' | 'start';
  runtime: string[]; // argv prefix, e.g. ['/path/gantry-exec', '--root', '/tmp/x'] or ['unshare', ...] for the floor
  floor: boolean; // runtime is the whole command (unshare ... true)
  bundle: string;
  runs: number;
  idPrefix: string;
  overlay?: { lower: string; merged: string; scratch: string };
  parallel?: number;
};

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

function must(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error}`);
}

function runTrue(job: Job): number[] {
  const samples: number[] = [];
  for (let i = 0; i < job.runs; i++) {
    const id = `${job.idPrefix}-${i}`;
    let upper = '';
    let work = '';
    if (job.overlay) {
      upper = join(job.overlay.scratch, `upper-${id}`);
      work = join(job.overlay.scratch, `work-${id}`);
      mkdirSync(upper, { recursive: true });
      mkdirSync(work, { recursive: true });
    }
    const t0 = process.hrtime.bigint();
    if (job.overlay) {
      must('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${job.overlay.lower},upperdir=${upper},workdir=${work},volatile`, job.overlay.merged]);
    }
    const args = job.floor ? job.runtime.slice(1) : [...job.runtime.slice(1), 'run', '--bundle', job.bundle, id];
    const r = spawnSync(job.runtime[0], args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    if (job.overlay) must('umount', [job.overlay.merged]);
    samples.push(ms(t0));
    if (r.status !== 0) throw new Error(`${job.runtime[0]} run ${id}: exit ${r.status}: ${r.stderr}`);
    if (job.overlay) {
      rmSync(upper, { recursive: true, force: true });
      rmSync(work, { recursive: true, force: true });
    }
  }
  return samples;
}

function exited(cmd: string, args: string[]): Promise<number | null> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: 'ignore' });
    c.on('exit', (code) => resolve(code));
  });
}

/** Total wall time to get job.runs containers running (create + start each). */
async function startMany(job: Job): Promise<number[]> {
  const [bin, ...prefix] = job.runtime;
  const ids = Array.from({ length: job.runs }, (_, i) => `${job.idPrefix}-${i}`);
  const lanes = job.parallel ?? 1;
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (next < ids.length) {
        const id = ids[next++];
        const c = await exited(bin, [...prefix, 'create', '--bundle', job.bundle, id]);
        const s = c === 0 ? await exited(bin, [...prefix, 'start', id]) : c;
        if (s !== 0) throw new Error(`${bin} create/start ${id} failed (${c}, ${s})`);
      }
    }),
  );
  const total = ms(t0);
  for (const id of ids) {
    spawnSync(bin, [...prefix, 'kill', id, 'KILL'], { stdio: 'ignore' });
    spawnSync(bin, [...prefix, 'delete', '--force', id], { stdio: 'ignore' });
  }
  return [total];
}

export async function runJob(job: Job): Promise<number[]> {
  return job.kind === 'true' ? runTrue(job) : startMany(job);
}

if (process.argv[1]?.endsWith('exec-worker.ts') && process.argv[2]) {
  const job: Job = JSON.parse(process.argv[2]);
  runJob(job).then(
    (samples) => process.stdout.write(`${JSON.stringify(samples)}\n`),
    (e) => {
      process.stderr.write(`${e instanceof Error ? e.message : e}\n`);
      process.exit(1);
    },
  );
}
