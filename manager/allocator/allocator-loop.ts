// Allocator: the leader's loop around `allocate` — on task events that bring NEW tasks it moves
// them to PENDING in one store batch per tick.
import { TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import { type Clock, type ControllerDeps, ControllerLoop, type Log, type TickResult } from '../controller.ts';
import type { ReadView, Store, Write } from '../store/types.ts';
import { type AllocationStep, allocate, applyAllocation, DEFAULT_STEPS } from './allocator.ts';
import { holdsAddress } from './network-allocator.ts';
import { networkWrites } from './network-tick.ts';

export interface AllocatorOptions extends ControllerDeps {
  steps?: readonly AllocationStep[];
  /** Networks, addresses, VIPs and published ports (default on). */
  networks?: boolean;
}

export class Allocator {
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly log: Log;
  private readonly steps: readonly AllocationStep[];
  private readonly loop: ControllerLoop;
  private dirty = new Set<string>();
  private all = true;
  private netDirty = true;
  private readonly networks: boolean;

  constructor(opts: AllocatorOptions) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.log = opts.log;
    this.steps = opts.steps ?? DEFAULT_STEPS;
    this.networks = opts.networks ?? true;
    this.loop = new ControllerLoop(opts, {
      name: 'allocator',
      interested: (e) => {
        if (this.networks && (e.kind === 'networks' || e.kind === 'services' || (e.kind === 'nodes' && (e.op === 'delete' || !e.previous)))) {
          this.netDirty = true;
          return true;
        }
        if (this.networks && e.kind === 'tasks' && e.op === 'put' && e.object.networks.length > 0 && e.previous && holdsAddress(e.previous) && !holdsAddress(e.object)) {
          this.all = true; // an address came free: tasks waiting for one may go now
          return true;
        }
        if (e.kind !== 'tasks' || e.op !== 'put' || (e.object.status?.state ?? 0) !== TaskState.TASK_STATE_NEW) return false;
        this.dirty.add(e.object.id);
        return true;
      },
      // A failed tick is retried by a wake: look at everything then, the dirty ids were consumed.
      onWake: () => {
        this.all = true;
        this.netDirty = true;
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
    let fresh = candidates.filter((t) => (t.status?.state ?? 0) === TaskState.TASK_STATE_NEW);
    const now = this.clock.now();
    const writes: Write[] = [];
    if (this.networks) {
      const net = networkWrites(view, fresh, this.netDirty, now);
      this.netDirty = false;
      writes.push(...net.writes);
      fresh = net.tasks;
    }
    const actions = allocate(fresh, this.steps);
    writes.push(...actions.map((a): Write => ({ op: 'update', kind: 'tasks', object: applyAllocation(a, now) })));
    if (writes.length === 0) return {};
    const r = await this.store.batch(writes);
    if (r.conflicts.length > 0) this.log.debug(`allocator: ${r.conflicts.length} conflicts; deciding again`);
    await this.store.waitFor(r.revision);
    if (r.conflicts.length > 0) this.all = true;
    return { again: r.conflicts.length > 0 };
  }
}
