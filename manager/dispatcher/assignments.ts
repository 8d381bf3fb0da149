// Which tasks a worker is told about, and what changed for it in a store change set. Pure.
// A worker gets every task on its node that the scheduler has assigned (state >= ASSIGNED); it
// stops tasks whose desiredState is past RUNNING and forgets tasks that are removed.
import { type Task, TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import type { ReadView, StoreEvent } from '../store/types.ts';

export function isAssignedTo(task: Task | undefined, nodeId: string): task is Task {
  return !!task && task.nodeId === nodeId && (task.status?.state ?? TaskState.TASK_STATE_NEW) >= TaskState.TASK_STATE_ASSIGNED;
}

export function assignmentSet(view: ReadView, nodeId: string): Task[] {
  return view.tasksByNode(nodeId).filter((t) => isAssignedTo(t, nodeId));
}

/** True when the worker must hear about the new version: anything but the status it reported itself. */
function workerVisibleChange(prev: Task, next: Task): boolean {
  return (
    prev.desiredState !== next.desiredState ||
    prev.specVersion !== next.specVersion ||
    prev.nodeId !== next.nodeId ||
    prev.networks.length !== next.networks.length ||
    JSON.stringify(prev.spec) !== JSON.stringify(next.spec) ||
    JSON.stringify(prev.networks) !== JSON.stringify(next.networks)
  );
}

export interface AssignmentDelta {
  tasks: Task[];
  removed: string[];
}

/** The incremental assignment for `nodeId` from one change set (empty when nothing concerns it). */
export function assignmentChanges(events: StoreEvent[], nodeId: string): AssignmentDelta {
  const tasks = new Map<string, Task>();
  const removed = new Set<string>();
  for (const ev of events) {
    if (ev.kind !== 'tasks') continue;
    if (ev.op === 'delete') {
      if (isAssignedTo(ev.previous, nodeId)) {
        removed.add(ev.id);
        tasks.delete(ev.id);
      }
      continue;
    }
    const was = isAssignedTo(ev.previous, nodeId);
    const is = isAssignedTo(ev.object, nodeId);
    if (is && (!was || workerVisibleChange(ev.previous as Task, ev.object))) {
      tasks.set(ev.object.id, ev.object);
      removed.delete(ev.object.id);
    } else if (was && !is) {
      removed.add(ev.object.id);
      tasks.delete(ev.object.id);
    }
  }
  return { tasks: [...tasks.values()], removed: [...removed] };
}
