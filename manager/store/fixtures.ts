// Fixture builders for tests: fully-formed Node, Service, Task, Cluster and Session objects from a few
// readable options (`fixtures.service({ replicas: 3 })`), and `seed` to load them into a store.
import {
  Cluster,
  Node,
  NodeAvailability,
  NodeRole,
  NodeState,
  RestartCondition,
  Service,
  type ServiceSpec,
  Session,
  Task,
  TaskState,
  type TaskSpec,
} from '../../proto/gen/gantry/v1/objects.ts';
import { newId } from '../ids.ts';
import type { Kind, Objects, ReadView, Store, Write } from './types.ts';

export type TaskStateName =
  | 'new'
  | 'pending'
  | 'assigned'
  | 'accepted'
  | 'preparing'
  | 'ready'
  | 'starting'
  | 'running'
  | 'complete'
  | 'shutdown'
  | 'failed'
  | 'rejected'
  | 'remove'
  | 'orphaned';

/** 'running' → TaskState.TASK_STATE_RUNNING; numbers pass through. */
export function taskState(s: TaskStateName | TaskState): TaskState {
  if (typeof s === 'number') return s;
  const v = (TaskState as Record<string, TaskState>)[`TASK_STATE_${s.toUpperCase()}`];
  if (v === undefined) throw new Error(`unknown task state "${s}"`);
  return v;
}

/** 512 → 512 bytes; '512MiB', '1GiB', '64k' → bytes. */
export function bytes(v: number | string): number {
  if (typeof v === 'number') return v;
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)$/i.exec(v.trim());
  if (!m) throw new Error(`cannot read "${v}" as a size (try 512MiB)`);
  const pow = { '': 0, k: 1, m: 2, g: 3, t: 4 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.round(Number(m[1]) * 1024 ** pow);
}

const meta = () => ({ version: 0, createdAt: 0, updatedAt: 0 });

export interface NodeOptions {
  id?: string;
  hostname?: string;
  labels?: Record<string, string>;
  role?: 'worker' | 'manager';
  state?: 'unknown' | 'down' | 'ready' | 'disconnected';
  availability?: 'active' | 'pause' | 'drain';
  /** whole CPUs (fractions allowed); default 4 */
  cpus?: number;
  /** bytes or '8GiB'; default 8GiB */
  memory?: number | string;
  addr?: string;
  os?: string;
  architecture?: string;
  engineLabels?: Record<string, string>;
}

export function node(o: NodeOptions = {}): Node {
  const id = o.id ?? newId();
  const role = o.role === 'manager' ? NodeRole.NODE_ROLE_MANAGER : NodeRole.NODE_ROLE_WORKER;
  const hostname = o.hostname ?? `host-${id.slice(0, 6)}`;
  return Node.fromPartial({
    id,
    meta: meta(),
    role,
    spec: {
      name: '',
      labels: o.labels ?? {},
      desiredRole: role,
      availability: {
        active: NodeAvailability.NODE_AVAILABILITY_ACTIVE,
        pause: NodeAvailability.NODE_AVAILABILITY_PAUSE,
        drain: NodeAvailability.NODE_AVAILABILITY_DRAIN,
      }[o.availability ?? 'active'],
    },
    description: {
      hostname,
      platform: { os: o.os ?? 'linux', architecture: o.architecture ?? 'x86_64' },
      resources: { nanoCpus: Math.round((o.cpus ?? 4) * 1e9), memoryBytes: bytes(o.memory ?? '8GiB') },
      engineVersion: 'gantry-test',
      engineLabels: o.engineLabels ?? {},
      runtimes: ['native'],
    },
    status: {
      state: {
        unknown: NodeState.NODE_STATE_UNKNOWN,
        down: NodeState.NODE_STATE_DOWN,
        ready: NodeState.NODE_STATE_READY,
        disconnected: NodeState.NODE_STATE_DISCONNECTED,
      }[o.state ?? 'ready'],
      addr: o.addr ?? '127.0.0.1',
    },
    managerStatus: role === NodeRole.NODE_ROLE_MANAGER ? { addr: o.addr ?? '127.0.0.1', reachability: 'reachable' } : undefined,
  });
}

export interface ServiceOptions {
  id?: string;
  name?: string;
  /** replicated mode with this many replicas (default 1) */
  replicas?: number;
  mode?: 'replicated' | 'global' | 'replicated-job' | 'global-job';
  image?: string;
  command?: string[];
  args?: string[];
  env?: string[];
  labels?: Record<string, string>;
  constraints?: string[];
  /** placement preferences, e.g. ['node.labels.zone'] */
  spread?: string[];
  maxReplicasPerNode?: number;
  /** whole CPUs */
  reserveCpus?: number;
  reserveMemory?: number | string;
  limitCpus?: number;
  limitMemory?: number | string;
  restart?: { condition?: 'any' | 'on-failure' | 'none'; delayMs?: number; maxAttempts?: number; windowMs?: number };
  /** merged over the built spec (shallow, at the spec level) for anything else */
  spec?: Partial<ServiceSpec>;
  specVersion?: number;
}

