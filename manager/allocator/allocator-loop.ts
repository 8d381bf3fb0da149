// Allocator: the leader's loop around `allocate` — on task events that bring NEW tasks it moves
// them to PENDING in one store batch per tick.
import { TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import { type Clock, type ControllerDeps, ControllerLoop, type Log, type TickResult } from '../controller.ts';
import type { ReadView, Store, Write } from '../store/types.ts';
import { type AllocationStep, allocate, applyAllocation, DEFAULT_STEPS } from './allocator.ts';

export interface AllocatorOptions extends ControllerDeps {
  steps?: readonly AllocationStep[];
}

export class Allocator {
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly log: Log;
  private readonly steps: readonly AllocationStep[];
  private readonly loop: ControllerLoop;
  private dirty = new Set<string>();
  private all = true;

  constructor(opts: AllocatorOptions) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.log = opts.log;
    this.steps = opts.steps ?? DEFAULT_STEPS;
    this.loop = new ControllerLoop(opts, {
      name: 'allocator',
      interested: (e) => {
        if (e.kind !== 'tasks' || e.op !== 'put' || (e.object.status?.state ?? 0) !== TaskState.TASK_STATE_NEW) return false;
        this.dirty.add(e.object.id);
        return true;
      },
      // A failed tick is retried by a wake: look at everything then, the dirty ids were consumed.
      onWake: () => {
        this.all = true;
      },
      tick: (view) => this.tick(view),
    });
  }

  start(): void {
    this.all = true;
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
    const candidates = this.all ? view.list('tasks') : [...this.dirty].map((id) => view.get('tasks', id)).filter((t) => t !== undefined);
    this.all = false;
    this.dirty.clear();
    const fresh = candidates.filter((t) => (t.status?.state ?? 0) === TaskState.TASK_STATE_NEW);
    const actions = allocate(fresh, this.steps);
    if (actions.length === 0) return {};
    const now = this.clock.now();
    const writes: Write[] = actions.map((a) => ({ op: 'update', kind: 'tasks', object: applyAllocation(a, now) }));
    const r = await this.store.batch(writes);
    if (r.conflicts.length > 0) this.log.debug(`allocator: ${r.conflicts.length} conflicts; deciding again`);
    await this.store.waitFor(r.revision);
    if (r.conflicts.length > 0) this.all = true;
    return { again: r.conflicts.length > 0 };
  }
}
