// Updater: the loop around decideUpdate — marks services dirty on service, task and node events,
// decides on a debounced tick, applies, and wakes for delays and monitor windows. Leader-only.
import type { Node } from '../../proto/gen/gantry/v1/objects.ts';
import { type Clock, type ControllerDeps, ControllerLoop, type Log, type TickResult } from '../controller.ts';
import { newId as defaultNewId } from '../ids.ts';
import type { ReadView, Store } from '../store/types.ts';
import { applyUpdate } from './apply.ts';
import { decideUpdate, type UpdateAction } from './decide.ts';

export interface UpdaterOptions extends ControllerDeps {
  newId?: () => string;
  /** Prepare the next slots ahead: true/false, or when undefined start-first and stop-first with parallelism 1 (GANTRY_UPDATE_PREPARE_AHEAD=1|0 sets it). */
  prepareAhead?: boolean;
  /** Slots kept prepared ahead (default: parallelism; start-first 2 × parallelism, at least 3; GANTRY_UPDATE_PREPARE_DEPTH=N sets it). */
  prepareDepth?: number;
}

export class Updater {
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly log: Log;
  private readonly newId: () => string;
  private readonly prepareAhead: boolean | undefined;
  private readonly prepareDepth: number | undefined;
  private readonly loop: ControllerLoop;
  private dirty = new Set<string>();
  private all = true;

  constructor(opts: UpdaterOptions) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.log = opts.log;
    this.newId = opts.newId ?? defaultNewId;
    const env = process.env.GANTRY_UPDATE_PREPARE_AHEAD;
    this.prepareAhead = opts.prepareAhead ?? (env === '1' ? true : env === '0' ? false : undefined);
    const depth = Number(process.env.GANTRY_UPDATE_PREPARE_DEPTH);
    this.prepareDepth = opts.prepareDepth ?? (Number.isInteger(depth) && depth > 0 ? depth : undefined);
    // No debounce by default: the store delivers a watch response's events together already, and
    // each slot's next step waits on this reaction (a task came up, an old one stopped).
    this.loop = new ControllerLoop({ ...opts, debounceMs: opts.debounceMs ?? 0 }, {
      name: 'updater',
      interested: (e) => {
        switch (e.kind) {
          case 'services':
            this.dirty.add(e.op === 'put' ? e.object.id : e.id);
            return true;
          case 'nodes':
            this.all = true;
            return true;
          case 'tasks': {
            const next = e.op === 'put' ? e.object : undefined;
            const prev = e.previous;
            if (next && prev && next.desiredState === prev.desiredState && next.nodeId === prev.nodeId &&
              (next.status?.state ?? 0) === (prev.status?.state ?? 0) && (next.status?.health ?? '') === (prev.status?.health ?? '')) return false;
            this.dirty.add((next ?? prev)!.serviceId);
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
    return this.loop.stop();
  }

  whenIdle(): Promise<void> {
    return this.loop.whenIdle();
  }

  private async tick(view: ReadView): Promise<TickResult> {
    const ids = this.all ? view.list('services').map((s) => s.id) : [...this.dirty];
    this.all = false;
    this.dirty.clear();
    const now = this.clock.now();
    const nodes = new Map<string, Node | undefined>();
    const node = (id: string) => {
      if (!id) return undefined;
      if (!nodes.has(id)) nodes.set(id, view.get('nodes', id));
      return nodes.get(id);
    };
    let nodeList: Node[] | undefined;
    const actions: UpdateAction[] = [];
    let wakeAt: number | undefined;
    for (const id of ids) {
      const service = view.get('services', id);
      const mode = service?.spec?.mode?.$case;
      if (!service || (mode !== 'replicated' && mode !== 'global')) continue;
      const d = decideUpdate({ service, tasks: view.tasksByService(id), node, nodes: mode === 'global' ? (nodeList ??= view.list('nodes')) : undefined, now, prepareAhead: this.prepareAhead, prepareDepth: this.prepareDepth });
      actions.push(...d.actions);
      if (d.wakeAt !== undefined) wakeAt = Math.min(wakeAt ?? d.wakeAt, d.wakeAt);
      for (const a of d.actions) if (a.kind === 'status' || a.kind === 'rollback') this.log.info(`updater: service ${service.spec?.name}: ${a.status.message}`);
    }
    if (this.loop.isStopped) return {};
    const { again } = await applyUpdate({ store: this.store, now, newId: this.newId, log: this.log }, actions);
    return { again, wakeAt };
  }
}