export function taskSpec(o: ServiceOptions = {}): TaskSpec {
  const res = (cpus?: number, mem?: number | string) =>
    cpus === undefined && mem === undefined
      ? undefined
      : { nanoCpus: Math.round((cpus ?? 0) * 1e9), memoryBytes: mem === undefined ? 0 : bytes(mem) };
  return Service.fromPartial({
    spec: {
      task: {
        container: {
          image: o.image ?? 'busybox:latest',
          command: o.command ?? [],
          args: o.args ?? ['sleep', '3600'],
          env: o.env ?? [],
        },
        resources: {
          reservations: res(o.reserveCpus, o.reserveMemory),
          limits: res(o.limitCpus, o.limitMemory),
        },
        restart: {
          condition: {
            any: RestartCondition.RESTART_CONDITION_ANY,
            'on-failure': RestartCondition.RESTART_CONDITION_ON_FAILURE,
            none: RestartCondition.RESTART_CONDITION_NONE,
          }[o.restart?.condition ?? 'any'],
          delayMs: o.restart?.delayMs ?? 0,
          maxAttempts: o.restart?.maxAttempts ?? 0,
          windowMs: o.restart?.windowMs ?? 0,
        },
        placement: {
          constraints: o.constraints ?? [],
          preferences: (o.spread ?? []).map((spread) => ({ spread })),
          maxReplicas: o.maxReplicasPerNode ?? 0,
        },
      },
    },
  }).spec!.task!;
}

export function service(o: ServiceOptions = {}): Service {
  const id = o.id ?? newId();
  const modeName = o.mode ?? 'replicated';
  const mode: ServiceSpec['mode'] =
    modeName === 'global'
      ? { $case: 'global', value: {} }
      : modeName === 'global-job'
        ? { $case: 'globalJob', value: {} }
        : modeName === 'replicated-job'
          ? { $case: 'replicatedJob', value: { maxConcurrent: o.replicas ?? 1, totalCompletions: o.replicas ?? 1 } }
          : { $case: 'replicated', value: { replicas: o.replicas ?? 1 } };
  const s = Service.fromPartial({
    id,
    meta: meta(),
    specVersion: o.specVersion ?? 1,
    spec: { name: o.name ?? `svc-${id.slice(0, 6)}`, labels: o.labels ?? {}, mode },
  });
  s.spec!.task = taskSpec(o);
  if (o.spec) Object.assign(s.spec!, o.spec);
  return s;
}

export interface TaskOptions {
  id?: string;
  /** copies serviceId, serviceName, spec and specVersion from it */
  service?: Service;
  serviceId?: string;
  serviceName?: string;
  slot?: number;
  nodeId?: string;
  /** observed state (default: 'running' if nodeId is set, else 'pending') */
  state?: TaskStateName | TaskState;
  desiredState?: TaskStateName | TaskState;
  specVersion?: number;
  spec?: TaskSpec;
  message?: string;
  err?: string;
  /** status.timestamp, ms */
  timestamp?: number;
  exitCode?: number;
}

export function task(o: TaskOptions = {}): Task {
  const state = taskState(o.state ?? (o.nodeId ? 'running' : 'pending'));
  return Task.fromPartial({
    id: o.id ?? newId(),
    meta: meta(),
    serviceId: o.serviceId ?? o.service?.id ?? '',
    serviceName: o.serviceName ?? o.service?.spec?.name ?? '',
    slot: o.slot ?? 0,
    nodeId: o.nodeId ?? '',
    spec: o.spec ?? o.service?.spec?.task ?? taskSpec(),
    specVersion: o.specVersion ?? o.service?.specVersion ?? 1,
    desiredState: taskState(o.desiredState ?? 'running'),
    status: {
      state,
      timestamp: o.timestamp ?? 0,
      message: o.message ?? '',
      err: o.err ?? '',
      container: o.exitCode === undefined ? undefined : { exitCode: o.exitCode },
    },
  });
}

export function cluster(o: { id?: string; name?: string; nodeDownGraceMs?: number; heartbeatPeriodMs?: number } = {}): Cluster {
  return Cluster.fromPartial({
    id: o.id ?? newId(),
    meta: meta(),
    spec: {
      name: o.name ?? 'default',
      taskHistoryRetentionLimit: 5,
      heartbeatPeriodMs: o.heartbeatPeriodMs ?? 1000,
      nodeDownGraceMs: o.nodeDownGraceMs ?? 3000,
    },
    joinTokens: { worker: 'SWMTKN-test-worker', manager: 'SWMTKN-test-manager' },
  });
}

export function session(o: { nodeId: string; managerId?: string; sessionId?: string; startedAt?: number }): Session {
  return Session.fromPartial({
    nodeId: o.nodeId,
    sessionId: o.sessionId ?? newId(),
    managerId: o.managerId ?? 'manager-1',
    managerAddr: '127.0.0.1:0',
    startedAt: o.startedAt ?? 0,
    addr: '127.0.0.1',
  });
}

/**
 * Creates the given objects in one batch and waits until the store's view has them; returns the
 * view (objects there carry their real versions). Throws if any already existed.
 */
export async function seed(store: Store, objects: Partial<{ [K in Kind]: Objects[K][] }>): Promise<ReadView> {
  const writes: Write[] = [];
  for (const kind of Object.keys(objects) as Kind[]) {
    for (const object of objects[kind] ?? []) writes.push({ op: 'create', kind, object } as Write);
  }
  const { revision, conflicts } = await store.batch(writes);
  if (conflicts.length > 0) throw new Error(`seed: ${conflicts.length} conflicts, first ${JSON.stringify(conflicts[0])}`);
  await store.waitFor(revision);
  return store.view();
}

export const fixtures = { node, service, task, cluster, session, seed, taskSpec, taskState, bytes };
