// Runs short commands (gantry-exec monitor/start/…) and rootfs mounts from a small helper process
// instead of gantryd. Every fork copies the forking process's page tables: from gantryd (~190 MB)
// one blocks its event loop ~15–45 ms on a loaded host (vs ~2 ms from a ~50 MB helper), and a
// 50-task converge forks hundreds of times (mount, monitor, start per task).
//
//   runCommand(file, args) / spawnerMounter() ──IPC {id, op, …}──▶ spawner-child.ts ──execFile / mount(8)
//                                              ◀──{id, code, stdout, stderr} | {id, rootfs} | {id, error}
//
// The helper (GANTRY_SPAWN_HELPERS for more) starts with the first runtime (warmSpawner), again after
// it dies (calls in flight then fail with the reason); if it cannot start, the work is done here.
// It exits with gantryd.
import { type ChildProcess, execFile, fork } from 'node:child_process';
import { defaultMounter, type RootfsMounter } from './rootfs-mount.ts';

export type MountOptions = Parameters<RootfsMounter['mountRootfs']>[0];

export type HelperRequest =
  | { id: number; op: 'exec'; file: string; args: string[]; cwd?: string; timeoutMs?: number; maxBuffer?: number; input?: string }
  | { id: number; op: 'mount'; opts: MountOptions }
  | { id: number; op: 'unmount'; containerDir: string };

export type HelperReply =
  /** error: why it failed when it did not exit 0 (spawn error, timeout, signal). */
  | { id: number; op: 'exec'; code: number; stdout: string; stderr: string; error?: string }
  | { id: number; op: 'mount' | 'unmount'; rootfs?: string; error?: string };

export type CommandResult = { code: number; stdout: string; stderr: string };

export interface RunOptions {
  cwd?: string;
  timeoutMs?: number;
  maxBuffer?: number;
  /** Written to the command's stdin (then closed); without it stdin is empty. */
  input?: string;
}

type Req = HelperRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

const CHILD = new URL('./spawner-child.ts', import.meta.url).pathname;
/** One: 3 measured no faster for a 50-task converge on 2 cores (2.4/3.4 s vs 2.0/2.2 s); GANTRY_SPAWN_HELPERS overrides. */
const DEFAULT_HELPERS = Number(process.env.GANTRY_SPAWN_HELPERS) || 1;

/** A few helper processes (calls go to the least busy) and their calls in flight. */
export class Spawner {
  /** A fork blocks its helper until the child has exec'd (~10 ms per spawn on a loaded host); more helpers wait in parallel. */
  private readonly children: (ChildProcess | undefined)[];
  private readonly pending = new Map<number, { child: ChildProcess; op: HelperRequest['op']; done: (r: HelperReply) => void }>();
  private nextId = 1;
  private broken = false;

  constructor(helpers = DEFAULT_HELPERS) {
    this.children = new Array(Math.max(1, helpers)).fill(undefined);
  }

  /** Runs file with args (never a shell); stderr carries the failure reason when it did not run. */
  async run(file: string, args: string[], opts: RunOptions = {}): Promise<CommandResult> {
    const r = await this.call({ op: 'exec', file, args, cwd: opts.cwd, timeoutMs: opts.timeoutMs, maxBuffer: opts.maxBuffer ?? 4 << 20, input: opts.input });
    if (r === undefined) return direct(file, args, opts);
    if (r.op !== 'exec') return { code: 1, stdout: '', stderr: r.error ?? 'the spawner helper answered another call' };
    return { code: r.code, stdout: r.stdout, stderr: r.stderr || (r.code !== 0 ? (r.error ?? '') : '') };
  }

  /** A RootfsMounter whose mounts run in the helper (in this process when there is none). */
  mounter(): RootfsMounter {
    const unmountRootfs = async (containerDir: string): Promise<void> => {
      const r = await this.call({ op: 'unmount', containerDir });
      if (r === undefined) return (await defaultMounter()).unmountRootfs(containerDir);
      if (r.error !== undefined) throw new Error(r.error);
    };
    return {
      mountRootfs: async (opts) => {
        const r = await this.call({ op: 'mount', opts });
        if (r === undefined) return (await defaultMounter()).mountRootfs(opts);
        if (r.error !== undefined || r.op !== 'mount' || !r.rootfs) throw new Error(r.error ?? `mounting the rootfs of ${opts.containerDir}: no answer`);
        return { rootfs: r.rootfs, unmount: () => unmountRootfs(opts.containerDir) };
      },
      unmountRootfs,
    };
  }

