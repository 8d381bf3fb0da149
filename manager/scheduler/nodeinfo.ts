// What the scheduler knows about each node besides the Node object: reservations of the tasks
// placed there that still hold them, and how many live tasks it runs in total and per service.
import { type Node, type Task, TaskState } from '../../proto/gen/gantry/v1/objects.ts';

export interface NodeInfo {
  node: Node;
  /** Reserved by tasks assigned here that have not stopped (any desired state). */
  reservedNanoCpus: number;
  reservedMemoryBytes: number;
  /** Tasks assigned here, not stopped and still desired to run, per service id. */
  byService: Map<string, number>;
  /** Sum of byService. */
  total: number;
}

export function emptyInfo(node: Node): NodeInfo {
  return { node, reservedNanoCpus: 0, reservedMemoryBytes: 0, byService: new Map(), total: 0 };
}

/** Adds a task that sits on this node (called for existing tasks and for each placement made). */
export function addTask(info: NodeInfo, t: Task): void {
  const state = t.status?.state ?? TaskState.TASK_STATE_NEW;
  if (state >= TaskState.TASK_STATE_COMPLETE) return;
  const r = t.spec?.resources?.reservations;
  info.reservedNanoCpus += r?.nanoCpus ?? 0;
  info.reservedMemoryBytes += r?.memoryBytes ?? 0;
  if (t.desiredState <= TaskState.TASK_STATE_RUNNING) {
    info.byService.set(t.serviceId, (info.byService.get(t.serviceId) ?? 0) + 1);
    info.total++;
  }
}

export function buildNodeInfos(nodes: readonly Node[], tasks: readonly Task[]): Map<string, NodeInfo> {
  const infos = new Map<string, NodeInfo>();
  for (const n of nodes) infos.set(n.id, emptyInfo(n));
  for (const t of tasks) {
    if (!t.nodeId) continue;
    const state = t.status?.state ?? TaskState.TASK_STATE_NEW;
    // A PENDING task with a preset node (global) holds nothing until it is assigned.
    if (state < TaskState.TASK_STATE_ASSIGNED) continue;
    const info = infos.get(t.nodeId);
    if (info) addTask(info, t);
  }
  return infos;
}

export function availableMemory(info: NodeInfo): number {
  return (info.node.description?.resources?.memoryBytes ?? 0) - info.reservedMemoryBytes;
}

export function availableNanoCpus(info: NodeInfo): number {
  return (info.node.description?.resources?.nanoCpus ?? 0) - info.reservedNanoCpus;
}
