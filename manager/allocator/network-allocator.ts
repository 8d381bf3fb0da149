// The network part of the allocator, pure over a read view: system networks (ingress, bridge),
// subnets and VNIs, per-node addresses, service VIPs and published ports, and task addresses.
import type { Network } from '../../proto/gen/gantry/v1/network.ts';
import { EndpointMode, type PortConfig, PublishMode, type Service, type Task, TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import type { ReadView } from '../store/types.ts';
import { carveSubnet, type Cidr, formatCidr, formatIp, ipOfCidr, parseCidr, pickAddress, usableRange } from './ipam.ts';

export const DEFAULT_POOL = '10.0.0.0/8';
export const DEFAULT_SUBNET_SIZE = 24;
export const BRIDGE_POOL = '172.16.0.0/12';
export const INGRESS_SUBNET = '10.0.0.0/16';
export const INGRESS_NAME = 'ingress';
export const BRIDGE_NAME = 'bridge';
export const FIRST_VNI = 4096;
export const DYNAMIC_PORTS = { first: 30000, last: 32767 };
/** Network names a service may use that are not objects: the host's stack, or no network at all. */
export const SPECIAL_NETWORKS = new Set(['host', 'none', BRIDGE_NAME]);

/** Attachments of a task that hold an address until the task is terminal. */
export function holdsAddress(t: Task): boolean {
  return (t.status?.state ?? TaskState.TASK_STATE_NEW) < TaskState.TASK_STATE_COMPLETE;
}

export function findNetwork(view: ReadView, ref: string): Network | undefined {
  const all = view.list('networks');
  return all.find((n) => n.id === ref) ?? all.find((n) => n.spec?.name === ref) ?? (ref.length >= 4 ? all.find((n) => n.id.startsWith(ref)) : undefined);
}

/** Who holds which address of `net` (tasks, VIPs, nodes), keyed by the address as a number. */
export function addressUsage(view: ReadView, net: Network): Map<number, string> {
  const used = new Map<number, string>();
  for (const t of view.list('tasks')) {
    if (!holdsAddress(t)) continue;
    for (const a of t.networks) if (a.networkId === net.id) for (const addr of a.addresses) {
      const ip = ipOfCidr(addr);
      if (ip !== undefined) used.set(ip, `task ${t.id} (${t.serviceName}.${t.slot || t.nodeId.slice(0, 6)})`);
    }
  }
  for (const s of view.list('services')) {
    for (const v of s.endpoint?.virtualIps ?? []) if (v.networkId === net.id) {
      const ip = ipOfCidr(v.addr);
      if (ip !== undefined) used.set(ip, `vip of service ${s.spec?.name}`);
    }
  }
  if (net.spec?.driver !== 'bridge') {
    for (const [node, addr] of Object.entries(net.status?.nodeAddrs ?? {})) {
      const ip = ipOfCidr(addr);
      if (ip !== undefined) used.set(ip, `node ${node}`);
    }
  }
  return used;
}

export function networkSize(net: Network): number {
  const c = parseCidr(net.status?.subnet ?? '');
  return c ? usableRange(c).size : 0;
}

export function exhaustedMessage(net: Network): string {
  return `network "${net.spec?.name}" has no free address in ${net.status?.subnet} (${networkSize(net)} addresses, all in use): remove tasks or services from it, or create a larger network with --subnet`;
}

/** Mutable allocation state for one tick. */
export class NetworkContext {
  readonly view: ReadView;
  readonly networks = new Map<string, Network>();
  private readonly used = new Map<string, Map<number, string>>();
  readonly changed = new Set<string>();
  readonly created = new Set<string>();

  constructor(view: ReadView) {
    this.view = view;
    for (const n of view.list('networks')) this.networks.set(n.id, n);
  }

  byRef(ref: string): Network | undefined {
    for (const n of this.networks.values()) if (n.id === ref || n.spec?.name === ref) return n;
    return undefined;
  }

  ingress(): Network | undefined {
    for (const n of this.networks.values()) if (n.spec?.ingress) return n;
    return undefined;
  }

  usage(net: Network): Map<number, string> {
    let u = this.used.get(net.id);
    if (!u) {
      u = addressUsage(this.view, net);
      this.used.set(net.id, u);
    }
    return u;
  }

  /** Takes a free address of `net` for `holder`; undefined when it has none. */
  take(net: Network, holder: string): string | undefined {
    const c = parseCidr(net.status?.subnet ?? '');
    if (!c) return undefined;
    const u = this.usage(net);
    const ip = pickAddress(c, new Set(u.keys()));
    if (ip === undefined) return undefined;
    u.set(ip, holder);
    return `${formatIp(ip)}/${c.prefix}`;
  }

  put(net: Network): void {
    this.networks.set(net.id, net);
    this.changed.add(net.id);
  }
}

/**
 * System networks exist, every network has a subnet and a VNI, and every node has its bridge
 * subnet and its ingress address. `newId` names created networks.
 */
export function planNetworks(ctx: NetworkContext, newId: () => string): void {
  if (!ctx.ingress()) {
    const id = newId();
    ctx.put({ id, spec: { name: INGRESS_NAME, driver: 'overlay', subnet: INGRESS_SUBNET, attachable: false, labels: {}, ingress: true } });
    ctx.created.add(id);
  }
  if (![...ctx.networks.values()].some((n) => n.spec?.driver === 'bridge')) {
    const id = newId();
    ctx.put({ id, spec: { name: BRIDGE_NAME, driver: 'bridge', subnet: BRIDGE_POOL, attachable: false, labels: {}, ingress: false } });
    ctx.created.add(id);
  }
  // subnets and VNIs
  const subnets: Cidr[] = [];
  const vnis = new Set<number>();
  for (const n of ctx.networks.values()) {
    const c = parseCidr(n.status?.subnet ?? '');
    if (c) subnets.push(c);
    if (n.status?.vni) vnis.add(n.status.vni);
  }
  const pool = parseCidr(DEFAULT_POOL) as Cidr;
  for (const n of [...ctx.networks.values()]) {
    if (n.status?.subnet) continue;
    const spec = n.spec;
    let subnet: Cidr | undefined;
    let message = '';
    if (spec?.subnet) {
      subnet = parseCidr(spec.subnet, true);
      if (!subnet) message = `network "${spec.name}": subnet "${spec.subnet}" is not a CIDR`;
    } else {
      subnet = carveSubnet(pool, DEFAULT_SUBNET_SIZE, subnets);
      if (!subnet) message = `network "${spec?.name}": the default pool ${DEFAULT_POOL} has no free /${DEFAULT_SUBNET_SIZE}`;
    }
    let vni = 0;
    if (spec?.driver === 'overlay') {
      vni = FIRST_VNI;
      while (vnis.has(vni)) vni++;
      vnis.add(vni);
    }
    if (subnet) subnets.push(subnet);
    ctx.put({ ...n, status: { subnet: subnet ? formatCidr(subnet) : '', vni, nodeAddrs: n.status?.nodeAddrs ?? {}, message } });
  }
  // per-node addresses
  const nodes = ctx.view.list('nodes').map((x) => x.id);
  const live = new Set(nodes);
  for (const n of [...ctx.networks.values()]) {
    const isBridge = n.spec?.driver === 'bridge';
    if (!(isBridge || n.spec?.ingress) || !n.status?.subnet) continue;
    const addrs = { ...(n.status.nodeAddrs ?? {}) };
    let dirty = false;
    for (const id of Object.keys(addrs)) if (!live.has(id)) {
      delete addrs[id];
      dirty = true;
    }
    for (const id of nodes) {
      if (addrs[id]) continue;
      if (isBridge) {
        const pool = parseCidr(n.status.subnet) as Cidr;
        const taken = Object.values(addrs).map((a) => parseCidr(a)).filter((c): c is Cidr => !!c);
        const c = carveSubnet(pool, 24, taken);
        if (!c) continue;
        addrs[id] = formatCidr(c);
      } else {
        const a = ctx.take(n, `node ${id}`);
        if (!a) continue;
        addrs[id] = a;
      }
      dirty = true;
    }
    if (dirty) ctx.put({ ...n, status: { ...n.status, nodeAddrs: addrs } });
  }
}

/** The networks (objects) a service's tasks attach to, or a message naming what is missing. */
export function serviceNetworks(ctx: NetworkContext, s: Service | undefined, targets: readonly string[]): { ok: true; networks: Network[] } | { ok: false; error: string } {
  const out: Network[] = [];
  for (const t of targets) {
    if (SPECIAL_NETWORKS.has(t)) continue;
    const n = ctx.byRef(t);
    if (!n) return { ok: false, error: `network "${t}" not found: create it with \`gantry network create --driver overlay ${t}\`` };
    if (!n.status?.subnet) return { ok: false, error: `network "${t}" has no subnet yet${n.status?.message ? `: ${n.status.message}` : ''}` };
    if (!out.includes(n)) out.push(n);
  }
  const ports = s?.spec?.endpoint?.ports ?? [];
  if (ports.some((p) => p.publishMode === PublishMode.PUBLISH_MODE_INGRESS)) {
    const ing = ctx.ingress();
    if (!ing?.status?.subnet) return { ok: false, error: 'the ingress network is not allocated yet' };
    if (!out.includes(ing)) out.push(ing);
  }
  return { ok: true, networks: out };
}

/** Published ports every service holds (ingress: cluster-wide), keyed "proto/port". */
export function publishedPorts(view: ReadView, exceptServiceId?: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const s of view.list('services')) {
    if (s.id === exceptServiceId) continue;
    for (const p of [...(s.endpoint?.ports ?? []), ...(s.spec?.endpoint?.ports ?? [])]) {
      if (p.publishMode !== PublishMode.PUBLISH_MODE_INGRESS || !p.publishedPort) continue;
      out.set(`${p.protocol || 'tcp'}/${p.publishedPort}`, s.spec?.name ?? s.id);
    }
  }
  return out;
}

