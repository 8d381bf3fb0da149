// Task predicates every controller shares (runnable, exited, terminal) and the construction of a
// new task from its service, as swarmkit's orchestrator.NewTask does.
import {
  type Node,
  NodeAvailability,
  NodeState,
  RestartCondition,
  type RestartPolicy,
  type Service,
  type Task,
  TaskState,
} from '../../proto/gen/gantry/v1/objects.ts';

export const S = TaskState;

export function stateOf(t: Task): TaskState {
  return t.status?.state ?? TaskState.TASK_STATE_NEW;
}

/** Desired to run (READY = created with a restart delay, promoted to RUNNING later). */
export function isRunnable(t: Task): boolean {
  return t.desiredState <= TaskState.TASK_STATE_RUNNING;
}

/** The container has stopped (or never will start): COMPLETE, SHUTDOWN, FAILED, REJECTED, ... */
export function hasExited(t: Task): boolean {
  return stateOf(t) >= TaskState.TASK_STATE_COMPLETE;
}

/** Exited by itself (not because a manager asked it to stop). */
export function exitedOnItsOwn(t: Task): boolean {
  const s = stateOf(t);
  return s === TaskState.TASK_STATE_COMPLETE || s === TaskState.TASK_STATE_FAILED || s === TaskState.TASK_STATE_REJECTED;
}

export function isNodeDown(n: Node | undefined): boolean {
  return !n || n.status?.state === NodeState.NODE_STATE_DOWN;
}

export function isNodeDrained(n: Node | undefined): boolean {
  return n?.spec?.availability === NodeAvailability.NODE_AVAILABILITY_DRAIN;
}

/**
 * Does this task still hold (or may still hold) resources on its node? A task that has exited, or
 * whose node is down or gone, does not; nor does one never assigned.
 */
export function isLive(t: Task, node: Node | undefined): boolean {
  if (hasExited(t)) return false;
  if (!t.nodeId) return stateOf(t) < TaskState.TASK_STATE_ASSIGNED && isRunnable(t);
  return !isNodeDown(node);
}

/** The restart policy with swarmkit's defaults filled in (all of it when the task has none). */
export interface EffectiveRestart {
  condition: RestartCondition;
  delayMs: number;
  maxAttempts: number;
  windowMs: number;
}

export const DEFAULT_RESTART_DELAY_MS = 5000;

export function restartPolicy(p: RestartPolicy | undefined): EffectiveRestart {
  return {
    condition: p?.condition ?? RestartCondition.RESTART_CONDITION_ANY,
    // The control API fills in the 5 s default at create time (manager/controlapi/defaults.ts), so
    // a stored 0 means "no delay"; only a task without any policy gets the default here.
    delayMs: p === undefined ? DEFAULT_RESTART_DELAY_MS : Math.max(0, p.delayMs),
    maxAttempts: p?.maxAttempts ?? 0,
    windowMs: p?.windowMs ?? 0,
  };
}

/** Newest first: by creation time, then by status time. */
export function newestFirst(a: Task, b: Task): number {
  return (b.meta?.createdAt ?? 0) - (a.meta?.createdAt ?? 0) || (b.status?.timestamp ?? 0) - (a.status?.timestamp ?? 0);
}

export interface NewTaskArgs {
  id: string;
  service: Service;
  slot: number;
  nodeId?: string;
  now: number;
  /** RUNNING, or READY for a restart that waits out its delay. */
  desiredState?: TaskState;
}

export function newTask(a: NewTaskArgs): Task {
  const spec = a.service.spec?.task;
  return {
    id: a.id,
    serviceId: a.service.id,
    serviceName: a.service.spec?.name ?? '',
    slot: a.slot,
    nodeId: a.nodeId ?? '',
    // Shared, not copied: stores copy (encode) what they are given, and nobody mutates objects.
    spec,
    specVersion: a.service.specVersion,
    status: {
      timestamp: a.now,
      state: TaskState.TASK_STATE_NEW,
      message: 'created',
      err: '',
      ports: [],
      health: '',
    },
    desiredState: a.desiredState ?? TaskState.TASK_STATE_RUNNING,
    // As swarmkit: the service's endpoint (allocated ports, VIPs) or at least its spec, so the
    // scheduler sees host-mode ports and the worker what to publish.
    endpoint:
      a.service.endpoint ?? (a.service.spec?.endpoint ? { spec: a.service.spec.endpoint, ports: [], virtualIps: [] } : undefined),
    networks: [],
    jobIteration: a.service.jobIteration,
  };
}

/** A copy of the task with a new desired state (managers write only this field of a task). */
export function withDesired(t: Task, desiredState: TaskState): Task {
  return { ...t, desiredState };
}
