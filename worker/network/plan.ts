// Pure decisions of the worker's network code: from the manager's NetworkState and this host's
// containers to iptables rule sets (host and per container), overlay peers, and DNS answers.
import type { NetworkState, NodeNetwork, ServiceEndpoints } from '../../proto/gen/gantry/v1/network.ts';
import { EndpointMode, PublishMode } from '../../proto/gen/gantry/v1/objects.ts';
import { checkCidr, checkIp, checkPort, checkProto, HOST_BRIDGE, macOf, overlayBridge, serviceChain } from './names.ts';

export interface Attachment {
  networkId: string;
  ip: string;          // no prefix
  prefix: number;
}

/** A container this host runs with its own netns. */
export interface LocalContainer {
  taskId: string;
  serviceId: string;
  ns: string;
  bridgeIp: string;    // eth0 on the host bridge
  attachments: Attachment[];
}

export function ingressNetwork(state: NetworkState | undefined): NodeNetwork | undefined {
  return state?.networks.find((n) => n.ingress);
}

export function bridgeNetwork(state: NetworkState | undefined): NodeNetwork | undefined {
  return state?.networks.find((n) => n.driver === 'bridge');
}

function probability(i: number, k: number): string {
  return (1 / (k - i)).toFixed(8);
}

/** Spread over `backends` with the statistic match: rule i of k takes 1/(k-i) of what is left. */
function spread(chain: string, backends: string[], proto = ''): string[] {
  const out: string[] = [];
  const p = proto ? ` -p ${proto}` : '';
  backends.forEach((b, i) => {
    const stat = i < backends.length - 1 ? ` -m statistic --mode random --probability ${probability(i, backends.length)}` : '';
    out.push(`-A ${chain}${p}${stat} -j DNAT --to-destination ${b}`);
  });
  return out;
}

export const HOST_NAT_CHAINS = ['GANTRY-PREROUTING', 'GANTRY-OUTPUT', 'GANTRY-POSTROUTING'] as const;
export const HOST_FILTER_CHAINS = ['GANTRY-FORWARD'] as const;
/** Built-in chain → our chain it jumps to. */
export const HOST_JUMPS = [
  { table: 'nat', from: 'PREROUTING', to: 'GANTRY-PREROUTING' },
  { table: 'nat', from: 'OUTPUT', to: 'GANTRY-OUTPUT' },
  { table: 'nat', from: 'POSTROUTING', to: 'GANTRY-POSTROUTING' },
  { table: 'filter', from: 'FORWARD', to: 'GANTRY-FORWARD' },
] as const;

export interface HostRules {
  natChains: string[];
  natRules: string[];
  filterChains: string[];
  filterRules: string[];
}

/** The host's rules: NAT for egress, ingress ports (every host), host-mode ports (where a task runs). */
export function hostRules(state: NetworkState | undefined, containers: readonly LocalContainer[]): HostRules {
  const natChains: string[] = [...HOST_NAT_CHAINS];
  const natRules: string[] = [];
  const filterRules: string[] = [`-A GANTRY-FORWARD -i ${HOST_BRIDGE} -j ACCEPT`, `-A GANTRY-FORWARD -o ${HOST_BRIDGE} -j ACCEPT`, '-A GANTRY-FORWARD -i gbr+ -j ACCEPT', '-A GANTRY-FORWARD -o gbr+ -j ACCEPT'];
  const bridge = bridgeNetwork(state);
  if (bridge?.nodeAddr) natRules.push(`-A GANTRY-POSTROUTING -s ${checkCidr(bridge.nodeAddr)} ! -o ${HOST_BRIDGE} -j MASQUERADE`);
  const ingress = ingressNetwork(state);
  if (ingress?.vni) {
    const dev = overlayBridge(ingress.vni);
    natRules.push(`-A GANTRY-POSTROUTING -o ${dev} -m conntrack --ctstate DNAT -j MASQUERADE`);
  }
  for (const s of state?.services ?? []) {
    for (const p of s.ports) {
      if (!p.publishedPort || !p.targetPort) continue;
      const proto = checkProto(p.protocol);
      const match = `-m addrtype --dst-type LOCAL -p ${proto} --dport ${checkPort(p.publishedPort)}`;
      let backends: string[] = [];
      if (p.publishMode === PublishMode.PUBLISH_MODE_INGRESS) {
        if (!ingress) continue;
        backends = s.tasks.map((t) => t.addrs[ingress.id]).filter((a): a is string => !!a).map((a) => `${checkIp(a)}:${checkPort(p.targetPort)}`);
      } else {
        backends = containers.filter((c) => c.serviceId === s.id).map((c) => `${checkIp(c.bridgeIp)}:${checkPort(p.targetPort)}`);
      }
      if (backends.length === 0) continue;
      const chain = serviceChain('S', `${s.id}/${proto}/${p.publishedPort}`);
      natChains.push(chain);
      natRules.push(`-A GANTRY-PREROUTING ${match} -j ${chain}`);
      natRules.push(`-A GANTRY-OUTPUT ! -d 127.0.0.0/8 ${match} -j ${chain}`);
      natRules.push(...spread(chain, backends.sort(), proto));
    }
  }
  return { natChains, natRules, filterChains: [...HOST_FILTER_CHAINS], filterRules };
}

