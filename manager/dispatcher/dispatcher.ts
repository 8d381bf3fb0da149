// The dispatcher: the only manager component workers talk to. Join admits a host with a token;
// Session holds one stream per worker (session.ts). Every manager runs one; sessions live on the
// manager's etcd lease, so workers of a manager that dies reconnect to another.
import * as grpc from '@grpc/grpc-js';
import type { LogMessage } from '../../proto/gen/gantry/v1/control.ts';
import type { DispatcherServer, JoinRequest, JoinResponse, PromoteRequest, RenewCertificateRequest, RenewCertificateResponse } from '../../proto/gen/gantry/v1/dispatcher.ts';
import { type Node, NodeAvailability, NodeRole, NodeState, type Task } from '../../proto/gen/gantry/v1/objects.ts';
import { newId } from '../ids.ts';
import type { Store } from '../store/types.ts';
import { type SessionDeps, WorkerSession } from './session.ts';
import { StatusWriter } from './status-writer.ts';
import { callerId } from '../ca/authz.ts';
import { secretValuesFor } from '../secrets/values.ts';
import { explainRefusedToken, hashSecret, newNodeSecret, secretMatches, tokenRole } from './tokens.ts';

/** etcd membership, as the composition root provides it (only manager/store talks to etcd). */
export interface Membership {
  /** Adds a voting member; returns its id and the initial-cluster entries (name=peerURL) it must start with. */
  add(name: string, peerUrl: string): Promise<{ memberId: string; initialCluster: string[] }>;
}

export interface DispatcherOptions {
  store: Store;
  clock: { now(): number };
  log?: (m: string) => void;
  managerId: string;
  managerAddr: string;
  membership?: Membership;
  /**
   * The cluster CA. With it, joins must send a CSR and get a certificate, and sessions, promotions
   * and renewals are authenticated by the caller's certificate (CN = node id). Without it (unit
   * tests on an insecure socket) nodes authenticate with their node secret.
   */
  ca?: DispatcherCa;
}

export interface DispatcherCa {
  /** `ips`: the node's addresses, put in the certificate (etcd members check them). */
  issueNode(csrPem: string, nodeId: string, role: 'manager' | 'worker', ips?: string[]): Promise<string>;
  rootsPem(): string;
  clusterKey(): Buffer;
}

export interface LogSubscribeOptions {
  follow: boolean;
  tail: number;
  sinceMs: number;
}

const DEFAULT_HEARTBEAT_MS = 1000;
const DEFAULT_GRACE_MS = 3000;

export class Dispatcher {
  private readonly opts: DispatcherOptions;
  private readonly log: (m: string) => void;
  private readonly statuses: StatusWriter;
  private readonly sessions = new Map<string, WorkerSession>();

  constructor(opts: DispatcherOptions) {
    this.opts = opts;
    this.log = opts.log ?? (() => {});
    this.statuses = new StatusWriter(opts.store, { log: this.log });
  }

  /** Manager addresses workers may reach (every manager's dispatcher). */
  managers(): string[] {
    return this.opts.store
      .view()
      .list('nodes')
      .filter((n) => n.role === NodeRole.NODE_ROLE_MANAGER && n.managerStatus?.addr)
      .map((n) => n.managerStatus?.addr as string);
  }

  private sessionDeps(): SessionDeps {
    const cluster = () => this.opts.store.view().cluster()?.spec;
    return {
      store: this.opts.store,
      clock: this.opts.clock,
      log: this.log,
      statuses: this.statuses,
      managerId: this.opts.managerId,
      managerAddr: this.opts.managerAddr,
      heartbeatMs: () => cluster()?.heartbeatPeriodMs || DEFAULT_HEARTBEAT_MS,
      graceMs: () => cluster()?.nodeDownGraceMs || DEFAULT_GRACE_MS,
      managers: () => this.managers(),
      certificates: this.opts.ca !== undefined,
      secretValues: this.opts.ca ? (tasks, sent) => secretValuesFor(this.opts.store.view(), tasks, sent, (this.opts.ca as DispatcherCa).clusterKey(), this.log) : undefined,
      onOpen: (s) => {
        const old = this.sessions.get(s.nodeId);
        this.sessions.set(s.nodeId, s);
        if (old && old !== s) this.log(`node ${s.nodeId} replaced its session ${old.sessionId}`);
      },
      onClose: (s) => {
        if (this.sessions.get(s.nodeId) === s) this.sessions.delete(s.nodeId);
      },
    };
  }

