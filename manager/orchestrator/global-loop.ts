// GlobalOrchestrator: the loop around reconcileGlobal and reconcileGlobalJob — any node change
// re-reconciles every global service; service and task changes re-reconcile their service.
import { type Clock, ControllerLoop, type Log, type TickResult } from '../controller.ts';
import { newId as defaultNewId } from '../ids.ts';
import type { ReadView, Store } from '../store/types.ts';
import { applyOrchestration, InFlight } from './apply.ts';
import { eventTask, taskLifecycleChanged } from './changes.ts';
import { reconcileGlobal } from './global.ts';
import { reconcileGlobalJob } from './jobs.ts';
import type { OrchestratorOptions } from './replicated-loop.ts';
import type { RestartRecord } from './restart.ts';

export class GlobalOrchestrator {
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
      name: 'orchestrator/global',
      interested: (e) => {
        switch (e.kind) {
          case 'services':
            this.dirty.add(e.op === 'put' ? e.object.id : e.id);
            return true;
          case 'nodes':
            // Only what the global orchestrator looks at: state, availability, labels, role, platform.
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
    this.history.clear();
    this.inflight.clear();
    return done;
  }

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
    const nodes = view.list('nodes');
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
      if (mode !== 'global' && mode !== 'globalJob') continue;
      const input = { service, tasks: view.tasksByService(id), nodes, history: this.history, now };
      const r = mode === 'global' ? reconcileGlobal(input) : reconcileGlobalJob(input);
      actions.push(...r.actions);
      if (r.wakeAt !== undefined) wakeAt = Math.min(wakeAt ?? r.wakeAt, r.wakeAt);
    }
    const { again } = await applyOrchestration(
      { store: this.store, inflight: this.inflight, clock: () => this.clock.now(), now, newId: this.newId, history: this.history, log: this.log, cancelled: () => this.loop.isStopped, name: 'orchestrator/global' },
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
