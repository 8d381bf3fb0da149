// The worker's network manager: per-container netns + veths + addresses (TaskNetworks for the
// task controller), the host bridge with NAT, VXLAN overlays, iptables for ports and VIPs, DNS.
import { existsSync, mkdirSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { NetworkState } from '../../proto/gen/gantry/v1/network.ts';
import type { Task } from '../../proto/gen/gantry/v1/objects.ts';
import type { NetworkAttachmentResult } from '../exec/container-config.ts';
import { DnsServer } from './dns.ts';
import { checkCidr, checkIp, checkNsName, HOST_BRIDGE, macOf, netnsName, netnsPrefix, OVERLAY_MTU, overlayBridge, VXLAN_PORT, vethName, vxlanName } from './names.ts';
import {
  type Attachment,
  type DnsAnswer,
  bridgeNetwork,
  containerRules,
  HOST_JUMPS,
  hostRules,
  ingressNetwork,
  type LocalContainer,
  type OverlayPeer,
  overlayPlan,
  resolveName,
  restoreText,
} from './plan.ts';
import { type NetHelper, type NetLink, realSys, type Sys } from './sys.ts';

export interface NetworkManagerOptions {
  nodeId: string;
  log?: (m: string) => void;
  sys?: Sys;
  /** Where container netns are bound (default /run/netns; gantryd uses <data dir>/netns). */
  netnsDir?: string;
  /** Serve DNS for containers on the host bridge's gateway (default true). */
  dns?: boolean;
  stateWaitMs?: number;
  /** Set containers up with the gantry-net helper (default true; false: ip/nsenter, as when it is missing). */
  netHelper?: boolean;
  /**
   * How long a task stays up after the state without it arrived, so the other hosts apply that
   * state too before it is stopped (default $GANTRY_NET_DRAIN_MS, else 1000; Docker waits 2 s).
   */
  drainMs?: number;
}

const STATE_WAIT_MS = 15_000;
const DRAIN_MS = 1000;
/** At most this long for the manager to drop a stopping task from the endpoints. */
const DRAIN_STATE_WAIT_MS = 5000;
/** A name asked before the first state waits this long for it (glibc gives up after 5 s; a forward takes up to 1.5 s more). */
const DNS_STATE_WAIT_MS = 3000;

function ipOf(cidr: string): string {
  return cidr.split('/')[0];
}

function prefixOf(cidr: string): number {
  return Number(cidr.split('/')[1] ?? 32);
}

function ipNum(ip: string): number {
  return ip.split('.').reduce((a, p) => a * 256 + Number(p), 0);
}

function numIp(n: number): string {
  return [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export class NetworkManager {
  private readonly o: NetworkManagerOptions;
  private readonly sys: Sys;
  private readonly log: (m: string) => void;
  private readonly netnsDir: string;
  private readonly drainMs: number;
  private state: NetworkState | undefined;
  private waiters: (() => void)[] = [];
  private readonly containers = new Map<string, LocalContainer>();
  private readonly attaching = new Set<string>();
  /** Tasks of this node a state listed as a service endpoint: others may connect to them. */
  private readonly endpoints = new Set<string>();
  private readonly appliedRules = new Map<string, string>();
  private readonly programmed = new Map<number, Map<string, OverlayPeer>>();
  private hostBridge: string | undefined; // the node subnet gantry0 serves
  private jumps = false;
  private hostRulesText = '';
  private ourChains: Set<string> | undefined; // GANTRY-S-* chains in the nat table, once read
  private lock: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private dns: DnsServer | undefined;
  private dnsAddr: string | undefined; // where `dns` listens
  private closed = false;
  private readonly net: NetHelper | undefined; // gantry-net; undefined: ip/nsenter

  constructor(opts: NetworkManagerOptions) {
    this.o = opts;
    this.sys = opts.sys ?? realSys;
    this.log = opts.log ?? (() => {});
    this.netnsDir = opts.netnsDir ?? '/run/netns';
    const env = Number(process.env.GANTRY_NET_DRAIN_MS);
    this.drainMs = opts.drainMs ?? (process.env.GANTRY_NET_DRAIN_MS && Number.isFinite(env) && env >= 0 ? env : DRAIN_MS);
    const h = opts.netHelper === false ? undefined : this.sys.netHelper?.();
    if (h && 'missing' in h) this.log(`network: ${h.missing}; setting containers up with ip/nsenter instead (slower)`);
    else this.net = h;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => {});
    return run;
  }

  private ip(args: string[], input?: string) {
    return this.sys.run('ip', args, { input });
  }

  private nsPath(ns: string): string {
    const p = path.join(this.netnsDir, checkNsName(ns));
    if (!/^[\w./-]+$/.test(p)) throw new Error(`the netns directory ${this.netnsDir} has characters ip(8) cannot take`);
    return p;
  }

  /** `ip` inside a container's netns (by path: ip -n only knows /run/netns names). */
  private ipIn(ns: string, args: string[], input?: string) {
    return this.sys.run('nsenter', [`--net=${this.nsPath(ns)}`, 'ip', ...args], { input });
  }

  /** A persistent netns bound at <netnsDir>/<ns> (under gantryd's data dir, so it is ours alone). */
  private async addNs(ns: string): Promise<void> {
    const p = this.nsPath(ns);
    await mkdir(this.netnsDir, { recursive: true, mode: 0o700 });
    await writeFile(p, '');
    await this.sys.run('unshare', [`--net=${p}`, 'true']);
  }

  private async delNs(ns: string): Promise<void> {
    const p = this.nsPath(ns);
    if (this.net) {
      const r = await this.net.remove(p);
      if (!r.ok) throw new Error(`removing the network namespace of a container: ${r.error}`);
      return;
    }
    await this.sys.run('umount', [p], { allowFail: true });
    await rm(p, { force: true });
  }

  // ---------------------------------------------------------------------------------------------
  // State from the manager

  /** The network state the dispatcher sent (complete); programs the host to match it. */
  setState(s: NetworkState): void {
    this.state = s;
    for (const svc of s.services) for (const t of svc.tasks) if (t.nodeId === this.o.nodeId) this.endpoints.add(t.taskId);
    const local = new Set(s.localTasks);
    for (const id of this.endpoints) if (!local.has(id)) this.endpoints.delete(id);
    for (const w of this.waiters.splice(0)) w();
    this.schedule();
  }

  private schedule(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.serial(() => this.reconcile()).catch((err) => this.log(`network: reconcile failed: ${(err as Error).message}`));
    }, 5);
  }

  private async waitState(pred: (s: NetworkState) => boolean, what: string, ms = this.o.stateWaitMs ?? STATE_WAIT_MS): Promise<NetworkState> {
    const until = Date.now() + ms;
    while (!this.state || !pred(this.state)) {
      const left = until - Date.now();
      if (left <= 0) throw new Error(`no network state from the manager with ${what} after ${ms}ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.state;
  }

  /**
   * Called before a task's container is stopped. A task that was a service endpoint leaves the
   * VIPs, names and ports first: once the state without it arrived (the manager drops a task
   * desired to stop), it stays up drainMs more so that the other hosts, which get the same state,
   * have applied it too, and no new connection reaches a container that is going away. At once
   * for a task that never was an endpoint.
   */
  async drain(taskId: string): Promise<void> {
    if (!this.endpoints.has(taskId) || this.closed) return;
    const listed = (s: NetworkState) => s.services.some((x) => x.tasks.some((t) => t.taskId === taskId));
    const out = await this.waitState((s) => !listed(s), `task ${taskId} out of the service endpoints`, DRAIN_STATE_WAIT_MS).then(
      () => true,
      (err: Error) => {
        this.log(`network: stopping task ${taskId} while it may still be an endpoint: ${err.message}`);
        return false;
      },
    );
    if (out) {
      this.log(`network: task ${taskId} left its services' endpoints; stopping it in ${this.drainMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, this.drainMs));
    }
    this.endpoints.delete(taskId);
  }

  // ---------------------------------------------------------------------------------------------
  // Restart: find the namespaces a previous gantryd made

  async start(): Promise<void> {
    const prefix = netnsPrefix(this.o.nodeId);
    const names = await readdir(this.netnsDir).catch(() => [] as string[]);
    for (const ns of names) {
      if (!ns.startsWith(prefix)) continue;
      const taskId = ns.slice(prefix.length);
      const c = await this.readContainer(ns, taskId).catch(() => undefined);
      if (c) {
        this.containers.set(taskId, c);
        this.appliedRules.set(taskId, '?'); // unknown: rewritten at the first reconcile
      }
      else await this.delNs(ns).catch(() => {});
    }
    if (this.containers.size) {
      this.log(`network: found ${this.containers.size} container namespaces from before the restart`);
      // their resolver answers again now, not once the manager's state arrives (names wait for it)
      const addrs = await this.linkAddrs(HOST_BRIDGE).catch(() => [] as string[]);
      if (addrs.length === 1) await this.serveDns(checkIp(ipOf(addrs[0])));
    }
  }

  private async readContainer(ns: string, taskId: string): Promise<LocalContainer | undefined> {
    const r = await this.ipIn(ns, ['-j', 'addr', 'show']);
    const links = JSON.parse(r.out) as { ifname: string; addr_info?: { family: string; local: string; prefixlen: number }[]; ifalias?: string }[];
    // `addr show` leaves out aliases (where we keep each interface's network id): read them from `link show`
    const aliases = JSON.parse((await this.ipIn(ns, ['-j', 'link', 'show'])).out) as { ifname: string; ifalias?: string }[];
    for (const l of links) l.ifalias = aliases.find((x) => x.ifname === l.ifname)?.ifalias;
    let bridgeIp = '';
    const attachments: Attachment[] = [];
    for (const l of links) {
      const a = l.addr_info?.find((x) => x.family === 'inet');
      if (!a || l.ifname === 'lo') continue;
      if (l.ifname === 'eth0') bridgeIp = a.local;
      else attachments.push({ networkId: l.ifalias ?? '', ip: a.local, prefix: a.prefixlen });
    }
    const serviceId = links.find((l) => l.ifname === 'eth0')?.ifalias ?? '';
    return bridgeIp ? { taskId, serviceId, ns, bridgeIp, attachments } : undefined;
  }

  // ---------------------------------------------------------------------------------------------
  // TaskNetworks (called by the task controller)

  async attach(task: Task): Promise<NetworkAttachmentResult> {
    const targets = (task.spec?.networks ?? []).map((n) => n.target);
    if (targets.includes('host')) return { network: { mode: 'host' } };
    if (targets.includes('none')) return { network: { mode: 'none' } };
    const netIds = task.networks.filter((a) => a.addresses.length > 0).map((a) => a.networkId);
    const state = await this.waitState((s) => !!bridgeNetwork(s)?.nodeAddr && netIds.every((id) => s.networks.some((n) => n.id === id)), `this node's bridge subnet and networks ${netIds.join(', ') || '(none)'}`);
    this.attaching.add(task.id);
    try {
      return await this.serial(() => this.attachLocked(task, state));
    } finally {
      this.attaching.delete(task.id);
    }
  }

  private async attachLocked(task: Task, state: NetworkState): Promise<NetworkAttachmentResult> {
    await this.ensureHost(state);
    const ns = netnsName(this.o.nodeId, task.id);
    // a leftover from an attempt that failed half-way: start clean
    if (existsSync(this.nsPath(ns))) await this.delNs(ns).catch(() => {});
    this.containers.delete(task.id);
    this.appliedRules.delete(task.id);
    const bridge = bridgeNetwork(state);
    const sub = checkCidr(bridge?.nodeAddr ?? '');
    const gw = numIp(ipNum(ipOf(sub)) + 1);
    const bridgeIp = this.freeBridgeIp(sub);
    const c: LocalContainer = { taskId: task.id, serviceId: task.serviceId, ns, bridgeIp, attachments: [] };
    try {
      const links: NetLink[] = [
        { host: vethName(task.id, 0), peer: 'eth0', master: HOST_BRIDGE, alias: task.serviceId.replace(/[^a-z0-9]/g, '') || 'none', addr: `${bridgeIp}/${prefixOf(sub)}` },
      ];
      for (const a of task.networks) {
        const net = state.networks.find((n) => n.id === a.networkId);
        if (net?.driver !== 'overlay' || !a.addresses[0]) continue;
        // with gantry-net, an overlay this process already made is trusted (a missing bridge fails
        // the create, and then it is made again); `ip link show` here was most of an attach
        if (!this.net || !this.programmed.has(net.vni)) await this.ensureOverlay(net.vni, net.ingress ? net.nodeAddr : '', state.nodeAddr);
        const cidr = checkCidr(a.addresses[0]);
        const i = links.length;
        links.push({ host: vethName(task.id, i), peer: `eth${i}`, master: overlayBridge(net.vni), mtu: OVERLAY_MTU, mac: macOf(ipOf(cidr)), alias: net.id.replace(/[^a-z0-9]/g, ''), addr: cidr });
        c.attachments.push({ networkId: net.id, ip: ipOf(cidr), prefix: prefixOf(cidr) });
      }
      // the container's VIP rules go in with the namespace (a new netns has an empty nat table)
      const rules = containerRules(this.state, c, ingressNetwork(this.state)?.id);
      const withRules = rules.includes('GANTRY-V-');
      if (this.net) {
        mkdirSync(this.netnsDir, { recursive: true, mode: 0o700 }); // µs when it is there; the pool's round trip costs more
        const spec = { netns: this.nsPath(ns), links, gateway: gw, rules: withRules ? rules : undefined };
        let r = await this.net.create(spec);
        if (!r.ok && /find link `g(br|vx)\d+`/.test(r.error)) {
          this.log(`network: an overlay bridge is missing (${r.error}); making it again`);
          for (const a of task.networks) {
            const net = state.networks.find((n) => n.id === a.networkId && n.driver === 'overlay');
            if (net) {
              this.programmed.delete(net.vni);
              await this.ensureOverlay(net.vni, net.ingress ? net.nodeAddr : '', state.nodeAddr);
            }
          }
          r = await this.net.create(spec);
        }
        if (!r.ok) throw new Error(`setting up the network of task ${task.id}: ${r.error}`);
        this.appliedRules.set(task.id, rules);
      } else {
        await this.createWithIp(ns, links, gw);
      }
      this.containers.set(task.id, c);
      await this.applyContainerRules(c);
      await this.applyHostRules();
    } catch (err) {
      await this.delNs(ns).catch(() => {});
      this.containers.delete(task.id);
      this.appliedRules.delete(task.id);
      throw err;
    }
    const hostname = task.spec?.container?.hostname || task.id.slice(0, 12);
    const hosts = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', `${bridgeIp}\t${hostname}`, ...c.attachments.map((a) => `${a.ip}\t${hostname}`), ''].join('\n');
    const resolv = this.o.dns === false ? `nameserver ${gw}\n` : `nameserver ${gw}\noptions ndots:0\n`;
    return {
      network: { mode: 'path', path: this.nsPath(ns) },
      files: [
        { path: '/etc/hosts', content: hosts, mode: 0o644 },
        { path: '/etc/resolv.conf', content: resolv, mode: 0o644 },
        { path: '/etc/hostname', content: `${hostname}\n`, mode: 0o644 },
      ],
    };
  }

  /** The fallback when gantry-net is missing: unshare(1), then `ip -batch` here and in the netns. */
  private async createWithIp(ns: string, links: NetLink[], gw: string): Promise<void> {
    await this.addNs(ns);
    const nsp = this.nsPath(ns);
    const batch: string[] = [];
    const nsBatch = ['link set lo up'];
    for (const l of links) {
      batch.push(`link add ${l.host}${l.mtu ? ` mtu ${l.mtu}` : ''} type veth peer name ${l.peer} netns ${nsp}`);
      batch.push(`link set ${l.host}${l.master ? ` master ${l.master}` : ''} up`);
      nsBatch.push(`link set ${l.peer}${l.mac ? ` address ${l.mac}` : ''}${l.mtu ? ` mtu ${l.mtu}` : ''}${l.alias ? ` alias ${l.alias}` : ''}`);
      if (l.addr) nsBatch.push(`addr add ${l.addr} dev ${l.peer}`);
      nsBatch.push(`link set ${l.peer} up`);
    }
    nsBatch.push(`route add default via ${gw}`);
    await this.ip(['-batch', '-'], `${batch.join('\n')}\n`);
    await this.ipIn(ns, ['-batch', '-'], `${nsBatch.join('\n')}\n`);
  }

  private freeBridgeIp(sub: string): string {
    const base = ipNum(ipOf(sub));
    const size = 2 ** (32 - prefixOf(sub));
    const used = new Set([...this.containers.values()].map((c) => c.bridgeIp));
    for (let n = base + 2; n < base + size - 1; n++) {
      const ip = numIp(n);
      if (!used.has(ip)) return ip;
    }
    throw new Error(`the host bridge subnet ${sub} is full (${size - 3} containers): no address for another container on this node`);
  }

  async detach(taskId: string): Promise<void> {
    await this.serial(async () => {
      await this.delNs(netnsName(this.o.nodeId, taskId)).catch(() => {});
      const had = this.containers.delete(taskId);
      this.appliedRules.delete(taskId);
      if (had) await this.reconcile();
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Host setup

  private async ensureHost(state: NetworkState): Promise<void> {
    const sub = bridgeNetwork(state)?.nodeAddr;
    if (!sub || this.hostBridge === sub) return;
    const gw = numIp(ipNum(ipOf(checkCidr(sub))) + 1);
    const exists = await this.ip(['link', 'show', HOST_BRIDGE]).then(() => true, () => false);
    if (!exists) await this.ip(['link', 'add', HOST_BRIDGE, 'type', 'bridge']);
    // Pin the bridge's MAC: unpinned, Linux gives a bridge its lowest port's MAC, so a container
    // leaving or joining changes the gateway's MAC under every other container's ARP cache and
    // their packets to it (DNS, egress) vanish until that entry expires (found as 10-30 s DNS
    // outages during rolling updates). A bridge from before keeps its current MAC, pinned.
    await this.ip(['link', 'set', HOST_BRIDGE, 'address', exists ? await this.linkMac(HOST_BRIDGE) : macOf(gw)]);
    const again = [...this.containers.values()].map((c) => `link set ${vethName(c.taskId, 0)} master ${HOST_BRIDGE} up`);
    if (!exists && again.length) await this.sys.run('ip', ['-force', '-batch', '-'], { input: `${again.join('\n')}\n`, allowFail: true });
    // a restarted gantryd finds the gateway address in place: leave it (a flush would cut the
    // containers' egress and DNS for a moment); anything else is replaced
    const want = `${gw}/${prefixOf(sub)}`;
    const have = exists ? await this.linkAddrs(HOST_BRIDGE) : [];
    if (have.length !== 1 || have[0] !== want) {
      await this.ip(['addr', 'flush', 'dev', HOST_BRIDGE]);
      await this.ip(['addr', 'add', want, 'dev', HOST_BRIDGE]);
    }
    await this.ip(['link', 'set', HOST_BRIDGE, 'up']);
    await writeFile('/proc/sys/net/ipv4/ip_forward', '1').catch((err) => this.log(`network: cannot turn on ip_forward: ${err.message}`));
    this.hostBridge = sub;
    await this.applyHostRules();
    await this.serveDns(gw);
  }

  /** The containers' resolver on the gateway `gw` (kept when it already listens there). */
  private async serveDns(gw: string): Promise<void> {
    if (this.o.dns === false || (this.dns && this.dnsAddr === gw)) return;
    this.dns?.close();
    this.dnsAddr = undefined;
    this.dns = new DnsServer({ lookup: (src, name) => this.lookupName(src, name), log: this.log });
    await this.dns.listen(gw).then(
      () => {
        this.dnsAddr = gw;
      },
      (err) => {
        this.log(`network: DNS cannot listen on ${gw}:53: ${(err as Error).message}`);
        this.dns = undefined;
      },
    );
  }

  /**
   * A name asked by the container at `src`. Before the first state from the manager (a restarted
   * gantryd), the answer waits for it a few seconds rather than going to the host's resolvers.
   */
  private async lookupName(src: string, name: string): Promise<DnsAnswer> {
    if (!this.state && !this.closed) await this.waitState(() => true, 'any network state', DNS_STATE_WAIT_MS).catch(() => {});
    return resolveName(this.state, [...this.containers.values()], src, name);
  }

  /** A link's IPv4 addresses as CIDRs. */
  private async linkAddrs(dev: string): Promise<string[]> {
    const r = await this.ip(['-j', '-4', 'addr', 'show', 'dev', dev]);
    const links = JSON.parse(r.out || '[]') as { addr_info?: { local: string; prefixlen: number }[] }[];
    return links.flatMap((l) => (l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`));
  }

  /** A link's current MAC address (validated before it goes back on a command line). */
  private async linkMac(dev: string): Promise<string> {
    const r = await this.ip(['-j', 'link', 'show', dev]);
    const mac = (JSON.parse(r.out) as { address?: string }[])[0]?.address ?? '';
    if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac)) throw new Error(`cannot read the MAC address of ${dev} (ip -j link show said ${r.out.trim().slice(0, 200)})`);
    return mac;
  }

  private async ensureOverlay(vni: number, nodeAddr: string, underlay: string): Promise<boolean> {
    const br = overlayBridge(vni);
    const vx = vxlanName(vni);
    const exists = await this.ip(['link', 'show', vx]).then(() => true, () => false);
    if (!exists) {
      await this.ip(['link', 'del', br]).catch(() => {});
      const cmds = [
        `link add ${br} type bridge`,
        `link add ${vx} type vxlan id ${vni} dstport ${VXLAN_PORT} local ${checkIp(underlay)} nolearning proxy`,
        `link set ${vx} mtu ${OVERLAY_MTU} master ${br} up`,
        `link set ${br} up`,
      ];
      await this.ip(['-batch', '-'], `${cmds.join('\n')}\n`);
      this.programmed.set(vni, new Map());
    }
    if (!exists) {
      // containers already attached (a bridge removed under them): put their veths back on it
      const again: string[] = [];
      for (const c of this.containers.values()) {
        c.attachments.forEach((a, i) => {
          if (this.state?.networks.find((n) => n.id === a.networkId)?.vni === vni) again.push(`link set ${vethName(c.taskId, i + 1)} master ${br} up`);
        });
      }
      if (again.length) await this.sys.run('ip', ['-force', '-batch', '-'], { input: `${again.join('\n')}\n`, allowFail: true });
    } else if (!this.programmed.has(vni)) {
      this.programmed.set(vni, await this.readPeers(vx));
    }
    if (nodeAddr) {
      await this.ip(['link', 'set', br, 'address', macOf(ipOf(nodeAddr))]);
      await this.ip(['addr', 'replace', checkCidr(nodeAddr), 'dev', br]);
    }
    return !exists;
  }

  private async readPeers(vx: string): Promise<Map<string, OverlayPeer>> {
    const out = new Map<string, OverlayPeer>();
    const neigh = await this.ip(['neigh', 'show', 'dev', vx]).catch(() => ({ out: '' }));
    const fdb = await this.sys.run('bridge', ['fdb', 'show', 'dev', vx], { allowFail: true });
    const dst = new Map<string, string>();
    for (const l of fdb.out.split('\n')) {
      const m = /^([0-9a-f:]{17}) dst (\S+)/.exec(l.trim());
      if (m) dst.set(m[1], m[2]);
    }
    for (const l of neigh.out.split('\n')) {
      const m = /^(\S+) lladdr ([0-9a-f:]{17})/.exec(l.trim());
      if (m) out.set(m[1], { ip: m[1], mac: m[2], nodeAddr: dst.get(m[2]) ?? '' });
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // Reconcile: iptables, overlays and their peers, stale namespaces

  private async reconcile(): Promise<void> {
    const state = this.state;
    if (!state || this.closed) return;
    await this.ensureHost(state);
    // namespaces of tasks the manager no longer has on this node
    const local = new Set(state.localTasks);
    for (const id of [...this.containers.keys()]) {
      if (local.has(id) || this.attaching.has(id)) continue;
      this.log(`network: removing the namespace of task ${id} (no longer on this node)`);
      await this.delNs(netnsName(this.o.nodeId, id)).catch(() => {});
      this.containers.delete(id);
      this.appliedRules.delete(id);
    }
    const containers = [...this.containers.values()];
    const plans = overlayPlan(state, containers);
    for (const p of plans) {
      await this.ensureOverlay(p.network.vni, p.network.ingress ? p.network.nodeAddr : '', state.nodeAddr);
      await this.programPeers(p.network.vni, p.peers);
    }
    await this.removeOverlays(new Set(plans.map((p) => p.network.vni)));
    await this.applyHostRules();
    for (const c of containers) await this.applyContainerRules(c);
  }

  private async programPeers(vni: number, peers: OverlayPeer[]): Promise<void> {
    const vx = vxlanName(vni);
    const have = this.programmed.get(vni) ?? new Map<string, OverlayPeer>();
    const want = new Map(peers.map((p) => [p.ip, p]));
    const neigh: string[] = [];
    const fdb: string[] = [];
    for (const [ip, p] of have) {
      const w = want.get(ip);
      if (w && w.mac === p.mac && w.nodeAddr === p.nodeAddr) continue;
      neigh.push(`neigh del ${ip} dev ${vx}`);
      if (!w || w.mac !== p.mac) fdb.push(`fdb del ${p.mac} dev ${vx} self`);
    }
    for (const [ip, p] of want) {
      const h = have.get(ip);
      if (h && h.mac === p.mac && h.nodeAddr === p.nodeAddr) continue;
      fdb.push(`fdb replace ${p.mac} dev ${vx} dst ${p.nodeAddr} self permanent`);
      neigh.push(`neigh replace ${ip} lladdr ${p.mac} dev ${vx} nud permanent`);
    }
    if (fdb.length) await this.sys.run('bridge', ['-force', '-batch', '-'], { input: `${fdb.join('\n')}\n`, allowFail: true });
    if (neigh.length) await this.sys.run('ip', ['-force', '-batch', '-'], { input: `${neigh.join('\n')}\n`, allowFail: true });
    this.programmed.set(vni, want);
  }

  private async removeOverlays(keep: Set<number>): Promise<void> {
    const r = await this.ip(['-o', 'link', 'show']);
    for (const m of r.out.matchAll(/^\d+: (g(?:vx|br)(\d+))[@:]/gm)) {
      const vni = Number(m[2]);
      if (keep.has(vni)) continue;
      await this.ip(['link', 'del', m[1]]).catch(() => {});
      this.programmed.delete(vni);
    }
  }

  private async applyHostRules(): Promise<void> {
    const containers = [...this.containers.values()];
    const rules = hostRules(this.state, containers);
    const key = JSON.stringify(rules);
    if (key === this.hostRulesText && this.jumps) return; // nothing changed since we wrote them
    if (!this.ourChains) {
      const existing = await this.sys.run('iptables-save', ['-t', 'nat'], { allowFail: true });
      this.ourChains = new Set([...existing.out.matchAll(/^:(GANTRY-S-\S+)/gm)].map((m) => m[1]));
    }
    const stale = [...this.ourChains].filter((c) => !rules.natChains.includes(c));
    const text = restoreText('nat', [...rules.natChains, ...stale], rules.natRules, stale) + restoreText('filter', rules.filterChains, rules.filterRules);
    try {
      await this.sys.run('iptables-restore', ['-w', '--noflush'], { input: text });
    } catch (err) {
      this.ourChains = undefined; // someone changed the table under us: read it again next time
      this.hostRulesText = '';
      throw err;
    }
    this.ourChains = new Set(rules.natChains.filter((c) => c.startsWith('GANTRY-S-')));
    this.hostRulesText = key;
    if (!this.jumps) {
      for (const j of HOST_JUMPS) {
        const has = await this.sys.run('iptables', ['-w', '-t', j.table, '-C', j.from, '-j', j.to], { allowFail: true });
        if (!has.ok) await this.sys.run('iptables', ['-w', '-t', j.table, '-I', j.from, '1', '-j', j.to]);
      }
      this.jumps = true;
    }
  }

  private async applyContainerRules(c: LocalContainer): Promise<void> {
    const text = containerRules(this.state, c, ingressNetwork(this.state)?.id);
    if (this.appliedRules.get(c.taskId) === text) return;
    // a new netns has an empty nat table: nothing to write until a VIP concerns this container
    if (!this.appliedRules.has(c.taskId) && !text.includes('GANTRY-V-')) {
      this.appliedRules.set(c.taskId, text);
      return;
    }
    if (this.net) {
      const r = await this.net.restore(this.nsPath(c.ns), text);
      if (!r.ok) throw new Error(`the VIP rules of task ${c.taskId}: ${r.error}`);
    } else {
      await this.sys.run('nsenter', [`--net=${this.nsPath(c.ns)}`, 'iptables-restore', '-w'], { input: text });
    }
    this.appliedRules.set(c.taskId, text);
  }

  /** The addresses of a task's container on this host (for tests and inspect). */
  container(taskId: string): LocalContainer | undefined {
    return this.containers.get(taskId);
  }

  // ---------------------------------------------------------------------------------------------
  // Shutdown and teardown

  /** Stops serving (DNS, reconciling); containers keep their networking. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.dns?.close();
    this.dns = undefined;
    this.dnsAddr = undefined;
    await this.lock;
    this.net?.close(); // asked again (teardown), it starts anew
  }

  /** Removes everything this host's network code made: namespaces, overlays, the bridge, rules. */
  async teardown(): Promise<void> {
    await this.close();
    const prefix = netnsPrefix(this.o.nodeId);
    for (const ns of await readdir(this.netnsDir).catch(() => [] as string[])) {
      if (ns.startsWith(prefix)) await this.delNs(ns).catch(() => {});
    }
    this.containers.clear();
    await this.removeOverlays(new Set());
    await this.ip(['link', 'del', HOST_BRIDGE]).catch(() => {});
    await removeChains(this.sys);
    this.jumps = false;
    this.hostRulesText = '';
    this.ourChains = undefined;
    this.hostBridge = undefined;
    this.net?.close();
  }
}

/** Deletes every GANTRY-* chain and the jumps to them (never another rule). */
export async function removeChains(sys: Sys = realSys): Promise<void> {
  for (const j of HOST_JUMPS) {
    for (let i = 0; i < 5; i++) {
      const r = await sys.run('iptables', ['-w', '-t', j.table, '-D', j.from, '-j', j.to], { allowFail: true });
      if (!r.ok) break;
    }
  }
  for (const table of ['nat', 'filter']) {
    const saved = await sys.run('iptables-save', ['-t', table], { allowFail: true });
    const chains = [...saved.out.matchAll(/^:(GANTRY-\S+)/gm)].map((m) => m[1]);
    for (const c of chains) await sys.run('iptables', ['-w', '-t', table, '-F', c], { allowFail: true });
    for (const c of chains) await sys.run('iptables', ['-w', '-t', table, '-X', c], { allowFail: true });
  }
}
