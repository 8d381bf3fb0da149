// Test kit for the updater: the leader's controllers plus the Updater on a MemoryStore and fake
// clock, a fake worker that can fail chosen images, and a checker of the update guarantees at every revision.
import { type Service, type Task, TaskState, UpdateFailureAction, UpdateOrder, UpdateState } from '../../proto/gen/gantry/v1/objects.ts';
import { fixtures as f } from '../store/fixtures.ts';
import { Harness } from '../orchestrator/harness.ts';
import { isUp } from './decide.ts';
import { Updater } from './updater-loop.ts';

export interface Kit {
  h: Harness;
  updater: Updater;
  /** Guarantee violations seen so far (one line each). */
  violations: string[];
  service(): Service;
  /** The fake workers act once; tasks of `failImages` fail when started, of `unhealthyImages` report unhealthy. */
  act(): Promise<void>;
  /** Alternate worker actions and fake time until `done()` or `ms` of fake time passed. */
  until(done: () => boolean, ms?: number): Promise<boolean>;
  update(mutate: (s: Service) => void, opts?: { rollback?: boolean }): Promise<void>;
  stop(): void;
}

export interface KitOptions {
  /** Replicated: the replicas; global: must equal `nodes` (one task per node). */
  replicas: number;
  mode?: 'replicated' | 'global';
  parallelism?: number;
  order?: 'stop-first' | 'start-first';
  failureAction?: 'pause' | 'continue' | 'rollback';
  monitorMs?: number;
  delayMs?: number;
  maxFailureRatio?: number;
  nodes?: number;
  failImages?: Set<string>;
  /** Tasks of these images report health "starting" once running, and never get healthy. */
  startingImages?: Set<string>;
  /** Check the guarantees (stop-first: ≤ parallelism slots down; start-first: ≥ replicas up) at every revision. */
  check?: boolean;
}

