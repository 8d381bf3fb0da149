// NodeHealth: the leader's loop around checkNodeHealth — wakes on node and session changes and
// when a node's grace period ends (a timer on the injected clock), and writes nodes DOWN.
import { NodeState } from '../../proto/gen/gantry/v1/objects.ts';
import { type Clock, type ControllerDeps, ControllerLoop, type Log, type TickResult } from '../controller.ts';
import type { ReadView, Store, Write } from '../store/types.ts';
import { checkNodeHealth } from './node-health.ts';

export class NodeHealth {
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly log: Log;
  private readonly loop: ControllerLoop;
  private firstSeenWithout = new Map<string, number>();
  private startedAt = 0;

  constructor(opts: ControllerDeps) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.log = opts.log;
    this.loop = new ControllerLoop(
      { ...opts, debounceMs: opts.debounceMs ?? 0 },
      {
        name: 'nodehealth',
        interested: (e) => e.kind === 'nodes' || e.kind === 'sessions' || e.kind === 'clusters',
        tick: (view) => this.tick(view),
      },
    );
  }

  start(): void {
    this.startedAt = this.clock.now();
    this.firstSeenWithout = new Map();
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
    const now = this.clock.now();
    const r = checkNodeHealth({
      nodes: view.list('nodes'),
      hasSession: (id) => view.get('sessions', id) !== undefined,
      cluster: view.cluster(),
      now,
      startedAt: this.startedAt,
      firstSeenWithout: this.firstSeenWithout,
    });
    this.firstSeenWithout = r.firstSeenWithout;
    if (r.actions.length === 0) return { wakeAt: r.wakeAt };
    const writes: Write[] = r.actions.map((a) => ({
      op: 'update',
      kind: 'nodes',
      object: {
        ...a.node,
        status: {
          ...(a.node.status ?? { addr: '', message: '', lastHeartbeat: 0, state: NodeState.NODE_STATE_DOWN }),
          state: NodeState.NODE_STATE_DOWN,
          message: a.message,
          lastHeartbeat: a.lastHeartbeat,
        },
      },
    }));
    const res = await this.store.batch(writes);
    for (const a of r.actions) {
      if (!res.conflicts.some((c) => c.id === a.node.id)) this.log.info(`nodehealth: node ${a.node.id} is down (${a.message})`);
    }
    await this.store.waitFor(res.revision);
    return { again: res.conflicts.length > 0, wakeAt: r.wakeAt };
  }
}
