// TaskManager: one runner per assigned task, each moving its task one transition at a time through
// step(); persists every status (worker/state) and re-adopts running containers after a gantryd restart.
//
//   agent ──assign(tasks, full, removed)──> TaskManager ──upsert/remove──> Runner(task) ──step()──> Controller ──> Runtime
//   agent <──onStatus(taskId, status)─────── (forward-only, deduplicated, persisted before it is reported)
//
// A full assignment replaces everything: runners for tasks not in it shut their container down and
// remove it. After a restart, start() reads the records and the runtime's containers first, so a
// running container is waited on again, never restarted; containers nobody owns are removed once
// the first full assignment has said which tasks this node still has.
import { type Task, TaskState, type TaskStatus } from '../../proto/gen/gantry/v1/objects.ts';
import type { Log } from '../runtime/log.ts';
import type { ContainerState, LogEntry, LogOptions, Runtime } from '../runtime/types.ts';
import { RuntimeError } from '../runtime/types.ts';
import { JournalTaskRecords } from '../state/task-journal.ts';
import { MemoryTaskRecords, type TaskRecords } from '../state/task-records.ts';
import { DEFAULT_STOP_GRACE_MS } from './container-config.ts';
import { ContainerController, type Controller, type TaskImages, type TaskNetworks } from './controller.ts';
import { isTerminal, step } from './step.ts';

export interface TaskManagerClock {
  now(): number;
  /** Timer used for retry backoff; setTimeout when absent. */
  after?(ms: number, fn: () => void): () => void;
}

export interface TaskManagerOptions {
  runtime: Runtime;
  images: TaskImages;
  /** Task records live in <stateDir>/tasks.jsonl; "" keeps them in memory (simulated nodes). */
  stateDir: string;
  clock: TaskManagerClock;
  log: Log | ((m: string) => void);
  onStatus: (taskId: string, status: TaskStatus) => void;
  networks?: TaskNetworks;
  records?: TaskRecords;
  /** First retry delay; doubles up to 30 s. Default 500 ms. */
  retryMs?: number;
  /** Builds the controller for a task (tests); default ContainerController. */
  controller?: (task: () => Task) => Controller;
}

function toLog(l: Log | ((m: string) => void)): Log {
  if (typeof l !== 'function') return l;
  return { debug() {}, info: (m, f) => l(f ? `${m} ${JSON.stringify(f)}` : m), warn: (m, f) => l(f ? `${m} ${JSON.stringify(f)}` : m), error: (m, f) => l(f ? `${m} ${JSON.stringify(f)}` : m) };
}

function initialStatus(task: Task, now: number): TaskStatus {
  const s = task.status;
  if (s && s.state >= TaskState.TASK_STATE_ASSIGNED) return { ...s, ports: s.ports ?? [] };
  return { timestamp: now, state: TaskState.TASK_STATE_ASSIGNED, message: 'assigned', err: '', ports: [], health: '' };
}

/**
 * After a restart: the status a recorded task has given what the runtime still holds. Pure.
 * A running container puts its task at RUNNING (the runner then only waits on it).
 */
export function readoptedStatus(rec: TaskStatus, container: ContainerState | undefined, now: number): TaskStatus {
  if (isTerminal(rec.state) || !container || container.status === 'unknown') return rec;
  if (container.status === 'running' && rec.state >= TaskState.TASK_STATE_PREPARING && rec.state < TaskState.TASK_STATE_RUNNING) {
    return { ...rec, timestamp: now, state: TaskState.TASK_STATE_RUNNING, message: 'started', err: '', container: { containerId: container.id, pid: container.pid, exitCode: 0 } };
  }
  if (container.status === 'created' && rec.state === TaskState.TASK_STATE_PREPARING) {
    return { ...rec, timestamp: now, state: TaskState.TASK_STATE_READY, message: 'prepared', err: '' };
  }
  return rec;
}

class Runner {
  task: Task;
  status: TaskStatus;
  removing = false;
  done: Promise<void> = Promise.resolve();
  private readonly m: TaskManager;
  private readonly ctl: Controller;
  private ac: AbortController | undefined;
  private dirty = false;
  private wake: (() => void) | undefined;

  constructor(m: TaskManager, task: Task, status: TaskStatus, ctl: (task: () => Task) => Controller) {
    this.m = m;
    this.task = task;
    this.status = status;
    this.ctl = ctl(() => this.task);
  }

  run(): void {
    this.done = this.loop().catch((e) => this.m.log.error('task runner crashed', { task: this.task.id, err: String(e) }));
  }

  update(task: Task): void {
    const old = this.task;
    if (this.removing) task = { ...task, desiredState: Math.max(task.desiredState, TaskState.TASK_STATE_REMOVE) as TaskState };
    this.task = task;
    if (task.desiredState !== old.desiredState) {
      this.ac?.abort(new Error('desired state changed'));
      void this.m.persist(this);
      this.m.desiredChanged();
    }
    this.poke();
  }

  remove(): void {
    if (this.removing) return;
    this.removing = true;
    this.update(this.task);
  }

