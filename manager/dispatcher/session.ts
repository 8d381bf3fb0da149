// One worker's session on this manager: registration, the assignment stream (complete set, then
// changes), heartbeats, status reports and log subscriptions. The protocol is drawn in
// proto/gantry/v1/dispatcher.proto; the lifecycle here is:
//
//   Register ─▶ node id from the TLS certificate (CN) ─▶ Session key (on our lease) + node READY ─▶ SessionInfo
//            ─▶ Assignments(full) ─▶ Assignments(changes)… until the stream ends, the heartbeat
//               is late (grace), the node is removed, or another manager took the session over
//   end ─▶ delete our Session key ─▶ node DISCONNECTED(lastHeartbeat) unless a newer session exists
import type * as grpc from '@grpc/grpc-js';
import type { LogChunk, LogDone, LogSubscribe, ManagerMessage, SecretValues, WorkerMessage } from '../../proto/gen/gantry/v1/dispatcher.ts';
import { type Node, NodeRole, NodeState, type Session, type Task } from '../../proto/gen/gantry/v1/objects.ts';
import { newId } from '../ids.ts';
import type { Store, StoreEvent } from '../store/types.ts';
import { NetworkStateTracker, touchesNetworkState } from '../allocator/network-state.ts';
import { type AssignmentDelta, assignmentChanges, assignmentSet } from './assignments.ts';
import type { StatusWriter } from './status-writer.ts';
import { callerId } from '../ca/authz.ts';
import { secretMatches } from './tokens.ts';
import { retryUpdate } from './update-node.ts';

export interface SessionDeps {
  store: Store;
  clock: { now(): number };
  log: (m: string) => void;
  statuses: StatusWriter;
  managerId: string;
  managerAddr: string;
  heartbeatMs(): number;
  graceMs(): number;
  managers(): string[];
  /** Nodes authenticate by certificate (CN = node id): the Register message's id and secret are ignored. */
  certificates?: boolean;
  /**
   * The values of the secrets/configs `tasks` use that are not in `sent` yet (manager/secrets):
   * a node receives only what its assigned tasks reference.
   */
  secretValues?(tasks: Task[], sent: Set<string>): SecretValues | undefined;
  onOpen(s: WorkerSession): void;
  onClose(s: WorkerSession): void;
}

type Call = grpc.ServerDuplexStream<WorkerMessage, ManagerMessage>;

export interface LogHandlers {
  chunk(c: LogChunk): void;
  done(d: LogDone): void;
}

const REGISTER_TIMEOUT_MS = 10_000;
const SESSION_KEY_ATTEMPTS = 8;
/** After a conflict, how long to wait for the view to move before the next attempt. */
const SESSION_KEY_VIEW_WAIT_MS = 500;
const ASSIGNMENT_DEBOUNCE_MS = 5;

function managerAddrChanged(ev: StoreEvent): boolean {
  if (ev.kind !== 'nodes') return false;
  const addr = (n: Node | undefined) => (n?.role === NodeRole.NODE_ROLE_MANAGER ? (n.managerStatus?.addr ?? '') : '');
  return ev.op === 'delete' ? addr(ev.previous) !== '' : addr(ev.object) !== addr(ev.previous);
}

export class WorkerSession {
  nodeId = '';
  readonly sessionId = newId();
  private readonly call: Call;
  private readonly deps: SessionDeps;
  private lastHeartbeat = 0;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private pendingDelta: AssignmentDelta = { tasks: [], removed: [] };
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly logSubs = new Map<string, LogHandlers>();
  private closed = false;
  private session: Session | undefined;
  private readonly netState = new NetworkStateTracker();
  private netDirty = false;
  private lastManagers = '';
  private readonly sentSecrets = new Set<string>();
  private keyWrite: Promise<void> | undefined;

  constructor(call: Call, deps: SessionDeps) {
    this.call = call;
    this.deps = deps;
  }

