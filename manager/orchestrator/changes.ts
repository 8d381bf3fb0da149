// Which task events matter to the controllers: any move (desired state, observed state, node; not a
// message-only update) for the scheduler, lifecycle changes only for the orchestrators and the reaper.
import { type Task, TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import type { StoreEvent } from '../store/types.ts';

/** A task was created, deleted, or changed desiredState / status.state / nodeId. */
export function taskMoved(prev: Task | undefined, next: Task | undefined): boolean {
  if (!prev || !next) return true;
  return (
    prev.desiredState !== next.desiredState ||
    (prev.status?.state ?? 0) !== (next.status?.state ?? 0) ||
    prev.nodeId !== next.nodeId
  );
}

/**
 * What the orchestrators and the reaper care about: a task created or deleted, its desired state or
 * node changed, or it stopped. Progress reports (ACCEPTED … RUNNING) do not change their decisions.
 */
export function taskLifecycleChanged(prev: Task | undefined, next: Task | undefined): boolean {
  if (!prev || !next) return true;
  if (prev.desiredState !== next.desiredState || prev.nodeId !== next.nodeId) return true;
  const stopped = (t: Task) => (t.status?.state ?? 0) >= TaskState.TASK_STATE_COMPLETE;
  return stopped(prev) !== stopped(next);
}

export function eventTask(e: StoreEvent): { prev?: Task; next?: Task } | undefined {
  if (e.kind !== 'tasks') return undefined;
  return e.op === 'put' ? { prev: e.previous, next: e.object } : { prev: e.previous };
}
