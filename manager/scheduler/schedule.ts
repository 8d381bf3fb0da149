// The scheduler's decision, pure: place every PENDING task in one pass, batch by batch (tasks of one
// service and spec version share filters), spreading over placement-preference values, then nodes.
import { type Node, type Task, TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import { nodeAttribute } from '../controlapi/constraints.ts';
import { explainFailures, type Filter, firstFailure, pipelineFor } from './filters.ts';
import { Heap } from './heap.ts';
import { addTask, buildNodeInfos, emptyInfo, FAULTY_FAILURES, hostPortsOf, type NodeInfo } from './nodeinfo.ts';

export type SchedulerAction =
  /** PENDING → ASSIGNED on this node. */
  | { kind: 'assign'; task: Task; nodeId: string }
  /** Stays PENDING; `reason` differs from what the task already says (so no write storm). */
  | { kind: 'explain'; task: Task; reason: string };

export const ASSIGNED_MESSAGE = 'scheduler assigned task to node';

export interface ScheduleInput {
  nodes: readonly Node[];
  /** All tasks: the pending ones are placed, the others count as load on their nodes. */
  tasks: readonly Task[];
  /** Enables down-weighting nodes where the service recently failed 5 times (omit in tests that do not care). */
  now?: number;
}

export function isSchedulable(t: Task): boolean {
  return (t.status?.state ?? TaskState.TASK_STATE_NEW) === TaskState.TASK_STATE_PENDING && t.desiredState <= TaskState.TASK_STATE_RUNNING;
}

/** Not faulty for this service first; then fewest tasks of this service, then fewest tasks overall, then node id. */
function lessLoaded(serviceId: string) {
  return (a: NodeInfo, b: NodeInfo): boolean => {
    const fa = (a.recentFailures.get(serviceId) ?? 0) >= FAULTY_FAILURES;
    const fb = (b.recentFailures.get(serviceId) ?? 0) >= FAULTY_FAILURES;
    if (fa !== fb) return fb;
    const sa = a.byService.get(serviceId) ?? 0;
    const sb = b.byService.get(serviceId) ?? 0;
    if (sa !== sb) return sa < sb;
    if (a.total !== b.total) return a.total < b.total;
    return a.node.id < b.node.id;
  };
}

/**
 * One level of swarmkit's decision tree, simplified: each branch is a value of a spread
 * descriptor (nodes without the label share the "" branch); a task goes to the branch with the
 * fewest tasks of its service, recursively, then to the least-loaded node of that leaf.
 */
interface Branch {
  count: number;
  exhausted: boolean;
  children?: Map<string, Branch>;
  heap?: Heap<NodeInfo>;
}

function buildTree(infos: NodeInfo[], descriptors: readonly string[], serviceId: string, depth = 0): Branch {
  let count = 0;
  for (const i of infos) count += i.byService.get(serviceId) ?? 0;
  if (depth === descriptors.length) return { count, exhausted: infos.length === 0, heap: new Heap(lessLoaded(serviceId), infos) };
  const groups = new Map<string, NodeInfo[]>();
  for (const i of infos) {
    const v = nodeAttribute(i.node, descriptors[depth]) ?? '';
    let g = groups.get(v);
    if (!g) groups.set(v, (g = []));
    g.push(i);
  }
  const children = new Map<string, Branch>();
  for (const [v, g] of [...groups].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
    children.set(v, buildTree(g, descriptors, serviceId, depth + 1));
  }
  return { count, exhausted: infos.length === 0, children };
}

/** Picks and reserves a node for `task`, or undefined when no candidate fits any more. */
function pick(b: Branch, task: Task, dynamic: readonly Filter[]): NodeInfo | undefined {
  if (b.exhausted) return undefined;
  if (b.heap) {
    for (;;) {
      const top = b.heap.pop();
      if (!top) {
        b.exhausted = true;
        return undefined;
      }
      // Dynamic filters only get stricter within a batch: a node that fails now is done for it.
      if (firstFailure(dynamic, top.node, task, top) >= 0) continue;
      addTask(top, { ...task, status: { ...task.status!, state: TaskState.TASK_STATE_ASSIGNED } });
      b.heap.push(top);
      b.count++;
      return top;
    }
  }
  for (;;) {
    let best: Branch | undefined;
    for (const c of b.children!.values()) if (!c.exhausted && (!best || c.count < best.count)) best = c;
    if (!best) {
      b.exhausted = true;
      return undefined;
    }
    const got = pick(best, task, dynamic);
    if (got) {
      b.count++;
      return got;
    }
  }
}

function explainFor(filters: readonly Filter[], task: Task, nodes: readonly Node[], infos: Map<string, NodeInfo>): string {
  const counts = filters.map(() => 0);
  for (const n of nodes) {
    const i = firstFailure(filters, n, task, infos.get(n.id) ?? emptyInfo(n));
    if (i >= 0) counts[i]++;
  }
  return explainFailures(filters, counts);
}

function explainAction(task: Task, reason: string): SchedulerAction[] {
  return task.status?.message === reason && task.status?.err === reason ? [] : [{ kind: 'explain', task, reason }];
}

export function schedule(input: ScheduleInput): SchedulerAction[] {
  const pending = input.tasks.filter(isSchedulable);
  if (pending.length === 0) return [];
  const infos = buildNodeInfos(input.nodes, input.tasks, input.now);
  const actions: SchedulerAction[] = [];

  // Batches: one service at one spec version shares its filters and its tree.
  const batches = new Map<string, Task[]>();
  for (const t of pending) {
    const key = `${t.serviceId}\u0000${t.specVersion}\u0000${t.nodeId ? 'preset' : ''}\u0000${hostPortsOf(t).join(',')}`;
    let b = batches.get(key);
    if (!b) batches.set(key, (b = []));
    b.push(t);
  }

  for (const batch of batches.values()) {
    batch.sort((a, b) => a.slot - b.slot || (a.id < b.id ? -1 : 1));
    const filters = pipelineFor(batch[0].spec, hostPortsOf(batch[0]));

    if (batch[0].nodeId) {
      // Global tasks: the orchestrator chose the node; validate it.
      for (const t of batch) {
        const info = infos.get(t.nodeId);
        if (!info) {
          actions.push(...explainAction(t, `no suitable node (node ${t.nodeId} is not in the cluster)`));
          continue;
        }
        const failed = firstFailure(filters, info.node, t, info);
        if (failed < 0) {
          addTask(info, { ...t, status: { ...t.status!, state: TaskState.TASK_STATE_ASSIGNED } });
          actions.push({ kind: 'assign', task: t, nodeId: t.nodeId });
        } else {
          const counts = filters.map((_, i) => (i === failed ? 1 : 0));
          actions.push(...explainAction(t, explainFailures(filters, counts)));
        }
      }
      continue;
    }

    const stat = filters.filter((f) => f.static);
    const dynamic = filters.filter((f) => !f.static);
    const first = batch[0];
    const candidates: NodeInfo[] = [];
    for (const info of infos.values()) if (firstFailure(stat, info.node, first, info) < 0) candidates.push(info);
    const descriptors = (first.spec?.placement?.preferences ?? []).map((p) => p.spread).filter((s) => s !== '');
    const tree = buildTree(candidates, descriptors, first.serviceId);

    let reason: string | undefined;
    for (const t of batch) {
      const chosen = reason === undefined ? pick(tree, t, dynamic) : undefined;
      if (chosen) {
        actions.push({ kind: 'assign', task: t, nodeId: chosen.node.id });
        continue;
      }
      reason ??= explainFor(filters, t, input.nodes, infos);
      actions.push(...explainAction(t, reason));
    }
  }
  return actions;
}

/** The task as the scheduler writes it for an action. */
export function applySchedule(a: SchedulerAction, now: number): Task {
  switch (a.kind) {
    case 'assign':
      return {
        ...a.task,
        nodeId: a.nodeId,
        status: { ...a.task.status!, state: TaskState.TASK_STATE_ASSIGNED, timestamp: now, message: ASSIGNED_MESSAGE, err: '' },
      };
    case 'explain':
      return { ...a.task, status: { ...a.task.status!, timestamp: now, message: a.reason, err: a.reason } };
    default: {
      const never: never = a;
      throw new Error(`unknown scheduler action ${JSON.stringify(never)}`);
    }
  }
}
