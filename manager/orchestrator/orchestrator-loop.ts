// The loop both orchestrators share: services are marked dirty by service and task-lifecycle
// events (any node change re-reconciles all), reconciled on a debounced tick by the orchestrator's
// pure function, and applied; services whose new tasks the view does not show yet wait (InFlight).
import type { Node, Service } from '../../proto/gen/gantry/v1/objects.ts';
import { type Clock, type ControllerDeps, ControllerLoop, type Log, type TickResult } from '../controller.ts';
import { newId as defaultNewId } from '../ids.ts';
import type { ReadView, Store } from '../store/types.ts';
import type { Reconciled } from './actions.ts';
import { applyOrchestration, InFlight } from './apply.ts';
import { eventTask, taskLifecycleChanged } from './changes.ts';
import type { RestartRecord } from './restart.ts';

export interface OrchestratorOptions extends ControllerDeps {
  /** Task ids (tests may make them predictable). */
  newId?: () => string;
}

/** What one tick offers the reconcile function: the view, node lookups cached for the tick. */
export interface TickContext {
  view: ReadView;
  nodes(): Node[];
  node(id: string): Node | undefined;
  history: Map<string, RestartRecord[]>;
  now: number;
}

/** Reconciles one service, or returns undefined when its mode is not this orchestrator's. */
export type ReconcileService = (service: Service, ctx: TickContext) => Reconciled | undefined;

export class OrchestratorLoop {
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly log: Log;
  private readonly newId: () => string;
  private readonly name: string;
  private readonly reconcile: ReconcileService;
  private readonly loop: ControllerLoop;
  private readonly history = new Map<string, RestartRecord[]>();
  private readonly inflight = new InFlight();
  private dirty = new Set<string>();
  private all = true;

  constructor(opts: OrchestratorOptions, name: string, reconcile: ReconcileService) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.log = opts.log;
    this.newId = opts.newId ?? defaultNewId;
    this.name = name;
    this.reconcile = reconcile;
    this.loop = new ControllerLoop(opts, {
      name,
      interested: (e) => {
        switch (e.kind) {
          case 'services':
            this.dirty.add(e.op === 'put' ? e.object.id : e.id);
            return true;
          case 'nodes':
            // state, availability, labels, role, platform: any of them can change placement
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
    let nodeList: Node[] | undefined;
    const nodeCache = new Map<string, Node | undefined>();
    const ctx: TickContext = {
      view,
      nodes: () => (nodeList ??= view.list('nodes')),
      node: (id) => {
        if (!id) return undefined;
        if (!nodeCache.has(id)) nodeCache.set(id, view.get('nodes', id));
        return nodeCache.get(id);
      },
      history: this.history,
      now,
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
      const r = this.reconcile(service, ctx);
      if (!r) continue;
      actions.push(...r.actions);
      if (r.wakeAt !== undefined) wakeAt = Math.min(wakeAt ?? r.wakeAt, r.wakeAt);
    }
    const { again } = await applyOrchestration(
      { store: this.store, inflight: this.inflight, clock: () => this.clock.now(), now, newId: this.newId, history: this.history, log: this.log, cancelled: () => this.loop.isStopped, name: this.name },
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
