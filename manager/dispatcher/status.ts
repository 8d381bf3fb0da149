// Whether a worker's status report may change a stored task, and the merged task if so. Pure.
// States only move up: a report lower than the stored state is stale and ignored (a worker that
// reconnects may replay old reports); a report for a task on another node is refused.
import { type Task, type TaskStatus, TaskState } from '../../proto/gen/gantry/v1/objects.ts';

export type StatusDecision =
  | { apply: true; task: Task }
  | { apply: false; reason: 'unknown-task' | 'other-node' | 'stale' | 'unchanged' };

export function mergeStatus(stored: Task | undefined, nodeId: string, reported: TaskStatus): StatusDecision {
  if (!stored) return { apply: false, reason: 'unknown-task' };
  if (stored.nodeId !== nodeId) return { apply: false, reason: 'other-node' };
  const current = stored.status;
  const have = current?.state ?? TaskState.TASK_STATE_NEW;
  if (reported.state < have) return { apply: false, reason: 'stale' };
  if (
    current &&
    reported.state === have &&
    reported.message === current.message &&
    reported.err === current.err &&
    reported.health === current.health &&
    (reported.container?.pid ?? 0) === (current.container?.pid ?? 0)
  ) {
    return { apply: false, reason: 'unchanged' };
  }
  return { apply: true, task: { ...stored, status: { ...reported } } };
}