  run(): void {
    const registerTimer = setTimeout(() => this.fail('INVALID_ARGUMENT', 'no Register message within 10s'), REGISTER_TIMEOUT_MS);
    this.call.on('data', (msg: WorkerMessage) => {
      const m = msg.msg;
      if (!m) return;
      if (!this.nodeId) {
        clearTimeout(registerTimer);
        if (m.$case !== 'register') return this.fail('FAILED_PRECONDITION', 'the first message of a session must be Register');
        const certId = this.deps.certificates ? callerId(this.call) : undefined;
        if (this.deps.certificates && !certId) return this.fail('UNAUTHENTICATED', 'a session needs the certificate of a node of this cluster');
        const nodeId = certId ?? m.value.nodeId;
        void this.register(nodeId, m.value.nodeSecret, m.value, certId !== undefined).catch((err) =>
          this.fail('UNAVAILABLE', `registering node ${nodeId} failed: ${(err as Error).message}`),
        );
        return;
      }
      switch (m.$case) {
        case 'register':
          return this.fail('FAILED_PRECONDITION', 'Register sent twice in one session');
        case 'heartbeat':
          this.lastHeartbeat = this.deps.clock.now();
          return;
        case 'statuses':
          this.lastHeartbeat = this.deps.clock.now();
          for (const u of m.value.updates) if (u.status) this.deps.statuses.enqueue(this.nodeId, u.taskId, u.status);
          return;
        case 'logChunk':
          this.logSubs.get(m.value.subscriptionId)?.chunk(m.value);
          return;
        case 'logDone': {
          const h = this.logSubs.get(m.value.subscriptionId);
          this.logSubs.delete(m.value.subscriptionId);
          h?.done(m.value);
          return;
        }
        default: {
          const never: never = m;
          return never;
        }
      }
    });
    this.call.on('end', () => this.close('worker ended the session'));
    this.call.on('error', () => this.close('stream error'));
    this.call.on('cancelled', () => this.close('worker went away'));
    this.call.on('close', () => this.close('stream closed'));
  }

  private async register(nodeId: string, secret: string, reg: { description?: Node['description']; addr: string }, byCertificate: boolean): Promise<void> {
    const { store, clock } = this.deps;
    const node = store.view().get('nodes', nodeId);
    if (!node || (!byCertificate && !secretMatches(secret, node.secretHash))) {
      return this.fail(
        'UNAUTHENTICATED',
        node
          ? `node ${nodeId} presented a wrong node secret: it is not the host that joined as this node`
          : `node ${nodeId} is not part of this cluster (it was removed?): run 'gantry leave --force' on it and join again`,
      );
    }
    this.nodeId = nodeId;
    this.lastHeartbeat = clock.now();
    const peer = this.call.getPeer();
    const addr = reg.addr || peer.replace(/^ipv4:|^ipv6:/, '').replace(/:\d+$/, '');

    // Subscribe before reading, so no change between the read and the subscription is missed.
    let baseRevision = Number.POSITIVE_INFINITY;
    const early: { events: StoreEvent[]; revision: number }[] = [];
    this.unsubscribe = store.subscribe((events, revision) => {
      if (baseRevision === Number.POSITIVE_INFINITY) early.push({ events, revision });
      else if (revision > baseRevision) this.onStoreEvents(events);
    });

    const session: Session = {
      nodeId,
      sessionId: this.sessionId,
      managerId: this.deps.managerId,
      managerAddr: this.deps.managerAddr,
      startedAt: clock.now(),
      addr,
    };
    this.session = session;
    await this.writeSessionKey();
    await retryUpdate(store, nodeId, (n) => ({
      ...n,
      description: reg.description ?? n.description,
      status: { state: NodeState.NODE_STATE_READY, message: '', addr, lastHeartbeat: clock.now() },
    }));
    if (this.closed) return;
    this.deps.onOpen(this);

    const view = store.view();
    baseRevision = view.revision;
    for (const e of early) if (e.revision > baseRevision) this.onStoreEvents(e.events);
    this.lastManagers = this.deps.managers().join();
    this.send({ msg: { $case: 'session', value: { sessionId: this.sessionId, heartbeatPeriodMs: this.deps.heartbeatMs(), managers: this.deps.managers() } } });
    const tasks = assignmentSet(view, nodeId);
    const secrets = this.deps.secretValues?.(tasks, this.sentSecrets);
    this.send({ msg: { $case: 'assignments', value: { full: true, tasks, removed: [], networkState: this.netState.next(view, nodeId), secrets } } });
    this.noticeRole(view.get('nodes', nodeId));
    this.deps.log(`session ${this.sessionId} open for node ${nodeId} (${addr})`);

    const period = this.deps.heartbeatMs();
    // the worker starts heartbeating when SessionInfo arrives: a slow registration (store writes
    // stalled while etcd changes members) must not count against it
    this.lastHeartbeat = this.deps.clock.now();
    this.heartbeatTimer = setInterval(() => {
      const silentFor = this.deps.clock.now() - this.lastHeartbeat;
      if (silentFor > this.deps.graceMs()) this.fail('DEADLINE_EXCEEDED', `no heartbeat from node ${nodeId} for ${silentFor}ms`);
    }, Math.max(100, Math.floor(period / 2)));
  }

