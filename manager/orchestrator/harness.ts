// Test harness for the leader's controllers: a MemoryStore on a ManualClock with all six loops
// running, a fake worker that reports task states, and small queries tests assert on.
import { type Task, TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import { Allocator } from '../allocator/allocator-loop.ts';
import { type ControllerDeps, silentLog } from '../controller.ts';
import { ManualClock } from '../fake-clock.ts';
import { NodeHealth } from '../nodehealth/node-health-loop.ts';
import { TaskReaper } from '../reaper/reaper-loop.ts';
import { Scheduler } from '../scheduler/scheduler-loop.ts';
import { MemoryStore } from '../store/memory.ts';
import { type CommitResult, type Conflict, type ReadView, type Store, type StoreEvent, StoreUnavailableError, type Write } from '../store/types.ts';
import { GlobalOrchestrator } from './global-loop.ts';
import { ReplicatedOrchestrator } from './replicated-loop.ts';

export interface Controllers {
  start(): void;
  stop(): void;
}

/**
 * The controllers' view of the store, with writes delayed by a few event-loop turns (as etcd's
 * round trip would), so that their decisions race with other writers and conflicts happen.
 */
export function withLatency(store: MemoryStore, rnd: () => number): Store {
  const turns = async () => {
    const n = 1 + Math.floor(rnd() * 3);
    for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
  };
  return {
    view: () => store.view(),
    subscribe: (l) => store.subscribe(l),
    waitFor: (r) => store.waitFor(r),
    commit: async (w) => {
      await turns();
      return store.commit(w);
    },
    batch: async (w) => {
      await turns();
      return store.batch(w);
    },
  };
}

/**
 * The controllers' view of the store as a lagging informer sees it: events and the view arrive
 * `lagMs` after the write, and `failNextBatch` makes one batch throw after it applied (the caller
 * cannot tell whether its writes landed, as with an etcd call that timed out).
 */
export class LaggingStore implements Store {
  failNextBatch = false;
  private readonly inner: MemoryStore;
  private current: ReadView;
  private readonly listeners = new Set<(events: StoreEvent[], revision: number) => void>();
  private waiters: Array<{ revision: number; resolve: () => void }> = [];

  constructor(inner: MemoryStore, clock: ManualClock, lagMs: number) {
    this.inner = inner;
    this.current = inner.view();
    inner.subscribe((events, revision) => {
      const snapshot = inner.view();
      clock.setTimeout(() => {
        this.current = snapshot;
        for (const l of [...this.listeners]) l(events, revision);
        const ready = this.waiters.filter((w) => w.revision <= revision);
        this.waiters = this.waiters.filter((w) => w.revision > revision);
        for (const w of ready) w.resolve();
      }, lagMs);
    });
  }

  view(): ReadView {
    return this.current;
  }

  subscribe(l: (events: StoreEvent[], revision: number) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  commit(w: Write[]): Promise<CommitResult> {
    return this.inner.commit(w);
  }

  async batch(w: Write[]): Promise<{ revision: number; conflicts: Conflict[] }> {
    const r = await this.inner.batch(w);
    if (this.failNextBatch) {
      this.failNextBatch = false;
      throw new StoreUnavailableError('etcd did not answer in time (test)');
    }
    return r;
  }

  waitFor(revision: number): Promise<void> {
    if (this.current.revision >= revision) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ revision, resolve }));
  }
}

export class Harness {
  readonly clock = new ManualClock();
  readonly store = new MemoryStore({ now: () => this.clock.now(), log: () => {} });
  readonly deps: ControllerDeps;
  readonly controllers: Controllers[];

  constructor(opts: { latency?: () => number; wrap?: (store: MemoryStore, clock: ManualClock) => Store } = {}) {
    const store = opts.wrap ? opts.wrap(this.store, this.clock) : opts.latency ? withLatency(this.store, opts.latency) : this.store;
    this.deps = { store, clock: this.clock, log: silentLog };
    this.controllers = [
      new ReplicatedOrchestrator(this.deps),
      new GlobalOrchestrator(this.deps),
      new Allocator(this.deps),
      new Scheduler(this.deps),
      new TaskReaper(this.deps),
      new NodeHealth(this.deps),
    ];
  }

  start(): void {
    for (const c of this.controllers) c.start();
  }

  stop(): void {
    for (const c of this.controllers) c.stop();
  }

  /** Lets the loops run for `ms` of fake time, in small steps. */
  async run(ms = 200): Promise<void> {
    for (let t = 0; t < ms; t += 10) await this.clock.advance(Math.min(10, ms - t));
  }

  tasks(serviceId?: string): Task[] {
    const v = this.store.view();
    return serviceId ? v.tasksByService(serviceId) : v.list('tasks');
  }

  runnable(serviceId?: string): Task[] {
    return this.tasks(serviceId).filter((t) => t.desiredState <= TaskState.TASK_STATE_RUNNING);
  }

  /** The fake worker: reports `state` for the given tasks (as the dispatcher would write it). */
  async report(tasks: readonly Task[], state: TaskState, exitCode?: number): Promise<void> {
    const v = this.store.view();
    const writes: Write[] = [];
    for (const t of tasks) {
      const cur = v.get('tasks', t.id);
      if (!cur || (cur.status?.state ?? 0) >= state) continue;
      writes.push({
        op: 'update',
        kind: 'tasks',
        object: {
          ...cur,
          status: {
            ...cur.status!,
            state,
            timestamp: this.clock.now(),
            message: 'reported',
            container: exitCode === undefined ? cur.status?.container : { containerId: '', pid: 0, exitCode },
          },
        },
      });
    }
    if (writes.length === 0) return;
    const r = await this.store.batch(writes);
    await this.store.waitFor(r.revision);
  }

  /** The fake workers run every assigned task whose desired state is RUNNING, and stop the ones told to. */
  async workersAct(): Promise<void> {
    const all = this.tasks();
    const v = this.store.view();
    const live = (t: Task) => {
      const n = v.get('nodes', t.nodeId);
      return n !== undefined && v.get('sessions', n.id) !== undefined;
    };
    await this.report(
      all.filter((t) => live(t) && t.desiredState === TaskState.TASK_STATE_RUNNING && (t.status?.state ?? 0) >= TaskState.TASK_STATE_ASSIGNED),
      TaskState.TASK_STATE_RUNNING,
    );
    await this.report(
      all.filter((t) => live(t) && t.desiredState >= TaskState.TASK_STATE_SHUTDOWN && (t.status?.state ?? 0) >= TaskState.TASK_STATE_ASSIGNED),
      TaskState.TASK_STATE_SHUTDOWN,
    );
  }
}
