// What one worker needs to program its host, computed from the store (pure): the networks with
// this node's address and its VXLAN peers, and every service's VIPs, ready tasks and ports.
import type { NetworkState, NodeNetwork, ServiceEndpoints } from '../../proto/gen/gantry/v1/network.ts';
import { type Task, TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import type { ReadView } from '../store/types.ts';
import { hasSpecHealthcheck } from '../update/decide.ts';
import { holdsAddress } from './network-allocator.ts';

/**
 * In the endpoints (DNS, VIPs, ingress): running, desired running, healthy if it has a check. A
 * task whose spec has a check but that reported no health yet (RUNNING comes before the first
 * "starting") is not in them, as the updater's isUp.
 */
export function isReadyEndpoint(t: Task): boolean {
  return (
    t.status?.state === TaskState.TASK_STATE_RUNNING &&
    t.desiredState <= TaskState.TASK_STATE_RUNNING &&
    (t.status.health === 'healthy' || (!t.status.health && !hasSpecHealthcheck(t)))
  );
}

function ip(cidr: string): string {
  return cidr.split('/')[0];
}

interface Shared {
  revision: number;
  networks: NodeNetwork[];
  addrs: Map<string, Record<string, string>>; // network id -> node id -> address
  services: ServiceEndpoints[];
  nodes: Map<string, string>;
  key: string;
}

let cache: { stamp: string; shared: Shared } | undefined;

/**
 * The parts every node shares, computed once per store revision: every session of a change set
 * reads the same revision (each through its own view object). The stamp adds the counts and
 * first ids so two stores in one process (tests) at the same revision do not share an entry.
 */
function shared(view: ReadView): Shared {
  const tasks = view.list('tasks');
  const svcs = view.list('services');
  const nets = view.list('networks');
  const stamp = `${view.revision}/${tasks.length}/${svcs.length}/${nets.length}/${tasks[0]?.id}/${svcs[0]?.id}/${nets[0]?.id}`;
  if (cache && cache.stamp === stamp) return cache.shared;
  const nodes = new Map(view.list('nodes').map((n) => [n.id, n.status?.addr ?? '']));
  const placed = tasks.filter((t) => t.nodeId && t.networks.length > 0 && holdsAddress(t) && (t.status?.state ?? 0) >= TaskState.TASK_STATE_ASSIGNED);
  const networks: NodeNetwork[] = [];
  const addrs = new Map<string, Record<string, string>>();
  for (const n of nets) {
    if (!n.status?.subnet) continue;
    const peers: { ip: string; nodeAddr: string }[] = [];
    if (n.spec?.driver === 'overlay') {
      for (const t of placed) for (const a of t.networks) if (a.networkId === n.id && a.addresses[0]) peers.push({ ip: ip(a.addresses[0]), nodeAddr: nodes.get(t.nodeId) ?? '' });
      if (n.spec.ingress) for (const [id, addr] of Object.entries(n.status.nodeAddrs)) peers.push({ ip: ip(addr), nodeAddr: nodes.get(id) ?? '' });
    }
    addrs.set(n.id, n.status.nodeAddrs);
    networks.push({
      id: n.id,
      name: n.spec?.name ?? '',
      driver: n.spec?.driver ?? 'overlay',
      subnet: n.status.subnet,
      vni: n.status.vni,
      ingress: n.spec?.ingress ?? false,
      nodeAddr: '',
      peers: peers.filter((p) => p.nodeAddr).sort((a, b) => a.ip.localeCompare(b.ip)),
    });
  }
  const services: ServiceEndpoints[] = [];
  for (const s of svcs) {
    const vips: Record<string, string> = {};
    for (const v of s.endpoint?.virtualIps ?? []) vips[v.networkId] = ip(v.addr);
    const ready = view.tasksByService(s.id).filter((t) => t.networks.length > 0 && isReadyEndpoint(t));
    if (Object.keys(vips).length === 0 && ready.length === 0 && !(s.endpoint?.ports.length ?? 0)) continue;
    services.push({
      id: s.id,
      name: s.spec?.name ?? '',
      mode: s.endpoint?.spec?.mode ?? s.spec?.endpoint?.mode ?? 0,
      vips,
      tasks: ready
        .map((t) => ({ taskId: t.id, nodeId: t.nodeId, addrs: Object.fromEntries(t.networks.filter((a) => a.addresses[0]).map((a) => [a.networkId, ip(a.addresses[0])])) }))
        .sort((a, b) => a.taskId.localeCompare(b.taskId)),
      ports: s.endpoint?.ports ?? [],
    });
  }
  services.sort((a, b) => a.id.localeCompare(b.id));
  const out: Shared = { revision: view.revision, networks, addrs, services, nodes, key: JSON.stringify([networks, services]) };
  cache = { stamp, shared: out };
  return out;
}

export function networkStateFor(view: ReadView, nodeId: string): NetworkState {
  return stateWithKey(view, nodeId).state;
}

function stateWithKey(view: ReadView, nodeId: string): { state: NetworkState; key: string } {
  const sh = shared(view);
  const nodeAddr = sh.nodes.get(nodeId) ?? '';
  const networks = sh.networks.map((n) => ({ ...n, nodeAddr: sh.addrs.get(n.id)?.[nodeId] ?? '' }));
  const localTasks = view
    .tasksByNode(nodeId)
    .filter(holdsAddress)
    .map((t) => t.id)
    .sort();
  const state = { nodeId, nodeAddr, networks, services: sh.services, localTasks };
  return { state, key: `${sh.key}|${nodeAddr}|${networks.map((n) => n.nodeAddr).join(',')}|${localTasks.join(',')}` };
}

/** True when a change set may change some node's network state. */
export function touchesNetworkState(kinds: readonly string[]): boolean {
  return kinds.some((k) => k === 'networks' || k === 'services' || k === 'tasks' || k === 'nodes');
}

/** Remembers the last state sent on a session: `next` returns the state only when it changed. */
export class NetworkStateTracker {
  private last = '';
  next(view: ReadView, nodeId: string): NetworkState | undefined {
    const { state, key } = stateWithKey(view, nodeId);
    if (key === this.last) return undefined;
    this.last = key;
    return state;
  }
}