  private onStoreEvents(events: StoreEvent[]): void {
    for (const ev of events) {
      if (ev.kind === 'nodes' && ev.op === 'delete' && ev.id === this.nodeId) {
        this.fail('PERMISSION_DENIED', `node ${this.nodeId} was removed from the cluster`);
        return;
      }
      if (ev.kind === 'nodes' && ev.op === 'put' && ev.object.id === this.nodeId) {
        const st = ev.object.status;
        if (st?.state === NodeState.NODE_STATE_DOWN && ev.previous?.status?.state !== NodeState.NODE_STATE_DOWN) {
          // node health judged it DOWN (its session key was missing) while its session lives here:
          // nothing would make it READY again, so the worker registers anew (key, READY, full set)
          this.fail('UNAVAILABLE', `node ${this.nodeId} was marked down (${st.message || 'no reason given'}) while its session was open on this manager: register again`);
          return;
        }
        this.noticeRole(ev.object, ev.previous);
      }
      if (ev.kind === 'sessions' && ev.op === 'delete' && ev.id === this.nodeId) {
        // our key went (a lost lease) while the session lives: write it again
        void this.writeSessionKey().catch((err) => this.deps.log(`re-writing the session key of node ${this.nodeId}: ${(err as Error).message}`));
      }
      if (ev.kind === 'nodes' && managerAddrChanged(ev)) this.sendManagers();
      if (ev.kind === 'sessions' && ev.op === 'put' && ev.object.nodeId === this.nodeId && ev.object.sessionId !== this.sessionId) {
        this.fail('ABORTED', `node ${this.nodeId} opened a newer session elsewhere`);
        return;
      }
    }
    const delta = assignmentChanges(events, this.nodeId);
    if (touchesNetworkState(events.map((e) => e.kind))) this.netDirty = true;
    if (delta.tasks.length === 0 && delta.removed.length === 0 && !this.netDirty) return;
    // merge into the pending delta (later events win)
    const tasks = new Map(this.pendingDelta.tasks.map((t) => [t.id, t]));
    const removed = new Set(this.pendingDelta.removed);
    for (const id of delta.removed) {
      tasks.delete(id);
      removed.add(id);
    }
    for (const t of delta.tasks) {
      removed.delete(t.id);
      tasks.set(t.id, t);
    }
    this.pendingDelta = { tasks: [...tasks.values()], removed: [...removed] };
    if (!this.flushTimer) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = undefined;
        const d = this.pendingDelta;
        this.pendingDelta = { tasks: [], removed: [] };
        const networkState = this.netDirty ? this.netState.next(this.deps.store.view(), this.nodeId) : undefined;
        this.netDirty = false;
        if (d.tasks.length === 0 && d.removed.length === 0 && !networkState) return;
        const secrets = this.deps.secretValues?.(d.tasks, this.sentSecrets);
        this.send({ msg: { $case: 'assignments', value: { full: false, tasks: d.tasks, removed: d.removed, networkState, secrets } } });
      }, ASSIGNMENT_DEBOUNCE_MS);
    }
  }

  /** The manager list changed (a manager joined, left or moved): tell the worker where to reconnect. */
  private sendManagers(): void {
    const managers = this.deps.managers();
    if (managers.join() === this.lastManagers) return;
    this.lastManagers = managers.join();
    this.send({ msg: { $case: 'session', value: { sessionId: this.sessionId, heartbeatPeriodMs: this.deps.heartbeatMs(), managers } } });
  }

  /**
   * Writes our session key on this manager's lease, taking over a stale one (a dead manager's, or
   * our own from before the lease was lost). Called at registration, when the store replaced a lost
   * lease (the keys on the old lease are gone), and when our key is seen deleted while the session
   * lives: without it the node would be judged DOWN although its session is alive. One write at a
   * time; a write asked for while one runs runs again after it.
   */
  writeSessionKey(): Promise<void> {
    const run = (this.keyWrite ?? Promise.resolve()).then(() => this.writeSessionKeyOnce());
    // the queue holds only the settling: the caller handles a failure (a closed store at shutdown)
    const settled = run.then(
      () => {},
      () => {},
    );
    this.keyWrite = settled;
    void settled.then(() => {
      if (this.keyWrite === settled) this.keyWrite = undefined;
    });
    return run;
  }

  private async writeSessionKeyOnce(): Promise<void> {
    const { store } = this.deps;
    const session = this.session;
    if (!session || this.closed) return;
    // etcd's answer outranks our view: after a lost lease the view can still show the key (its
    // watch is behind, or was cut with the lease), and an update of it fails as "missing" until the
    // view catches up. Five such updates in a row used to end here silently, the key stayed gone,
    // the leader judged the live node DOWN and nothing made it READY again.
    let missing = false;
    let last = '';
    for (let attempt = 0; attempt < SESSION_KEY_ATTEMPTS; attempt++) {
      if (this.closed) return;
      const view = store.view();
      const current = view.get('sessions', this.nodeId);
      if (!missing && current && current.sessionId !== session.sessionId && attempt > 0) return; // a newer session elsewhere won
      const version = missing ? undefined : view.version('sessions', this.nodeId);
      const object = { ...session, meta: { version: version ?? 0, createdAt: 0, updatedAt: 0 } };
      const res = await store.commit([{ op: version === undefined ? 'create' : 'update', kind: 'sessions', object, lease: true }]);
      if (res.ok) return;
      last = res.conflict.reason;
      missing = res.conflict.reason === 'missing';
      if (!missing) await viewMoved(store, view.revision, SESSION_KEY_VIEW_WAIT_MS);
    }
    this.deps.log(
      `session ${this.sessionId} of node ${this.nodeId}: its session key could not be written (${SESSION_KEY_ATTEMPTS} attempts, last conflict "${last}"); the node may be judged down and will register again`,
    );
  }

  /** Tells the worker when its desired role differs from its role (it acts on it: see cli/daemon/roles.ts). */
  private noticeRole(node: Node | undefined, previous?: Node): void {
    if (!node?.spec) return;
    const differs = node.spec.desiredRole !== node.role;
    const changed = !previous || previous.spec?.desiredRole !== node.spec.desiredRole || previous.role !== node.role;
    if (differs && changed) this.send({ msg: { $case: 'roleChange', value: { desiredRole: node.spec.desiredRole } } });
  }

  /** Asks the worker for logs of its tasks; chunks and the end come back through `handlers`. */
  subscribeLogs(sub: LogSubscribe, handlers: LogHandlers): () => void {
    this.logSubs.set(sub.subscriptionId, handlers);
    this.send({ msg: { $case: 'logSubscribe', value: sub } });
    return () => {
      if (this.logSubs.delete(sub.subscriptionId)) {
        this.send({ msg: { $case: 'logCancel', value: { subscriptionId: sub.subscriptionId } } });
      }
    };
  }

  private send(m: ManagerMessage): void {
    if (!this.closed) this.call.write(m);
  }

  private fail(code: keyof typeof import('@grpc/grpc-js').status, details: string): void {
    if (this.closed) return;
    this.deps.log(`session for node ${this.nodeId || '?'} ends: ${details}`);
    // grpc-js turns an 'error' event on a server stream into the call's final status
    const status = { INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, PERMISSION_DENIED: 7, FAILED_PRECONDITION: 9, ABORTED: 10, UNAVAILABLE: 14, UNAUTHENTICATED: 16 } as Record<string, number>;
    this.call.emit('error', { code: status[code] ?? 2, details });
    this.close(details);
  }

  private close(why: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.unsubscribe?.();
    for (const [id, h] of this.logSubs) h.done({ subscriptionId: id, error: `node ${this.nodeId} disconnected: ${why}` });
    this.logSubs.clear();
    if (!this.nodeId) return;
    this.deps.onClose(this);
    void this.release().catch((err) => this.deps.log(`releasing session of ${this.nodeId}: ${(err as Error).message}`));
  }

  /** Our session key goes; the node is DISCONNECTED unless it already has a newer session. */
  private async release(): Promise<void> {
    const { store } = this.deps;
    const view = store.view();
    const s = view.get('sessions', this.nodeId);
    if (s && s.sessionId !== this.sessionId) return;
    const version = view.version('sessions', this.nodeId);
    if (s && version !== undefined) await store.commit([{ op: 'delete', kind: 'sessions', id: this.nodeId, version }]);
    const lastHeartbeat = this.lastHeartbeat;
    await retryUpdate(store, this.nodeId, (n) => {
      const newer = store.view().get('sessions', this.nodeId);
      if (newer && newer.sessionId !== this.sessionId) return undefined;
      if (n.status?.state !== NodeState.NODE_STATE_READY) return undefined;
      return { ...n, status: { ...n.status, state: NodeState.NODE_STATE_DISCONNECTED, message: 'session ended', lastHeartbeat } };
    });
  }
}

/** Resolves once the store's view is past `revision`, or after `ms` (whichever comes first). */
function viewMoved(store: Store, revision: number, ms: number): Promise<void> {
  if (store.view().revision > revision) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      unsubscribe();
      resolve();
    };
    const timer = setTimeout(done, ms);
    const unsubscribe = store.subscribe((_events, rev) => {
      if (rev > revision) done();
    });
  });
}
