// The updater's decision, pure: from a replicated or global service, its tasks and the time, which
// slots (global: nodes) to replace next, stop-first or start-first, which to finish, and the update's state.
import {
  type Node,
  type Service,
  type Task,
  TaskState,
  type UpdateConfig,
  UpdateFailureAction,
  UpdateOrder,
  UpdateState,
  type UpdateStatus,
} from '../../proto/gen/gantry/v1/objects.ts';
import { eligibleForNew } from '../orchestrator/global.ts';
import { exitedOnItsOwn, isLive, isRunnable, newestFirst, stateOf } from '../orchestrator/task.ts';
import { replaceCause } from '../orchestrator/restart.ts';
import { describeFailure } from './describe.ts';
import { isDirty, taskSpecKey } from './dirty.ts';

export interface UpdateInput {
  service: Service;
  /** Every task of the service (any state). */
  tasks: readonly Task[];
  node(id: string): Node | undefined;
  /** Global services: every node (an eligible node without a task counts as a slot that is down). */
  nodes?: readonly Node[];
  now: number;
  /**
   * Prepare the next slots' tasks ahead (READY beside the running old ones). Default: start-first,
   * and stop-first with parallelism 1 (measured faster there; see README).
   */
  prepareAhead?: boolean;
  /** How many slots to keep prepared ahead (default: `parallelism`; start-first at least 3). */
  prepareDepth?: number;
}

export type UpdateAction =
  /** Replace the old task of `slot`. stop-first: old → SHUTDOWN and a new task READY in one transaction; start-first: a new task RUNNING beside it. */
  | { kind: 'replace'; service: Service; slot: number; nodeId?: string; old: Task; order: 'stop-first' | 'start-first' }
  /** Prepare the replacement of `slot` ahead (desired READY beside the running old task). Global: slot 0, on `nodeId`. */
  | { kind: 'stage'; service: Service; slot: number; nodeId?: string; old: Task }
  /** stop-first: the old task has stopped, start the new one (desired READY → RUNNING); start-first: a staged slot's turn. */
  | { kind: 'promote'; task: Task }
  /** start-first: the new task is up, stop the old one. */
  | { kind: 'stop'; task: Task; reason: string }
  /** Write the service's update status (pause, completion, a failure note). */
  | { kind: 'status'; service: Service; status: UpdateStatus }
  /** Failure action rollback: spec ⇄ previousSpec, spec version + 1, status ROLLBACK_STARTED. */
  | { kind: 'rollback'; service: Service; status: UpdateStatus };

export interface UpdateDecision {
  actions: UpdateAction[];
  /** Decide again at this time (delay or monitor window ends). */
  wakeAt?: number;
}

/** The updater's view of one slot, for the decision and for progress displays. */
export type SlotPhase =
  /** Runs an old-spec task, not yet touched. */
  | 'dirty'
  /** Runs an old-spec task, and its replacement is prepared beside it (desired READY): its turn costs only a start. */
  | 'staged'
  /** Being replaced: a new-spec task not yet up, or the old one stopping. */
  | 'busy'
  /** Its new-spec task of this update failed (not retried by the updater until resumed). */
  | 'failed'
  /** Runs a new-spec task that is up (running, and healthy when it has a health check). */
  | 'done'
  /** No runnable task (the orchestrator fills it), or its old task needs replacing anyway. */
  | 'down';

export interface SlotView {
  /** Replicated: the slot number; global: 0 (the slot is the node). */
  slot: number;
  /** Global: the node that is the slot. */
  nodeId?: string;
  phase: SlotPhase;
  /** The task that counts for the slot (new one if any; the old one for dirty and staged). */
  task?: Task;
  /** staged: the prepared replacement. */
  next?: Task;
}

const isRollbackState = (s: UpdateState | undefined) =>
  s === UpdateState.UPDATE_STATE_ROLLBACK_STARTED || s === UpdateState.UPDATE_STATE_ROLLBACK_PAUSED || s === UpdateState.UPDATE_STATE_ROLLBACK_COMPLETED;

