// gantryd's host: the local API on the unix socket, and the roles this host plays — always a
// worker once it is in a cluster, and a manager (manager-role.ts) when it created the cluster,
// joined with a manager token or was promoted. It composes manager/ and worker/, which never
// import each other.
import { createHash } from 'node:crypto';
import { chmodSync } from 'node:fs';
import { mkdir, rm, unlink } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ControlService } from '../../proto/gen/gantry/v1/control.ts';
import { DispatcherClient, type JoinResponse } from '../../proto/gen/gantry/v1/dispatcher.ts';
import { ImagesService } from '../../proto/gen/gantry/v1/images.ts';
import type { InfoResponse, InitRequest, InitResponse, LeaveRequest, LocalJoinRequest, LocalServer } from '../../proto/gen/gantry/v1/local.ts';
import { LocalService } from '../../proto/gen/gantry/v1/local.ts';
import { Cluster, Node, NodeAvailability, NodeState as NodeHealthState, NodeRole } from '../../proto/gen/gantry/v1/objects.ts';
import type { Log } from '../../manager/controller.ts';
import { bootstrapCa, nodeCertLifetime } from '../../manager/ca/ca.ts';
import { CaPinError, certsDir, fetchPinnedRoot } from '../../manager/ca/node-certs.ts';
import { issue, newKeyAndCsr } from '../../manager/ca/pki.ts';
import { newClusterKey } from '../../manager/ca/seal.ts';
import { clientCredentials, TLS_CHANNEL_OPTIONS } from '../../manager/ca/tls.ts';
import { hashSecret, newJoinToken, newNodeSecret, parseJoinToken } from '../../manager/dispatcher/tokens.ts';
import { CaService } from '../../proto/gen/gantry/v1/ca.ts';
import { SecretsService } from '../../proto/gen/gantry/v1/secrets.ts';
import { retryUpdate } from '../../manager/dispatcher/update-node.ts';
import { newId } from '../../manager/ids.ts';
import { describeHost } from '../../worker/describe.ts';
import { imagesService } from '../../worker/image/service.ts';
import { ImageStore } from '../../worker/image/store.ts';
import { createRuntime } from '../../worker/runtime/create.ts';
import type { Runtime } from '../../worker/runtime/types.ts';
import { secretsDirFor } from '../../worker/secrets.ts';
import { Worker } from '../../worker/worker.ts';
import { DEFAULT_PORT, defaultAdvertiseIp, splitHostPort } from './addr.ts';
import { bindServer, etcdUrls, ManagerRole } from './manager-role.ts';
import { loadState, type NodeState, saveState } from './state.ts';
import { NodeTls } from './tls.ts';
import { AutolockService } from '../../proto/gen/gantry/v1/autolock.ts';
import { AutolockKeeper } from '../../manager/ca/autolock-keeper.ts';
import { newUnlockKey, sealUnlockKey } from '../../manager/ca/autolock.ts';
import { keysLockedAtRest, readLockedClusterKey, readLockedTlsKey, removeLockedClusterKey } from '../../manager/ca/autolock-files.ts';
import { AutolockError, autolockService, LOCKED_MESSAGE } from './autolock.ts';
import { serveUnarySocket, type UnarySocket, unaryMethods } from './unary-socket.ts';
import { unarySocketPath } from '../unary-wire.ts';

export { DEFAULT_PORT };
export const VERSION = '0.1.0';

export const DEFAULT_DATA_DIR = '/var/lib/gantry';

/** /run/gantry for the default data dir; another data dir (a second gantryd on this host) gets its own. */
export function defaultExecRoot(dataDir: string): string {
  return path.resolve(dataDir) === DEFAULT_DATA_DIR ? '/run/gantry' : path.join(dataDir, 'exec');
}

export interface DaemonOptions {
  dataDir: string;
  /** Container runtime state that a reboot clears (bundles, sockets, pid files), best on a tmpfs. Default: defaultExecRoot(dataDir). */
  execRoot?: string;
  socket: string;
  listenAddr: string;          // default for `gantry init` and manager joins
  advertiseAddr?: string;
  runtime: string;             // native | runc | crun | sim | default
  cgroupParent: string;
  hostname: string;
  /** Registries (host[:port]) reached over plain HTTP or unverified TLS, like Docker's --insecure-registry. */
  insecureRegistries?: string[];
  log: Log;
}

class LocalError extends Error {
  readonly code: grpc.status;
  constructor(code: grpc.status, message: string) {
    super(message);
    this.code = code;
  }
}

