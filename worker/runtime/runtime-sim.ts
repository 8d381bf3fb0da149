// SimRuntime: a Runtime with no containers, for simulating thousands of nodes in one process.
// Containers live in memory and move on an injected clock; their args script what they do.
//
// Argument convention (anything else "runs" until stopped or killed):
//   ["sim-exit", CODE, DELAY]      exits with CODE after DELAY ("2s", "500ms", "1m"; default 0)
//   ["sim-fail-create", MESSAGE...] create fails with MESSAGE
//   ["sim-fail-start", MESSAGE...]  start fails with MESSAGE
//   ["sim-ignore-stop", ...]        ignores the stop signal: stop only ends it with SIGKILL after the grace
// Every container logs one stdout line "sim: <args>" when it starts. The stop signal ends a container
// with 128+signal (SIGTERM → 143), SIGKILL with 137.
import { type Clock, systemClock } from './clock.ts';
import {
  type ContainerConfig, type ContainerState, type ExecResult, type LogEntry, type LogOptions, type Runtime, RuntimeError,
} from './types.ts';

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGUSR1: 10, SIGUSR2: 12, SIGTERM: 15 };

export function signalNumber(sig: string): number | undefined {
  if (/^\d+$/.test(sig)) return Number(sig);
  const up = sig.toUpperCase();
  return SIGNALS[up.startsWith('SIG') ? up : `SIG${up}`];
}

/** "2s" | "500ms" | "1m" | "3" (seconds) → ms; undefined if malformed. */
export function parseSimDuration(s: string | undefined): number | undefined {
  if (s === undefined || s === '') return 0;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(s);
  if (!m) return undefined;
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
}

interface SimContainer {
  config: ContainerConfig;
  state: ContainerState;
  logs: LogEntry[];
  waiters: (() => void)[];
  cancelExit?: () => void;
}

let nextPid = 1000;

export class SimRuntime implements Runtime {
  readonly name = 'sim';
  private readonly clock: Clock;
  private readonly containers = new Map<string, SimContainer>();

  constructor(opts: { clock?: Clock } = {}) {
    this.clock = opts.clock ?? systemClock;
  }

  private get(id: string): SimContainer {
    const c = this.containers.get(id);
    if (!c) throw new RuntimeError(`container ${id} not found`);
    return c;
  }

  async create(config: ContainerConfig): Promise<void> {
    if (this.containers.has(config.id)) throw new RuntimeError(`container ${config.id} already exists (remove it first)`);
    if (config.args[0] === 'sim-fail-create') throw new RuntimeError(`create container ${config.id}: ${config.args.slice(1).join(' ') || 'simulated failure'}`);
    if (config.args[0] === 'sim-exit' && (parseSimDuration(config.args[2]) === undefined || !/^\d+$/.test(config.args[1] ?? ''))) {
      throw new RuntimeError(`container ${config.id}: sim-exit wants CODE and DELAY, e.g. ["sim-exit", "3", "2s"]`);
    }
    this.containers.set(config.id, { config, state: { id: config.id, status: 'created', pid: 0 }, logs: [], waiters: [] });
  }

  async start(id: string): Promise<void> {
    const c = this.get(id);
    if (c.state.status !== 'created') throw new RuntimeError(`start container ${id}: it is ${c.state.status}, not created`);
    const args = c.config.args;
    if (args[0] === 'sim-fail-start') throw new RuntimeError(`start container ${id}: ${args.slice(1).join(' ') || 'simulated failure'}`);
    c.state = { ...c.state, status: 'running', pid: nextPid++, startedAt: this.clock.now() };
    c.logs.push({ stream: 'stdout', timeMs: this.clock.now(), data: Buffer.from(`sim: ${args.join(' ')}\n`) });
    if (args[0] === 'sim-exit') {
      const code = Number(args[1]);
      c.cancelExit = this.clock.after(parseSimDuration(args[2]) ?? 0, () => this.exit(c, code));
    }
  }

  private stopped(c: SimContainer): boolean {
    return c.state.status === 'stopped';
  }

  private exit(c: SimContainer, code: number): void {
    if (c.state.status === 'stopped') return;
    c.cancelExit?.();
    c.state = { ...c.state, status: 'stopped', pid: 0, exitCode: code, finishedAt: this.clock.now() };
    const w = c.waiters;
    c.waiters = [];
    for (const f of w) f();
  }

  async state(id: string): Promise<ContainerState> {
    const c = this.containers.get(id);
    return c ? { ...c.state } : { id, status: 'unknown', pid: 0 };
  }

  wait(id: string, signal?: AbortSignal): Promise<ContainerState> {
    const c = this.containers.get(id);
    if (!c) return Promise.reject(new RuntimeError(`container ${id} not found`));
    if (c.state.status === 'stopped') return Promise.resolve({ ...c.state });
    return new Promise((resolve, reject) => {
      const done = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve({ ...c.state });
      };
      const onAbort = () => {
        c.waiters = c.waiters.filter((f) => f !== done);
        reject(signal!.reason ?? new Error('aborted'));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      c.waiters.push(done);
    });
  }

  async kill(id: string, sig: string): Promise<void> {
    const c = this.get(id);
    const n = signalNumber(sig);
    if (n === undefined) throw new RuntimeError(`kill container ${id}: unknown signal "${sig}"`);
    if (c.state.status === 'stopped') return;
    if (n !== 9 && c.config.args[0] === 'sim-ignore-stop') return;
    this.exit(c, 128 + n);
  }

  async stop(id: string, graceMs: number): Promise<ContainerState> {
    const c = this.containers.get(id);
    if (!c) return { id, status: 'unknown', pid: 0 };
    if (c.state.status === 'stopped') return { ...c.state };
    if (c.state.status === 'created') {
      this.exit(c, 137);
      return { ...c.state };
    }
    await this.kill(id, c.config.stopSignal || 'SIGTERM');
    if (!this.stopped(c)) {
      const cancel = this.clock.after(graceMs, () => this.exit(c, 137));
      await this.wait(id);
      cancel();
    }
    return { ...c.state };
  }

  async remove(id: string): Promise<void> {
    const c = this.containers.get(id);
    if (!c) return;
    this.exit(c, 137);
    this.containers.delete(id);
  }

  async list(): Promise<ContainerState[]> {
    return [...this.containers.values()].map((c) => ({ ...c.state }));
  }

  async *logs(id: string, opts: LogOptions): AsyncIterable<LogEntry> {
    const c = this.get(id);
    let entries = c.logs.filter((e) => !opts.sinceMs || e.timeMs >= opts.sinceMs);
    if (opts.tail >= 0) entries = opts.tail === 0 ? [] : entries.slice(-opts.tail);
    for (const e of entries) yield e;
    // Sim containers log nothing after start, so follow ends when the container does.
    if (opts.follow && c.state.status !== 'stopped') await this.wait(id, opts.signal).catch(() => {});
  }

  async exec(id: string, args: string[], _timeoutMs: number): Promise<ExecResult> {
    const c = this.get(id);
    if (c.state.status !== 'running') return { exitCode: 126, output: `container ${id} is not running` };
    if (args[0] === 'sim-exit') return { exitCode: Number(args[1] ?? 0), output: '' };
    return { exitCode: 0, output: '' };
  }
}
