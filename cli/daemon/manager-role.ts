// The manager role of a host: its supervised etcd member, the store on it, the gRPC server other
// hosts reach (dispatcher + control API), and the Manager. Also how a manager stops being one
// (demotion): record the new role while quorum still counts us, leave etcd, stop, forget the data.
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CaNodeService, CaService } from '../../proto/gen/gantry/v1/ca.ts';
import { SecretsService } from '../../proto/gen/gantry/v1/secrets.ts';
import { secretsService } from '../../manager/secrets/service.ts';
import { ControlService } from '../../proto/gen/gantry/v1/control.ts';
import { DispatcherService } from '../../proto/gen/gantry/v1/dispatcher.ts';
import { type Node, NodeRole, NodeState as NodeHealth } from '../../proto/gen/gantry/v1/objects.ts';
import { type Access, guard } from '../../manager/ca/authz.ts';
import { ClusterCa } from '../../manager/ca/ca.ts';
import { caService } from '../../manager/ca/service.ts';
import { RootRotator } from '../../manager/ca/rotation-loop.ts';
import type { Log } from '../../manager/controller.ts';
import { retryUpdate } from '../../manager/dispatcher/update-node.ts';
import { Manager } from '../../manager/manager.ts';
import { EtcdStore } from '../../manager/store/etcd.ts';
import { addMember, type EtcdMember, listMembers, memberUrls, removeMember, startEtcdMember } from '../../manager/store/etcd-member.ts';
import type { EtcdTls } from '../../manager/store/etcd-rpc.ts';
import { DEFAULT_PORT, splitHostPort } from './addr.ts';
import type { NodeState } from './state.ts';

/**
 * A gRPC server bound before anything else, so its port is known (and can be advertised). It speaks
 * only mutual TLS with `credentials` (cli/daemon/tls.ts: connections wait for a certificate).
 */