function grpcError(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

export class Daemon {
  private readonly opts: DaemonOptions;
  private readonly log: Log;
  private state: NodeState | undefined;
  private images!: ImageStore;
  private runtime!: Runtime;
  private localServer: grpc.Server | undefined;
  private unarySocket: UnarySocket | undefined;
  private tcpServer: grpc.Server | undefined;
  private managerRole: ManagerRole | undefined;
  private worker: Worker | undefined;
  /** This host's certificate and key (mutual TLS with every other node). */
  private tls!: NodeTls;
  /** Cluster-membership changes (init, join, leave, promote, demote) run one at a time. */
  private busy: Promise<unknown> = Promise.resolve();
  /** Autolock: this manager's cluster key is on disk only wrapped, and nobody has unlocked it yet. */
  private locked = false;
  private keeper: AutolockKeeper | undefined;
  /** The role the managers last asked this node to take: a promotion asked for mid-demotion is acted on once it is a worker. */
  private wantedRole: NodeRole | undefined;
  private readonly execRoot: string;

  constructor(opts: DaemonOptions) {
    this.opts = opts;
    this.execRoot = opts.execRoot ?? defaultExecRoot(opts.dataDir);
    this.log = opts.log;
  }

  async start(): Promise<void> {
    await mkdir(this.opts.dataDir, { recursive: true, mode: 0o700 });
    this.images = await ImageStore.open(path.join(this.opts.dataDir, 'images'), { insecureRegistries: this.opts.insecureRegistries ?? [] });
    this.runtime = await createRuntime(this.opts.runtime, {
      dataDir: this.opts.dataDir,
      execRoot: this.execRoot,
      cgroupParent: this.opts.cgroupParent,
      log: (m: string) => this.log.info(`runtime: ${m}`),
    });
    this.tls = new NodeTls({ dataDir: this.opts.dataDir, log: (m) => this.log.info(m), runtimeKeyFile: this.runtimeKeyFile() });
    await this.tls.load();
    await this.serveLocal();
    this.state = await loadState(this.opts.dataDir);
    if (this.state && !this.tls.current() && !this.tls.keyLocked()) {
      this.log.error(`gantryd: this host is in cluster ${this.state.clusterId} but has no certificate in ${certsDir(this.opts.dataDir)}: run \`gantry leave --force\` and join again`);
    }
    if (this.state?.role === 'manager' && !this.tls.clusterKey() && (await keysLockedAtRest(this.opts.dataDir))) {
      // nothing of the cluster runs (etcd member, manager, worker) until unlocked; containers keep running
      this.locked = true;
      this.log.warn(`gantryd: node ${this.state.nodeId}: ${LOCKED_MESSAGE}`);
    } else if (this.state) {
      if (this.state.role === 'manager') await this.startManager(this.state, { clusterState: 'new' }, undefined, undefined);
      await this.startWorker(this.state);
      this.log.info(`gantryd: node ${this.state.nodeId} (${this.state.role}) started`);
    } else {
      this.log.info('gantryd: not in a cluster yet: run `gantry init` or `gantry join`');
    }
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.busy.then(fn);
    this.busy = run.catch(() => {});
    return run;
  }

  // ---------------------------------------------------------------------------------------------
  // The local API

  private async serveLocal(): Promise<void> {
    const services: Array<[grpc.ServiceDefinition, grpc.UntypedServiceImplementation]> = [
      [LocalService, this.localService() as unknown as grpc.UntypedServiceImplementation],
      [ImagesService, imagesService(this.images) as unknown as grpc.UntypedServiceImplementation],
      [ControlService, this.controlProxy()],
      [CaService, this.caProxy(CaService, 'caApi')],
      [SecretsService, this.caProxy(SecretsService, 'secretsApi')],
      [
        AutolockService,
        autolockService({
          unlock: (key) => this.serialize(() => this.unlock(key)),
          keeper: () => this.keeper ?? (this.locked ? LOCKED_MESSAGE : 'this host runs no manager: run this command on a manager'),
        }) as unknown as grpc.UntypedServiceImplementation,
      ],
    ];
    const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 << 20 });
    for (const [definition, impl] of services) server.addService(definition, impl);
    await mkdir(path.dirname(this.opts.socket), { recursive: true, mode: 0o755 });
    await unlink(this.opts.socket).catch(() => {});
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${this.opts.socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    chmodSync(this.opts.socket, 0o600); // root-only, like docker.sock without a docker group
    this.localServer = server;
    // the same unary methods without http2, for the CLI (cli/unary-wire.ts)
    this.unarySocket = await serveUnarySocket(unarySocketPath(this.opts.socket), unaryMethods(services), (m) => this.log.warn(m));
  }

  /** Control calls on the local socket go to this host's manager, or explain why there is none. */
  private controlProxy(): grpc.UntypedServiceImplementation {
    const impl: grpc.UntypedServiceImplementation = {};
    const unavailable = () =>
      grpcError(
        grpc.status.FAILED_PRECONDITION,
        this.locked
          ? LOCKED_MESSAGE
          : !this.state
          ? 'this host is not part of a cluster: run `gantry init` to create one, or `gantry join` to join one'
          : `this host is a worker: run cluster commands on a manager (${this.state.managers.join(', ')})`,
      );
    for (const [name, def] of Object.entries(ControlService)) {
      const method = name as keyof typeof ControlService;
      impl[method] = def.responseStream
        ? (call: grpc.ServerWritableStream<unknown, unknown>) => {
            const target = this.managerRole?.control[method] as ((c: unknown) => void) | undefined;
            if (!target) return call.emit('error', unavailable());
            target(call);
          }
        : (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
            const target = this.managerRole?.control[method] as ((c: unknown, cb: unknown) => void) | undefined;
            if (!target) return cb(unavailable());
            target(call, cb);
          };
    }
    return impl;
  }

  /** The CA's operator API on the local socket: this host's manager, as is (the socket is root-only). */
  private caProxy(service: object, api: 'caApi' | 'secretsApi'): grpc.UntypedServiceImplementation {
    const impl: grpc.UntypedServiceImplementation = {};
    for (const name of Object.keys(service)) {
      impl[name] = (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        const target = (this.managerRole?.[api] as unknown as Record<string, (c: unknown, cb: unknown) => void> | undefined)?.[name];
        if (!target) return cb(grpcError(grpc.status.FAILED_PRECONDITION, this.locked ? LOCKED_MESSAGE : 'this host is not a manager: run this command on a manager'));
        target(call, cb);
      };
    }
    return impl;
  }

  private localService(): LocalServer {
    const unary =
      <Req, Res>(fn: (req: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> =>
      (call, cb) => {
        this.serialize(() => fn(call.request)).then(
          (res) => cb(null, res),
          (err: Error) => cb(grpcError(err instanceof LocalError ? err.code : grpc.status.INTERNAL, err.message)),
        );
      };
    return {
      init: unary((req: InitRequest) => this.init(req)),
      join: unary((req: LocalJoinRequest) => this.join(req)),
      leave: unary((req: LeaveRequest) => this.leave(req).then(() => ({}))),
      info: (_call, cb) => cb(null, this.info()),
    };
  }

  private info(): InfoResponse {
    const s = this.state;
    return {
      nodeId: s?.nodeId ?? '',
      role: s?.role === 'manager' ? NodeRole.NODE_ROLE_MANAGER : NodeRole.NODE_ROLE_WORKER,
      clusterId: s?.clusterId ?? '',
      state: !s ? 'inactive' : this.locked ? 'locked' : this.worker?.agent.connected() ? 'active' : 'pending',
      managers: s?.managers ?? [],
      dataDir: this.opts.dataDir,
      runtime: this.runtime.name,
      isLeader: this.managerRole?.store.leadership(s?.nodeId ?? '').isLeader() ?? false,
      hostname: this.opts.hostname,
      sessionManager: this.worker?.agent.sessionManager() ?? '',
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Creating, joining and leaving a cluster

  private notInCluster(): void {
    if (this.state) {
      throw new LocalError(grpc.status.ALREADY_EXISTS, `this host is already in cluster ${this.state.clusterId} as a ${this.state.role}: run \`gantry leave\` first`);
    }
  }

  private advertiseIp(requested: string): string {
    return requested ? splitHostPort(requested, DEFAULT_PORT).host : this.opts.advertiseAddr || defaultAdvertiseIp();
  }

  private async init(req: InitRequest): Promise<InitResponse> {
    if (req.forceNewCluster && this.state) return this.forceNewCluster();
    this.notInCluster();
    const nodeId = newId();
    const clusterId = newId();
    const secret = newNodeSecret();
    const advertiseIp = this.advertiseIp(req.advertiseAddr);
    const state: NodeState = {
      nodeId,
      nodeSecret: secret,
      clusterId,
      role: 'manager',
      managers: [],
      listenAddr: req.listenAddr || this.opts.listenAddr,
      advertiseAddr: advertiseIp,
      etcdName: nodeId,
    };
    let workerToken = '';
    try {
      // the cluster key seals the CA key in etcd; this manager keeps it (0600) and hands it to managers that join
      // with autolock the key never lies on disk in clear: the keeper writes it wrapped once the store runs
      const unlockKey = req.autolock && !req.forceNewCluster ? newUnlockKey() : undefined;
      if (unlockKey) {
        this.tls.useClusterKey(newClusterKey());
        await this.tls.setKeyAtRest(this.tls.clusterKey()); // this node's TLS key is written sealed too
      } else await this.tls.setClusterKey(newClusterKey());
      // the CA and this node's certificate come first: etcd starts with them (peer and client TLS)
      const now = Date.now();
      const { root, fields } = await bootstrapCa(this.tls.clusterKey() as Buffer, clusterId, now);
      workerToken = newJoinToken('worker', fields.rootCaCert);
      const own = await newKeyAndCsr();
      const certPem = await issue(root, own.csrPem, { id: nodeId, role: 'manager', clusterId, ips: [advertiseIp, '127.0.0.1'] }, now, nodeCertLifetime(undefined));
      await this.tls.set({ keyPem: own.keyPem, certPem, caPem: root.certPem });
      await this.startManager(state, {
        clusterState: 'new',
        forceNewCluster: req.forceNewCluster,
        bootstrap: async (store) => {
          if (req.forceNewCluster) return;
          const res = await store.commit([
            {
              op: 'create',
              kind: 'clusters',
              object: Cluster.fromPartial({
                id: clusterId,
                spec: { name: 'default', taskHistoryRetentionLimit: 5, heartbeatPeriodMs: 1000, nodeDownGraceMs: 3000 },
                joinTokens: { worker: workerToken, manager: newJoinToken('manager', fields.rootCaCert) },
                ...fields,
                unlockKeySealed: unlockKey ? sealUnlockKey(this.tls.clusterKey() as Buffer, unlockKey) : Buffer.alloc(0),
              }),
            },
            {
              op: 'create',
              kind: 'nodes',
              object: Node.fromPartial({
                id: nodeId,
                spec: { name: '', labels: {}, desiredRole: NodeRole.NODE_ROLE_MANAGER, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE },
                description: this.description(),
                status: { state: NodeHealthState.NODE_STATE_UNKNOWN, message: 'created the cluster', addr: advertiseIp, lastHeartbeat: now },
                role: NodeRole.NODE_ROLE_MANAGER,
                managerStatus: { leader: false, addr: state.managerAddr as string, reachability: 'reachable', etcdMemberId: '', etcdPeerUrl: '', etcdClientUrl: '' },
                secretHash: hashSecret(secret),
              }),
            },
          ]);
          if (!res.ok) throw new Error(`creating the cluster failed: ${res.conflict.kind} ${res.conflict.id} ${res.conflict.reason}`);
          await store.waitFor(res.revision);
        },
      });
      state.managers = [state.managerAddr as string];
      await saveState(this.opts.dataDir, state);
      this.state = state;
      await this.startWorker(state);
    } catch (err) {
      // leave nothing half made: no etcd member, no data, no listener
      await this.stopRoles();
      await rm(path.join(this.opts.dataDir, 'etcd'), { recursive: true, force: true });
      await this.forgetCertificates();
      this.state = undefined;
      throw new LocalError(grpc.status.INTERNAL, `gantry init failed: ${(err as Error).message}`);
    }
    return { nodeId, clusterId, workerJoinCommand: `gantry join --token ${workerToken} ${state.managerAddr}` };
  }

  /**
   * Disaster recovery (`gantry init --force-new-cluster` on a surviving manager): restart this
   * manager's etcd member as a one-member cluster from its own data. Services, tasks, workers and
   * tokens stay; the other managers are dropped from the managers (they must leave and join again).
   */
  private async forceNewCluster(): Promise<InitResponse> {
    const s = this.state;
    if (this.locked) throw new LocalError(grpc.status.FAILED_PRECONDITION, `${LOCKED_MESSAGE}; then run --force-new-cluster`);
    if (!s || s.role !== 'manager' || !this.managerRole) {
      throw new LocalError(grpc.status.FAILED_PRECONDITION, 'only a manager holds a copy of the cluster state: run --force-new-cluster on a surviving manager');
    }
    this.log.warn('gantryd: forcing a new one-manager cluster from this manager\'s state');
    this.keeper?.stop();
    await this.managerRole.stop();
    this.managerRole = undefined;
    this.tcpServer?.forceShutdown();
    this.tcpServer = undefined;
    const next: NodeState = { ...s, managers: [] };
    await this.startManager(next, {
      clusterState: 'new',
      forceNewCluster: true,
      bootstrap: async (store) => {
        const others = store.view().list('nodes').filter((n) => n.id !== s.nodeId && n.role === NodeRole.NODE_ROLE_MANAGER);
        for (const n of others) {
          await retryUpdate(store, n.id, (x) => ({
            ...x,
            role: NodeRole.NODE_ROLE_WORKER,
            spec: x.spec ? { ...x.spec, desiredRole: NodeRole.NODE_ROLE_WORKER } : x.spec,
            managerStatus: undefined,
            status: { state: NodeHealthState.NODE_STATE_DOWN, message: 'dropped from the managers by --force-new-cluster: on that host run `gantry leave --force` and join again', addr: x.status?.addr ?? '', lastHeartbeat: x.status?.lastHeartbeat ?? 0 },
          }));
        }
      },
    });
    next.managers = [next.managerAddr as string];
    await saveState(this.opts.dataDir, next);
    this.state = next;
    this.worker?.agent.setManagers(next.managers);
    const role = this.managerRole as ManagerRole | undefined; // set again by startManager
    const token = role?.store.view().cluster()?.joinTokens?.worker ?? '';
    return { nodeId: s.nodeId, clusterId: s.clusterId, workerJoinCommand: `gantry join --token ${token} ${next.managerAddr}` };
  }

  private async join(req: LocalJoinRequest): Promise<InitResponse> {
    this.notInCluster();
    if (!req.token) throw new LocalError(grpc.status.INVALID_ARGUMENT, 'a join token is required: get one with `gantry join-token worker` on a manager');
    if (!req.remoteAddr) throw new LocalError(grpc.status.INVALID_ARGUMENT, 'the address of a manager is required (IP:PORT)');
    const remote = splitHostPort(req.remoteAddr, DEFAULT_PORT);
    const remoteAddr = `${remote.host}:${remote.port}`;
    const advertiseIp = this.advertiseIp(req.advertiseAddr);
    const token = parseJoinToken(req.token);
    if (!token) throw new LocalError(grpc.status.INVALID_ARGUMENT, 'this is not a gantry join token (GNTRY-1-<CA digest>-<secret>-<w|m>): copy it again from `gantry join-token worker` on a manager');
    const asManager = token.role === 'manager';
    // a manager needs its ports before it asks: the others must reach its etcd member and server
    const etcdName = newId();
    let bound: Awaited<ReturnType<typeof bindServer>> | undefined;
    let peerUrl = '';
    if (asManager) {
      bound = await bindServer(req.listenAddr || this.opts.listenAddr, this.tls.serverCredentials);
      peerUrl = (await etcdUrls(this.opts.dataDir, { etcdName, nodeId: etcdName, advertiseAddr: advertiseIp })).peerUrl;
    }
    const managerAddr = bound ? `${advertiseIp}:${bound.port}` : '';
    try {
      // the manager must prove it holds the CA the token names before the token leaves this host
      const caPem = await fetchPinnedRoot(remote, token.digest).catch((err: Error) => {
        throw new LocalError(err instanceof CaPinError ? grpc.status.PERMISSION_DENIED : grpc.status.UNAVAILABLE, err.message);
      });
      const own = await newKeyAndCsr();
      const dial = { credentials: clientCredentials({ caPem }), options: TLS_CHANNEL_OPTIONS };
      const res = await this.callManager(remoteAddr, dial, (client, md, opts, cb) =>
        client.join(
          { token: req.token, description: this.description(), advertiseAddr: advertiseIp, etcdPeerUrl: peerUrl, managerAddr, etcdMemberName: etcdName, csr: Buffer.from(own.csrPem) },
          md,
          opts,
          cb,
        ),
      );
      await this.tls.set({ keyPem: own.keyPem, certPem: Buffer.from(res.certificate).toString(), caPem: Buffer.from(res.rootCaCert).toString() || caPem });
      // in memory until the manager runs: its autolock keeper writes it (wrapped when autolock is on)
      if (res.clusterKey.length > 0) this.tls.useClusterKey(Buffer.from(res.clusterKey));
      const state: NodeState = {
        nodeId: res.nodeId,
        nodeSecret: res.nodeSecret,
        clusterId: res.clusterId,
        role: res.role === NodeRole.NODE_ROLE_MANAGER ? 'manager' : 'worker',
        managers: res.managers.length > 0 ? res.managers : [remoteAddr],
        advertiseAddr: advertiseIp,
        etcdName,
      };
      if (state.role === 'manager' && bound) {
        state.listenAddr = `${bound.host}:${bound.port}`;
        state.managerAddr = managerAddr;
        await this.startManager(state, { clusterState: 'existing', initialCluster: res.etcdInitialCluster.join(',') }, bound.server);
        bound = undefined;
        if (!state.managers.includes(managerAddr)) state.managers = [managerAddr, ...state.managers];
      }
      await saveState(this.opts.dataDir, state);
      this.state = state;
      await this.startWorker(state);
      return { nodeId: res.nodeId, clusterId: res.clusterId, workerJoinCommand: '' };
    } catch (err) {
      await this.stopRoles();
      await rm(path.join(this.opts.dataDir, 'etcd'), { recursive: true, force: true });
      await this.forgetCertificates();
      throw err;
    } finally {
      bound?.server.forceShutdown();
    }
  }

  /** One unary call to a manager's dispatcher, with errors that say what to do. */
  private async callManager(
    addr: string,
    dial: { credentials: grpc.ChannelCredentials; options?: grpc.ChannelOptions },
    call: (
      client: DispatcherClient,
      md: grpc.Metadata,
      opts: Partial<grpc.CallOptions>,
      cb: (err: grpc.ServiceError | null, res: JoinResponse) => void,
    ) => void,
  ): Promise<JoinResponse> {
    const client = new DispatcherClient(addr, dial.credentials, dial.options);
    try {
      return await new Promise<JoinResponse>((resolve, reject) =>
        call(client, new grpc.Metadata(), { deadline: Date.now() + 20_000 }, (err, r) => (err ? reject(err) : resolve(r))),
      );
    } catch (err) {
      const e = err as grpc.ServiceError;
      if (e.code === grpc.status.UNAVAILABLE || e.code === grpc.status.DEADLINE_EXCEEDED) {
        throw new LocalError(grpc.status.UNAVAILABLE, `cannot reach a manager at ${addr}: ${e.details || e.message}`);
      }
      throw new LocalError(e.code ?? grpc.status.INTERNAL, e.details || e.message);
    } finally {
      client.close();
    }
  }

  private async leave(req: LeaveRequest): Promise<void> {
    const s = this.state;
    if (!s) throw new LocalError(grpc.status.FAILED_PRECONDITION, 'this host is not part of a cluster');
    if (s.role === 'manager' && !req.force) {
      throw new LocalError(
        grpc.status.FAILED_PRECONDITION,
        'this host is a manager: leaving would take its copy of the cluster state and its vote with it. Demote it first (`gantry node demote`), or use `gantry leave --force`',
      );
    }
    // stop and remove this host's containers, then forget the cluster
    if (this.worker) {
      this.worker.tasks.assign([], true, []);
      await this.worker.tasks.drain();
      await this.worker.network?.teardown().catch((err) => this.log.warn(`removing this host's networking: ${(err as Error).message}`));
    }
    await this.stopRoles();
    await rm(path.join(this.opts.dataDir, 'etcd'), { recursive: true, force: true });
    await rm(path.join(this.opts.dataDir, 'node.json'), { force: true });
    await rm(path.join(this.opts.dataDir, 'tasks'), { recursive: true, force: true });
    await this.forgetCertificates();
    this.state = undefined;
    this.locked = false;
    this.log.info('gantryd: left the cluster');
  }

  // ---------------------------------------------------------------------------------------------
  // Roles

  private description() {
    return describeHost({ hostname: this.opts.hostname, runtimes: [this.runtime.name], version: VERSION });
  }

  private async startManager(
    state: NodeState,
    etcd: { clusterState: 'new' | 'existing'; initialCluster?: string; forceNewCluster?: boolean; bootstrap?: (store: import('../../manager/store/etcd.ts').EtcdStore) => Promise<void> },
    server?: grpc.Server,
    /** What the cluster key on disk is wrapped with: undefined = in clear, null = unknown (write it). */
    atRest: string | undefined | null = null,
  ): Promise<void> {
    let bound = server;
    if (!bound) {
      const b = await bindServer(state.listenAddr ?? this.opts.listenAddr, this.tls.serverCredentials);
      bound = b.server;
      // keep the port we got, so a restart listens where the workers look
      state.listenAddr = `${b.host}:${b.port}`;
      state.managerAddr = `${state.advertiseAddr}:${b.port}`;
    }
    this.tcpServer = bound;
    const images = this.images;
    const clusterKey = this.tls.clusterKey();
    if (!clusterKey) throw new Error(`this manager has no cluster key in ${certsDir(this.opts.dataDir)}: it cannot run the CA`);
    const certs = certsDir(this.opts.dataDir);
    this.managerRole = await ManagerRole.start({
      clusterKey,
      etcdTls: {
        // the key from a copy off the disk: autolock keeps key.pem only wrapped
        files: { ca: path.join(certs, 'ca.pem'), cert: path.join(certs, 'cert.pem'), key: this.tls.etcdKeyFile() },
        material: () => {
          const m = this.tls.current();
          if (!m) throw new Error('this manager has no certificate for etcd');
          return m;
        },
      },
      dataDir: this.opts.dataDir,
      state,
      server: bound,
      etcd,
      log: this.log,
      bootstrap: etcd.bootstrap,
      resolveImage: async (ref) => {
        try {
          // at most 2 s: a registry that cannot be reached (no DNS, no route) must not hold up service create
          return (await images.resolveRemote(ref, { attempts: 1, idleTimeoutMs: 2000, signal: AbortSignal.timeout(2000) })).digest;
        } catch (err) {
          // the registry answered that the tag does not exist: refuse the service (the control API says why)
          const e = err as { name?: string; status?: number; message?: string };
          const missing = e.name === 'ImageNotFoundError' || e.status === 404;
          if (missing && !(await images.resolveLocal(ref).catch(() => undefined))) {
            throw Object.assign(new Error(e.message ?? `image "${ref}" not found`), { notFound: true });
          }
          return undefined; // local-only images (imported) and unreachable registries keep their tag
        }
      },
      onDemoted: (managers) => void this.serialize(() => this.becameWorker(managers)),
    });
    this.keeper = new AutolockKeeper({
      store: this.managerRole.store,
      clusterKey,
      dataDir: this.opts.dataDir,
      atRest,
      log: (m) => this.log.info(m),
      tlsKeyAtRest: (want) => this.tls.setKeyAtRest(want),
    });
    await this.keeper.start();
  }

  /** Where etcd reads this host's TLS key in clear while gantryd runs: beside the socket (/run: memory), not in the data dir. */
  private runtimeKeyFile(): string {
    const id = createHash('sha256').update(path.resolve(this.opts.dataDir)).digest('hex').slice(0, 12);
    return path.join(path.dirname(this.opts.socket), 'keys', id, 'key.pem');
  }

  /** `gantry cluster unlock`: a wrong key changes nothing; the right one starts the manager and worker. */
  private async unlock(key: string): Promise<string> {
    const s = this.state;
    if (!this.locked || !s) throw new AutolockError(grpc.status.FAILED_PRECONDITION, 'this host is not locked: there is nothing to unlock');
    const opened = await readLockedClusterKey(this.opts.dataDir, key);
    if (!opened.ok) throw new AutolockError(grpc.status.PERMISSION_DENIED, opened.reason);
    const tlsKey = await readLockedTlsKey(this.opts.dataDir, opened.plain);
    if (tlsKey && !tlsKey.ok) throw new AutolockError(grpc.status.INTERNAL, `the unlock key is right but this manager's TLS key: ${tlsKey.reason}`);
    // both open: from here on the manager starts
    this.tls.useClusterKey(opened.plain);
    if (tlsKey?.ok) await this.tls.unlockKey(tlsKey.plain.toString(), opened.plain);
    this.locked = false;
    try {
      await this.startManager(s, { clusterState: 'new' }, undefined, key.trim());
      await this.startWorker(s);
    } catch (err) {
      await this.stopRoles();
      this.locked = true;
      throw new AutolockError(grpc.status.INTERNAL, `the key is right but this manager did not start: ${(err as Error).message}`);
    }
    this.log.info(`gantryd: node ${s.nodeId} (manager) unlocked and started`);
    return s.nodeId;
  }

  private async startWorker(state: NodeState): Promise<void> {
    this.worker = new Worker({
      nodeId: state.nodeId,
      nodeSecret: state.nodeSecret,
      dial: () => this.tls.dial(),
      // secret values live on a tmpfs, one per gantryd (several share a machine in the lab)
      secretsDir: secretsDirFor(this.opts.dataDir),
      managers: state.managers,
      addr: state.advertiseAddr,
      stateDir: path.join(this.opts.dataDir, 'tasks'),
      netnsDir: path.join(this.execRoot, 'netns'),
      runtime: this.runtime,
      network: this.runtime.name !== 'sim',
      images: this.images,
      description: () => this.description(),
      log: (m) => this.log.info(m),
      onManagers: (managers) => {
        if (!this.state || this.state.managers.join() === managers.join()) return;
        this.state.managers = managers;
        void saveState(this.opts.dataDir, this.state).catch((err) => this.log.warn(`saving the manager list: ${err.message}`));
      },
      onRoleChange: (desired) => {
        this.wantedRole = desired;
        if (desired === NodeRole.NODE_ROLE_MANAGER && this.state?.role === 'worker') this.promoteWithRetry(0);
      },
    });
    await this.worker.start();
    this.tls.startRenewal(() => this.state?.managers ?? []);
  }

  /**
   * Promotion can fail for a while (etcd takes one new member at a time: a second MemberAdd waits
   * for the first new member to run), so it is retried with backoff until this host is a manager,
   * or the managers say it is no longer meant to be one.
   */
  private promoteWithRetry(attempt: number): void {
    void this.serialize(() => this.promote()).catch((err: Error & { code?: number }) => {
      const withdrawn = err.code === grpc.status.FAILED_PRECONDITION || err.code === grpc.status.UNAUTHENTICATED;
      this.log.warn(`gantryd: promotion failed${withdrawn ? '' : ', will retry'}: ${err.message}`);
      if (withdrawn || this.state?.role !== 'worker' || attempt >= 20) return;
      const t = setTimeout(() => this.promoteWithRetry(attempt + 1), Math.min(500 * 2 ** attempt, 8000));
      t.unref();
    });
  }

  /** `gantry node promote` of this host: get an etcd member and start the manager role. */
  private async promote(): Promise<void> {
    const s = this.state;
    if (!s || s.role !== 'worker') return;
    this.log.info('gantryd: this node was promoted: becoming a manager');
    s.etcdName ??= newId();
    const bound = await bindServer(this.opts.listenAddr, this.tls.serverCredentials);
    const managerAddr = `${s.advertiseAddr}:${bound.port}`;
    try {
      const { peerUrl } = await etcdUrls(this.opts.dataDir, s);
      const own = await newKeyAndCsr();
      // ask the managers in turn; only the request is retried per manager, the start happens once
      let res: JoinResponse | undefined;
      let lastErr: unknown;
      for (const addr of s.managers) {
        try {
          res = await this.callManager(addr, this.tls.dial(), (client, md, opts, cb) =>
            client.promote({ nodeId: s.nodeId, nodeSecret: '', etcdPeerUrl: peerUrl, managerAddr, etcdMemberName: s.etcdName as string, csr: Buffer.from(own.csrPem) }, md, opts, cb),
          );
          break;
        } catch (err) {
          lastErr = err;
        }
      }
      if (!res) throw lastErr ?? new Error('no manager known');
      this.tls.useClusterKey(Buffer.from(res.clusterKey)); // written by the autolock keeper (wrapped if on)
      await this.tls.set({ keyPem: own.keyPem, certPem: Buffer.from(res.certificate).toString(), caPem: Buffer.from(res.rootCaCert).toString() });
      const next: NodeState = { ...s, role: 'manager', listenAddr: `${bound.host}:${bound.port}`, managerAddr, managers: [managerAddr, ...res.managers.filter((m) => m !== managerAddr)] };
      await this.startManager(next, { clusterState: 'existing', initialCluster: res.etcdInitialCluster.join(',') }, bound.server);
      await saveState(this.opts.dataDir, next);
      this.state = next;
    } catch (err) {
      bound.server.forceShutdown();
      // keep member.json: a retry asks with the same peer URL, so no second member is added
      await rm(path.join(this.opts.dataDir, 'etcd', 'data'), { recursive: true, force: true });
      throw err;
    }
  }

  /** After demotion (manager-role.ts did the etcd part): stop serving, remember being a worker. */
  private async becameWorker(managers: string[]): Promise<void> {
    const s = this.state;
    if (!s) return;
    this.keeper?.stop();
    this.keeper = undefined;
    await removeLockedClusterKey(this.opts.dataDir);
    await this.tls.setKeyAtRest(undefined); // workers keep their key in clear (autolock is for managers)
    this.managerRole = undefined;
    this.worker?.agent.setManagers(managers);
    this.tcpServer?.forceShutdown();
    this.tcpServer = undefined;
    const next: NodeState = { ...s, role: 'worker', listenAddr: undefined, managerAddr: undefined, managers };
    await saveState(this.opts.dataDir, next);
    this.state = next;
    await this.tls.forgetClusterKey();
    // a worker certificate from now on (the managers already treat this node as a worker)
    void this.tls.renew().catch((err) => this.log.warn(`gantryd: renewing the certificate as a worker: ${(err as Error).message}`));
    this.log.info('gantryd: this node is a worker now');
    // promoted again while it was handing over: the request came when it was not a worker yet
    if (this.wantedRole === NodeRole.NODE_ROLE_MANAGER) this.promoteWithRetry(0);
  }

  private async stopRoles(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.stop();
    this.keeper?.stop();
    this.keeper = undefined;
    const role = this.managerRole;
    this.managerRole = undefined;
    await role?.stop();
    this.tcpServer?.forceShutdown();
    this.tcpServer = undefined;
  }

  private async forgetCertificates(): Promise<void> {
    this.tls.stop();
    await this.tls.dropRuntimeKey();
    this.tls = new NodeTls({ dataDir: this.opts.dataDir, log: (m) => this.log.info(m), runtimeKeyFile: this.runtimeKeyFile() });
    await rm(certsDir(this.opts.dataDir), { recursive: true, force: true });
  }

  /** Stops gantryd; containers keep running and are re-adopted by the next start. */
  async stop(): Promise<void> {
    this.tls?.stop();
    await this.stopRoles();
    const local = this.localServer;
    this.localServer = undefined;
    local?.forceShutdown();
    await this.unarySocket?.close();
    this.unarySocket = undefined;
    await this.tls?.dropRuntimeKey().catch(() => {});
    await this.images?.flush().catch((err: Error) => this.log.warn(`gantryd: syncing the image store: ${err.message}`));
    await unlink(this.opts.socket).catch(() => {});
  }
}
