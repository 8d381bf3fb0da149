// gantryd's host: the local API on the unix socket, and the roles this host plays — always a
// worker once it is in a cluster, and a manager (with its own supervised etcd member) when it
// created the cluster. It composes manager/ and worker/, which never import each other.
import { mkdir, rm, unlink } from 'node:fs/promises';
import { chmodSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ControlService } from '../../proto/gen/gantry/v1/control.ts';
import { DispatcherClient, DispatcherService } from '../../proto/gen/gantry/v1/dispatcher.ts';
import { ImagesService } from '../../proto/gen/gantry/v1/images.ts';
import type { InfoResponse, InitRequest, InitResponse, LeaveRequest, LocalJoinRequest, LocalServer } from '../../proto/gen/gantry/v1/local.ts';
import { LocalService } from '../../proto/gen/gantry/v1/local.ts';
import { NodeAvailability, NodeRole, NodeState as NodeHealthState } from '../../proto/gen/gantry/v1/objects.ts';
import type { Log } from '../../manager/controller.ts';
import { hashSecret, newJoinToken, newNodeSecret } from '../../manager/dispatcher/tokens.ts';
import { newId } from '../../manager/ids.ts';
import { Manager } from '../../manager/manager.ts';
import { EtcdStore } from '../../manager/store/etcd.ts';
import { type EtcdMember, startEtcdMember } from '../../manager/store/etcd-member.ts';
import { describeHost } from '../../worker/describe.ts';
import { imagesService } from '../../worker/image/service.ts';
import { ImageStore } from '../../worker/image/store.ts';
import { createRuntime } from '../../worker/runtime/create.ts';
import type { Runtime } from '../../worker/runtime/types.ts';
import { Worker } from '../../worker/worker.ts';
import { defaultAdvertiseIp, splitHostPort } from './addr.ts';
import { type NodeState, loadState, saveState } from './state.ts';

export const VERSION = '0.1.0';
export const DEFAULT_PORT = 4242;

export interface DaemonOptions {
  dataDir: string;
  socket: string;
  listenAddr: string;          // default for `gantry init`
  advertiseAddr?: string;
  runtime: string;             // native | runc | crun | sim
  cgroupParent: string;
  hostname: string;
  log: Log;
}

class LocalError extends Error {
  readonly code: grpc.status;
  constructor(code: grpc.status, message: string) {
    super(message);
    this.code = code;
  }
}

export class Daemon {
  private readonly opts: DaemonOptions;
  private readonly log: Log;
  private state: NodeState | undefined;
  private images!: ImageStore;
  private runtime!: Runtime;
  private localServer: grpc.Server | undefined;
  private tcpServer: grpc.Server | undefined;
  private etcd: EtcdMember | undefined;
  private store: EtcdStore | undefined;
  private manager: Manager | undefined;
  private control: ReturnType<Manager['controlService']> | undefined;
  private worker: Worker | undefined;
  private busy: Promise<unknown> = Promise.resolve();

  constructor(opts: DaemonOptions) {
    this.opts = opts;
    this.log = opts.log;
  }

  async start(): Promise<void> {
    await mkdir(this.opts.dataDir, { recursive: true, mode: 0o700 });
    this.images = await ImageStore.open(path.join(this.opts.dataDir, 'images'));
    this.runtime = await createRuntime(this.opts.runtime, {
      dataDir: this.opts.dataDir,
      cgroupParent: this.opts.cgroupParent,
      log: (m: string) => this.log.info(`runtime: ${m}`),
    });
    await this.serveLocal();
    this.state = await loadState(this.opts.dataDir);
    if (this.state) {
      if (this.state.role === 'manager') await this.startManager(this.state);
      await this.startWorker(this.state);
      this.log.info(`gantryd: node ${this.state.nodeId} (${this.state.role}) started`);
    } else {
      this.log.info('gantryd: not in a cluster yet: run `gantry init` or `gantry join`');
    }
  }

  // ---------------------------------------------------------------------------------------------
  // The local API

