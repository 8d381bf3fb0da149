// The updater's one apply step: writes a decision's actions. A slot's replacement is one
// transaction that also compares the old task's version, so two leaders can never both replace it.
import { type Service, TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import type { Log } from '../controller.ts';
import { newTask, withDesired } from '../orchestrator/task.ts';
import type { Store, Write } from '../store/types.ts';
import type { UpdateAction } from './decide.ts';

export interface UpdateApplyContext {
  store: Store;
  now: number;
  newId(): string;
  log: Log;
}

/** Returns again=true when a write conflicted (the next tick decides again from the fresh view). */
export async function applyUpdate(ctx: UpdateApplyContext, actions: readonly UpdateAction[]): Promise<{ again: boolean }> {
  if (actions.length === 0) return { again: false };
  let again = false;
  let revision = 0;
  const simple: Write[] = [];
  const txns: Write[][] = [];
  for (const a of actions) {
    switch (a.kind) {
      case 'promote':
        simple.push({ op: 'update', kind: 'tasks', object: withDesired(a.task, TaskState.TASK_STATE_RUNNING) });
        break;
      case 'stop':
        simple.push({ op: 'update', kind: 'tasks', object: withDesired(a.task, TaskState.TASK_STATE_SHUTDOWN) });
        break;
      case 'replace': {
        const stopFirst = a.order === 'stop-first';
        const fresh = newTask({
          id: ctx.newId(),
          service: a.service,
          slot: a.slot,
          nodeId: a.nodeId,
          now: ctx.now,
          desiredState: stopFirst ? TaskState.TASK_STATE_READY : TaskState.TASK_STATE_RUNNING,
        });
        // start-first rewrites the old task unchanged: the transaction then holds only if nobody
        // (another leader's updater, the orchestrator) touched it since this decision.
        txns.push([
          { op: 'update', kind: 'tasks', object: stopFirst ? withDesired(a.old, TaskState.TASK_STATE_SHUTDOWN) : a.old },
          { op: 'create', kind: 'tasks', object: fresh },
        ]);
        break;
      }
      case 'stage': {
        const fresh = newTask({ id: ctx.newId(), service: a.service, slot: a.slot, nodeId: a.nodeId, now: ctx.now, desiredState: TaskState.TASK_STATE_READY });
        txns.push([
          { op: 'update', kind: 'tasks', object: a.old },
          { op: 'create', kind: 'tasks', object: fresh },
        ]);
        break;
      }
      case 'status':
        txns.push([{ op: 'update', kind: 'services', object: { ...a.service, updateStatus: a.status } }]);
        break;
      case 'rollback': {
        const s: Service = {
          ...a.service,
          spec: a.service.previousSpec,
          previousSpec: a.service.spec,
          specVersion: a.service.specVersion + 1,
          updateStatus: a.status,
        };
        txns.push([{ op: 'update', kind: 'services', object: s }]);
        break;
      }
      default: {
        const never: never = a;
        throw new Error(`unknown update action ${JSON.stringify(never)}`);
      }
    }
  }
  // All at once: each write checks its own versions, so their order does not matter, and a slot's
  // next step then waits for one store round trip instead of two.
  const [batched, results] = await Promise.all([
    simple.length > 0 ? ctx.store.batch(simple) : undefined,
    Promise.all(txns.map((w) => ctx.store.commit(w))),
  ]);
  if (batched) {
    revision = Math.max(revision, batched.revision);
    if (batched.conflicts.length > 0) again = true;
  }
  for (const r of results) {
    if (r.ok) revision = Math.max(revision, r.revision);
    else again = true;
  }
  if (again) ctx.log.debug('updater: some writes conflicted; deciding again');
  if (revision > 0) await ctx.store.waitFor(revision);
  return { again };
}