  poke(): void {
    this.dirty = true;
    this.wake?.();
  }

  stop(): void {
    this.ac?.abort(new Error('task manager closing'));
    this.poke();
  }

  private sleep(ms: number | undefined): Promise<void> {
    if (this.dirty || this.m.closed) return Promise.resolve();
    return new Promise((resolve) => {
      let cancel = () => {};
      this.wake = () => {
        this.wake = undefined;
        cancel();
        resolve();
      };
      if (ms !== undefined) cancel = this.m.after(ms, () => this.wake?.());
    });
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.m.closed) {
      this.dirty = false;
      if (this.removing && isTerminal(this.status.state)) {
        try {
          await this.ctl.remove();
          await this.m.forget(this);
          return;
        } catch (e) {
          this.m.log.warn('removing task container failed, will retry', { task: this.task.id, err: String(e) });
          await this.sleep(this.m.backoff(++failures));
          continue;
        }
      }
      if (this.m.holdAhead(this)) {
        await this.sleep(undefined); // poked when the tasks wanted now are prepared
        continue;
      }
      const ac = new AbortController();
      this.ac = ac;
      let r: Awaited<ReturnType<typeof step>>;
      const base = this.status;
      try {
        r = await step(this.task, base, this.ctl, { now: () => this.m.now(), signal: ac.signal });
      } catch (e) {
        this.m.log.warn('task step threw', { task: this.task.id, err: String(e) });
        r = 'retry';
      }
      this.ac = undefined;
      if (this.m.closed) return;
      if (r === 'idle') {
        await this.sleep(undefined);
      } else if (r === 'retry') {
        await this.sleep(this.dirty ? 0 : this.m.backoff(++failures));
      } else {
        failures = 0;
        await this.m.setStatus(this, r, base);
      }
    }
  }
}

export class TaskManager {
  closed = false;
  readonly log: Log;
  private readonly o: TaskManagerOptions;
  private readonly records: TaskRecords;
  private readonly runners = new Map<string, Runner>();
  /** Runners waiting in holdAhead(). */
  private readonly held = new Set<Runner>();
  private started = false;
  private pending: { tasks: Task[]; full: boolean; removed: string[] }[] = [];
  private sawFull = false;
  private orphansChecked = false;
  private orphanCandidates: string[] = [];
  private orphansDone: Promise<void> = Promise.resolve();
  private readonly drained: (() => void)[] = [];

  constructor(opts: TaskManagerOptions) {
    this.o = opts;
    this.log = toLog(opts.log);
    this.records = opts.records ?? (opts.stateDir ? new JournalTaskRecords(opts.stateDir) : new MemoryTaskRecords());
  }

  now(): number {
    return this.o.clock.now();
  }

  after(ms: number, fn: () => void): () => void {
    if (this.o.clock.after) return this.o.clock.after(ms, fn);
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  }

  backoff(failures: number): number {
    return Math.min(30_000, (this.o.retryMs ?? 500) * 2 ** Math.min(10, failures - 1));
  }

  private controllerFor(): (task: () => Task) => Controller {
    return this.o.controller ?? ((task) => new ContainerController({
      task, runtime: this.o.runtime, images: this.o.images, networks: this.o.networks,
      health: {
        now: () => this.now(),
        after: (ms, fn) => this.after(ms, fn),
        onHealth: (h) => {
          const r = this.runners.get(task().id);
          if (r && r.status.state === TaskState.TASK_STATE_RUNNING) void this.setStatus(r, { ...r.status, timestamp: this.now(), health: h });
        },
      },
    }));
  }

  /** Re-adopts what a previous gantryd left: records + the runtime's containers. Call before assign(). */
  async start(): Promise<void> {
    const recs = await this.records.load();
    let containers = new Map<string, ContainerState>();
    try {
      containers = new Map((await this.o.runtime.list()).map((c) => [c.id, c]));
    } catch (e) {
      this.log.warn('listing containers for re-adoption failed', { err: String(e) });
    }
    for (const rec of recs) {
      const container = containers.get(rec.containerId || rec.task.id);
      const r = new Runner(this, rec.task, rec.status, this.controllerFor());
      this.runners.set(rec.task.id, r);
      const st = readoptedStatus(rec.status, container, this.now());
      if (st !== rec.status) await this.setStatus(r, st);
      this.log.info('re-adopted task', { task: rec.task.id, state: r.status.state, container: container?.status ?? 'none' });
    }
    this.orphanCandidates = [...containers.keys()].filter((id) => !this.runners.has(id));
    this.started = true;
    for (const r of this.runners.values()) r.run();
    const queued = this.pending;
    this.pending = [];
    for (const p of queued) this.assign(p.tasks, p.full, p.removed);
  }

