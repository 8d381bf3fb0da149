// Node health, pure: a node with no live dispatcher session whose status still says READY, UNKNOWN
// or DISCONNECTED becomes DOWN once the grace period has passed since it was last known alive.
import { type Cluster, type Node, NodeState } from '../../proto/gen/gantry/v1/objects.ts';

export const DEFAULT_HEARTBEAT_PERIOD_MS = 1000;
export const DEFAULT_NODE_DOWN_GRACE_MS = 3000;

export const MESSAGE_DISCONNECTED = 'node disconnected';
export const MESSAGE_HEARTBEAT = 'heartbeat failure';

export type NodeHealthAction = { kind: 'down'; node: Node; message: string; lastHeartbeat: number };

export interface HealthInput {
  nodes: readonly Node[];
  hasSession(nodeId: string): boolean;
  cluster: Cluster | undefined;
  now: number;
  /** When this leader started watching (a node is never judged on time before that). */
  startedAt: number;
  /** When this leader first saw each node without a session (the loop's memory). */
  firstSeenWithout: ReadonlyMap<string, number>;
}

export interface HealthResult {
  actions: NodeHealthAction[];
  /** The new firstSeenWithout (nodes with a session or already DOWN dropped). */
  firstSeenWithout: Map<string, number>;
  /** The next time a node's grace ends, if any is counting down. */
  wakeAt?: number;
}

/**
 * A node that lost its session before this leader took over gets this many graces: its session was
 * most likely on the manager that died, and it is re-registering on another while etcd elects a
 * new leader (swarmkit waits 6 heartbeat periods instead of 3 for nodes after a leader change).
 */
export const LEADER_CHANGE_GRACE_FACTOR = 2;

export function graceOf(cluster: Cluster | undefined): number {
  const g = cluster?.spec?.nodeDownGraceMs ?? 0;
  return g > 0 ? g : DEFAULT_NODE_DOWN_GRACE_MS;
}

/**
 * When the node was last known alive. DISCONNECTED carries the dispatcher's lastHeartbeat (the
 * session's end); READY/UNKNOWN without a session means the session vanished unrecorded (its
 * manager died, or this leader just started): count from when we first noticed. Either way never
 * before this leader started, so a new leader gives every node a full grace period to reconnect.
 */
export function lastAlive(n: Node, firstSeen: number, startedAt: number): number {
  const st = n.status?.state ?? NodeState.NODE_STATE_UNKNOWN;
  const hb = n.status?.lastHeartbeat ?? 0;
  if (st === NodeState.NODE_STATE_DISCONNECTED && hb > 0) return Math.max(hb, startedAt);
  return Math.max(firstSeen, startedAt);
}

export function checkNodeHealth(input: HealthInput): HealthResult {
  const grace = graceOf(input.cluster);
  const actions: NodeHealthAction[] = [];
  const seen = new Map<string, number>();
  let wakeAt: number | undefined;
  for (const n of input.nodes) {
    const st = n.status?.state ?? NodeState.NODE_STATE_UNKNOWN;
    if (st === NodeState.NODE_STATE_DOWN || input.hasSession(n.id)) continue;
    const first = input.firstSeenWithout.get(n.id) ?? input.now;
    seen.set(n.id, first);
    const since = lastAlive(n, first, input.startedAt);
    const deadline = since + (since <= input.startedAt ? grace * LEADER_CHANGE_GRACE_FACTOR : grace);
    if (input.now >= deadline) {
      actions.push({
        kind: 'down',
        node: n,
        message: st === NodeState.NODE_STATE_DISCONNECTED ? MESSAGE_DISCONNECTED : MESSAGE_HEARTBEAT,
        lastHeartbeat: n.status?.lastHeartbeat || since,
      });
    } else {
      wakeAt = Math.min(wakeAt ?? deadline, deadline);
    }
  }
  return { actions, firstSeenWithout: seen, wakeAt };
}