  service(): DispatcherServer {
    return {
      join: (call, cb) => {
        this.join(call.request).then(
          (res) => cb(null, res),
          (err: grpc.ServiceError) => cb(err.code !== undefined ? err : { code: grpc.status.INTERNAL, details: String(err), name: 'Error', message: String(err), metadata: new grpc.Metadata() }),
        );
      },
      session: (call) => new WorkerSession(call, this.sessionDeps()).run(),
      promote: (call, cb) => {
        this.promote(call.request, callerId(call)).then(
          (res) => cb(null, res),
          (err: grpc.ServiceError) => cb(err.code !== undefined ? err : { code: grpc.status.INTERNAL, details: String(err), name: 'Error', message: String(err), metadata: new grpc.Metadata() }),
        );
      },
      renewCertificate: (call, cb) => {
        this.renew(call.request, callerId(call)).then(
          (res) => cb(null, res),
          (err: grpc.ServiceError) => cb(err.code !== undefined ? err : { code: grpc.status.INTERNAL, details: String(err), name: 'Error', message: String(err), metadata: new grpc.Metadata() }),
        );
      },
    };
  }

  /** A node renews its certificate; its role comes from the store (so promotion/demotion change it). */
  private async renew(req: RenewCertificateRequest, caller: string | undefined): Promise<RenewCertificateResponse> {
    const fail = (code: grpc.status, details: string) => Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
    const ca = this.opts.ca;
    if (!ca || !caller) throw fail(grpc.status.UNAUTHENTICATED, 'renewing a certificate needs the current certificate of a node');
    const node = this.opts.store.view().get('nodes', caller);
    if (!node) throw fail(grpc.status.PERMISSION_DENIED, `node ${caller} is not part of this cluster`);
    const role = node.role === NodeRole.NODE_ROLE_MANAGER && node.spec?.desiredRole !== NodeRole.NODE_ROLE_WORKER ? 'manager' : 'worker';
    const certificate = await this.issue(ca, req.csr, caller, role);
    this.log(`renewed the certificate of node ${caller} (${role})`);
    return { certificate: Buffer.from(certificate), rootCaCert: Buffer.from(ca.rootsPem()) };
  }

  private async issue(ca: DispatcherCa, csr: Uint8Array, nodeId: string, role: 'manager' | 'worker', ip = ''): Promise<string> {
    const ips = [ip || this.opts.store.view().get('nodes', nodeId)?.status?.addr || ''].filter((a) => /^[\d.]+$|:/.test(a));
    try {
      return await ca.issueNode(Buffer.from(csr).toString(), nodeId, role, ips);
    } catch (err) {
      const e = err as Error;
      const code = e.name === 'CsrError' ? grpc.status.INVALID_ARGUMENT : grpc.status.UNAVAILABLE;
      throw Object.assign(new Error(e.message), { code, details: `issuing a certificate for node ${nodeId}: ${e.message}`, metadata: new grpc.Metadata() });
    }
  }

