// The job orchestrators' decisions, pure: replicated jobs run totalCompletions tasks to COMPLETE, at
// most maxConcurrent at a time, one slot per completion; global jobs run one task to COMPLETE per node.
import { type Node, type Service, type Task, TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import type { OrchestratorAction, Reconciled } from './actions.ts';
import { eligibleForNew } from './global.ts';
import { CAUSE_TEXT, decideRestart, nodeKey, pastCause, promoteAt, type RestartHistory, replaceCause, slotKey } from './restart.ts';
import { isRunnable, newestFirst, stateOf } from './task.ts';

const done = (t: Task) => stateOf(t) === TaskState.TASK_STATE_COMPLETE;

export interface ReplicatedJobInput {
  service: Service;
  tasks: readonly Task[];
  node(id: string): Node | undefined;
  history: RestartHistory;
  now: number;
}

/** Shut down what belongs to an earlier run of the job (a re-run bumps service.jobIteration). */
function oldIterations(service: Service, tasks: readonly Task[], actions: OrchestratorAction[]): Task[] {
  const current: Task[] = [];
  for (const t of tasks) {
    if (t.jobIteration === service.jobIteration) current.push(t);
    else if (isRunnable(t)) actions.push({ kind: 'shutdown', task: t, reason: 'the job was run again' });
  }
  return current;
}

/** A finished task: desired COMPLETE, so nothing restarts it and it reads as done. */
function finish(t: Task, actions: OrchestratorAction[]): void {
  if (isRunnable(t)) actions.push({ kind: 'finish', task: t });
}

export function reconcileReplicatedJob(input: ReplicatedJobInput): Reconciled {
  const { service, now, history, node } = input;
  const m = service.spec?.mode;
  if (m?.$case !== 'replicatedJob') return { actions: [] };
  const maxConcurrent = Math.max(1, m.value.maxConcurrent);
  const total = m.value.totalCompletions > 0 ? m.value.totalCompletions : maxConcurrent;
  const actions: OrchestratorAction[] = [];
  let wakeAt: number | undefined;

  const bySlot = new Map<number, Task[]>();
  for (const t of oldIterations(service, input.tasks, actions)) {
    let l = bySlot.get(t.slot);
    if (!l) bySlot.set(t.slot, (l = []));
    l.push(t);
  }

  let completed = 0;
  let failed = 0; // slots the restart policy gave up on
  let active = 0;
  const refill: Array<{ slot: number; restart: boolean; delayMs: number }> = [];
  for (const [slot, ts] of bySlot) {
    const sorted = [...ts].sort(newestFirst);
    const runnable = sorted.filter(isRunnable);
    if (sorted.some(done)) {
      completed++;
      for (const t of runnable) done(t) ? finish(t, actions) : actions.push({ kind: 'shutdown', task: t, reason: 'this completion is done' });
      continue;
    }
    const records = history.get(slotKey(service.id, slot));
    if (runnable.length > 0) {
      const [keep, ...extra] = runnable.sort((a, b) => Number(!!replaceCause(a, node(a.nodeId))) - Number(!!replaceCause(b, node(b.nodeId))));
      for (const t of extra) actions.push({ kind: 'shutdown', task: t, reason: 'another task runs in this slot' });
      active++;
      const cause = replaceCause(keep, node(keep.nodeId));
      if (cause) {
        const d = decideRestart(service, keep, cause, records, now);
        if (d.restart) {
          actions.push({ kind: 'replace', task: keep, service, slot, cause, delayUntil: d.delayMs > 0 ? now + d.delayMs : undefined });
        } else {
          actions.push({ kind: 'shutdown', task: keep, reason: `${CAUSE_TEXT[cause]}; not restarted: ${d.why}` });
          active--;
          failed++;
        }
      } else if (keep.desiredState === TaskState.TASK_STATE_READY) {
        const at = promoteAt(service, keep, records, sorted.find((x) => !isRunnable(x)));
        if (at <= now) actions.push({ kind: 'promote', task: keep });
        else wakeAt = Math.min(wakeAt ?? at, at);
      }
      continue;
    }
    const newest = sorted[0];
    const cause = pastCause(newest, node(newest.nodeId));
    if (!cause) {
      refill.push({ slot, restart: false, delayMs: 0 });
      continue;
    }
    const d = decideRestart(service, newest, cause, records, now);
    if (d.restart) refill.push({ slot, restart: true, delayMs: d.delayMs });
    else failed++;
  }

  let room = Math.min(maxConcurrent - active, total - completed - failed - active);
  for (const r of refill) {
    if (room <= 0) break;
    actions.push({ kind: 'create', service, slot: r.slot, restart: r.restart, delayUntil: r.delayMs > 0 ? now + r.delayMs : undefined });
    room--;
  }
  for (let slot = 1; room > 0; slot++) {
    if (bySlot.has(slot)) continue;
    actions.push({ kind: 'create', service, slot, restart: false });
    room--;
  }
  return { actions, wakeAt };
}

export interface GlobalJobInput {
  service: Service;
  tasks: readonly Task[];
  nodes: readonly Node[];
  history: RestartHistory;
  now: number;
}

export function reconcileGlobalJob(input: GlobalJobInput): Reconciled {
  const { service, now, history } = input;
  const actions: OrchestratorAction[] = [];
  let wakeAt: number | undefined;
  const nodes = new Map(input.nodes.map((n) => [n.id, n]));
  const byNode = new Map<string, Task[]>();
  for (const t of oldIterations(service, input.tasks, actions)) {
    let l = byNode.get(t.nodeId);
    if (!l) byNode.set(t.nodeId, (l = []));
    l.push(t);
  }
  const handled = new Set<string>();
  for (const [nodeId, ts] of byNode) {
    const sorted = [...ts].sort(newestFirst);
    const runnable = sorted.filter(isRunnable);
    const n = nodes.get(nodeId);
    handled.add(nodeId);
    if (sorted.some(done)) {
      for (const t of runnable) done(t) ? finish(t, actions) : actions.push({ kind: 'shutdown', task: t, reason: 'the job is done on this node' });
      continue;
    }
    const records = history.get(nodeKey(service.id, nodeId));
    if (runnable.length > 0) {
      const [keep, ...extra] = runnable;
      for (const t of extra) actions.push({ kind: 'shutdown', task: t, reason: 'another task of this job runs on the node' });
      const cause = replaceCause(keep, n);
      if (cause && cause !== 'exited') {
        actions.push({ kind: 'shutdown', task: keep, reason: CAUSE_TEXT[cause] });
      } else if (cause === 'exited') {
        const d = decideRestart(service, keep, cause, records, now);
        if (d.restart) actions.push({ kind: 'replace', task: keep, service, slot: 0, nodeId, cause, delayUntil: d.delayMs > 0 ? now + d.delayMs : undefined });
        else actions.push({ kind: 'shutdown', task: keep, reason: `${CAUSE_TEXT[cause]}; not restarted: ${d.why}` });
      } else if (keep.desiredState === TaskState.TASK_STATE_READY) {
        const at = promoteAt(service, keep, records, sorted.find((x) => !isRunnable(x)));
        if (at <= now) actions.push({ kind: 'promote', task: keep });
        else wakeAt = Math.min(wakeAt ?? at, at);
      }
      continue;
    }
    if (!n || !eligibleForNew(n, service)) continue;
    const newest = sorted[0];
    const cause = pastCause(newest, n);
    if (cause === 'exited') {
      const d = decideRestart(service, newest, cause, records, now);
      if (d.restart) actions.push({ kind: 'create', service, slot: 0, nodeId, restart: true, delayUntil: d.delayMs > 0 ? now + d.delayMs : undefined });
    } else {
      actions.push({ kind: 'create', service, slot: 0, nodeId, restart: false });
    }
  }
  for (const n of input.nodes) {
    if (handled.has(n.id) || !eligibleForNew(n, service)) continue;
    actions.push({ kind: 'create', service, slot: 0, nodeId: n.id, restart: false });
  }
  return { actions, wakeAt };
}
