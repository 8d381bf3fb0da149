// What the scheduler knows about each node besides the Node object: reservations of the tasks
// placed there that still hold them, and how many live tasks it runs in total and per service.
import { type Node, PublishMode, type Task, TaskState } from '../../proto/gen/gantry/v1/objects.ts';

export interface NodeInfo {
  node: Node;
  /** Reserved by tasks assigned here that have not stopped (any desired state). */
  reservedNanoCpus: number;
  reservedMemoryBytes: number;
  /** Tasks assigned here, not stopped and still desired to run, per service id. */
  byService: Map<string, number>;
  /** Sum of byService. */
  total: number;
  /** Tasks per service that failed or were rejected here recently (swarmkit down-weights such nodes). */
  recentFailures: Map<string, number>;
  /** Host-mode published ports held by live tasks here, as "tcp/8080". */
  hostPorts: Set<string>;
}

/** The host-mode published ports a task needs on its node, as "tcp/8080". */
export function hostPortsOf(t: Task): string[] {
  const ports = t.endpoint?.ports?.length ? t.endpoint.ports : (t.endpoint?.spec?.ports ?? []);
  return ports
    .filter((p) => p.publishMode === PublishMode.PUBLISH_MODE_HOST && p.publishedPort > 0)
    .map((p) => `${(p.protocol || 'tcp').toLowerCase()}/${p.publishedPort}`);
}

/** swarmkit: a node with 5 failures of a service within 5 minutes is tried last for that service. */
export const FAULTY_FAILURES = 5;
export const FAULTY_WINDOW_MS = 5 * 60_000;

export function emptyInfo(node: Node): NodeInfo {
  return { node, reservedNanoCpus: 0, reservedMemoryBytes: 0, byService: new Map(), total: 0, recentFailures: new Map(), hostPorts: new Set() };
}

/** Adds a task that sits on this node (called for existing tasks and for each placement made). */
export function addTask(info: NodeInfo, t: Task): void {
  const state = t.status?.state ?? TaskState.TASK_STATE_NEW;
  if (state >= TaskState.TASK_STATE_COMPLETE) return;
  const r = t.spec?.resources?.reservations;
  info.reservedNanoCpus += r?.nanoCpus ?? 0;
  info.reservedMemoryBytes += r?.memoryBytes ?? 0;
  for (const p of hostPortsOf(t)) info.hostPorts.add(p);
  if (t.desiredState <= TaskState.TASK_STATE_RUNNING) {
    info.byService.set(t.serviceId, (info.byService.get(t.serviceId) ?? 0) + 1);
    info.total++;
  }
}

/** `now` enables counting recent failures (without it no node is considered faulty). */
export function buildNodeInfos(nodes: readonly Node[], tasks: readonly Task[], now?: number): Map<string, NodeInfo> {
  const infos = new Map<string, NodeInfo>();
  for (const n of nodes) infos.set(n.id, emptyInfo(n));
  for (const t of tasks) {
    if (!t.nodeId) continue;
    const state = t.status?.state ?? TaskState.TASK_STATE_NEW;
    if (
      now !== undefined &&
      (state === TaskState.TASK_STATE_FAILED || state === TaskState.TASK_STATE_REJECTED) &&
      (t.status?.timestamp ?? 0) > now - FAULTY_WINDOW_MS
    ) {
      const info = infos.get(t.nodeId);
      if (info) info.recentFailures.set(t.serviceId, (info.recentFailures.get(t.serviceId) ?? 0) + 1);
    }
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
