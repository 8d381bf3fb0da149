// One task transition per call (CONVENTIONS 4): step(task, status, controller) does the work of
// the current state and returns the next status, 'retry' (try again later) or 'idle' (nothing to do).
//
//  ASSIGNED → ACCEPTED → PREPARING --prepare()--> READY → STARTING --start()--> RUNNING --wait()--> COMPLETE | FAILED
//  any non-terminal state with desiredState ≥ SHUTDOWN --shutdown(grace)--> SHUTDOWN
//  an error before STARTING → REJECTED; at or after STARTING → FAILED
import { type Task, TaskState, type TaskStatus } from '../../proto/gen/gantry/v1/objects.ts';
import type { ContainerState } from '../runtime/types.ts';
import { stopGraceMs } from './container-config.ts';
import { type Controller, TemporaryError } from './controller.ts';

export type StepResult = TaskStatus | 'retry' | 'idle';

export function isTerminal(state: TaskState): boolean {
  return state >= TaskState.TASK_STATE_COMPLETE;
}

function next(prev: TaskStatus, state: TaskState, message: string, now: number, extra: Partial<TaskStatus> = {}): TaskStatus {
  return { ...prev, timestamp: now, state, message, err: '', ...extra };
}

function containerStatus(prev: TaskStatus, id: string, st: ContainerState | undefined): TaskStatus['container'] {
  if (!st) return prev.container;
  return { containerId: id, pid: st.pid, exitCode: st.exitCode ?? prev.container?.exitCode ?? 0 };
}

/** REJECTED before STARTING, FAILED from STARTING on (swarmkit's fatal()). */
export function fatal(prev: TaskStatus, err: unknown, now: number): TaskStatus {
  const msg = err instanceof Error ? err.message : String(err);
  const state = prev.state < TaskState.TASK_STATE_STARTING ? TaskState.TASK_STATE_REJECTED : TaskState.TASK_STATE_FAILED;
  return next(prev, state, state === TaskState.TASK_STATE_REJECTED ? 'rejected' : 'failed', now, { err: msg });
}

/** The status a stopped container gives its task. */
export function exitStatus(prev: TaskStatus, id: string, st: ContainerState, now: number): TaskStatus {
  const container = containerStatus(prev, id, st);
  if (st.exitCode === undefined) {
    return next(prev, TaskState.TASK_STATE_FAILED, 'failed', now, { container, err: 'task: container vanished without an exit status (was the host rebooted or the container deleted?)' });
  }
  if (st.exitCode === 0) return next(prev, TaskState.TASK_STATE_COMPLETE, 'finished', now, { container });
  return next(prev, TaskState.TASK_STATE_FAILED, st.oomKilled ? 'killed by the OOM killer' : 'failed', now, {
    container, err: `task: non-zero exit (${st.exitCode})`,
  });
}

export interface StepOptions {
  now(): number;
  /** Aborts a wait (the runner aborts it when desiredState changes). */
  signal?: AbortSignal;
}

export async function step(task: Task, status: TaskStatus, ctl: Controller, opts: StepOptions): Promise<StepResult> {
  const s = status.state;
  if (isTerminal(s)) return 'idle';
  if (task.desiredState >= TaskState.TASK_STATE_SHUTDOWN) {
    try {
      const st = await ctl.shutdown(stopGraceMs(task));
      return next(status, TaskState.TASK_STATE_SHUTDOWN, 'shutdown', opts.now(), { container: containerStatus(status, task.id, st) });
    } catch {
      return 'retry';
    }
  }
  try {
    switch (true) {
      case s <= TaskState.TASK_STATE_ASSIGNED:
        return next(status, TaskState.TASK_STATE_ACCEPTED, 'accepted', opts.now());
      case s === TaskState.TASK_STATE_ACCEPTED:
        return next(status, TaskState.TASK_STATE_PREPARING, 'preparing', opts.now());
      case s === TaskState.TASK_STATE_PREPARING:
        await ctl.prepare(opts.signal);
        return next(status, TaskState.TASK_STATE_READY, 'prepared', opts.now());
      case s === TaskState.TASK_STATE_READY:
        if (task.desiredState < TaskState.TASK_STATE_RUNNING) return 'idle';
        return next(status, TaskState.TASK_STATE_STARTING, 'starting', opts.now());
      case s === TaskState.TASK_STATE_STARTING:
        await ctl.start();
        // with a health check, "starting" goes out with RUNNING: the manager must not count the task
        // as up (VIP backend, update slot done) before its first probe says healthy
        return next(status, TaskState.TASK_STATE_RUNNING, 'started', opts.now(), {
          container: { containerId: task.id, pid: 0, exitCode: 0 },
          ...(ctl.hasHealthcheck?.() ? { health: 'starting' } : {}),
        });
      case s === TaskState.TASK_STATE_RUNNING: {
        const st = await ctl.wait(opts.signal);
        return exitStatus(status, task.id, st, opts.now());
      }
      default:
        return 'idle';
    }
  } catch (e) {
    if (opts.signal?.aborted || e instanceof TemporaryError) return 'retry';
    return fatal(status, e, opts.now());
  }
}
