// The task reaper's decision, pure: tasks of deleted services are marked REMOVE and deleted once
// stopped; each slot (or global node) keeps at most the cluster's task history limit of tasks.
import { type Node, type Task, TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import { hasExited, isNodeDown, newestFirst } from '../orchestrator/task.ts';

export type ReaperAction =
  /** The task's service is gone: desiredState → REMOVE (the worker stops it, then we delete it). */
  | { kind: 'remove'; task: Task }
  | { kind: 'delete'; task: Task; why: 'removed' | 'history' };

export const DEFAULT_RETENTION = 5;

export interface ReapInput {
  tasks: readonly Task[];
  serviceExists(id: string): boolean;
  node(id: string): Node | undefined;
  /** cluster.spec.taskHistoryRetentionLimit: 0 = default (5), negative = keep everything. */
  retention: number;
}

/** Nothing runs and nothing will: stopped, never placed, or its node is down or gone. */
export function isStopped(t: Task, node: Node | undefined): boolean {
  if (hasExited(t)) return true;
  if (!t.nodeId || (t.status?.state ?? 0) < TaskState.TASK_STATE_ASSIGNED) return true;
  return isNodeDown(node);
}

export function reap(input: ReapInput): ReaperAction[] {
  const limit = input.retention === 0 ? DEFAULT_RETENTION : input.retention;
  const out: ReaperAction[] = [];
  const deleted = new Set<string>();
  const instances = new Map<string, Task[]>();
  for (const t of input.tasks) {
    const stopped = isStopped(t, t.nodeId ? input.node(t.nodeId) : undefined);
    const gone = !input.serviceExists(t.serviceId);
    if (gone || t.desiredState >= TaskState.TASK_STATE_REMOVE) {
      if (stopped) {
        out.push({ kind: 'delete', task: t, why: 'removed' });
        deleted.add(t.id);
      } else if (t.desiredState < TaskState.TASK_STATE_REMOVE) {
        out.push({ kind: 'remove', task: t });
      }
      continue;
    }
    const key = t.slot > 0 ? `${t.serviceId}/${t.slot}` : `${t.serviceId}/node/${t.nodeId}`;
    let l = instances.get(key);
    if (!l) instances.set(key, (l = []));
    l.push(t);
  }
  if (limit < 0) return out;
  for (const ts of instances.values()) {
    let excess = ts.length - limit;
    if (excess <= 0) continue;
    const oldest = [...ts].sort(newestFirst).reverse();
    for (const t of oldest) {
      if (excess <= 0) break;
      if (t.desiredState < TaskState.TASK_STATE_SHUTDOWN) continue;
      if (!isStopped(t, t.nodeId ? input.node(t.nodeId) : undefined)) continue;
      out.push({ kind: 'delete', task: t, why: 'history' });
      excess--;
    }
  }
  return out;
}