  private async serveLocal(): Promise<void> {
    const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 << 20 });
    server.addService(LocalService, this.localService());
    server.addService(ImagesService, imagesService(this.images));
    server.addService(ControlService, this.controlProxy());
    await mkdir(path.dirname(this.opts.socket), { recursive: true, mode: 0o755 });
    await unlink(this.opts.socket).catch(() => {});
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${this.opts.socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    chmodSync(this.opts.socket, 0o600); // root-only, like docker.sock without a docker group
    this.localServer = server;
  }

  /** Control calls on the local socket go to this host's manager, or explain why there is none. */
  private controlProxy(): grpc.UntypedServiceImplementation {
    const impl: grpc.UntypedServiceImplementation = {};
    for (const [name, def] of Object.entries(ControlService)) {
      const method = name as keyof typeof ControlService;
      const unavailable = (): grpc.ServiceError => {
        const details = !this.state
          ? 'this host is not part of a cluster: run `gantry init` to create one, or `gantry join` to join one'
          : `this host is a worker: run cluster commands on a manager (${this.state.managers.join(', ')})`;
        return Object.assign(new Error(details), { code: grpc.status.FAILED_PRECONDITION, details, metadata: new grpc.Metadata() });
      };
      impl[method] = def.responseStream
        ? (call: grpc.ServerWritableStream<unknown, unknown>) => {
            const target = this.control?.[method] as ((c: unknown) => void) | undefined;
            if (!target) return call.emit('error', unavailable());
            target(call);
          }
        : (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
            const target = this.control?.[method] as ((c: unknown, cb: unknown) => void) | undefined;
            if (!target) return cb(unavailable());
            target(call, cb);
          };
    }
    return impl;
  }

  private localService(): LocalServer {
    const unary =
      <Req, Res>(fn: (req: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> =>
      (call, cb) => {
        // one cluster-membership change at a time
        const run = this.busy.then(() => fn(call.request));
        this.busy = run.catch(() => {});
        run.then(
          (res) => cb(null, res),
          (err: Error) => {
            const code = err instanceof LocalError ? err.code : grpc.status.INTERNAL;
            cb(Object.assign(new Error(err.message), { code, details: err.message, metadata: new grpc.Metadata() }));
          },
        );
      };
    return {
      init: unary((req: InitRequest) => this.init(req)),
      join: unary((req: LocalJoinRequest) => this.join(req)),
      leave: unary((req: LeaveRequest) => this.leave(req).then(() => ({}))),
      info: unary(async () => this.info()),
    };
  }

  private info(): InfoResponse {
    const s = this.state;
    return {
      nodeId: s?.nodeId ?? '',
      role: s?.role === 'manager' ? NodeRole.NODE_ROLE_MANAGER : NodeRole.NODE_ROLE_WORKER,
      clusterId: s?.clusterId ?? '',
      state: !s ? 'inactive' : this.worker?.agent.connected() ? 'active' : 'pending',
      managers: s?.managers ?? [],
      dataDir: this.opts.dataDir,
      runtime: this.runtime.name,
      isLeader: this.store?.leadership(s?.nodeId ?? '').isLeader() ?? false,
      hostname: this.opts.hostname,
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Becoming a manager, joining, leaving

  private async init(req: InitRequest): Promise<InitResponse> {
    if (this.state) {
      throw new LocalError(
        grpc.status.ALREADY_EXISTS,
        `this host is already in cluster ${this.state.clusterId} as a ${this.state.role}: run \`gantry leave\` first`,
      );
    }
    const advertiseIp = req.advertiseAddr ? splitHostPort(req.advertiseAddr, DEFAULT_PORT).host : this.opts.advertiseAddr || defaultAdvertiseIp();
    const listen = req.listenAddr || this.opts.listenAddr;
    splitHostPort(listen, DEFAULT_PORT); // validate before anything starts
    const nodeId = newId();
    const clusterId = newId();
    const secret = newNodeSecret();
    const state: NodeState = { nodeId, nodeSecret: secret, clusterId, role: 'manager', managers: [], listenAddr: listen, advertiseAddr: advertiseIp, etcdName: nodeId };
    try {
      await this.startManager(state, async (store, managerAddr) => {
        const now = Date.now();
        const res = await store.commit([
          {
            op: 'create',
            kind: 'clusters',
            object: {
              id: clusterId,
              spec: { name: 'default', taskHistoryRetentionLimit: 5, heartbeatPeriodMs: 1000, nodeDownGraceMs: 3000 },
              joinTokens: { worker: newJoinToken('worker'), manager: newJoinToken('manager') },
              rootCaCert: Buffer.alloc(0),
            },
          },
          {
            op: 'create',
            kind: 'nodes',
            object: {
              id: nodeId,
              spec: { name: '', labels: {}, desiredRole: NodeRole.NODE_ROLE_MANAGER, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE },
              description: this.description(),
              status: { state: NodeHealthState.NODE_STATE_UNKNOWN, message: 'created the cluster', addr: advertiseIp, lastHeartbeat: now },
              role: NodeRole.NODE_ROLE_MANAGER,
              managerStatus: { leader: false, addr: managerAddr, reachability: 'reachable', etcdMemberId: '', etcdPeerUrl: this.etcd?.peerUrl ?? '', etcdClientUrl: this.etcd?.clientUrl ?? '' },
              secretHash: hashSecret(secret),
            },
          },
        ]);
        if (!res.ok) throw new Error(`creating the cluster failed: ${res.conflict.kind} ${res.conflict.id} ${res.conflict.reason}`);
        await store.waitFor(res.revision);
      });
      state.managers = [state.managerAddr as string];
      await saveState(this.opts.dataDir, state);
      this.state = state;
      await this.startWorker(state);
    } catch (err) {
      // leave nothing half made: no etcd member, no data, no listener
      await this.stopRoles();
      await rm(path.join(this.opts.dataDir, 'etcd'), { recursive: true, force: true });
      this.state = undefined;
      throw new LocalError(grpc.status.INTERNAL, `gantry init failed: ${(err as Error).message}`);
    }
    const cluster = this.store?.view().cluster();
    return {
      nodeId,
      clusterId,
      workerJoinCommand: `gantry join --token ${cluster?.joinTokens?.worker} ${state.managerAddr}`,
    };
  }

  private async join(req: LocalJoinRequest): Promise<InitResponse> {
    if (this.state) {
      throw new LocalError(grpc.status.ALREADY_EXISTS, `this host is already in cluster ${this.state.clusterId} as a ${this.state.role}: run \`gantry leave\` first`);
    }
    if (!req.token) throw new LocalError(grpc.status.INVALID_ARGUMENT, 'a join token is required: get one with `gantry join-token worker` on a manager');
    if (!req.remoteAddr) throw new LocalError(grpc.status.INVALID_ARGUMENT, 'the address of a manager is required (IP:PORT)');
    const remote = splitHostPort(req.remoteAddr, DEFAULT_PORT);
    const remoteAddr = `${remote.host}:${remote.port}`;
    const advertiseIp = req.advertiseAddr ? splitHostPort(req.advertiseAddr, DEFAULT_PORT).host : this.opts.advertiseAddr || defaultAdvertiseIp();
    const client = new DispatcherClient(remoteAddr, grpc.credentials.createInsecure());
    try {
      const res = await new Promise<import('../../proto/gen/gantry/v1/dispatcher.ts').JoinResponse>((resolve, reject) =>
        client.join(
          { token: req.token, description: this.description(), advertiseAddr: advertiseIp },
          new grpc.Metadata(),
          { deadline: Date.now() + 15_000 },
          (err, r) => (err ? reject(err) : resolve(r)),
        ),
      );
      const state: NodeState = {
        nodeId: res.nodeId,
        nodeSecret: res.nodeSecret,
        clusterId: res.clusterId,
        role: 'worker',
        managers: res.managers.length > 0 ? res.managers : [remoteAddr],
        advertiseAddr: advertiseIp,
      };
      await saveState(this.opts.dataDir, state);
      this.state = state;
      await this.startWorker(state);
      return { nodeId: res.nodeId, clusterId: res.clusterId, workerJoinCommand: '' };
    } catch (err) {
      const e = err as grpc.ServiceError;
      if (e.code === grpc.status.UNAVAILABLE || e.code === grpc.status.DEADLINE_EXCEEDED) {
        throw new LocalError(grpc.status.UNAVAILABLE, `cannot reach a manager at ${remoteAddr}: ${e.details || e.message}`);
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
        'this host is a manager: leaving would remove the cluster state it holds. Use `gantry leave --force` to leave anyway',
      );
    }
    // stop and remove this host's containers, then forget the cluster
    if (this.worker) {
      this.worker.tasks.assign([], true, []);
      await this.worker.tasks.drain();
    }
    await this.stopRoles();
    await rm(path.join(this.opts.dataDir, 'etcd'), { recursive: true, force: true });
    await rm(path.join(this.opts.dataDir, 'node.json'), { force: true });
    await rm(path.join(this.opts.dataDir, 'tasks'), { recursive: true, force: true });
    this.state = undefined;
    this.log.info('gantryd: left the cluster');
  }

  // ---------------------------------------------------------------------------------------------
  // Roles

  private description() {
    return describeHost({ hostname: this.opts.hostname, runtimes: [this.runtime.name], version: VERSION });
  }

  /**
   * Starts the local etcd member, the store, the manager's TCP server and the manager itself.
   * `bootstrap` runs once the store is open and before the controllers start (init writes the cluster).
   */
  private async startManager(state: NodeState, bootstrap?: (store: EtcdStore, managerAddr: string) => Promise<void>): Promise<void> {
    this.etcd = await startEtcdMember({
      dataDir: path.join(this.opts.dataDir, 'etcd'),
      name: state.etcdName ?? state.nodeId,
      host: state.advertiseAddr,
      clusterState: 'new',
      log: (line: string) => this.log.debug(`etcd: ${line}`),
    });
    this.store = await EtcdStore.open({
      endpoints: [this.etcd.clientUrl],
      managerId: state.nodeId,
      log: (m: string) => this.log.info(`store: ${m}`),
    });
    const listen = splitHostPort(state.listenAddr ?? this.opts.listenAddr, DEFAULT_PORT);
    const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 << 20, 'grpc.keepalive_permit_without_calls': 1 });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${listen.host}:${listen.port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    ).catch((err: Error) => {
      throw new Error(`cannot listen on ${listen.host}:${listen.port}: ${err.message} (choose another with --listen-addr)`);
    });
    this.tcpServer = server;
    // keep the port we got, so a restart listens where the workers look
    state.listenAddr = `${listen.host}:${port}`;
    state.managerAddr = `${state.advertiseAddr}:${port}`;
    if (bootstrap) await bootstrap(this.store, state.managerAddr);
    const images = this.images;
    this.manager = new Manager({
      store: this.store,
      leadership: this.store.leadership(state.nodeId),
      nodeId: state.nodeId,
      addr: state.managerAddr,
      log: this.log,
      resolveImage: async (ref) => {
        try {
          return (await images.resolveRemote(ref, { attempts: 1, idleTimeoutMs: 3000 })).digest;
        } catch {
          return undefined; // local-only images (imported) and unreachable registries keep their tag
        }
      },
    });
    this.control = this.manager.controlService();
    server.addService(ControlService, this.control as unknown as grpc.UntypedServiceImplementation);
    server.addService(DispatcherService, this.manager.dispatcherService());
    this.manager.start();
    this.log.info(`gantryd: manager listening on ${state.listenAddr}, reachable at ${state.managerAddr}`);
  }

  private async startWorker(state: NodeState): Promise<void> {
    this.worker = new Worker({
      nodeId: state.nodeId,
      nodeSecret: state.nodeSecret,
      managers: state.managers,
      addr: state.advertiseAddr,
      stateDir: path.join(this.opts.dataDir, 'tasks'),
      runtime: this.runtime,
      images: this.images,
      description: () => this.description(),
      log: (m) => this.log.info(m),
      onManagers: (managers) => {
        if (!this.state || this.state.managers.join() === managers.join()) return;
        this.state.managers = managers;
        void saveState(this.opts.dataDir, this.state).catch((err) => this.log.warn(`saving the manager list: ${err.message}`));
      },
    });
    await this.worker.start();
  }

  private async stopRoles(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.stop();
    const manager = this.manager;
    this.manager = undefined;
    this.control = undefined;
    await manager?.stop();
    const tcp = this.tcpServer;
    this.tcpServer = undefined;
    tcp?.forceShutdown();
    const store = this.store;
    this.store = undefined;
    await store?.close();
    const etcd = this.etcd;
    this.etcd = undefined;
    await etcd?.stop();
  }

  /** Stops gantryd; containers keep running and are re-adopted by the next start. */
  async stop(): Promise<void> {
    await this.stopRoles();
    const local = this.localServer;
    this.localServer = undefined;
    local?.forceShutdown();
    await unlink(this.opts.socket).catch(() => {});
  }
}