  private async join(req: JoinRequest): Promise<JoinResponse> {
    const view = this.opts.store.view();
    const cluster = view.cluster();
    const fail = (code: grpc.status, details: string) => Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
    if (!cluster) throw fail(grpc.status.UNAVAILABLE, 'this manager has no cluster yet: run gantry init on it first');
    const role = tokenRole(cluster, req.token);
    if (!role) throw fail(grpc.status.PERMISSION_DENIED, explainRefusedToken(cluster, req.token));
    const ca = this.opts.ca;
    if (ca && !req.csr?.length) throw fail(grpc.status.INVALID_ARGUMENT, 'a join must send a certificate request (csr) for the joining host\'s key');
    if (role === 'manager' && (!req.etcdPeerUrl || !req.managerAddr)) {
      throw fail(grpc.status.INVALID_ARGUMENT, 'a manager join must say where its etcd member and its gRPC server will listen (etcd_peer_url, manager_addr)');
    }
    const id = newId();
    const secret = newNodeSecret();
    const now = this.opts.clock.now();
    const nodeRole = role === 'manager' ? NodeRole.NODE_ROLE_MANAGER : NodeRole.NODE_ROLE_WORKER;
    const node: Node = {
      id,
      spec: { name: '', labels: {}, desiredRole: nodeRole, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE },
      description: req.description,
      status: { state: NodeState.NODE_STATE_UNKNOWN, message: 'joined', addr: req.advertiseAddr, lastHeartbeat: now },
      role: NodeRole.NODE_ROLE_WORKER,
      secretHash: hashSecret(secret),
    };
    const res = await this.opts.store.commit([{ op: 'create', kind: 'nodes', object: node }]);
    if (!res.ok) throw fail(grpc.status.ABORTED, `could not record node ${id}: ${res.conflict.reason}; try again`);
    await this.opts.store.waitFor(res.revision);
    this.log(`node ${id} (${req.description?.hostname}) joined as ${role}`);
    const certificate = ca ? Buffer.from(await this.issue(ca, req.csr, id, role, req.advertiseAddr)) : Buffer.alloc(0);
    const base: JoinResponse = {
      nodeId: id,
      nodeSecret: ca ? '' : secret,
      role: NodeRole.NODE_ROLE_WORKER,
      managers: this.managers(),
      clusterId: cluster.id,
      etcdInitialCluster: [],
      etcdMemberName: '',
      certificate,
      rootCaCert: Buffer.from(ca?.rootsPem() ?? ''),
      clusterKey: role === 'manager' && ca ? ca.clusterKey() : Buffer.alloc(0),
    };
    if (role === 'worker') return base;
    return { ...base, ...(await this.addManager(id, req.etcdMemberName || id, req.etcdPeerUrl, req.managerAddr)) };
  }

  /** A joined worker whose desired role became manager asks for its etcd member (after `node promote`). */
  private async promote(req: PromoteRequest, caller: string | undefined): Promise<JoinResponse> {
    const fail = (code: grpc.status, details: string) => Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
    const view = this.opts.store.view();
    const ca = this.opts.ca;
    const nodeId = ca ? caller : req.nodeId;
    const node = nodeId ? view.get('nodes', nodeId) : undefined;
    if (!node || (!ca && !secretMatches(req.nodeSecret, node.secretHash))) throw fail(grpc.status.UNAUTHENTICATED, `node ${nodeId || req.nodeId} is not part of this cluster`);
    if (ca && !req.csr?.length) throw fail(grpc.status.INVALID_ARGUMENT, 'a promotion must send a certificate request (csr) for the manager certificate');
    if (node.spec?.desiredRole !== NodeRole.NODE_ROLE_MANAGER) {
      throw fail(grpc.status.FAILED_PRECONDITION, `node ${req.nodeId} was not promoted: run \`gantry node promote ${req.nodeId}\` on a manager first`);
    }
    const certificate = ca ? Buffer.from(await this.issue(ca, req.csr, node.id, 'manager', req.managerAddr.replace(/:\d+$/, ''))) : Buffer.alloc(0);
    const added = await this.addManager(node.id, req.etcdMemberName || node.id, req.etcdPeerUrl, req.managerAddr);
    return {
      nodeId: node.id,
      nodeSecret: '',
      clusterId: view.cluster()?.id ?? '',
      ...added,
      certificate,
      rootCaCert: Buffer.from(ca?.rootsPem() ?? ''),
      clusterKey: ca ? ca.clusterKey() : Buffer.alloc(0),
    };
  }