  /** Starts the helper now, so the first command does not wait for a Node process to boot. */
  warm(): void {
    for (let i = 0; i < this.children.length; i++) this.helper(i);
  }

  /** Ends the helper (calls in flight fail). */
  close(): void {
    for (const [i, c] of this.children.entries()) {
      c?.kill();
      this.children[i] = undefined;
    }
  }

  /** Sends one request; undefined when there is no helper (the caller does the work itself). */
  private call(req: Req): Promise<HelperReply | undefined> {
    const load = (c: ChildProcess | undefined) => [...this.pending.values()].filter((p) => p.child === c).length;
    let best = 0;
    for (let i = 1; i < this.children.length; i++) if (load(this.children[i]) < load(this.children[best])) best = i;
    const child = this.helper(best);
    if (!child) return Promise.resolve(undefined);
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, { child, op: req.op, done: resolve });
      child.channel?.ref();
      child.send({ ...req, id }, (err) => {
        if (err) this.settle(id, failure(id, req.op, `the spawner helper: ${err.message}`));
      });
    });
  }

  private helper(i: number): ChildProcess | undefined {
    if (this.broken) return undefined;
    const current = this.children[i];
    if (current?.connected) return current;
    try {
      // a small heap keeps the helper's own forks cheap
      const child = fork(CHILD, [], { execArgv: ['--max-old-space-size=32', '--max-semi-space-size=1'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'], serialization: 'json' });
      child.on('message', (r: HelperReply) => this.settle(r.id, r));
      const lost = (why: string) => {
        if (this.children[i] === child) this.children[i] = undefined;
        for (const [id, p] of [...this.pending]) {
          if (p.child === child) this.settle(id, failure(id, p.op, `the spawner helper ${why} before the call finished`));
        }
      };
      child.on('exit', (code, sig) => lost(`exited (${sig ?? code})`));
      child.on('error', (e) => lost(`failed: ${e.message}`));
      child.unref();
      child.channel?.unref();
      this.children[i] = child;
      return child;
    } catch {
      this.broken = true;
      return undefined;
    }
  }

  private settle(id: number, r: HelperReply): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (![...this.pending.values()].some((o) => o.child === p.child)) p.child.channel?.unref();
    p.done(r);
  }
}

function failure(id: number, op: HelperRequest['op'], why: string): HelperReply {
  return op === 'exec' ? { id, op, code: 1, stdout: '', stderr: why } : { id, op, error: why };
}

/** execFile with optional stdin input; never rejects (a failure to run is code 1 and the reason). */
export function execCommand(file: string, args: string[], opts: RunOptions): Promise<CommandResult & { error?: string }> {
  return new Promise((resolve) => {
    const cp = execFile(file, args, { cwd: opts.cwd, timeout: opts.timeoutMs, maxBuffer: opts.maxBuffer ?? 4 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr), error: err && code !== 0 ? err.message : undefined });
    });
    cp.stdin?.on('error', () => {}); // a command that exits without reading its input
    cp.stdin?.end(opts.input ?? '');
  });
}

async function direct(file: string, args: string[], opts: RunOptions): Promise<CommandResult> {
  const r = await execCommand(file, args, opts);
  return { code: r.code, stdout: r.stdout, stderr: r.stderr || (r.error ?? '') };
}

let shared: Spawner | undefined;

function spawner(): Spawner {
  shared ??= new Spawner();
  return shared;
}

/** Runs a command through the process-wide helper (one for gantryd). */
export function runCommand(file: string, args: string[], opts: RunOptions = {}): Promise<CommandResult> {
  return spawner().run(file, args, opts);
}

/** The default rootfs mounter, run in the process-wide helper. */
export function spawnerMounter(): RootfsMounter {
  return spawner().mounter();
}

/** Starts the process-wide helper ahead of the first command (a runtime calls it when it is made). */
export function warmSpawner(): void {
  spawner().warm();
}