/** The task's spec has a health check of its own (not NONE); the image's is not known here. */
export function hasSpecHealthcheck(t: Task): boolean {
  const test = t.spec?.container?.healthcheck?.test ?? [];
  return (test[0] === 'CMD' && test.length > 1) || (test[0] === 'CMD-SHELL' && !!test[1]);
}

/**
 * Running, desired running, and healthy when it has a health check. A task whose spec has a check
 * but that reported no health yet (RUNNING is reported before the first "starting") is not up.
 */
export function isUp(t: Task): boolean {
  const health = t.status?.health ?? '';
  return (
    stateOf(t) === TaskState.TASK_STATE_RUNNING &&
    t.desiredState === TaskState.TASK_STATE_RUNNING &&
    health !== 'starting' &&
    health !== 'unhealthy' &&
    (health !== '' || !hasSpecHealthcheck(t))
  );
}

/** The update's slot of a task: replicated, its slot number; global, its node ('' = none). */
export function slotKeyOf(service: Service, t: Task): string {
  if (service.spec?.mode?.$case === 'global') return t.nodeId;
  return t.slot > 0 ? String(t.slot) : '';
}

const bySlotOrder = (a: SlotView, b: SlotView) => a.slot - b.slot || (a.nodeId ?? '').localeCompare(b.nodeId ?? '');

/** The update settings in force: the rollback settings (of the spec rolled back from) during a rollback. */
export function configFor(service: Service): Required<UpdateConfig> {
  const rolling = isRollbackState(service.updateStatus?.state);
  const c = rolling ? (service.previousSpec?.rollback ?? service.spec?.rollback) : service.spec?.update;
  return {
    parallelism: c?.parallelism ?? 1,
    delayMs: c?.delayMs ?? 0,
    failureAction: c?.failureAction ?? UpdateFailureAction.UPDATE_FAILURE_ACTION_PAUSE,
    monitorMs: c?.monitorMs ?? 5_000,
    maxFailureRatio: c?.maxFailureRatio ?? 0,
    order: c?.order ?? UpdateOrder.UPDATE_ORDER_STOP_FIRST,
  };
}

function replicas(service: Service): number {
  const m = service.spec?.mode;
  return m?.$case === 'replicated' ? m.value.replicas : 0;
}

/**
 * When a task still "starting" (health) stops being given time: the monitor period after it began
 * running (its status time: the worker reports "starting" as the check begins). Undefined when it
 * is not such a task, or with monitor 0 (then, as Swarm, the update waits for the check's verdict).
 */
export function healthDeadline(t: Task, monitorMs: number): number | undefined {
  if (monitorMs <= 0 || stateOf(t) !== TaskState.TASK_STATE_RUNNING || t.desiredState !== TaskState.TASK_STATE_RUNNING) return undefined;
  if (t.status?.health !== 'starting') return undefined;
  return (t.status?.timestamp ?? 0) + monitorMs;
}

/**
 * A new-spec task of this update that failed: exited on its own, reported unhealthy, or was still
 * not healthy ("starting") when the monitor period ended.
 */
function failedInUpdate(t: Task, since: number, now: number, monitorMs: number): boolean {
  if ((t.meta?.createdAt ?? 0) < since || (t.status?.timestamp ?? 0) < since) return false;
  if (exitedOnItsOwn(t)) return true;
  if (stateOf(t) === TaskState.TASK_STATE_RUNNING && t.status?.health === 'unhealthy') return true;
  const end = healthDeadline(t, monitorMs);
  return end !== undefined && now >= end;
}

