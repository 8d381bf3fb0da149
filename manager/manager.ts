// The manager role's composition root: the dispatcher and control API that every manager serves,
// and the controllers that only the leader runs (started on gaining leadership, stopped on losing it).
// It is the only manager code that knows every component (CONVENTIONS 2).
import { NodeRole } from '../proto/gen/gantry/v1/objects.ts';
import type { ControlServer } from '../proto/gen/gantry/v1/control.ts';
import type { DispatcherServer } from '../proto/gen/gantry/v1/dispatcher.ts';
import { Allocator } from './allocator/allocator-loop.ts';
import { networkHandlers } from './controlapi/network.ts';
import { backupHandlers } from './backup.ts';
import { controlService } from './controlapi/server.ts';
import { Dispatcher, type DispatcherCa, type Membership } from './dispatcher/dispatcher.ts';
import { retryUpdate } from './dispatcher/update-node.ts';
import { NodeHealth } from './nodehealth/node-health-loop.ts';
import { GlobalOrchestrator } from './orchestrator/global-loop.ts';
import { ReplicatedOrchestrator } from './orchestrator/replicated-loop.ts';
import { TaskReaper } from './reaper/reaper-loop.ts';
import { Scheduler } from './scheduler/scheduler-loop.ts';
import { Updater } from './update/updater-loop.ts';
import { type Clock, type Log, systemClock } from './controller.ts';
import type { Leadership, Store } from './store/types.ts';

export interface ManagerOptions {
  store: Store;
  leadership: Leadership;
  nodeId: string;
  /** host:port workers and other managers reach this manager's gRPC server at. */
  addr: string;
  clock?: Clock;
  log: Log;
  resolveImage?: (ref: string) => Promise<string | undefined>;
  /** etcd membership for adding managers; absent with an external etcd. */
  membership?: Membership;
  /** The cluster CA: joins get certificates and nodes authenticate by them (manager/ca). */
  ca?: DispatcherCa;
}

interface Controller {
  start(): void;
  stop(): void | Promise<void>;
}

export class Manager {
  readonly dispatcher: Dispatcher;
  private readonly opts: ManagerOptions;
  private readonly clock: Clock;
  private controllers: Controller[] = [];
  private unwatchLeadership: (() => void) | undefined;
  private unwatchLease: (() => void) | undefined;

  constructor(opts: ManagerOptions) {
    this.opts = opts;
    this.clock = opts.clock ?? systemClock;
    this.dispatcher = new Dispatcher({
      store: opts.store,
      clock: this.clock,
      log: (m) => opts.log.info(`dispatcher: ${m}`),
      managerId: opts.nodeId,
      managerAddr: opts.addr,
      membership: opts.membership,
      ca: opts.ca,
    });
  }

  controlService(): ControlServer {
    return controlService({
      store: this.opts.store,
      clock: this.clock,
      resolveImage: this.opts.resolveImage,
      logs: this.dispatcher,
      leadership: this.opts.leadership,
      log: (m: string) => this.opts.log.info(`controlapi: ${m}`),
      handlers: { ...networkHandlers({ store: this.opts.store, clock: this.clock }), ...backupHandlers({ store: this.opts.store }) },
    });
  }

  dispatcherService(): DispatcherServer {
    return this.dispatcher.service();
  }

  start(): void {
    // keys on a lost lease are gone: write the live sessions again on the new one
    const store = this.opts.store as Store & { onLeaseLost?: (l: () => void) => () => void };
    this.unwatchLease = store.onLeaseLost?.(() => void this.dispatcher.reclaimSessions());
    this.unwatchLeadership = this.opts.leadership.onChange((leader) => {
      if (leader) this.becomeLeader();
      else void this.stepDown();
    });
    if (this.opts.leadership.isLeader()) this.becomeLeader();
  }

  private becomeLeader(): void {
    if (this.controllers.length > 0) return;
    this.opts.log.info('manager: this node is the leader: starting the controllers');
    const deps = { store: this.opts.store, clock: this.clock, log: this.opts.log };
    this.controllers = [
      new NodeHealth(deps),
      new ReplicatedOrchestrator(deps),
      new GlobalOrchestrator(deps),
      new TaskReaper(deps),
      new Allocator(deps),
      new Scheduler(deps),
      new Updater(deps),
    ];
    for (const c of this.controllers) c.start();
    void this.markLeader(true);
  }

  private async stepDown(): Promise<void> {
    const running = this.controllers;
    this.controllers = [];
    if (running.length > 0) this.opts.log.info('manager: no longer the leader: stopping the controllers');
    await Promise.all(running.map((c) => c.stop()));
  }

  /** Keeps ManagerStatus.leader on the node objects true for exactly the current leader. */
  private async markLeader(leader: boolean): Promise<void> {
    const view = this.opts.store.view();
    const managers = view.list('nodes').filter((n) => n.role === NodeRole.NODE_ROLE_MANAGER);
    try {
      for (const m of managers) {
        const want = leader && m.id === this.opts.nodeId;
        if ((m.managerStatus?.leader ?? false) === want) continue;
        await retryUpdate(this.opts.store, m.id, (n) =>
          n.managerStatus && n.managerStatus.leader !== want ? { ...n, managerStatus: { ...n.managerStatus, leader: want } } : undefined,
        );
      }
    } catch (err) {
      this.opts.log.warn(`manager: could not record leadership: ${(err as Error).message}`);
    }
  }

  async stop(): Promise<void> {
    this.unwatchLeadership?.();
    this.unwatchLease?.();
    await this.stepDown();
    await this.dispatcher.stop();
  }
}
