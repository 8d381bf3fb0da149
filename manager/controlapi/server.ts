// The control API server (service Control): CRUD on services and nodes, tasks, the cluster and logs.
// It writes only specs (the controllers derive tasks); every failure goes through errors.ts once.
import type * as grpc from '@grpc/grpc-js';
import { checkManagerLeaves } from './quorum.ts';
import type {
  ControlServer,
  Empty,
  GetNodeRequest,
  GetServiceRequest,
  GetTaskRequest,
  ListNodesResponse,
  ListServicesResponse,
  ListTasksRequest,
  ListTasksResponse,
  RemoveNodeRequest,
  RemoveServiceRequest,
  RotateJoinTokenRequest,
  ServiceLogsRequest,
  UpdateNodeRequest,
  UpdateServiceRequest,
  CreateServiceRequest,
} from '../../proto/gen/gantry/v1/control.ts';
import { ControlService, LogMessage } from '../../proto/gen/gantry/v1/control.ts';
import type { Cluster, Node, NodeSpec, Service, ServiceSpec, Task } from '../../proto/gen/gantry/v1/objects.ts';
import { UpdateState } from '../../proto/gen/gantry/v1/objects.ts';
import { newId } from '../ids.ts';
import type { Kind, Leadership, Objects, Store, Write } from '../store/types.ts';
import { withDefaults, type ServiceSpecInput } from './defaults.ts';
import {
  AlreadyExistsError,
  AmbiguousError,
  ConflictError,
  DependencyError,
  NotFoundError,
  PreconditionError,
  ValidationError,
  toServiceError,
} from './errors.ts';
import { checkImageRef } from './imageref.ts';
import type { LogBroker } from './logs.ts';
import { nodeName, type Resolved, resolveNode, resolveService, resolveTask } from './resolve.ts';
import { summarize } from './summary.ts';
import { checkServiceNetworking } from './network.ts';
import { resolveSecretRefs } from './secret-refs.ts';
import { newJoinToken } from '../dispatcher/tokens.ts';
import { type ValidServiceSpec, validateNodeSpec, validateServiceSpec } from './validate.ts';

export interface ControlDeps {
  store: Store;
  clock: { now(): number };
  /**
   * Tag → digest ("sha256:..."). Resolves undefined when the digest cannot be learnt (registry
   * unreachable, local-only image): the tag is kept and a warning logged. Rejects with an error
   * named "ImageNotFoundError" (or carrying `notFound: true`) when the registry says the image or
   * tag does not exist: the create/update fails with that reason. Any other rejection = undefined.
   */
  resolveImage?: (ref: string) => Promise<string | undefined>;
  logs: LogBroker;
  leadership?: Leadership;
  log?: (m: string) => void;
  /** Handlers of Control RPCs other components own (networks, ...); they take precedence. */
  handlers?: Partial<ControlServer>;
}

const NODE_READY = 2;
const ROLE_MANAGER = 1;
const DESIRED_RUNNING = 512;

/** The control API as plain async functions (what the gRPC handlers call). */
export interface ControlApi {
  getNode(req: GetNodeRequest): Promise<Node>;
  listNodes(): Promise<ListNodesResponse>;
  updateNode(req: UpdateNodeRequest): Promise<Node>;
  removeNode(req: RemoveNodeRequest): Promise<Empty>;
  createService(req: CreateServiceRequest): Promise<Service>;
  getService(req: GetServiceRequest): Promise<Service>;
  listServices(): Promise<ListServicesResponse>;
  updateService(req: UpdateServiceRequest): Promise<Service>;
  removeService(req: RemoveServiceRequest): Promise<Empty>;
  getTask(req: GetTaskRequest): Promise<Task>;
  listTasks(req: ListTasksRequest): Promise<ListTasksResponse>;
  getCluster(): Promise<Cluster>;
  rotateJoinToken(req: RotateJoinTokenRequest): Promise<Cluster>;
  /** Resolves the ref (service, then task) and streams its tasks' logs until done or aborted. */
  serviceLogs(req: ServiceLogsRequest, onMessage: (m: LogMessage) => void, signal: AbortSignal): Promise<void>;
}

function must<T>(r: Resolved<T>): T {
  if (r.ok) return r.value;
  if (r.reason === 'ambiguous') throw new AmbiguousError(r.message);
  if (r.reason === 'empty') throw new ValidationError([r.message]);
  throw new NotFoundError(r.message);
}