/** Classify every slot (global: node) that holds a runnable task (or whose update task failed). */
export function slotViews(input: UpdateInput): { slots: SlotView[]; failures: Task[] } {
  const { service, node, now } = input;
  const key = taskSpecKey(service);
  const since = service.updateStatus?.startedAt ?? 0;
  const monitorMs = configFor(service).monitorMs;
  const global = service.spec?.mode?.$case === 'global';
  const bySlot = new Map<string, Task[]>();
  for (const t of input.tasks) {
    const k = slotKeyOf(service, t);
    if (k === '') continue;
    let l = bySlot.get(k);
    if (!l) bySlot.set(k, (l = []));
    l.push(t);
  }
  const failures: Task[] = [];
  const slots: SlotView[] = [];
  for (const [k, ts] of bySlot) {
    const slot = global ? 0 : Number(k);
    const at = global ? { slot, nodeId: k } : { slot };
    const fresh = ts.filter((t) => !isDirty(t, service, key)).sort(newestFirst);
    const failedHere = fresh.filter((t) => failedInUpdate(t, since, now, monitorMs));
    failures.push(...failedHere);
    const runnable = ts.filter(isRunnable);
    const newRunnable = runnable.filter((t) => !isDirty(t, service, key)).sort(newestFirst);
    const oldRunnable = runnable.filter((t) => isDirty(t, service, key));
    // Slot numbers are not 1..replicas (scale-down keeps the best-placed tasks): a slot counts while
    // it holds a runnable task, or its update task failed. Empty slots are counted by decideUpdate.
    if (runnable.length === 0 && failedHere.length === 0) continue;
    const cur = newRunnable.find(isUp) ?? newRunnable[0];
    const runningOld = oldRunnable.filter((t) => t.desiredState === TaskState.TASK_STATE_RUNNING);
    if (cur && !isUp(cur) && cur.desiredState === TaskState.TASK_STATE_READY && runningOld.length > 0 && failedHere.length === 0) {
      const old = [...runningOld].sort((a, b) => stateOf(b) - stateOf(a) || newestFirst(a, b))[0];
      slots.push({ ...at, phase: replaceCause(old, node(old.nodeId)) ? 'down' : 'staged', task: old, next: cur });
      continue;
    }
    if (cur) {
      slots.push({ ...at, phase: isUp(cur) ? 'done' : failedHere.length > 0 ? 'failed' : 'busy', task: cur });
      continue;
    }
    if (oldRunnable.length > 0) {
      const old = [...oldRunnable].sort((a, b) => stateOf(b) - stateOf(a) || newestFirst(a, b))[0];
      if (replaceCause(old, node(old.nodeId))) slots.push({ ...at, phase: 'down', task: old });
      else if (failedHere.length > 0) slots.push({ ...at, phase: 'failed', task: old });
      else slots.push({ ...at, phase: 'dirty', task: old });
      continue;
    }
    slots.push({ ...at, phase: 'failed', task: ts.sort(newestFirst)[0] });
  }
  slots.sort(bySlotOrder);
  return { slots, failures };
}

/**
 * Decide the next step of a replicated service's rolling update (or rollback).
 *
 * Rules, each a function of stored state only (a new leader continues where the old one was):
 * - A task is dirty when its spec differs from the service's (`--force` bumps forceUpdate, which
 *   is part of the spec). Only the spec decides, not the version number, so a rollback leaves
 *   tasks that never left the old spec alone.
 * - Slots are replaced lowest first, at most `parallelism` at once (0 = all). stop-first never lets
 *   more than `parallelism` slots (counting slots down for any reason) be without an up task;
 *   start-first stops an old task only once its replacement is up, so never fewer than the
 *   desired number run.
 * - `delay` separates a slot becoming up from the next slot starting.
 * - A failure is a new-spec task created or failing since the update (re)started that exited on
 *   its own or reported unhealthy. Over `maxFailureRatio` × replicas, the failure action applies:
 *   pause, rollback (pause when already rolling back), or continue (failed slots are left to the
 *   restart policy and no longer hold the window). Within the ratio, a start-first update goes on
 *   (the failed slot keeps its old task); a stop-first one waits for the failed slot to come back
 *   up through the restart policy, since it counts as a slot without a running task.
 * - Done when every slot runs an up new-spec task and `monitor` has passed since the last came up;
 *   failures within that window still count.
 * - Paused updates still finish slots already in flight (promote, stop the old), start no new ones.
 */
