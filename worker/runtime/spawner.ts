// Runs short commands (gantry-exec monitor/start/…) and rootfs mounts from a small helper process
// instead of gantryd: gantry-spawn (native-exec/src/spawn, static C), else the Node spawner-child.ts.
//
//   runCommand(file, args) / spawnerMounter()                 gantry-spawn (C, poll loop, root)
//     ──stdin  {"id":N,"op":"exec","file","args",…}\n ──▶     fork+execvp, pipes, timeout, maxBuffer
//     ──stdin  {"id":N,"op":"mount","opts":{…}}\n     ──▶     mount(2) overlay (as rootfs/overlay.ts)
//     ──stdin  {"id":N,"op":"unmount","containerDir"}\n ──▶   umount2 deepest first
//     ◀──stdout {"id":N,"op":"exec","code","stdout","stderr","error"?}\n | {"id":N,"op","rootfs"?|"error"?}\n
//   (replies in completion order, matched by id; with GANTRY_SPAWNER=node or no gantry-spawn built,
//    the same messages go over Node IPC to spawner-child.ts, which uses execFile and overlay.ts)
//
// Why: every fork copies the forking process's page tables. From gantryd (~190 MB) one blocks its
// event loop ~15–45 ms on a loaded host; from the ~73 MB Node helper a fork costs ~3–4 ms of CPU;
// from gantry-spawn (~1 MB) ~0.1 ms, and it mounts with mount(2), not mount(8).
// The helper (GANTRY_SPAWN_HELPERS for more) starts with the first runtime (warmSpawner), again after
// it dies (calls in flight then fail with the reason); if none can start, the work is done here.
// gantry-spawn exits when its stdin closes (gantryd gone); what its commands detached keeps running.
import { type ChildProcess, execFile, fork, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import type { Socket } from 'node:net';
import { resolve } from 'node:path';
import { defaultMounter, type RootfsMounter } from './rootfs-mount.ts';

export type MountOptions = Parameters<RootfsMounter['mountRootfs']>[0];

export type HelperRequest =
  | { id: number; op: 'exec'; file: string; args: string[]; cwd?: string; timeoutMs?: number; maxBuffer?: number; input?: string }
  | { id: number; op: 'mount'; opts: MountOptions }
  | { id: number; op: 'unmount'; containerDir: string };

export type HelperReply =
  /** error: why it failed when it did not exit 0 (spawn error, timeout, signal). code: exit status, 128+n for signal n. */
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

/** Which helper: gantry-spawn (`native`, the default when built) or the Node spawner-child.ts (`node`). */
export type HelperKind = 'native' | 'node';

export interface SpawnerOptions {
  /** Default: $GANTRY_SPAWNER (`node` picks the Node helper), else native when gantry-spawn is found. */
  kind?: HelperKind;
  /** gantry-spawn to run; default spawnHelperPath(). */
  binary?: string;
}

type Req = HelperRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

const CHILD = new URL('./spawner-child.ts', import.meta.url).pathname;
/** One: 3 measured no faster for a 50-task converge on 2 cores (2.4/3.4 s vs 2.0/2.2 s); GANTRY_SPAWN_HELPERS overrides. */
const DEFAULT_HELPERS = Number(process.env.GANTRY_SPAWN_HELPERS) || 1;
/** execFile's maxBuffer is "unlimited" at Infinity; gantry-spawn takes an integer. */
const MAX_BUFFER_CAP = 2 ** 40;

/** Where gantry-spawn is: $GANTRY_SPAWN_HELPER (only there), else this checkout's build, else /usr/local/bin, /usr/bin. */
export function spawnHelperPath(): string {
  if (process.env.GANTRY_SPAWN_HELPER) return process.env.GANTRY_SPAWN_HELPER;
  const built = new URL('../../native-exec/build/gantry-spawn', import.meta.url).pathname;
  return [built, '/usr/local/bin/gantry-spawn', '/usr/bin/gantry-spawn'].find((p) => existsSync(p)) ?? built;
}

/** One helper process: how to send it a request and keep the event loop alive while it owes answers. */
interface Helper {
  readonly kind: HelperKind;
  readonly proc: ChildProcess;
  alive(): boolean;
  send(req: HelperRequest, failed: (why: string) => void): void;
  ref(on: boolean): void;
}

/** A few helper processes (calls go to the least busy) and their calls in flight. */
export class Spawner {
  /** A fork blocks a Node helper until the child has exec'd (~10 ms per spawn on a loaded host); more helpers wait in parallel. */
  private readonly children: (Helper | undefined)[];
  private readonly pending = new Map<number, { helper: Helper; req: Req; done: (r: HelperReply | undefined) => void }>();
  private nextId = 1;
  private broken = false;
  private kind: HelperKind;
  private readonly binary: string;

  constructor(helpers = DEFAULT_HELPERS, opts: SpawnerOptions = {}) {
    this.children = new Array(Math.max(1, helpers)).fill(undefined);
    this.binary = opts.binary ?? spawnHelperPath();
    this.kind = opts.kind ?? (process.env.GANTRY_SPAWNER === 'node' ? 'node' : 'native');
    if (this.kind === 'native' && !existsSync(this.binary)) this.useNode(`gantry-spawn not found at ${this.binary}`);
  }

  /** The helper kind calls go to now (native falls back to node when gantry-spawn cannot start). */
  helperKind(): HelperKind {
    return this.kind;
  }

  /** The pids of the running helpers (tests and benchmarks read their CPU time). */
  helperPids(): number[] {
    return this.children.flatMap((c) => (c?.alive() && c.proc.pid ? [c.proc.pid] : []));
  }

  /** Runs file with args (never a shell); stderr carries the failure reason when it did not run. */
  async run(file: string, args: string[], opts: RunOptions = {}): Promise<CommandResult> {
    const maxBuffer = Math.min(MAX_BUFFER_CAP, Math.floor(opts.maxBuffer ?? 4 << 20));
    const timeoutMs = opts.timeoutMs !== undefined && Number.isFinite(opts.timeoutMs) ? Math.max(0, Math.ceil(opts.timeoutMs)) : undefined;
    const r = await this.call({ op: 'exec', file, args, cwd: opts.cwd, timeoutMs, maxBuffer, input: opts.input });
    if (r === undefined) return direct(file, args, opts);
    if (r.op !== 'exec') return { code: 1, stdout: '', stderr: r.error ?? 'the spawner helper answered another call' };
    return { code: r.code, stdout: r.stdout, stderr: r.stderr || (r.code !== 0 ? (r.error ?? '') : '') };
  }

  /** A RootfsMounter whose mounts run in the helper (in this process when there is none). */
  mounter(): RootfsMounter {
    const unmountRootfs = async (containerDir: string): Promise<void> => {
      const r = await this.call({ op: 'unmount', containerDir: resolve(containerDir) });
      if (r === undefined) return (await defaultMounter()).unmountRootfs(containerDir);
      if (r.error !== undefined) throw new Error(r.error);
    };
    return {
      mountRootfs: async (opts) => {
        const { lowerDirs, containerDir, diskDir, volatile, readOnly } = opts as MountOptions & { readOnly?: boolean };
        // gantry-spawn takes absolute paths only (it does not share this process's cwd)
        const sent: MountOptions = { lowerDirs: lowerDirs.map((d) => resolve(d)), containerDir: resolve(containerDir), volatile };
        if (diskDir) sent.diskDir = resolve(diskDir);
        if (readOnly !== undefined) Object.assign(sent, { readOnly });
        const r = await this.call({ op: 'mount', opts: sent });
        if (r === undefined) return (await defaultMounter()).mountRootfs(opts);
        if (r.error !== undefined || r.op !== 'mount' || !r.rootfs) throw new Error(r.error ?? `mounting the rootfs of ${containerDir}: no answer`);
        return { rootfs: r.rootfs, unmount: () => unmountRootfs(containerDir) };
      },
      unmountRootfs,
    };
  }

  /** Starts the helper now, so the first command does not wait for it to boot. */
  warm(): void {
    for (let i = 0; i < this.children.length; i++) this.helper(i);
  }

  /** Ends the helpers (calls in flight fail). */
  close(): void {
    for (const [i, c] of this.children.entries()) {
      c?.proc.kill();
      this.children[i] = undefined;
    }
  }

  private useNode(why: string): void {
    if (this.kind === 'node') return;
    this.kind = 'node';
    process.stderr.write(`spawner: ${why}; commands and mounts run from a Node helper instead (build it: make -C native-exec)\n`);
  }

  /** Sends one request; undefined when there is no helper (the caller does the work itself). */
  private call(req: Req): Promise<HelperReply | undefined> {
    return new Promise((done) => this.dispatch(req, done));
  }

  private dispatch(req: Req, done: (r: HelperReply | undefined) => void): void {
    const load = (h: Helper | undefined) => [...this.pending.values()].filter((p) => p.helper === h).length;
    let best = 0;
    for (let i = 1; i < this.children.length; i++) if (load(this.children[i]) < load(this.children[best])) best = i;
    const helper = this.helper(best);
    if (!helper) {
      done(undefined);
      return;
    }
    const id = this.nextId++;
    this.pending.set(id, { helper, req, done });
    helper.ref(true);
    helper.send({ ...req, id } as HelperRequest, (why) => this.settle(id, failure(id, req.op, `the spawner helper: ${why}`)));
  }

  private helper(i: number): Helper | undefined {
    if (this.broken) return undefined;
    const current = this.children[i];
    if (current?.alive() && current.kind === this.kind) return current;
    try {
      const h = this.kind === 'native' ? this.startNative(i) : this.startNode(i);
      this.children[i] = h;
      return h;
    } catch (e) {
      if (this.kind === 'native') {
        this.useNode(`gantry-spawn ${this.binary} cannot start (${(e as Error).message})`);
        return this.helper(i);
      }
      this.broken = true;
      return undefined;
    }
  }

  /** Fails (or, when it never started, re-sends) the calls a dead helper owed. */
  private lost(i: number, h: Helper, why: string, neverStarted: boolean): void {
    if (this.children[i] === h) this.children[i] = undefined;
    for (const [id, p] of [...this.pending]) {
      if (p.helper !== h) continue;
      if (neverStarted) {
        this.pending.delete(id);
        this.dispatch(p.req, p.done);
      } else this.settle(id, failure(id, p.req.op, `the spawner helper ${why} before the call finished`));
    }
  }

  private startNative(i: number): Helper {
    const proc = spawn(this.binary, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    let dead = false;
    const lines = lineReader((line) => {
      let r: HelperReply;
      try {
        r = JSON.parse(line) as HelperReply;
      } catch {
        process.stderr.write(`spawner: gantry-spawn wrote a line that is not JSON: ${line.slice(0, 200)}\n`);
        return;
      }
      if (typeof r?.id === 'number' && this.pending.has(r.id)) this.settle(r.id, r);
      else process.stderr.write(`spawner: gantry-spawn answered no call: ${line.slice(0, 300)}\n`);
    });
    proc.stdout?.setEncoding('utf8');
    proc.stdout?.on('data', lines);
    proc.stdin?.on('error', () => {}); // EPIPE when it died: 'close' fails the calls
    const h: Helper = {
      kind: 'native',
      proc,
      alive: () => !dead,
      send: (req, failed) => {
        if (!proc.stdin?.writable) return failed('its stdin is closed');
        proc.stdin.write(`${JSON.stringify(req)}\n`);
      },
      ref: (on) => {
        if (on) (proc.stdout as Socket | null)?.ref();
        else (proc.stdout as Socket | null)?.unref();
      },
    };
    proc.on('error', (e) => {
      if (dead) return;
      dead = true;
      if (proc.pid === undefined) this.useNode(`gantry-spawn ${this.binary} cannot start (${e.message})`);
      this.lost(i, h, `failed: ${e.message}`, proc.pid === undefined);
    });
    proc.on('close', (code, sig) => {
      if (dead) return;
      dead = true;
      this.lost(i, h, `exited (${sig ?? code})`, false);
    });
    proc.unref();
    (proc.stdin as Socket | null)?.unref();
    (proc.stdout as Socket | null)?.unref();
    return h;
  }

  private startNode(i: number): Helper {
    // a small heap keeps the helper's own forks cheap
    const proc = fork(CHILD, [], { execArgv: ['--max-old-space-size=32', '--max-semi-space-size=1'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'], serialization: 'json' });
    let dead = false;
    const h: Helper = {
      kind: 'node',
      proc,
      alive: () => !dead && proc.connected,
      send: (req, failed) => {
        proc.send(req, (err) => {
          if (err) failed(err.message);
        });
      },
      ref: (on) => {
        if (on) proc.channel?.ref();
        else proc.channel?.unref();
      },
    };
    proc.on('message', (r: HelperReply) => this.settle(r.id, r));
    const gone = (why: string) => {
      if (dead) return;
      dead = true;
      this.lost(i, h, why, false);
    };
    proc.on('exit', (code, sig) => gone(`exited (${sig ?? code})`));
    proc.on('error', (e) => gone(`failed: ${e.message}`));
    proc.unref();
    proc.channel?.unref();
    return h;
  }

  private settle(id: number, r: HelperReply): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (![...this.pending.values()].some((o) => o.helper === p.helper)) p.helper.ref(false);
    p.done(r);
  }
}

/** Calls back once per complete line (chunks are utf8 strings); a long line is joined once, not per chunk. */
function lineReader(onLine: (line: string) => void): (chunk: string) => void {
  let parts: string[] = [];
  return (chunk) => {
    let from = 0;
    for (let nl = chunk.indexOf('\n'); nl >= 0; nl = chunk.indexOf('\n', from)) {
      parts.push(chunk.slice(from, nl));
      const line = parts.join('');
      parts = [];
      from = nl + 1;
      if (line) onLine(line);
    }
    if (from < chunk.length) parts.push(chunk.slice(from));
  };
}

function failure(id: number, op: HelperRequest['op'], why: string): HelperReply {
  return op === 'exec' ? { id, op, code: 1, stdout: '', stderr: why } : { id, op, error: why };
}

/** execFile with optional stdin input; never rejects (a failure to run is code 1 and the reason; signal n is 128+n, as gantry-spawn). */
export function execCommand(file: string, args: string[], opts: RunOptions): Promise<CommandResult & { error?: string }> {
  return new Promise((resolve) => {
    const cp = execFile(file, args, { cwd: opts.cwd, timeout: opts.timeoutMs, maxBuffer: opts.maxBuffer ?? 4 << 20 }, (err, stdout, stderr) => {
      const signo = err && typeof err.signal === 'string' ? constants.signals[err.signal as NodeJS.Signals] : undefined;
      const code = !err ? 0 : typeof err.code === 'number' ? err.code : signo && err.code === null ? 128 + signo : 1;
      let error = err && code !== 0 ? err.message : undefined;
      if (error && err?.killed && err.signal && opts.timeoutMs) error += `timed out after ${opts.timeoutMs} ms (${err.signal} sent)`;
      else if (error && signo && err?.code === null) error += `killed by ${err?.signal}`;
      resolve({ code, stdout: String(stdout), stderr: String(stderr), error });
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