/** JSON with sorted keys, so that equal specs compare equal whatever their map order. */
export function stableJson(v: unknown): string {
  if (v === undefined) return 'null';
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object' && !Buffer.isBuffer(v)) {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/**
 * `a` was written before `mine`, which we just created (so its version is its create revision).
 * Every later creator sees the earlier ones once its own write is applied, so the first one stays.
 */
function olderThan(a: Service, mine: Service): boolean {
  return (a.meta?.version ?? 0) < (mine.meta?.version ?? 0);
}

function defaultName(image: string, id: string): string {
  const base = image.split('@')[0].split('/').pop()?.split(':')[0] ?? '';
  const clean = base.replace(/[^a-zA-Z0-9_-]/g, '-').replace(/^[-_]+|[-_]+$/g, '').slice(0, 50);
  return `${clean || 'service'}-${id.slice(0, 5)}`;
}

export function controlApi(deps: ControlDeps): ControlApi {
  const { store, clock } = deps;
  const log = deps.log ?? (() => {});

  async function commitAndRead<K extends Kind>(writes: Write[], kind: K, id: string, conflictMessage: () => string): Promise<Objects[K] | undefined> {
    const res = await store.commit(writes);
    if (!res.ok) throw new ConflictError(conflictMessage());
    await store.waitFor(res.revision);
    return store.view().get(kind, id);
  }

  function staleMessage(what: string, name: string, stored: number, yours: number): string {
    return `${what} "${name}" was updated by someone else since you read it (version ${stored}, yours ${yours}): read it again and retry`;
  }

  /** Pins the image to a digest when a registry can tell us; a missing tag is an error, an unreachable registry is not. */
  async function pinImage(spec: ValidServiceSpec, noResolve = false): Promise<void> {
    const c = spec.task.container;
    const ref = checkImageRef(c.image);
    if (ref.ok && ref.digest) {
      c.imageDigest = ref.digest;
      return;
    }
    c.imageDigest = '';
    if (!deps.resolveImage || noResolve) return;
    let digest: string | undefined;
    try {
      digest = await deps.resolveImage(c.image);
    } catch (err) {
      const e = err as { name?: string; notFound?: boolean; message?: string };
      if (e?.name === 'ImageNotFoundError' || e?.notFound === true) {
        throw new DependencyError(`image "${c.image}" not found: ${e.message ?? 'the registry has no such tag'} (check the name and tag, or push it first)`);
      }
      log(`image "${c.image}" could not be resolved to a digest (${e?.message ?? String(err)}): tasks will pull the tag`);
      return;
    }
    if (digest === undefined) {
      log(`image "${c.image}" could not be resolved to a digest: tasks will pull the tag, so hosts may run different images`);
      return;
    }
    c.imageDigest = digest;
  }

  function validated(input: ServiceSpecInput): ValidServiceSpec {
    const v = validateServiceSpec(withDefaults(input));
    if (!v.ok) throw new ValidationError(v.problems);
    return v.value;
  }

  async function withLeader(nodes: Node[]): Promise<Node[]> {
    if (!deps.leadership) return nodes;
    let leaderId: string | undefined;
    try {
      leaderId = await deps.leadership.leader();
    } catch {
      return nodes;
    }
    return nodes.map((n) =>
      n.role === ROLE_MANAGER && n.managerStatus
        ? { ...n, managerStatus: { ...n.managerStatus, leader: n.id === leaderId } }
        : n,
    );
  }

  function managers(): Node[] {
    return store
      .view()
      .list('nodes')
      .filter((n) => n.role === ROLE_MANAGER || n.spec?.desiredRole === ROLE_MANAGER);
  }

  return {
    async getNode(req) {
      const node = must(resolveNode(store.view(), req.ref));
      return (await withLeader([node]))[0];
    },

    async listNodes() {
      const nodes = store.view().list('nodes');
      return { nodes: await withLeader(nodes) };
    },

    async updateNode(req) {
      const view = store.view();
      const node = must(resolveNode(view, req.ref));
      const name = nodeName(node);
      const stored = node.meta?.version ?? 0;
      if (req.version !== 0 && req.version !== stored) throw new ConflictError(staleMessage('node', name, stored, req.version));
      if (!req.spec) throw new ValidationError(['spec is required']);
      const spec: NodeSpec = { ...req.spec, labels: { ...req.spec.labels } };
      const problems = validateNodeSpec(spec);
      if (problems.length > 0) throw new ValidationError(problems);
      if (spec.desiredRole !== ROLE_MANAGER && (node.role === ROLE_MANAGER || node.spec?.desiredRole === ROLE_MANAGER)) {
        const others = managers().filter((m) => m.id !== node.id && (m.spec?.desiredRole ?? m.role) === ROLE_MANAGER);
        if (others.length === 0) {
          throw new PreconditionError(`node "${name}" is the last manager: promote another node first (gantry node promote NODE)`);
        }
        const quorum = checkManagerLeaves(view.list('nodes'), node);
        if (!quorum.ok && !req.force) throw new PreconditionError(quorum.message);
      }
      if (stableJson(spec) === stableJson(node.spec)) return node;
      const updated: Node = { ...node, spec, meta: { ...(node.meta ?? { version: 0, createdAt: 0 }), updatedAt: clock.now() } };
      const got = await commitAndRead([{ op: 'update', kind: 'nodes', object: updated }], 'nodes', node.id, () =>
        staleMessage('node', name, store.view().get('nodes', node.id)?.meta?.version ?? 0, stored),
      );
      if (!got) throw new NotFoundError(`node "${name}" was removed while being updated`);
      return got;
    },

    async removeNode(req) {
      const view = store.view();
      const node = must(resolveNode(view, req.ref));
      const name = nodeName(node);
      const isManager = node.role === ROLE_MANAGER || node.spec?.desiredRole === ROLE_MANAGER;
      if (isManager) {
        const others = managers().filter((m) => m.id !== node.id);
        if (others.length === 0) {
          throw new PreconditionError(`node "${name}" is the last manager: removing it would destroy the cluster (use gantry leave --force on it to dissolve the cluster)`);
        }
        if (!req.force) throw new PreconditionError(`node "${name}" is a manager: demote it first (gantry node demote ${name}), or use --force`);
      }
      if (node.status?.state === NODE_READY && !req.force) {
        throw new PreconditionError(`node "${name}" is ready: drain it and stop its gantryd first, or use --force`);
      }
      const res = await store.commit([{ op: 'delete', kind: 'nodes', id: node.id, version: node.meta?.version }]);
      if (!res.ok) {
        if (res.conflict.reason === 'missing') throw new NotFoundError(`node "${name}" not found`);
        throw new ConflictError(`node "${name}" changed while being removed: check gantry node ls and retry`);
      }
      await store.waitFor(res.revision);
      return {};
    },

    async createService(req) {
      const input: ServiceSpecInput = { ...(req.spec ?? {}) };
      const id = newId();
      if (!input.name) input.name = defaultName(input.task?.container?.image ?? '', id);
      const spec = validated(input);
      const netProblems = [...checkServiceNetworking(store.view(), spec), ...resolveSecretRefs(store.view(), spec)];
      if (netProblems.length) throw new ValidationError(netProblems);
      if (store.view().serviceByName(spec.name)) throw new AlreadyExistsError(`service "${spec.name}" already exists`);
      await pinImage(spec, req.noResolveImage);
      const now = clock.now();
      const service: Service = {
        id,
        meta: { version: 0, createdAt: now, updatedAt: now },
        spec,
        previousSpec: undefined,
        specVersion: 1,
        updateStatus: undefined,
        endpoint: undefined,
        jobIteration: 0,
      };
      if (store.view().serviceByName(spec.name)) throw new AlreadyExistsError(`service "${spec.name}" already exists`);
      const got = await commitAndRead([{ op: 'create', kind: 'services', object: service }], 'services', id, () => `service id ${id} already taken: retry`);
      if (!got) throw new NotFoundError(`service "${spec.name}" was removed right after being created`);
      // Two managers may create one name at once (the check above reads the view, not the
      // transaction). A creator that finds an earlier-written service of its name removes its own.
      const rival = store
        .view()
        .list('services')
        .find((o) => o.id !== id && o.spec?.name === spec.name && olderThan(o, got));
      if (rival) {
        await store.commit([{ op: 'delete', kind: 'services', id }]);
        throw new AlreadyExistsError(`service "${spec.name}" already exists`);
      }
      return got;
    },

    async getService(req) {
      return must(resolveService(store.view(), req.ref));
    },

    async listServices() {
      const view = store.view();
      const nodes = view.list('nodes');
      return {
        services: view
          .list('services')
          .map((service) => ({ service, ...summarize(service, view.tasksByService(service.id), nodes) })),
      };
    },

    async updateService(req) {
      const view = store.view();
      const current = must(resolveService(view, req.ref));
      const name = current.spec?.name ?? current.id;
      const stored = current.meta?.version ?? 0;
      if (req.version !== 0 && req.version !== stored) throw new ConflictError(staleMessage('service', name, stored, req.version));
      let spec: ServiceSpec;
      let previousSpec: ServiceSpec | undefined;
      if (req.rollback === 'previous') {
        if (!current.previousSpec) throw new PreconditionError(`service "${name}" has no previous spec to roll back to`);
        spec = current.previousSpec;
        previousSpec = current.spec;
      } else if (req.rollback !== '') {
        throw new ValidationError([`rollback "${req.rollback}" is unknown: use "previous" or leave it empty`]);
      } else {
        if (!req.spec) throw new ValidationError(['spec is required']);
        const input: ServiceSpecInput = { ...req.spec, name: req.spec.name || name };
        if (input.name !== name) throw new ValidationError([`renaming a service is not supported (service "${name}", new name "${input.name}")`]);
        const valid = validated(input);
        const netProblems = [...checkServiceNetworking(store.view(), valid, current.id), ...resolveSecretRefs(store.view(), valid)];
        if (netProblems.length) throw new ValidationError(netProblems);
        const oldMode = current.spec?.mode?.$case;
        if (oldMode && valid.mode.$case !== oldMode) {
          throw new ValidationError([`service "${name}" is ${oldMode}: its mode cannot be changed to ${valid.mode.$case} (remove and create it)`]);
        }
        // Same image and the digest the client read: keep it. Otherwise (new image, or the client
        // cleared the digest to pick up a re-pushed tag) resolve again; if that fails, keep the old pin.
        const old = current.spec?.task?.container;
        const c = valid.task.container;
        const sameImage = old !== undefined && old.image === c.image;
        if (!(sameImage && c.imageDigest !== '' && c.imageDigest === old.imageDigest)) {
          await pinImage(valid, req.noResolveImage);
          if (sameImage && c.imageDigest === '') c.imageDigest = old.imageDigest;
        }
        spec = valid;
        previousSpec = current.spec;
      }
      // A rolling update (manager/update) starts when the task spec changes; the same spec sent
      // again continues a paused one (`service update NAME`, `--resume`).
      const st = current.updateStatus?.state;
      const paused = st === UpdateState.UPDATE_STATE_PAUSED || st === UpdateState.UPDATE_STATE_ROLLBACK_PAUSED;
      const sameSpec = stableJson(spec) === stableJson(current.spec);
      if (sameSpec && !(paused && req.rollback === '')) return current;
      const taskChanged = !sameSpec && stableJson(spec.task) !== stableJson(current.spec?.task);
      const rolling = req.rollback === 'previous';
      const now = clock.now();
      let updateStatus = current.updateStatus;
      if ((spec.mode?.$case === 'replicated' || spec.mode?.$case === 'global') && taskChanged) {
        updateStatus = { state: rolling ? UpdateState.UPDATE_STATE_ROLLBACK_STARTED : UpdateState.UPDATE_STATE_UPDATING, startedAt: now, completedAt: 0, message: rolling ? 'rollback started' : 'update started' };
      } else if (sameSpec && paused) {
        const back = st === UpdateState.UPDATE_STATE_ROLLBACK_PAUSED;
        updateStatus = { state: back ? UpdateState.UPDATE_STATE_ROLLBACK_STARTED : UpdateState.UPDATE_STATE_UPDATING, startedAt: now, completedAt: 0, message: back ? 'rollback resumed' : 'update resumed' };
      }
      const updated: Service = {
        ...current,
        meta: { ...(current.meta ?? { version: 0, createdAt: 0 }), updatedAt: now },
        spec: sameSpec ? current.spec : spec,
        previousSpec: sameSpec ? current.previousSpec : previousSpec,
        specVersion: current.specVersion + (taskChanged ? 1 : 0),
        updateStatus,
      };
      const got = await commitAndRead([{ op: 'update', kind: 'services', object: updated }], 'services', current.id, () =>
        staleMessage('service', name, store.view().get('services', current.id)?.meta?.version ?? 0, stored),
      );
      if (!got) throw new NotFoundError(`service "${name}" was removed while being updated`);
      return got;
    },

    async removeService(req) {
      const service = must(resolveService(store.view(), req.ref));
      const name = service.spec?.name ?? service.id;
      const res = await store.commit([{ op: 'delete', kind: 'services', id: service.id }]);
      if (!res.ok) throw new NotFoundError(`service "${name}" not found`);
      await store.waitFor(res.revision);
      return {};
    },

    async getTask(req) {
      return must(resolveTask(store.view(), req.ref));
    },

    async listTasks(req) {
      const view = store.view();
      let tasks: Task[];
      if (req.service) {
        tasks = view.tasksByService(must(resolveService(view, req.service)).id);
        if (req.node) {
          const nodeId = must(resolveNode(view, req.node)).id;
          tasks = tasks.filter((t) => t.nodeId === nodeId);
        }
      } else if (req.node) {
        tasks = view.tasksByNode(must(resolveNode(view, req.node)).id);
      } else {
        tasks = view.list('tasks');
      }
      if (req.desiredRunningOnly) tasks = tasks.filter((t) => t.desiredState === DESIRED_RUNNING);
      return { tasks };
    },

    async getCluster() {
      const cluster = store.view().cluster();
      if (!cluster) throw new NotFoundError('this node is not part of a cluster: run gantry init, or gantry join');
      return cluster;
    },

    async rotateJoinToken(req) {
      if (!req.worker && !req.manager) throw new ValidationError(['say which join token to rotate: worker, manager or both']);
      for (let attempt = 0; attempt < 3; attempt++) {
        const cluster = store.view().cluster();
        if (!cluster) throw new NotFoundError('this node is not part of a cluster: run gantry init, or gantry join');
        const tokens = { worker: cluster.joinTokens?.worker ?? '', manager: cluster.joinTokens?.manager ?? '' };
        if (req.worker) tokens.worker = newJoinToken('worker', cluster.rootCaCert);
        if (req.manager) tokens.manager = newJoinToken('manager', cluster.rootCaCert);
        const updated: Cluster = { ...cluster, joinTokens: tokens };
        const res = await store.commit([{ op: 'update', kind: 'clusters', object: updated }]);
        if (!res.ok) continue;
        await store.waitFor(res.revision);
        const got = store.view().get('clusters', cluster.id);
        if (got) return got;
      }
      throw new ConflictError('the cluster object kept changing while rotating the join token: retry');
    },

    async serviceLogs(req, onMessage, signal) {
      const view = store.view();
      let tasks: Task[];
      const svc = resolveService(view, req.ref);
      if (svc.ok) {
        tasks = view.tasksByService(svc.value.id);
      } else if (svc.reason === 'ambiguous') {
        throw new AmbiguousError(svc.message);
      } else {
        const task = resolveTask(view, req.ref);
        if (!task.ok) {
          if (task.reason === 'ambiguous') throw new AmbiguousError(task.message);
          throw new NotFoundError(`service or task "${req.ref}" not found`);
        }
        tasks = [task.value];
      }
      tasks = tasks.filter((t) => t.nodeId !== '');
      const hostnames = new Map(view.list('nodes').map((n) => [n.id, n.description?.hostname ?? n.id]));
      const byId = new Map(tasks.map((t) => [t.id, t]));
      const opts = { follow: req.follow, tail: req.tail, sinceMs: req.sinceMs };
      const deliver = (m: LogMessage) => {
        if (signal.aborted) return;
        const t = byId.get(m.taskId);
        const nodeId = m.nodeId || t?.nodeId || '';
        onMessage(
          LogMessage.fromPartial({
            ...m,
            serviceName: m.serviceName || t?.serviceName || '',
            slot: m.slot || t?.slot || 0,
            nodeId,
            nodeHostname: m.nodeHostname || hostnames.get(nodeId) || store.view().get('nodes', nodeId)?.description?.hostname || '',
          }),
        );
      };
      if (!req.follow || !svc.ok) {
        try {
          await deps.logs.subscribe(tasks, opts, deliver, signal);
        } catch (err) {
          throw new DependencyError(`the logs of "${req.ref}" could not be read: ${(err as Error).message}`);
        }
        return;
      }
      // Following a service: also follow the tasks placed after we started (restarts, scale-up),
      // from their first line, until the client goes away or the service is removed.
      const serviceId = svc.value.id;
      const pending: Promise<void>[] = [];
      const inner = new AbortController(); // ends every subscription when the client leaves or the service goes
      const stop = () => inner.abort();
      signal.addEventListener('abort', stop);
      const follow = (more: Task[]) => {
        for (const t of more) byId.set(t.id, t);
        pending.push(
          deps.logs.subscribe(more, more === tasks ? opts : { ...opts, tail: -1 }, deliver, inner.signal).catch((err: unknown) => {
            for (const t of more) deliver(LogMessage.fromPartial({ taskId: t.id, nodeId: t.nodeId, error: `logs unavailable: ${(err as Error).message}` }));
          }),
        );
      };
      await new Promise<void>((resolve) => {
        const unsubscribe = store.subscribe((events) => {
          const fresh: Task[] = [];
          for (const e of events) {
            if (e.kind === 'services' && e.op === 'delete' && e.id === serviceId) finish();
            if (e.kind !== 'tasks' || e.op !== 'put') continue;
            const t = e.object;
            if (t.serviceId === serviceId && t.nodeId !== '' && !byId.has(t.id)) fresh.push(t);
          }
          if (fresh.length > 0 && !signal.aborted) follow(fresh);
        });
        function finish() {
          unsubscribe();
          signal.removeEventListener('abort', finish);
          inner.abort();
          resolve();
        }
        signal.addEventListener('abort', finish);
        follow(tasks);
        if (signal.aborted) finish();
      });
      await Promise.allSettled(pending);
      signal.removeEventListener('abort', stop);
    },
  };
}

function unaryHandler<Req, Res>(name: string, log: (m: string) => void, fn: (req: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    fn(call.request).then(
      (res) => callback(null, res),
      (err: unknown) => {
        const se = toServiceError(err);
        if (se.code === 13 /* INTERNAL */) log(`control ${name}: ${(err as Error)?.stack ?? String(err)}`);
        callback(se as grpc.ServiceError);
      },
    );
  };
}

/** The grpc-js implementation gantryd registers: server.addService(ControlService, controlService(deps)). */
export function controlService(deps: ControlDeps): ControlServer {
  const api = controlApi(deps);
  const log = deps.log ?? (() => {});
  const own: Record<string, unknown> = {
    getNode: unaryHandler('GetNode', log, api.getNode),
    listNodes: unaryHandler('ListNodes', log, () => api.listNodes()),
    updateNode: unaryHandler('UpdateNode', log, api.updateNode),
    removeNode: unaryHandler('RemoveNode', log, api.removeNode),
    createService: unaryHandler('CreateService', log, api.createService),
    getService: unaryHandler('GetService', log, api.getService),
    listServices: unaryHandler('ListServices', log, () => api.listServices()),
    updateService: unaryHandler('UpdateService', log, api.updateService),
    removeService: unaryHandler('RemoveService', log, api.removeService),
    getTask: unaryHandler('GetTask', log, api.getTask),
    listTasks: unaryHandler('ListTasks', log, api.listTasks),
    getCluster: unaryHandler('GetCluster', log, () => api.getCluster()),
    rotateJoinToken: unaryHandler('RotateJoinToken', log, api.rotateJoinToken),
    serviceLogs(call: grpc.ServerWritableStream<ServiceLogsRequest, LogMessage>) {
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort());
      api.serviceLogs(call.request, (m) => call.write(m), ac.signal).then(
        () => call.end(),
        (err: unknown) => {
          if (ac.signal.aborted) return;
          const se = toServiceError(err);
          if (se.code === 13) log(`control ServiceLogs: ${(err as Error)?.stack ?? String(err)}`);
          call.emit('error', se);
        },
      );
    },
  };
  // Every RPC of the service: another component's handler (deps.handlers), else ours, else UNIMPLEMENTED.
  const out: Record<string, unknown> = {};
  for (const [key, def] of Object.entries(ControlService)) {
    out[key] = (deps.handlers as Record<string, unknown> | undefined)?.[key] ?? own[key] ?? unimplemented(def.path, def.responseStream);
  }
  return out as ControlServer;
}

function unimplemented(path: string, stream: boolean): unknown {
  const error = { code: 12 /* UNIMPLEMENTED */, details: `${path} is not served by this manager yet` };
  if (stream) return (call: grpc.ServerWritableStream<unknown, unknown>) => call.emit('error', error);
  return (_call: unknown, cb: (e: unknown) => void) => cb(error);
}
