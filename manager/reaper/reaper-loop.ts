// TaskReaper: the leader's loop around `reap` — after task, service, node or cluster changes it
// marks tasks of deleted services REMOVE and deletes stopped history beyond the retention limit.
import { TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import { type ControllerDeps, ControllerLoop, type Log, type TickResult } from '../controller.ts';
import { eventTask, taskLifecycleChanged } from '../orchestrator/changes.ts';
import type { ReadView, Store, Write } from '../store/types.ts';
import { reap } from './reaper.ts';

export class TaskReaper {
  private readonly store: Store;
  private readonly log: Log;
  private readonly loop: ControllerLoop;

  /** Housekeeping is not urgent: the default debounce is 100 ms. */
  constructor(opts: ControllerDeps) {
    this.store = opts.store;
    this.log = opts.log;
    this.loop = new ControllerLoop(
      { ...opts, debounceMs: opts.debounceMs ?? 100 },
      {
        name: 'reaper',
        interested: (e) => {
          switch (e.kind) {
            case 'tasks': {
              const t = eventTask(e);
              return t !== undefined && t.next !== undefined && taskLifecycleChanged(t.prev, t.next);
            }
            case 'services':
              return e.op === 'delete';
            case 'nodes':
            case 'clusters':
              return true;
            default:
              return false;
          }
        },
        tick: (view) => this.tick(view),
      },
    );
  }

  start(): void {
    this.loop.start();
  }

  /** Resolves once a tick in flight has finished. */
  stop(): Promise<void> {
    return this.loop.stop();
  }

  whenIdle(): Promise<void> {
    return this.loop.whenIdle();
  }

  private async tick(view: ReadView): Promise<TickResult> {
    const actions = reap({
      tasks: view.list('tasks'),
      serviceExists: (id) => view.get('services', id) !== undefined,
      node: (id) => view.get('nodes', id),
      retention: view.cluster()?.spec?.taskHistoryRetentionLimit ?? 0,
    });
    if (actions.length === 0) return {};
    const writes: Write[] = actions.map((a): Write => {
      switch (a.kind) {
        case 'remove':
          return { op: 'update', kind: 'tasks', object: { ...a.task, desiredState: TaskState.TASK_STATE_REMOVE } };
        case 'delete':
          return { op: 'delete', kind: 'tasks', id: a.task.id, version: a.task.meta?.version };
        default: {
          const never: never = a;
          throw new Error(`unknown reaper action ${JSON.stringify(never)}`);
        }
      }
    });
    const r = await this.store.batch(writes);
    if (r.conflicts.length > 0) this.log.debug(`reaper: ${r.conflicts.length} conflicts; deciding again`);
    await this.store.waitFor(r.revision);
    return { again: r.conflicts.length > 0 };
  }
}
