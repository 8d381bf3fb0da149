// Restart supervision, pure: why a runnable task must be replaced (it exited, its node is down,
// gone, drained or no longer matches), whether the restart policy allows a replacement, and the delay it gets.
import { type Node, RestartCondition, type Service, type Task, TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import { placementHolds } from '../scheduler/constraint.ts';
import { exitedOnItsOwn, hasExited, isNodeDown, isNodeDrained, restartPolicy, stateOf } from './task.ts';

/** One restart made by this leader (history is in memory, like swarmkit's: lost on leader change). */
export interface RestartRecord {
  /** When the replacement was decided (clock ms). */
  at: number;
  specVersion: number;
  /** The replacement task. */
  taskId: string;
  /** It is created with desiredState READY and promoted to RUNNING at this time. */
  delayUntil: number;
}

/** Keyed by instance: `${serviceId}/${slot}` (replicated) or `${serviceId}/node/${nodeId}` (global). */
export type RestartHistory = ReadonlyMap<string, readonly RestartRecord[]>;

export function slotKey(serviceId: string, slot: number): string {
  return `${serviceId}/${slot}`;
}
export function nodeKey(serviceId: string, nodeId: string): string {
  return `${serviceId}/node/${nodeId}`;
}

export type Cause = 'exited' | 'node-down' | 'node-gone' | 'node-drained' | 'node-mismatch';

/** Why this runnable task must be replaced, or undefined when it is fine (swarmkit's IsTaskDirty for restarts). */
export function replaceCause(t: Task, node: Node | undefined): Cause | undefined {
  if (hasExited(t)) return 'exited';
  if (!t.nodeId) return undefined;
  if (!node) return 'node-gone';
  if (isNodeDown(node)) return 'node-down';
  if (isNodeDrained(node)) return 'node-drained';
  // swarmkit's constraint enforcer: a node whose labels changed no longer holds the task.
  if (!placementHolds(node, t.spec?.placement)) return 'node-mismatch';
  return undefined;
}

/**
 * The cause recorded by a task that is no longer runnable, for deciding whether its empty slot
 * is "dead" (stopped by the restart policy) or just needs filling.
 */
export function pastCause(t: Task, node: Node | undefined): Cause | undefined {
  if (exitedOnItsOwn(t)) return 'exited';
  if (hasExited(t) || !t.nodeId) return undefined; // shut down by a manager, or never placed
  if (!node) return 'node-gone';
  if (isNodeDown(node)) return 'node-down';
  if (isNodeDrained(node)) return 'node-drained';
  if (!placementHolds(node, t.spec?.placement)) return 'node-mismatch';
  return undefined;
}

export type RestartDecision = { restart: true; delayMs: number } | { restart: false; why: string };

export const CAUSE_TEXT: Record<Cause, string> = {
  exited: 'task exited',
  'node-down': 'node is down',
  'node-gone': 'node was removed',
  'node-drained': 'node is drained',
  'node-mismatch': 'node no longer matches the placement constraints',
};

/**
 * The restart policy applied to a task that needs replacing. Attempts are counted for the
 * service's current spec version within the window that ends when the task failed, so the
 * answer for a given failure does not change as time passes.
 */
export function decideRestart(
  service: Service,
  t: Task,
  cause: Cause,
  records: readonly RestartRecord[] | undefined,
  now: number,
): RestartDecision {
  const p = restartPolicy(service.spec?.task?.restart);
  if (p.condition === RestartCondition.RESTART_CONDITION_NONE) return { restart: false, why: 'restart condition is none' };
  if (p.condition === RestartCondition.RESTART_CONDITION_ON_FAILURE && cause === 'exited' && stateOf(t) === TaskState.TASK_STATE_COMPLETE) {
    return { restart: false, why: 'task completed and restart condition is on-failure' };
  }
  if (p.maxAttempts > 0) {
    const end = cause === 'exited' && t.status?.timestamp ? Math.min(t.status.timestamp, now) : now;
    const start = p.windowMs > 0 ? end - p.windowMs : Number.NEGATIVE_INFINITY;
    let n = 0;
    for (const r of records ?? []) if (r.specVersion === service.specVersion && r.at > start && r.at <= end) n++;
    if (n >= p.maxAttempts) return { restart: false, why: `restarted ${n} times, max attempts is ${p.maxAttempts}` };
  }
  // A task whose node died, was drained or no longer matches did not fail: its replacement starts at once.
  return { restart: true, delayMs: cause === 'exited' ? p.delayMs : 0 };
}

/** When a READY-desired replacement may be promoted to RUNNING. */
export function promoteAt(service: Service, t: Task, records: readonly RestartRecord[] | undefined, previous: Task | undefined): number {
  const r = records?.find((x) => x.taskId === t.id);
  if (r) return r.delayUntil;
  // Made by an earlier leader: count the delay from when the task it replaced stopped.
  const p = restartPolicy(service.spec?.task?.restart);
  return previous?.status?.timestamp ? previous.status.timestamp + p.delayMs : 0;
}

/**
 * A task that was rejected (it failed before it ever ran, e.g. its image could not be pulled) is
 * replaced only once the restart delay has passed since it failed: a replacement made at once would
 * be prepared at once and rejected again, a tight loop the delay exists to prevent. A task that ran
 * is replaced at once by one that waits prepared (desired READY) for the delay. 0 = no wait.
 */
export function replacementNotBefore(t: Task, delayMs: number): number {
  if (delayMs <= 0 || stateOf(t) !== TaskState.TASK_STATE_REJECTED) return 0;
  return (t.status?.timestamp ?? 0) + delayMs;
}