  /**
   * Adds `nodeId`'s etcd member and answers at once: the cluster has no quorum again until the new
   * member runs, so nothing else is written here. The new manager records its role itself once its
   * member is up (cli/daemon/manager-role.ts). A retried join finds its peer URL already added.
   */
  private async addManager(nodeId: string, memberName: string, peerUrl: string, managerAddr: string): Promise<Pick<JoinResponse, 'role' | 'etcdInitialCluster' | 'etcdMemberName' | 'managers'>> {
    const fail = (code: grpc.status, details: string) => Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
    if (!this.opts.membership) throw fail(grpc.status.UNIMPLEMENTED, 'this manager cannot add etcd members (it uses an external etcd)');
    const managers = this.opts.store.view().list('nodes').filter((n) => n.role === NodeRole.NODE_ROLE_MANAGER);
    if (managers.some((m) => m.managerStatus?.etcdPeerUrl === peerUrl && m.id !== nodeId)) {
      throw fail(grpc.status.ALREADY_EXISTS, `etcd peer URL ${peerUrl} already belongs to another manager`);
    }
    const added = await this.opts.membership.add(memberName, peerUrl);
    this.log(`node ${nodeId} joins the managers (etcd member ${added.memberId} at ${peerUrl})`);
    return { role: NodeRole.NODE_ROLE_MANAGER, etcdInitialCluster: added.initialCluster, etcdMemberName: memberName, managers: [managerAddr, ...this.managers()] };
  }

  /**
   * Streams the logs of `tasks` from the workers that run them. A node that is not connected here
   * yields one message with `error` set; the other nodes keep streaming (never fail the whole stream).
   */
  async subscribe(tasks: Task[], opts: LogSubscribeOptions, onMessage: (m: LogMessage) => void, signal: AbortSignal): Promise<void> {
    const view = this.opts.store.view();
    const byNode = new Map<string, Task[]>();
    for (const t of tasks) {
      if (!t.nodeId) continue;
      byNode.set(t.nodeId, [...(byNode.get(t.nodeId) ?? []), t]);
    }
    const parts = [...byNode].map(
      ([nodeId, nodeTasks]) =>
        new Promise<void>((resolve) => {
          const hostname = view.get('nodes', nodeId)?.description?.hostname ?? nodeId;
          const base = (t: Task | undefined): LogMessage => ({
            taskId: t?.id ?? '',
            nodeId,
            serviceName: t?.serviceName ?? '',
            slot: t?.slot ?? 0,
            stream: '',
            timeMs: 0,
            data: Buffer.alloc(0),
            nodeHostname: hostname,
            error: '',
          });
          const session = this.sessions.get(nodeId);
          if (!session) {
            onMessage({ ...base(nodeTasks[0]), error: `node ${hostname} is not connected to this manager: its logs are unavailable` });
            return resolve();
          }
          const byId = new Map(nodeTasks.map((t) => [t.id, t]));
          const cancel = session.subscribeLogs(
            { subscriptionId: newId(), taskIds: [...byId.keys()], follow: opts.follow, tail: opts.tail, sinceMs: opts.sinceMs },
            {
              chunk: (c) => onMessage({ ...base(byId.get(c.taskId)), taskId: c.taskId, stream: c.stream, timeMs: c.timeMs, data: c.data }),
              done: (d) => {
                if (d.error) onMessage({ ...base(nodeTasks[0]), error: d.error });
                signal.removeEventListener('abort', onAbort);
                resolve();
              },
            },
          );
          const onAbort = () => {
            cancel();
            resolve();
          };
          if (signal.aborted) onAbort();
          else signal.addEventListener('abort', onAbort, { once: true });
        }),
    );
    await Promise.all(parts);
  }

  /** The store lost its lease and took a new one: our sessions' keys went with the old one. */
  async reclaimSessions(): Promise<void> {
    await Promise.all([...this.sessions.values()].map((s) => s.writeSessionKey().catch((err) => this.log(`re-writing the session of ${s.nodeId}: ${(err as Error).message}`))));
  }

  async stop(): Promise<void> {
    await this.statuses.stop();
  }
}
