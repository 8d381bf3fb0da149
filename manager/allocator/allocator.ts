// The allocator's decision, pure: which NEW tasks move to PENDING. Networks, task IPs and published
// ports arrive later: each is a step in `allocate` that may hold a task at NEW with a reason.
import { type Task, TaskState } from '../../proto/gen/gantry/v1/objects.ts';

export type AllocatorAction =
  /** Resources allocated (none yet): the task may be scheduled. */
  | { kind: 'pending'; task: Task }
  /** Cannot allocate yet; the task stays NEW with this message (written only when it changed). */
  | { kind: 'blocked'; task: Task; message: string };

export const PENDING_MESSAGE = 'pending task scheduling';

/**
 * The seam for cluster-wide resources. A step returns undefined when the task has what it needs,
 * or a message saying which resource is missing ("network \"front\" has no free address in 10.0.1.0/24").
 */
export type AllocationStep = (task: Task) => string | undefined;

/** Today: no step (networks and ports are a later issue). */
export const DEFAULT_STEPS: readonly AllocationStep[] = [];

export function allocate(tasks: readonly Task[], steps: readonly AllocationStep[] = DEFAULT_STEPS): AllocatorAction[] {
  const out: AllocatorAction[] = [];
  for (const t of tasks) {
    if ((t.status?.state ?? TaskState.TASK_STATE_NEW) !== TaskState.TASK_STATE_NEW) continue;
    if (t.desiredState > TaskState.TASK_STATE_RUNNING) continue; // shut down before allocation: the reaper removes it
    let blocked: string | undefined;
    for (const step of steps) {
      blocked = step(t);
      if (blocked) break;
    }
    if (!blocked) out.push({ kind: 'pending', task: t });
    else if (t.status?.message !== blocked) out.push({ kind: 'blocked', task: t, message: blocked });
  }
  return out;
}

export function applyAllocation(a: AllocatorAction, now: number): Task {
  switch (a.kind) {
    case 'pending':
      return {
        ...a.task,
        status: { ...a.task.status!, state: TaskState.TASK_STATE_PENDING, timestamp: now, message: PENDING_MESSAGE, err: '' },
      };
    case 'blocked':
      return { ...a.task, status: { ...a.task.status!, timestamp: now, message: a.message } };
    default: {
      const never: never = a;
      throw new Error(`unknown allocator action ${JSON.stringify(never)}`);
    }
  }
}
