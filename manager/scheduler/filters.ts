// The scheduler's filters: each answers "can this task go on this node?" and explains a "no" for a
// number of nodes in words a user understands. `pipelineFor` builds the ordered list for a task spec.
import { type Node, NodeAvailability, NodeState, type Task, type TaskSpec } from '../../proto/gen/gantry/v1/objects.ts';
import { constraintHolds, parse, platformHolds } from './constraint.ts';
import { availableMemory, availableNanoCpus, type NodeInfo } from './nodeinfo.ts';
import { formatBytes, formatCpus, nodes } from './units.ts';

export interface Filter {
  /** Stable name (tests, traces). */
  name: string;
  /** Static filters depend only on the node, not on what the batch placed so far. */
  static: boolean;
  check(node: Node, task: Task, info: NodeInfo): boolean;
  /** Why `count` nodes said no: "2 nodes lack 512MiB memory". */
  explain(count: number): string;
}

export const downFilter: Filter = {
  name: 'down',
  static: true,
  check: (n) => n.status?.state !== NodeState.NODE_STATE_DOWN,
  explain: (c) => nodes(c, ['is', 'are']) + ' down',
};

export const readyFilter: Filter = {
  name: 'ready',
  static: true,
  check: (n) => n.status?.state === NodeState.NODE_STATE_READY,
  explain: (c) => nodes(c, ['is', 'are']) + ' not ready (disconnected or not yet reporting)',
};

export const drainFilter: Filter = {
  name: 'drain',
  static: true,
  check: (n) => n.spec?.availability !== NodeAvailability.NODE_AVAILABILITY_DRAIN,
  explain: (c) => nodes(c, ['is', 'are']) + ' draining',
};

export const pauseFilter: Filter = {
  name: 'pause',
  static: true,
  check: (n) => n.spec?.availability !== NodeAvailability.NODE_AVAILABILITY_PAUSE,
  explain: (c) => nodes(c, ['is', 'are']) + ' paused',
};

export function platformFilter(spec: TaskSpec): Filter | undefined {
  const platforms = spec.placement?.platforms ?? [];
  if (platforms.length === 0) return undefined;
  const names = platforms.map((p) => [p.os || '*', p.architecture || '*'].join('/')).join(' or ');
  return {
    name: 'platform',
    static: true,
    check: (n) => platformHolds(n, platforms),
    explain: (c) => `${nodes(c, ['does', 'do'])} not run ${names}`,
  };
}

export function constraintFilter(text: string): Filter {
  const p = parse(text);
  return {
    name: `constraint ${text}`,
    static: true,
    check: (n) => constraintHolds(n, p),
    explain: (c) =>
      p.ok ? `${nodes(c, ['does', 'do'])} not match ${text}` : `${nodes(c, ['does', 'do'])} not match "${text}" (not a valid constraint)`,
  };
}

export function memoryFilter(spec: TaskSpec): Filter | undefined {
  const want = spec.resources?.reservations?.memoryBytes ?? 0;
  if (want <= 0) return undefined;
  return {
    name: 'memory',
    static: false,
    check: (_n, _t, info) => availableMemory(info) >= want,
    explain: (c) => `${nodes(c, ['lacks', 'lack'])} ${formatBytes(want)} memory`,
  };
}

export function cpuFilter(spec: TaskSpec): Filter | undefined {
  const want = spec.resources?.reservations?.nanoCpus ?? 0;
  if (want <= 0) return undefined;
  return {
    name: 'cpu',
    static: false,
    check: (_n, _t, info) => availableNanoCpus(info) >= want,
    explain: (c) => `${nodes(c, ['lacks', 'lack'])} ${formatCpus(want)}`,
  };
}

export function maxReplicasFilter(spec: TaskSpec): Filter | undefined {
  const max = spec.placement?.maxReplicas ?? 0;
  if (max <= 0) return undefined;
  return {
    name: 'max-replicas',
    static: false,
    check: (_n, t, info) => (info.byService.get(t.serviceId) ?? 0) < max,
    explain: (c) => `${nodes(c, ['already runs', 'already run'])} ${max} ${max === 1 ? 'task' : 'tasks'} of this service (max ${max} per node)`,
  };
}

/** Host-mode published ports: a node where a live task already holds one of them is out. */
export function hostPortFilter(ports: readonly string[]): Filter | undefined {
  if (ports.length === 0) return undefined;
  const names = ports.map((p) => p.split('/').reverse().join('/')).join(', ');
  return {
    name: 'host-ports',
    static: false,
    check: (_n, _t, info) => !ports.some((p) => info.hostPorts.has(p)),
    explain: (c) => `${nodes(c, ['already uses', 'already use'])} host ${ports.length === 1 ? 'port' : 'ports'} ${names}`,
  };
}

/**
 * The ordered filters for a task spec (and the task's host-mode ports); a node is counted
 * against the first one that says no.
 */
export function pipelineFor(spec: TaskSpec | undefined, hostPorts: readonly string[] = []): Filter[] {
  const s = spec ?? ({ networks: [], runtime: '', forceUpdate: 0 } as TaskSpec);
  const out: Array<Filter | undefined> = [
    downFilter,
    readyFilter,
    drainFilter,
    pauseFilter,
    platformFilter(s),
    ...(s.placement?.constraints ?? []).map(constraintFilter),
    hostPortFilter(hostPorts),
    memoryFilter(s),
    cpuFilter(s),
    maxReplicasFilter(s),
  ];
  return out.filter((f): f is Filter => f !== undefined);
}

/** Index of the first filter that rejects the node, or -1 when all accept it. */
export function firstFailure(filters: readonly Filter[], node: Node, task: Task, info: NodeInfo): number {
  for (let i = 0; i < filters.length; i++) if (!filters[i].check(node, task, info)) return i;
  return -1;
}

/**
 * "no suitable node (2 nodes do not match node.labels.zone==a; 1 node is draining)": every
 * reason with its node count, most common first (ties in pipeline order).
 */
export function explainFailures(filters: readonly Filter[], counts: readonly number[]): string {
  const parts = counts
    .map((count, i) => ({ count, i }))
    .filter((x) => x.count > 0)
    .sort((a, b) => b.count - a.count || a.i - b.i)
    .map((x) => filters[x.i].explain(x.count));
  if (parts.length === 0) return 'no suitable node (the cluster has no nodes)';
  return `no suitable node (${parts.join('; ')})`;
}
