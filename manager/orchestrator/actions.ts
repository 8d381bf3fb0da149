// The orchestrators' decisions, as values: create a task in a slot (or on a node), replace a task,
// shut one down, promote a delayed restart, finish a job's task. The reconcilers return them; apply.ts writes them.
import type { Service, Task } from '../../proto/gen/gantry/v1/objects.ts';
import type { Cause } from './restart.ts';

export type OrchestratorAction =
  /** A new task in `slot` (replicated) or on `nodeId` (global, slot 0). delayUntil set = created READY. */
  | { kind: 'create'; service: Service; slot: number; nodeId?: string; delayUntil?: number; restart: boolean }
  /** Shut `task` down, and only once that landed create its replacement in the same slot/node. */
  | { kind: 'replace'; task: Task; service: Service; slot: number; nodeId?: string; delayUntil?: number; cause: Cause }
  /** desiredState → SHUTDOWN (scale down, node gone, restart policy says no, duplicate). */
  | { kind: 'shutdown'; task: Task; reason: string }
  /** desiredState READY → RUNNING once its restart delay has passed. */
  | { kind: 'promote'; task: Task }
  /** A job's task completed: desiredState → COMPLETE (done; nothing restarts it). */
  | { kind: 'finish'; task: Task };

export interface Reconciled {
  actions: OrchestratorAction[];
  /** The earliest time a pending restart delay ends (to tick again then), if any. */
  wakeAt?: number;
}

export function describe(a: OrchestratorAction): string {
  switch (a.kind) {
    case 'create':
      return `create ${a.service.spec?.name ?? a.service.id} ${a.nodeId ? `on ${a.nodeId}` : `slot ${a.slot}`}`;
    case 'replace':
      return `replace ${a.task.id} (${a.cause})`;
    case 'shutdown':
      return `shut down ${a.task.id} (${a.reason})`;
    case 'promote':
      return `promote ${a.task.id}`;
    case 'finish':
      return `finish ${a.task.id}`;
    default: {
      const never: never = a;
      return String(never);
    }
  }
}
