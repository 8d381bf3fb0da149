// Scheduler: the leader's loop around `schedule` — event-driven (never polling): new PENDING tasks,
// node changes and tasks that stop or move all re-run placement while anything waits to be placed.
import { type Clock, type ControllerDeps, ControllerLoop, type Log, type TickResult } from '../controller.ts';
import { eventTask, taskLifecycleChanged, taskMoved } from '../orchestrator/changes.ts';
import type { ReadView, Store, Write } from '../store/types.ts';
import { applySchedule, isSchedulable, schedule } from './schedule.ts';

export class Scheduler {
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly log: Log;
  private readonly loop: ControllerLoop;
  /** Tasks waiting to be placed, kept from events so an idle cluster costs nothing per event. */
  private readonly pending = new Set<string>();
  private scanned = false;

  constructor(opts: ControllerDeps) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.log = opts.log;
    this.loop = new ControllerLoop(opts, {
      name: 'scheduler',
      interested: (e) => {
        if (e.kind === 'nodes') return this.pending.size > 0;
        const t = eventTask(e);
        if (!t) return false;
        if (t.next && isSchedulable(t.next)) {
          const known = this.pending.has(t.next.id);
          this.pending.add(t.next.id);
          // A new pending task, or one that changed (not just our own explanation written back).
          return !known || taskMoved(t.prev, t.next);
        }
        this.pending.delete((t.next ?? t.prev)!.id);
        // Something stopped, moved, was told to stop or was deleted: capacity may have freed for
        // waiting tasks. Progress reports (ACCEPTED … RUNNING) free nothing: no pass for them.
        return this.pending.size > 0 && taskLifecycleChanged(t.prev, t.next);
      },
      tick: (view) => this.tick(view),
    });
  }

  start(): void {
    this.scanned = false;
    this.pending.clear();
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
    if (!this.scanned) {
      this.scanned = true;
      for (const t of view.list('tasks')) if (isSchedulable(t)) this.pending.add(t.id);
    }
    if (this.pending.size === 0) return {};
    const now = this.clock.now();
    const actions = schedule({ nodes: view.list('nodes'), tasks: view.list('tasks'), now });
    if (actions.length === 0) return {};
    const writes: Write[] = actions.map((a) => ({ op: 'update', kind: 'tasks', object: applySchedule(a, now) }));
    const r = await this.store.batch(writes);
    const assigned = actions.filter((a) => a.kind === 'assign').length;
    this.log.debug(`scheduler: ${assigned} assigned, ${actions.length - assigned} explained, ${r.conflicts.length} conflicts`);
    await this.store.waitFor(r.revision);
    return { again: r.conflicts.length > 0 };
  }
}
