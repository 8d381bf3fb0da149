// ReplicatedOrchestrator: the loop around reconcileReplicated and reconcileReplicatedJob — marks
// services dirty on service, task and node events, reconciles them on a debounced tick, applies.
import type { Node } from '../../proto/gen/gantry/v1/objects.ts';
import { type Clock, type ControllerDeps, ControllerLoop, type Log, type TickResult } from '../controller.ts';
import { newId as defaultNewId } from '../ids.ts';
import type { ReadView, Store } from '../store/types.ts';
import { applyOrchestration, InFlight } from './apply.ts';
import { eventTask, taskLifecycleChanged } from './changes.ts';
import { reconcileReplicatedJob } from './jobs.ts';
import { reconcileReplicated } from './replicated.ts';
import type { RestartRecord } from './restart.ts';

export interface OrchestratorOptions extends ControllerDeps {
  /** Task ids (tests may make them predictable). */
  newId?: () => string;
}

export class ReplicatedOrchestrator {
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly log: Log;
  private readonly newId: () => string;
  private readonly loop: ControllerLoop;
  private readonly history = new Map<string, RestartRecord[]>();
  private readonly inflight = new InFlight();
  private dirty = new Set<string>();
  private all = true;

  constructor(opts: OrchestratorOptions) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.log = opts.log;
    this.newId = opts.newId ?? defaultNewId;
    this.loop = new ControllerLoop(opts, {
      name: 'orchestrator/replicated',
      interested: (e) => {
        switch (e.kind) {
          case 'services':
            this.dirty.add(e.op === 'put' ? e.object.id : e.id);
            return true;
          case 'nodes':
            this.all = true;
            return true;
          case 'tasks': {
            const t = eventTask(e);
            if (!t || !taskLifecycleChanged(t.prev, t.next)) return false;
            this.dirty.add((t.next ?? t.prev)!.serviceId);
            return true;
          }
          default:
            return false;
        }
      },
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

  stop(): Promise<void> {
    const done = this.loop.stop();
    // Restart history does not survive losing leadership (swarmkit does the same).
    this.history.clear();
    this.inflight.clear();
    return done;
  }

  /** Resolves once no tick is running or due (tests). */
  whenIdle(): Promise<void> {
    return this.loop.whenIdle();
  }

  private async tick(view: ReadView): Promise<TickResult> {
    const ids = this.all ? view.list('services').map((s) => s.id) : [...this.dirty];
    this.all = false;
    this.dirty.clear();
    const now = this.clock.now();
    // Services whose new tasks the view does not show yet wait (see InFlight): deciding again
    // from a view without them would create them twice.
    const waiting = this.inflight.settle((id) => view.get('tasks', id) !== undefined, now);
    const nodeCache = new Map<string, Node | undefined>();
    const node = (id: string) => {
      if (!id) return undefined;
      if (!nodeCache.has(id)) nodeCache.set(id, view.get('nodes', id));
      return nodeCache.get(id);
    };
    const actions = [];
    let wakeAt: number | undefined;
    for (const id of ids) {
      if (waiting.has(id)) {
        this.dirty.add(id);
        continue;
      }
      const service = view.get('services', id);
      if (!service) {
        for (const k of this.history.keys()) if (k.startsWith(`${id}/`)) this.history.delete(k);
        continue;
      }
      const mode = service.spec?.mode?.$case;
      if (mode !== 'replicated' && mode !== 'replicatedJob') continue;
      const input = { service, tasks: view.tasksByService(id), node, history: this.history, now };
      const r = mode === 'replicated' ? reconcileReplicated(input) : reconcileReplicatedJob(input);
      actions.push(...r.actions);
      if (r.wakeAt !== undefined) wakeAt = Math.min(wakeAt ?? r.wakeAt, r.wakeAt);
    }
    const { again } = await applyOrchestration(
      { store: this.store, inflight: this.inflight, clock: () => this.clock.now(), now, newId: this.newId, history: this.history, log: this.log, cancelled: () => this.loop.isStopped, name: 'orchestrator/replicated' },
      actions,
    );
    if (again) this.all = true;
    const fresh = this.store.view();
    this.inflight.settle((id) => fresh.get('tasks', id) !== undefined, now);
    const expiry = this.inflight.nextExpiry();
    if (expiry !== undefined) wakeAt = Math.min(wakeAt ?? expiry, expiry);
    return { again, wakeAt };
  }
}