export async function bindServer(listenAddr: string, credentials: grpc.ServerCredentials): Promise<{ server: grpc.Server; port: number; host: string }> {
  const listen = splitHostPort(listenAddr, DEFAULT_PORT);
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 << 20, 'grpc.keepalive_permit_without_calls': 1 });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${listen.host}:${listen.port}`, credentials, (err, p) => (err ? reject(err) : resolve(p))),
  ).catch((err: Error) => {
    server.forceShutdown();
    throw new Error(`cannot listen on ${listen.host}:${listen.port}: ${err.message} (choose another with --listen-addr)`);
  });
  return { server, port, host: listen.host };
}

/** Where this host's etcd member will be reached, chosen (and kept) before it is added to a cluster. */
export function etcdUrls(dataDir: string, state: Pick<NodeState, 'etcdName' | 'nodeId' | 'advertiseAddr'>) {
  // etcd speaks TLS with the cluster CA's certificates (peer and client): https URLs
  return memberUrls({ dataDir: path.join(dataDir, 'etcd'), name: state.etcdName ?? state.nodeId, host: state.advertiseAddr, tls: true });
}

export interface ManagerRoleOptions {
  dataDir: string;
  state: NodeState;                // role manager; listenAddr/managerAddr set from the bound server
  server: grpc.Server;             // bound; gets the dispatcher and control services
  etcd: { clusterState: 'new' | 'existing'; initialCluster?: string; forceNewCluster?: boolean };
  log: Log;
  resolveImage?: (ref: string) => Promise<string | undefined>;
  /** Runs once the store is open, before the manager starts (init writes the cluster here). */
  bootstrap?: (store: EtcdStore) => Promise<void>;
  /** Called when this manager has demoted itself (a worker from now on), with the remaining managers. */
  onDemoted?: (managers: string[]) => void;
  /** The cluster key (unseals the CA key): every manager holds it. */
  clusterKey: Buffer;
  /** This host's certificate files and material, for etcd's peer and client TLS. */
  etcdTls: { files: { ca: string; cert: string; key: string }; material: () => EtcdTls };
}

/** Who may call what on the TCP port (manager/ca/authz.ts). */
const DISPATCHER_ACCESS: Record<string, Access> = { join: 'anyone', session: 'node', promote: 'node', renewCertificate: 'node' };
const adminOnly = (svc: object): Record<string, Access> => Object.fromEntries(Object.keys(svc).map((m) => [m, 'admin' as Access]));

export class ManagerRole {
  readonly store: EtcdStore;
  readonly manager: Manager;
  readonly control: ReturnType<Manager['controlService']>;
  readonly ca: ClusterCa;
  readonly caApi: ReturnType<typeof caService>;
  readonly secretsApi: ReturnType<typeof secretsService>;
  private readonly opts: ManagerRoleOptions;
  private readonly etcd: EtcdMember;
  private unwatch: (() => void) | undefined;
  private demoting = false;
  /** A demotion in progress has recorded role=worker / the etcd member it removes (kept for its retries). */
  private roleRecorded = false;
  private demotedMemberId: string | undefined;
  private stopped = false;

  private unwatchRemovals: (() => void) | undefined;
  private stopRotation: (() => void) | undefined;

  private constructor(opts: ManagerRoleOptions, etcd: EtcdMember, store: EtcdStore, manager: Manager, ca: ClusterCa, rotator: RootRotator) {
    this.opts = opts;
    this.etcd = etcd;
    this.store = store;
    this.manager = manager;
    this.ca = ca;
    this.control = manager.controlService();
    this.caApi = caService({ ca, store, log: (m) => opts.log.info(m), rotator });
    this.secretsApi = secretsService({ store, clusterKey: () => opts.clusterKey, log: (m) => opts.log.info(`secrets: ${m}`) });
  }

  static async start(opts: ManagerRoleOptions): Promise<ManagerRole> {
    const { state, log } = opts;
    // the roots etcd trusts: it reads them only when it starts (root rotation checks them)
    const etcdRoots = await readFile(opts.etcdTls.files.ca, 'utf8').catch(() => '');
    const etcd = await startEtcdMember({
      tls: opts.etcdTls,
      dataDir: path.join(opts.dataDir, 'etcd'),
      name: state.etcdName ?? state.nodeId,
      host: state.advertiseAddr,
      clusterState: opts.etcd.clusterState,
      initialCluster: opts.etcd.initialCluster,
      forceNewCluster: opts.etcd.forceNewCluster,
      log: (line: string) => log.debug(`etcd: ${line}`),
    });
    let store: EtcdStore | undefined;
    try {
      store = await EtcdStore.open({ endpoints: [etcd.clientUrl], tls: opts.etcdTls.material, managerId: state.nodeId, log: (m: string) => log.info(`store: ${m}`) });
      if (opts.bootstrap) await opts.bootstrap(store);
      const endpoints = [etcd.clientUrl];
      const ca = new ClusterCa({ store, clusterKey: opts.clusterKey });
      const manager = new Manager({
        ca: { issueNode: (csr, id, r, ips) => ca.issueNode(csr, id, r, ips), rootsPem: () => ca.rootsPem(), clusterKey: () => opts.clusterKey },
        store,
        leadership: store.leadership(state.nodeId),
        nodeId: state.nodeId,
        addr: state.managerAddr as string,
        log,
        resolveImage: opts.resolveImage,
        membership: {
          add: async (name, peerUrl) => {
            // a retried join or promotion finds the member it added before (not started yet)
            const members = await listMembers({ endpoints, tls: opts.etcdTls.material() });
            const known = members.find((m) => m.peerUrls.includes(peerUrl));
            if (known) {
              const initial = members.flatMap((m) => (m === known ? [`${name}=${peerUrl}`] : m.peerUrls.map((u) => `${m.name}=${u}`)));
              return { memberId: known.id, initialCluster: initial };
            }
            const r = await addMember({ endpoints, tls: opts.etcdTls.material() }, peerUrl, name);
            return { memberId: r.member.id, initialCluster: r.initialCluster.split(',') };
          },
        },
      });
      const st = store;
      const rotator = new RootRotator({
        ca, store, selfId: state.nodeId, tls: opts.etcdTls.material, isLeader: () => st.leadership(state.nodeId).isLeader(), log: (m) => log.info(m), etcdRoots,
        etcdMember: { rootsOnDisk: () => readFile(opts.etcdTls.files.ca, 'utf8').catch(() => ''), restart: () => etcd.restart() },
      });
      const role = new ManagerRole(opts, etcd, store, manager, ca, rotator);
      const authz = { view: () => st.view(), now: Date.now, log: (m: string) => log.info(`authz: ${m}`) };
      const control = role.control as unknown as grpc.UntypedServiceImplementation;
      opts.server.addService(ControlService, guard(control, adminOnly(ControlService), authz));
      opts.server.addService(DispatcherService, guard(manager.dispatcherService() as unknown as grpc.UntypedServiceImplementation, DISPATCHER_ACCESS, authz));
      opts.server.addService(CaService, guard(role.caApi as unknown as grpc.UntypedServiceImplementation, adminOnly(CaService), authz));
      opts.server.addService(CaNodeService, guard(rotator.nodeService() as unknown as grpc.UntypedServiceImplementation, { watchRoots: 'node' }, authz));
      opts.server.addService(SecretsService, guard(role.secretsApi as unknown as grpc.UntypedServiceImplementation, adminOnly(SecretsService), authz));
      role.stopRotation = rotator.start();
      role.unwatchRemovals = ca.watchRemovals((m) => log.info(m), () => st.leadership(state.nodeId).isLeader());
      manager.start();
      await role.claimManagerRole();
      role.watchOwnRole();
      role.watchDemotedDeadManagers(endpoints);
      log.info(`gantryd: manager listening on ${state.listenAddr}, reachable at ${state.managerAddr}`);
      return role;
    } catch (err) {
      await store?.close().catch(() => {});
      await etcd.stop().catch(() => {});
      throw err;
    }
  }

  /**
   * Records on our node object that we are a manager, where we are reached, and our etcd member
   * (a joining or promoted manager does this itself once its member has restored the quorum).
   */
  private async claimManagerRole(): Promise<void> {
    const id = this.opts.state.nodeId;
    const members = await listMembers({ endpoints: [this.etcd.clientUrl], tls: this.opts.etcdTls.material() }).catch(() => []);
    const memberId = members.find((m) => m.peerUrls.includes(this.etcd.peerUrl))?.id ?? '';
    const want = { addr: this.opts.state.managerAddr as string, etcdMemberId: memberId, etcdPeerUrl: this.etcd.peerUrl, etcdClientUrl: this.etcd.clientUrl };
    await retryUpdate(this.store, id, (n) => {
      const ms = n.managerStatus;
      if (n.role === NodeRole.NODE_ROLE_MANAGER && ms && ms.addr === want.addr && ms.etcdMemberId === want.etcdMemberId && ms.etcdClientUrl === want.etcdClientUrl) return undefined;
      return { ...n, role: NodeRole.NODE_ROLE_MANAGER, managerStatus: { leader: ms?.leader ?? false, reachability: 'reachable', ...want } };
    }).catch((err) => this.opts.log.warn(`manager: recording this manager on its node: ${(err as Error).message}`));
  }

  /** `gantry node demote` of this host: it acts on its own node object's desired role. */
  private watchOwnRole(): void {
    const id = this.opts.state.nodeId;
    const check = (n: Node | undefined) => {
      if (n?.spec && n.spec.desiredRole === NodeRole.NODE_ROLE_WORKER && !this.demoting) {
        this.demoting = true;
        this.demoteUntilDone();
      }
    };
    this.unwatch = this.store.subscribe((events) => {
      for (const e of events) if (e.kind === 'nodes' && e.op === 'put' && e.object.id === id) check(e.object);
    });
    check(this.store.view().get('nodes', id));
  }

  /**
   * Once begun, a demotion is carried to its end, also when the node is promoted again meanwhile
   * (gantryd then promotes the worker anew: wantedRole in cli/daemon/node.ts). Given up half-way,
   * it left a manager that no longer campaigns, recorded as a worker, that nobody promoted again
   * (two managers demoted at once: the second removal timed out while the first settled).
   */
  private demoteUntilDone(): void {
    void this.demote().catch((err) => {
      if (this.stopped) return;
      this.opts.log.error(`manager: demotion failed, trying again in 2 s: ${(err as Error).message}`);
      const retry = setTimeout(() => {
        if (!this.stopped) this.demoteUntilDone();
      }, 2000);
      retry.unref();
    });
  }

  /**
   * A manager demoted while its host is down cannot remove its own etcd member: the leader does it
   * for it (its vote would otherwise count against the quorum for ever) and records it as a worker.
   */
  private watchDemotedDeadManagers(endpoints: string[]): void {
    const busy = new Set<string>();
    const sweep = () => {
      if (!this.store.leadership(this.opts.state.nodeId).isLeader()) return;
      for (const n of this.store.view().list('nodes')) {
        const dead = n.status?.state === NodeHealth.NODE_STATE_DOWN;
        if (n.id === this.opts.state.nodeId || n.role !== NodeRole.NODE_ROLE_MANAGER || n.spec?.desiredRole !== NodeRole.NODE_ROLE_WORKER || !dead || busy.has(n.id)) continue;
        busy.add(n.id);
        void this.removeDeadManager(n, endpoints)
          .catch((err) => this.opts.log.warn(`manager: removing the etcd member of demoted node ${n.id}: ${(err as Error).message}`))
          .finally(() => busy.delete(n.id));
      }
    };
    const unsubscribe = this.store.subscribe((events) => {
      if (events.some((e) => e.kind === 'nodes')) sweep();
    });
    const previous = this.unwatch;
    this.unwatch = () => {
      previous?.();
      unsubscribe();
    };
    sweep();
  }

  private async removeDeadManager(n: Node, endpoints: string[]): Promise<void> {
    const members = await listMembers({ endpoints, tls: this.opts.etcdTls.material() });
    const member = members.find((m) => m.id === n.managerStatus?.etcdMemberId || (n.managerStatus?.etcdPeerUrl && m.peerUrls.includes(n.managerStatus.etcdPeerUrl)));
    if (member) await removeMember({ endpoints, tls: this.opts.etcdTls.material() }, member.id);
    await retryUpdate(this.store, n.id, (x) => (x.role === NodeRole.NODE_ROLE_MANAGER ? { ...x, role: NodeRole.NODE_ROLE_WORKER, managerStatus: undefined } : undefined));
    this.opts.log.info(`manager: demoted node ${n.id} is down: removed its etcd member ${member?.id ?? '(already gone)'} for it`);
  }

  /**
   * Demotion, in an order that never leaves the cluster without quorum: step down as leader, record
   * role=worker (we still count in the quorum), remove our etcd member, then stop and forget etcd.
   */
  private async demote(): Promise<void> {
    const { log, state } = this.opts;
    log.info('manager: this node was demoted: handing over and leaving etcd');
    const leadership = this.store.leadership(state.nodeId);
    if (leadership.isLeader()) await leadership.resign();
    const self = this.store.view().get('nodes', state.nodeId);
    this.demotedMemberId ??= self?.managerStatus?.etcdMemberId;
    const memberId = this.demotedMemberId;
    if (!this.roleRecorded) {
      // once: after our member is gone a retry could not write it (our store reads our etcd)
      await retryUpdate(this.store, state.nodeId, (n) => ({ ...n, role: NodeRole.NODE_ROLE_WORKER, managerStatus: undefined }));
      this.roleRecorded = true;
    }
    const others = this.store
      .view()
      .list('nodes')
      .filter((n) => n.id !== state.nodeId && n.role === NodeRole.NODE_ROLE_MANAGER && n.managerStatus?.etcdClientUrl)
      .map((n) => n.managerStatus?.etcdClientUrl as string);
    const target = others.length > 0 ? others : [this.etcd.clientUrl];
    const remaining = this.store
      .view()
      .list('nodes')
      .filter((n) => n.id !== state.nodeId && n.role === NodeRole.NODE_ROLE_MANAGER && n.managerStatus?.addr)
      .map((n) => n.managerStatus?.addr as string);
    const members = await listMembers({ endpoints: target, tls: this.opts.etcdTls.material() });
    const mine = members.find((m) => m.id === memberId || m.peerUrls.includes(this.etcd.peerUrl));
    if (mine) await removeMember({ endpoints: target, tls: this.opts.etcdTls.material() }, mine.id);
    await this.stop();
    await rm(path.join(this.opts.dataDir, 'etcd'), { recursive: true, force: true });
    this.opts.onDemoted?.(remaining);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unwatch?.();
    this.unwatchRemovals?.();
    this.stopRotation?.();
    await this.manager.stop();
    await this.store.close();
    await this.etcd.stop();
  }
}