export function decideUpdate(input: UpdateInput): UpdateDecision {
  const { service, now } = input;
  const active = service.updateStatus?.state === UpdateState.UPDATE_STATE_UPDATING || service.updateStatus?.state === UpdateState.UPDATE_STATE_ROLLBACK_STARTED;
  const key = taskSpecKey(service);
  // Outside an update every step needs a task on another spec (to start an update, promote over,
  // stop, or drop): without one there is nothing to decide. A converge asks this on every event.
  if (!active && !input.tasks.some((t) => isDirty(t, service, key))) return { actions: [] };
  const d = decideSteps(input);
  if (!active) return d;
  // A new task still "starting" when its monitor period ends is a failure: decide again then.
  const monitorMs = configFor(service).monitorMs;
  let wakeAt = d.wakeAt;
  for (const t of input.tasks) {
    const end = healthDeadline(t, monitorMs);
    if (end === undefined || end <= now || isDirty(t, service, key)) continue;
    wakeAt = Math.min(wakeAt ?? end, end);
  }
  return wakeAt === undefined ? d : { ...d, wakeAt };
}

function decideSteps(input: UpdateInput): UpdateDecision {
  const { service, now } = input;
  const actions: UpdateAction[] = [];
  const mode = service.spec?.mode?.$case;
  if (mode !== 'replicated' && mode !== 'global') return { actions };
  const global = mode === 'global';
  const status = service.updateStatus;
  const state = status?.state ?? UpdateState.UPDATE_STATE_UNKNOWN;
  const rolling = isRollbackState(state);
  const cfg = configFor(service);
  const key = taskSpecKey(service);
  const { slots, failures } = slotViews(input);
  const bySlot = new Map<string, Task[]>();
  for (const t of input.tasks) {
    const k = slotKeyOf(service, t);
    let l = bySlot.get(k);
    if (!l) bySlot.set(k, (l = []));
    l.push(t);
  }

  // 1. Finish slots in flight, whatever the state.
  for (const t of input.tasks) {
    const k = slotKeyOf(service, t);
    if (k === '' || isDirty(t, service, key)) continue;
    const others = (bySlot.get(k) ?? []).filter((x) => x !== t);
    if (t.desiredState === TaskState.TASK_STATE_READY) {
      // stop-first: promote once nothing else in the slot still runs, if it replaced an old-spec task.
      const live = others.some((x) => isLive(x, input.node(x.nodeId)));
      const previous = others.filter((x) => (x.meta?.createdAt ?? 0) <= (t.meta?.createdAt ?? 0)).sort(newestFirst)[0];
      if (!live && previous && isDirty(previous, service, key)) actions.push({ kind: 'promote', task: t });
    } else if (isUp(t)) {
      // start-first: the old task beside an up new one is stopped.
      for (const x of others) {
        if (isRunnable(x) && isDirty(x, service, key)) actions.push({ kind: 'stop', task: x, reason: `updated: replaced by task ${t.id}` });
      }
    }
  }
  // A task prepared ahead for an earlier spec (the spec changed again, or was rolled back) is dropped.
  const stopping = new Set(actions.flatMap((a) => (a.kind === 'stop' ? [a.task.id] : [])));
  for (const x of input.tasks) {
    if (slotKeyOf(service, x) !== '' && x.desiredState === TaskState.TASK_STATE_READY && !stopping.has(x.id) && isDirty(x, service, key)) {
      actions.push({ kind: 'stop', task: x, reason: 'prepared for a spec that is no longer current' });
    }
  }

  const dirty = slots.filter((s) => s.phase === 'dirty' || s.phase === 'staged');
  const known = state !== UpdateState.UPDATE_STATE_UNKNOWN;
  const active = state === UpdateState.UPDATE_STATE_UPDATING || state === UpdateState.UPDATE_STATE_ROLLBACK_STARTED;
  // Dirty tasks with no update in progress (a change written without an update status): start one.
  if (!active && !known && dirty.length > 0) {
    actions.push({ kind: 'status', service, status: { state: UpdateState.UPDATE_STATE_UPDATING, startedAt: now, completedAt: 0, message: 'update started' } });
    return { actions };
  }
  if (!active && (state === UpdateState.UPDATE_STATE_COMPLETED || state === UpdateState.UPDATE_STATE_ROLLBACK_COMPLETED) && dirty.length > 0) {
    actions.push({ kind: 'status', service, status: { state: rolling ? UpdateState.UPDATE_STATE_ROLLBACK_STARTED : UpdateState.UPDATE_STATE_UPDATING, startedAt: now, completedAt: 0, message: rolling ? 'rollback started' : 'update started' } });
    return { actions };
  }
  if (!active) return { actions };
  const what = rolling ? 'rollback' : 'update';

  // Slots the orchestrator has yet to fill count as down. Global: eligible nodes without a task.
  const taken = new Set(slots.map((s) => s.nodeId));
  const missing = global
    ? (input.nodes ?? []).filter((n) => !taken.has(n.id) && eligibleForNew(n, service)).length
    : Math.max(0, replicas(service) - slots.length);

  // 2. Failures.
  const want = Math.max(1, global ? slots.length + missing : replicas(service));
  const worst = [...failures].sort(newestFirst);
  if (failures.length > 0 && failures.length / want > cfg.maxFailureRatio) {
    const why = describeFailure(worst[0], input.node(worst[0].nodeId), now);
    const more = failures.length > 1 ? ` (${failures.length} tasks failed)` : '';
    const action = cfg.failureAction;
    if (action === UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK && !rolling && service.previousSpec) {
      actions.push({ kind: 'rollback', service, status: { state: UpdateState.UPDATE_STATE_ROLLBACK_STARTED, startedAt: now, completedAt: 0, message: `update rolled back: ${why}${more}` } });
      return { actions };
    }
    // Rollback with nothing to roll back to, or a rollback that fails itself: pause.
    if (action !== UpdateFailureAction.UPDATE_FAILURE_ACTION_CONTINUE) {
      const paused = rolling ? UpdateState.UPDATE_STATE_ROLLBACK_PAUSED : UpdateState.UPDATE_STATE_PAUSED;
      const reason = !rolling && action === UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK ? ' (no previous spec to roll back to)' : '';
      actions.push({ kind: 'status', service, status: { ...status!, state: paused, message: `${what} paused: ${why}${more}${reason}` } });
      return { actions };
    }
  }
  const continuing = cfg.failureAction === UpdateFailureAction.UPDATE_FAILURE_ACTION_CONTINUE;

  // 3. Completion.
  const live = slots;
  const busy = live.filter((s) => s.phase === 'busy').length;
  const failedSlots = live.filter((s) => s.phase === 'failed').length;
  let lastUp = status?.startedAt ?? 0;
  for (const s of live) {
    if (s.phase === 'done' && s.task && (s.task.meta?.createdAt ?? 0) >= (status?.startedAt ?? 0)) lastUp = Math.max(lastUp, s.task.status?.timestamp ?? 0);
  }
  if (dirty.length === 0 && busy === 0 && (failedSlots === 0 || continuing)) {
    const allDone = missing === 0 && live.every((s) => s.phase === 'done');
    if (allDone || failedSlots > 0) {
      const end = lastUp + cfg.monitorMs;
      if (now < end) return { actions, wakeAt: end };
      // An automatic rollback keeps saying why it happened.
      const cause = rolling && status?.message.startsWith('update rolled back: ') ? ` (${status.message})` : '';
      const msg = failedSlots > 0 ? `${what} completed with ${failedSlots} failed tasks: ${describeFailure(worst[0], input.node(worst[0].nodeId), now)}` : `${what} completed${cause}`;
      actions.push({ kind: 'status', service, status: { ...status!, state: rolling ? UpdateState.UPDATE_STATE_ROLLBACK_COMPLETED : UpdateState.UPDATE_STATE_COMPLETED, completedAt: now, message: msg } });
      return { actions };
    }
    return { actions };
  }

  // 4. Next slots.
  if (dirty.length === 0) return { actions };
  const stopFirst = cfg.order !== UpdateOrder.UPDATE_ORDER_START_FIRST;
  const window = cfg.parallelism === 0 ? Number.POSITIVE_INFINITY : cfg.parallelism;
  // Slots without an up task now: being replaced, down for any reason, failed (unless the user
  // chose continue), or still on the old spec but not up (crashing, starting).
  let downNow = missing + live.filter((s) => s.phase === 'busy' || s.phase === 'down' || (s.phase === 'failed' && !continuing) || (s.phase === 'dirty' && !isUp(s.task!))).length;
  let busyNow = busy;
  if (busyNow >= window) return { actions };
  if (cfg.delayMs > 0 && lastUp > (status?.startedAt ?? 0)) {
    const at = lastUp + cfg.delayMs;
    if (now < at) return { actions, wakeAt: at };
  }
  // Slots already down cost nothing to replace: first; then the lowest slots.
  const order = [...dirty].sort((a, b) => Number(isUp(a.task!)) - Number(isUp(b.task!)) || bySlotOrder(a, b));
  const picked = new Set<SlotView>();
  for (const s of order) {
    if (busyNow >= window) break;
    const wasUp = isUp(s.task!);
    // stop-first: stopping an up task must not leave more than `parallelism` slots down.
    // start-first: the old task runs until its replacement is up, so only `parallelism` bounds it.
    if (stopFirst && wasUp && downNow + 1 > window) break;
    if (s.phase === 'staged') {
      // Its replacement is prepared: stop-first stops the old task (the new one is promoted once
      // it stopped); start-first starts the new one beside it.
      if (stopFirst) actions.push({ kind: 'stop', task: s.task!, reason: `updating: replaced by task ${s.next!.id}` });
      else actions.push({ kind: 'promote', task: s.next! });
    } else {
      actions.push({ kind: 'replace', service, slot: s.slot, nodeId: s.nodeId, old: s.task!, order: stopFirst ? 'stop-first' : 'start-first' });
    }
    picked.add(s);
    busyNow++;
    if (stopFirst && wasUp) downNow++;
  }
  // Prepare the next `parallelism` slots ahead (scheduled, image pulled, container created), so
  // that their turn costs only a start. Not with parallelism 0 (everything goes at once anyway).
  // Default: start-first, and stop-first with parallelism 1 (one more preparation at a time; at
  // parallelism 5 stop-first doubled the preparations in flight and measured slower under load).
  if ((input.prepareAhead ?? (!stopFirst || cfg.parallelism === 1)) && Number.isFinite(window)) {
    // start-first keeps two rounds prepared, and at least 3 slots: a container's preparation (≈ 350-450
    // ms on the bench host) outlasts a slot's turn (≈ 150-300 ms), so one slot ahead left each start
    // waiting on it (20 replicas p=1: 3.4-3.7 s at depth 3 vs 6.3-8.3 s at depth 1; p=5: 0.8-1.2 s
    // at depth 10 vs 1.25-1.5 s at depth 5, bench/update.ts). Workers prepare these only after the
    // tasks wanted running now (worker/exec/task-manager.ts holdAhead), so depth costs the turn nothing.
    const depth = input.prepareDepth ?? (stopFirst ? window : Math.max(2 * window, 3));
    let staged = dirty.filter((s) => s.phase === 'staged' && !picked.has(s)).length;
    for (const s of order) {
      if (staged >= depth) break;
      if (picked.has(s) || s.phase !== 'dirty' || !isUp(s.task!)) continue;
      actions.push({ kind: 'stage', service, slot: s.slot, nodeId: s.nodeId, old: s.task! });
      staged++;
    }
  }
  return { actions };
}