export async function kit(o: KitOptions): Promise<Kit> {
  const h = new Harness();
  const nodes = Array.from({ length: o.nodes ?? (o.mode === 'global' ? o.replicas : 3) }, (_, i) => f.node({ id: `n${i}`, hostname: `node-${i + 1}` }));
  await f.seed(h.store, { clusters: [f.cluster()], nodes, sessions: nodes.map((n) => f.session({ nodeId: n.id })) });
  const cfg = {
    parallelism: o.parallelism ?? 1,
    delayMs: o.delayMs ?? 0,
    failureAction: { pause: UpdateFailureAction.UPDATE_FAILURE_ACTION_PAUSE, continue: UpdateFailureAction.UPDATE_FAILURE_ACTION_CONTINUE, rollback: UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK }[o.failureAction ?? 'pause'],
    monitorMs: o.monitorMs ?? 0,
    maxFailureRatio: o.maxFailureRatio ?? 0,
    order: o.order === 'start-first' ? UpdateOrder.UPDATE_ORDER_START_FIRST : UpdateOrder.UPDATE_ORDER_STOP_FIRST,
  };
  const global = o.mode === 'global';
  const svc = f.service({ id: 's', name: 'web', replicas: o.replicas, mode: o.mode, image: 'app:1', restart: { delayMs: 1000 }, spec: { update: cfg, rollback: { ...cfg } } });
  await f.seed(h.store, { services: [svc] });
  const updater = new Updater(h.deps);
  h.start();
  updater.start();
  const violations: string[] = [];
  const fail = o.failImages ?? new Set<string>();
  const service = () => h.store.view().get('services', 's')!;
  const unsubscribe = o.check === false ? () => {} : h.store.subscribe((_e, rev) => {
    const s = service();
    if (!s.updateStatus || s.updateStatus.state === UpdateState.UPDATE_STATE_UNKNOWN) return;
    const tasks = h.store.view().tasksByService('s');
    const want = o.replicas;
    // The slots: 1..replicas, or (global) the nodes.
    const slotOf = (t: Task) => (global ? t.nodeId : String(t.slot));
    const all = global ? nodes.map((n) => n.id) : Array.from({ length: want }, (_, i) => String(i + 1));
    const up = new Map<string, Task[]>();
    for (const t of tasks) if (isUp(t) || (t.status?.state === TaskState.TASK_STATE_RUNNING && t.desiredState > TaskState.TASK_STATE_RUNNING)) {
      // A task told to stop still runs until its worker reports it stopped.
      let l = up.get(slotOf(t));
      if (!l) up.set(slotOf(t), (l = []));
      l.push(t);
    }
    let down = 0;
    for (const slot of all) if (!up.has(slot)) down++;
    const rolling = s.updateStatus.state >= UpdateState.UPDATE_STATE_ROLLBACK_STARTED;
    const c = rolling ? (s.previousSpec?.rollback ?? s.spec?.rollback) : s.spec?.update;
    const p = c?.parallelism || Number.POSITIVE_INFINITY;
    if (c?.order === UpdateOrder.UPDATE_ORDER_START_FIRST) {
      if (down > 0) violations.push(`rev ${rev}: start-first: ${down} slots without a running task`);
    } else if (down > p && fail.size === 0) violations.push(`rev ${rev}: stop-first: ${down} slots down > parallelism ${p}`);
    for (const [slot, l] of up) {
      const versions = l.map((t) => t.specVersion);
      if (new Set(versions).size !== versions.length) violations.push(`rev ${rev}: slot ${slot} runs two tasks of one version`);
    }
  });
  const act = async () => {
    const all = h.tasks('s');
    const starting = all.filter((t) => t.desiredState === TaskState.TASK_STATE_RUNNING && (t.status?.state ?? 0) >= TaskState.TASK_STATE_ASSIGNED && (t.status?.state ?? 0) < TaskState.TASK_STATE_RUNNING);
    const bad = starting.filter((t) => fail.has(t.spec?.container?.image ?? ''));
    if (bad.length) {
      const v = h.store.view();
      const r = await h.store.batch(bad.map((t) => {
        const cur = v.get('tasks', t.id)!;
        return { op: 'update' as const, kind: 'tasks' as const, object: { ...cur, status: { ...cur.status!, state: TaskState.TASK_STATE_FAILED, timestamp: h.clock.now(), err: 'task: non-zero exit (1)', message: 'failed' } } };
      }));
      await h.store.waitFor(r.revision);
    }
    await h.workersAct();
    const slow = o.startingImages ?? new Set<string>();
    const running = h.tasks('s').filter((t) => t.status?.state === TaskState.TASK_STATE_RUNNING && !t.status.health && slow.has(t.spec?.container?.image ?? ''));
    if (running.length) {
      const r = await h.store.batch(running.map((t) => ({ op: 'update' as const, kind: 'tasks' as const, object: { ...t, status: { ...t.status!, timestamp: h.clock.now(), health: 'starting' } } })));
      await h.store.waitFor(r.revision);
    }
  };
  const until = async (done: () => boolean, ms = 120_000) => {
    for (let t = 0; t < ms; t += 50) {
      if (done()) return true;
      await act();
      await h.run(50);
    }
    return done();
  };
  const update = async (mutate: (s: Service) => void, opts: { rollback?: boolean } = {}) => {
    const cur = service();
    let next: Service;
    if (opts.rollback) {
      next = { ...cur, spec: cur.previousSpec, previousSpec: cur.spec, specVersion: cur.specVersion + 1, updateStatus: { state: UpdateState.UPDATE_STATE_ROLLBACK_STARTED, startedAt: h.clock.now(), completedAt: 0, message: 'rollback started' } };
    } else {
      const spec = structuredClone(cur.spec!);
      const before = JSON.stringify(spec.task);
      mutate({ ...cur, spec } as Service);
      const taskChanged = JSON.stringify(spec.task) !== before;
      next = { ...cur, spec, previousSpec: cur.spec, specVersion: cur.specVersion + (taskChanged ? 1 : 0), updateStatus: taskChanged ? { state: UpdateState.UPDATE_STATE_UPDATING, startedAt: h.clock.now(), completedAt: 0, message: 'update started' } : cur.updateStatus };
    }
    const r = await h.store.commit([{ op: 'update', kind: 'services', object: next }]);
    if (!r.ok) throw new Error(`update conflicted: ${JSON.stringify(r.conflict)}`);
    await h.store.waitFor(r.revision);
  };
  return {
    h, updater, violations, service, act, until, update,
    stop: () => {
      unsubscribe();
      void updater.stop();
      h.stop();
    },
  };
}

/** Every slot 1..n runs an up task of this image, and no other task runs. */
export function convergedTo(k: Kit, image: string, n: number): boolean {
  // Tasks told to stop count until their worker reports them stopped (never-placed ones hold nothing).
  // (Global tasks carry their node from birth: not placed = not yet assigned.)
  const placed = (t: Task) => t.nodeId !== '' && (t.status?.state ?? 0) >= TaskState.TASK_STATE_ASSIGNED;
  const ts = k.h.tasks('s').filter((t) => t.desiredState <= TaskState.TASK_STATE_RUNNING || ((t.status?.state ?? 0) < TaskState.TASK_STATE_COMPLETE && placed(t)));
  return ts.length === n && ts.every((t) => isUp(t) && t.spec?.container?.image === image);
}

export const stateName = (s: UpdateState | undefined) => (s === undefined ? 'none' : Object.entries(UpdateState).find(([, v]) => v === s)?.[0].replace('UPDATE_STATE_', '').toLowerCase());