  assign(tasks: Task[], full: boolean, removed: string[]): void {
    if (this.closed) return;
    if (!this.started) {
      this.pending.push({ tasks, full, removed });
      return;
    }
    if (full) {
      const keep = new Set(tasks.map((t) => t.id));
      for (const [id, r] of this.runners) if (!keep.has(id)) r.remove();
      this.sawFull = true;
    }
    for (const t of tasks) {
      const r = this.runners.get(t.id);
      if (r) {
        if (!r.removing) r.update(t);
        continue;
      }
      const nr = new Runner(this, t, initialStatus(t, this.now()), this.controllerFor());
      this.runners.set(t.id, nr);
      void this.persist(nr);
      nr.run();
    }
    for (const id of removed) this.runners.get(id)?.remove();
    if (this.sawFull && !this.orphansChecked) {
      this.orphansChecked = true;
      this.orphansDone = this.removeOrphans();
    }
  }

  /** Containers no task record owns (e.g. created just before a crash): stopped and removed. */
  private async removeOrphans(): Promise<void> {
    for (const id of this.orphanCandidates) {
      if (this.runners.has(id) || this.closed) continue;
      try {
        await this.o.runtime.stop(id, DEFAULT_STOP_GRACE_MS);
        await this.o.runtime.remove(id);
        this.log.info('removed container no task owns', { container: id });
      } catch (e) {
        this.log.warn('removing orphan container failed', { container: id, err: String(e) });
      }
    }
  }

  statuses(): Map<string, TaskStatus> {
    return new Map([...this.runners].map(([id, r]) => [id, r.status]));
  }

  logs(taskId: string, opts: LogOptions): AsyncIterable<LogEntry> {
    if (!this.runners.has(taskId)) {
      return (async function* () {
        yield* [];
        throw new RuntimeError(`task ${taskId} is not on this node`);
      })();
    }
    return this.o.runtime.logs(taskId, opts);
  }

  /** Stops the runners; containers keep running (re-adopted by the next start()). */
  async close(): Promise<void> {
    this.closed = true;
    for (const r of this.runners.values()) r.stop();
    await Promise.allSettled([...this.runners.values()].map((r) => r.done));
    await this.records.close?.();
  }

  /**
   * A task wanted only READY (a rolling update preparing a later slot ahead of its turn) waits to
   * be prepared while a task wanted RUNNING is still being prepared: they compete for the same CPU,
   * and the update waits on the RUNNING ones (start-first, parallelism 5: 10 containers prepared
   * at once, the 5 needed now done last). Once its turn comes (desired RUNNING) it no longer waits.
   */
  holdAhead(r: Runner): boolean {
    const preparing = (x: Runner) => !x.removing && x.status.state < TaskState.TASK_STATE_READY && x.task.desiredState < TaskState.TASK_STATE_SHUTDOWN;
    const held = r.task.desiredState === TaskState.TASK_STATE_READY && r.status.state === TaskState.TASK_STATE_PREPARING && !r.removing
      && [...this.runners.values()].some((o) => o !== r && o.task.desiredState === TaskState.TASK_STATE_RUNNING && preparing(o));
    if (held) this.held.add(r);
    else this.held.delete(r);
    return held;
  }

  /** A task's desired state changed: a held runner may go now (or it is the one whose turn came). */
  desiredChanged(): void {
    this.releaseHeld();
  }

  /** Lets held runners look again (a task was prepared, changed or went away). */
  private releaseHeld(): void {
    for (const r of [...this.held]) r.poke();
  }

  /** Forward-only, deduplicated; persisted before it is reported. */
  async setStatus(r: Runner, next: TaskStatus, base?: TaskStatus): Promise<void> {
    const cur = r.status;
    if (next.state < cur.state) return;
    // step() works from the status its call began with (`base`): health reported meanwhile wins
    // unless the step itself set a new one (RUNNING with "starting").
    const stepKeptHealth = base ? next.health === base.health : !next.health;
    if (stepKeptHealth && cur.health) next = { ...next, health: cur.health };
    if (next.state === cur.state && next.message === cur.message && next.err === cur.err && next.health === cur.health) return;
    r.status = next;
    if (this.held.size > 0 && next.state >= TaskState.TASK_STATE_READY) this.releaseHeld();
    await this.persist(r);
    if (!this.closed) this.o.onStatus(r.task.id, next);
  }

  async persist(r: Runner): Promise<void> {
    try {
      await this.records.put({ task: r.task, status: r.status, containerId: r.task.id, runtime: this.o.runtime.name });
    } catch (e) {
      this.log.error('persisting task record failed', { task: r.task.id, err: String(e) });
    }
  }

  async forget(r: Runner): Promise<void> {
    if (this.runners.get(r.task.id) === r) this.runners.delete(r.task.id);
    this.held.delete(r);
    this.releaseHeld();
    await this.records.delete(r.task.id);
    if (this.runners.size === 0) for (const f of this.drained.splice(0)) f();
  }

  /**
   * Resolves once every task is gone (after assign([], true, []) every container is stopped and removed),
   * including containers no task owned. For `gantry leave`.
   */
  async drain(): Promise<void> {
    if (this.runners.size > 0) await new Promise<void>((resolve) => this.drained.push(resolve));
    await this.orphansDone;
  }
}