/** The service's endpoint as it should be: VIPs on its networks, dynamic ports filled in. */
export function planServiceEndpoint(ctx: NetworkContext, s: Service, taken: Map<string, string>): Service | undefined {
  const spec = s.spec?.endpoint ?? { mode: EndpointMode.ENDPOINT_MODE_VIP, ports: [] };
  const targets = (s.spec?.task?.networks ?? []).map((n) => n.target);
  const nets = serviceNetworks(ctx, s, targets);
  if (!nets.ok) return undefined;
  const prevPorts = s.endpoint?.ports ?? [];
  const ports: PortConfig[] = [];
  for (const p of spec.ports) {
    let published = p.publishedPort;
    if (!published && p.publishMode === PublishMode.PUBLISH_MODE_INGRESS) {
      const prev = prevPorts.find((q) => q.targetPort === p.targetPort && (q.protocol || 'tcp') === (p.protocol || 'tcp') && !spec.ports.some((r) => r.publishedPort === q.publishedPort));
      published = prev?.publishedPort ?? 0;
      for (let port = DYNAMIC_PORTS.first; !published && port <= DYNAMIC_PORTS.last; port++) {
        if (!taken.has(`${p.protocol || 'tcp'}/${port}`)) published = port;
      }
      if (published) taken.set(`${p.protocol || 'tcp'}/${published}`, s.spec?.name ?? s.id);
    }
    ports.push({ ...p, protocol: p.protocol || 'tcp', publishedPort: published });
  }
  const vips = [];
  if (spec.mode === EndpointMode.ENDPOINT_MODE_VIP) {
    for (const n of nets.networks) {
      if (n.spec?.ingress) continue;
      const prev = s.endpoint?.virtualIps.find((v) => v.networkId === n.id);
      const addr = prev?.addr ?? ctx.take(n, `vip of service ${s.spec?.name}`);
      if (addr) vips.push({ networkId: n.id, addr });
    }
  }
  const endpoint = { spec, ports, virtualIps: vips };
  if (JSON.stringify(endpoint) === JSON.stringify(s.endpoint ?? null)) return undefined;
  return { ...s, endpoint };
}

/** The task with an address on each network it needs, or why it must wait. */
export function allocateTaskNetworks(ctx: NetworkContext, t: Task): { ok: true; task: Task } | { ok: false; error: string } {
  const s = ctx.view.get('services', t.serviceId);
  const targets = (t.spec?.networks ?? []).map((n) => n.target);
  const nets = serviceNetworks(ctx, s, targets);
  if (!nets.ok) return nets;
  if (nets.networks.length === 0 && t.networks.length === 0) return { ok: true, task: t };
  const attachments = [];
  for (const n of nets.networks) {
    const have = t.networks.find((a) => a.networkId === n.id && a.addresses.length > 0);
    if (have) {
      attachments.push(have);
      continue;
    }
    const addr = ctx.take(n, `task ${t.id}`);
    if (!addr) return { ok: false, error: exhaustedMessage(n) };
    const aliases = (t.spec?.networks ?? []).find((a) => a.target === n.id || a.target === n.spec?.name)?.aliases ?? [];
    attachments.push({ networkId: n.id, addresses: [addr], aliases });
  }
  return { ok: true, task: { ...t, networks: attachments } };
}