export function restoreText(table: string, chains: string[], rules: string[], remove: string[] = []): string {
  const lines = [`*${table}`, ...chains.map((c) => `:${c} - [0:0]`), ...rules];
  for (const c of remove) lines.push(`-X ${c}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** Services reachable from a container: those with an address on a network it is attached to. */
function sharedNetworks(c: LocalContainer, s: ServiceEndpoints): string[] {
  const mine = new Set(c.attachments.map((a) => a.networkId));
  const nets = new Set<string>();
  for (const id of Object.keys(s.vips)) if (mine.has(id)) nets.add(id);
  for (const t of s.tasks) for (const id of Object.keys(t.addrs)) if (mine.has(id)) nets.add(id);
  return [...nets];
}

/** The whole nat table of a container's netns: its VIPs, each spread over the service's tasks. */
export function containerRules(state: NetworkState | undefined, c: LocalContainer, ingressId?: string): string {
  const chains = ['GANTRY-VIP'];
  const rules = ['-A OUTPUT -j GANTRY-VIP'];
  for (const s of state?.services ?? []) {
    if (s.mode !== EndpointMode.ENDPOINT_MODE_VIP) continue;
    for (const net of sharedNetworks(c, s)) {
      if (net === ingressId) continue;
      const vip = s.vips[net];
      if (!vip) continue;
      const backends = s.tasks.map((t) => t.addrs[net]).filter((a): a is string => !!a).map(checkIp).sort();
      if (backends.length === 0) continue;
      const chain = serviceChain('V', `${s.id}/${net}`);
      chains.push(chain);
      rules.push(`-A GANTRY-VIP -d ${checkIp(vip)}/32 -j ${chain}`);
      rules.push(...spread(chain, backends));
    }
  }
  return ['*nat', ':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]', ...chains.map((x) => `:${x} - [0:0]`), ...rules, 'COMMIT', ''].join('\n');
}

export interface OverlayPeer {
  ip: string;
  mac: string;
  nodeAddr: string;
}

export interface OverlayPlan {
  network: NodeNetwork;
  peers: OverlayPeer[];
}

/** The overlays this host needs (its containers' networks, and ingress) with their remote peers. */
export function overlayPlan(state: NetworkState | undefined, containers: readonly LocalContainer[]): OverlayPlan[] {
  if (!state) return [];
  const used = new Set(containers.flatMap((c) => c.attachments.map((a) => a.networkId)));
  const out: OverlayPlan[] = [];
  for (const n of state.networks) {
    if (n.driver !== 'overlay' || !n.vni) continue;
    if (!used.has(n.id) && !(n.ingress && n.nodeAddr)) continue;
    const peers = new Map<string, OverlayPeer>();
    for (const p of n.peers) {
      if (!p.nodeAddr || p.nodeAddr === state.nodeAddr) continue;
      peers.set(p.ip, { ip: checkIp(p.ip), mac: macOf(p.ip), nodeAddr: checkIp(p.nodeAddr) });
    }
    out.push({ network: n, peers: [...peers.values()].sort((a, b) => a.ip.localeCompare(b.ip)) });
  }
  return out;
}

export type DnsAnswer = { kind: 'a'; ips: string[] } | { kind: 'nxdomain' } | { kind: 'forward' };

/** What the resolver answers `name` (lower case, no trailing dot) for the container at `src`. */
export function resolveName(state: NetworkState | undefined, containers: readonly LocalContainer[], src: string, name: string): DnsAnswer {
  const c = containers.find((x) => x.bridgeIp === src || x.attachments.some((a) => a.ip === src));
  if (!c || !state) return { kind: 'forward' };
  const tasksOnly = name.startsWith('tasks.');
  const svcName = tasksOnly ? name.slice(6) : name;
  const s = state.services.find((x) => x.name.toLowerCase() === svcName);
  if (!s) return { kind: 'forward' };
  const nets = sharedNetworks(c, s).filter((n) => n !== ingressNetwork(state)?.id);
  if (nets.length === 0) return { kind: 'forward' };
  let ips: string[];
  if (!tasksOnly && s.mode === EndpointMode.ENDPOINT_MODE_VIP) ips = nets.map((n) => s.vips[n]).filter((v): v is string => !!v);
  else ips = s.tasks.flatMap((t) => nets.map((n) => t.addrs[n]).filter((v): v is string => !!v));
  return ips.length ? { kind: 'a', ips } : { kind: 'nxdomain' };
}
