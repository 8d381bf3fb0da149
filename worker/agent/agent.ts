// The worker's agent: keeps one dispatcher session to some manager (reconnecting with backoff to
// any manager it knows), hands assignments to the task manager, and sends back status changes,
// heartbeats and requested logs. The protocol is drawn in proto/gantry/v1/dispatcher.proto.
import * as grpc from '@grpc/grpc-js';
import { DispatcherClient, type LogSubscribe, type ManagerMessage, type WorkerMessage } from '../../proto/gen/gantry/v1/dispatcher.ts';
import type { NodeDescription, NodeRole, Task, TaskStatus } from '../../proto/gen/gantry/v1/objects.ts';
import type { NetworkState } from '../../proto/gen/gantry/v1/network.ts';
import type { LogEntry, LogOptions } from '../runtime/types.ts';

/** What the agent needs from the task manager (worker/exec): a narrow interface. */
export interface AgentTasks {
  assign(tasks: Task[], full: boolean, removed: string[]): void;
  statuses(): Map<string, TaskStatus>;
  logs(taskId: string, opts: LogOptions): AsyncIterable<LogEntry>;
}

export interface AgentOptions {
  nodeId: string;
  nodeSecret: string;
  managers: string[];
  addr: string;
  description(): NodeDescription;
  tasks: AgentTasks;
  log?: (m: string) => void;
  /** Called with the manager list each session reports, to persist it for the next start. */
  onManagers?: (managers: string[]) => void;
  /** The managers want this node in another role (promote/demote): the daemon acts on it. */
  onRoleChange?: (desiredRole: NodeRole) => void;
  /** The node's network state (networks, peers, service endpoints) whenever the manager sends it. */
  onNetworkState?: (state: NetworkState) => void;
  /** How to dial a manager (mutual TLS with this node's certificate); insecure when absent (tests). */
  dial?: () => { credentials: grpc.ChannelCredentials; options?: grpc.ChannelOptions };
  /** Secret/config values this node received: materialized for the tasks that use them (worker/secrets.ts). */
  secrets?: { add(values: { id: string; data: Uint8Array }[]): void; prepare(task: Task): Task; release(taskId: string): void };
  /** Called once a session is registered (true) and when it ends (false). */
  onConnection?: (connected: boolean, manager: string) => void;
  /** A manager that has not answered Register by then is left for the next one (default 10 s). */
  registerTimeoutMs?: number;
}

const MIN_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 2000;
const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 2000,
  'grpc.keepalive_timeout_ms': 2000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 1000,
  'grpc.max_receive_message_length': 64 << 20,
};

export class Agent {
  private readonly opts: AgentOptions;
  private readonly log: (m: string) => void;
  private managers: string[];
  /** The last reason a session with each manager failed before registering (logged once per change). */
  private readonly unregisteredWhy = new Map<string, string>();
  private stopped = false;
  private call: grpc.ClientDuplexStream<WorkerMessage, ManagerMessage> | undefined;
  private registered = false;
  private current = '';
  private pending = new Map<string, TaskStatus>();
  private flushScheduled = false;
  private running: Promise<void> | undefined;
  private wake: (() => void) | undefined;

  constructor(opts: AgentOptions) {
    this.opts = opts;
    this.log = opts.log ?? (() => {});
    this.managers = [...opts.managers];
  }

  start(): void {
    this.running ??= this.loop();
  }

  /** Status changes from the task manager; sent in small batches while a session is open. */
  reportStatus(taskId: string, status: TaskStatus): void {
    this.pending.set(taskId, status);
    this.scheduleFlush();
  }

  /** Where to (re)connect from now on; persisted by the daemon through onManagers. */
  setManagers(managers: string[]): void {
    if (managers.length === 0 || managers.join() === this.managers.join()) return;
    this.managers = [...managers];
    this.opts.onManagers?.(this.managers);
  }

  connected(): boolean {
    return this.registered;
  }

  /** The manager the current session is on, or "" while there is none. */
  sessionManager(): string {
    return this.registered ? this.current : '';
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.call?.cancel();
    this.wake?.();
    await this.running;
  }

  private async loop(): Promise<void> {
    let backoff = MIN_BACKOFF_MS;
    let i = 0;
    while (!this.stopped) {
      const addr = this.managers[i % Math.max(1, this.managers.length)];
      i++;
      if (!addr) {
        this.log('no manager address known: waiting');
      } else {
        const registered = await this.session(addr).catch((err: Error) => {
          this.log(`session with ${addr} failed: ${err.message}`);
          return false;
        });
        if (registered) backoff = MIN_BACKOFF_MS;
      }
      if (this.stopped) break;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, backoff * (0.75 + Math.random() / 2));
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }

  /** One session; resolves when it ends, with whether it got as far as being registered. */
  private session(addr: string): Promise<boolean> {
    const registerTimeoutMs = this.opts.registerTimeoutMs ?? 10_000;
    return new Promise((resolve) => {
      let client: DispatcherClient;
      try {
        const d = this.opts.dial?.();
        client = new DispatcherClient(addr, d?.credentials ?? grpc.credentials.createInsecure(), { ...CHANNEL_OPTIONS, ...d?.options });
      } catch (err) {
        this.log(`cannot dial ${addr}: ${(err as Error).message}`);
        return resolve(false);
      }
      const call = client.session();
      this.call = call;
      let heartbeat: NodeJS.Timeout | undefined;
      let wasRegistered = false;
      // a manager can accept the stream and never answer (its role stopping under it: seen when a
      // host was demoted right after a promotion); without this the node stayed down for good
      const unanswered = setTimeout(() => {
        if (wasRegistered) return;
        this.log(`session with ${addr}: no answer to Register within ${Math.round(registerTimeoutMs / 1000)}s; trying the next manager`);
        call.cancel();
      }, registerTimeoutMs);
      const logSubs = new Map<string, AbortController>();
      const finish = (why: string) => {
        clearTimeout(unanswered);
        if (heartbeat) clearInterval(heartbeat);
        heartbeat = undefined;
        for (const ac of logSubs.values()) ac.abort();
        logSubs.clear();
        if (this.call === call) this.call = undefined;
        if (this.registered && wasRegistered) {
          this.registered = false;
          this.opts.onConnection?.(false, addr);
          this.log(`session with ${addr} ended: ${why}`);
        } else if (!wasRegistered && this.unregisteredWhy.get(addr) !== why) {
          // once per manager and reason (retries come every ~2 s): a host that never registers says why
          this.unregisteredWhy.set(addr, why);
          this.log(`session with ${addr} failed before registering: ${why}`);
        }
        if (wasRegistered) this.unregisteredWhy.delete(addr);
        client.close();
        resolve(wasRegistered);
      };
      call.on('data', (m: ManagerMessage) => {
        const msg = m.msg;
        if (!msg) return;
        switch (msg.$case) {
          case 'session': {
            if (msg.value.managers.length > 0) this.setManagers(msg.value.managers);
            if (wasRegistered) return; // a later SessionInfo only updates the manager list
            wasRegistered = true;
            this.registered = true;
            this.current = addr;
            heartbeat = setInterval(() => this.write({ msg: { $case: 'heartbeat', value: {} } }), msg.value.heartbeatPeriodMs || 1000);
            this.opts.onConnection?.(true, addr);
            // said once per session: a host whose node stays DOWN while this says registered has a
            // live session the managers lost track of (see manager/dispatcher/README.md)
            this.log(`session ${msg.value.sessionId} registered with ${addr}`);
            // everything we know, so the manager's view catches up after a reconnect
            for (const [id, st] of this.opts.tasks.statuses()) if (!this.pending.has(id)) this.pending.set(id, st);
            this.scheduleFlush();
            return;
          }
          case 'assignments':
            if (msg.value.networkState) this.opts.onNetworkState?.(msg.value.networkState);
            if (this.opts.secrets) {
              const s = this.opts.secrets;
              if (msg.value.secrets) s.add(msg.value.secrets.values);
              for (const id of msg.value.removed) s.release(id);
              this.opts.tasks.assign(msg.value.tasks.map((t) => s.prepare(t)), msg.value.full, msg.value.removed);
              return;
            }
            this.opts.tasks.assign(msg.value.tasks, msg.value.full, msg.value.removed);
            return;
          case 'logSubscribe': {
            const ac = new AbortController();
            logSubs.set(msg.value.subscriptionId, ac);
            void this.streamLogs(msg.value, ac.signal).finally(() => logSubs.delete(msg.value.subscriptionId));
            return;
          }
          case 'logCancel':
            logSubs.get(msg.value.subscriptionId)?.abort();
            return;
          case 'roleChange':
            this.opts.onRoleChange?.(msg.value.desiredRole);
            return;
          default: {
            const never: never = msg;
            return never;
          }
        }
      });
      call.on('error', (err: grpc.ServiceError) => finish(err.details || err.message));
      call.on('end', () => finish('manager ended the stream'));
      call.write({
        msg: {
          $case: 'register',
          value: { nodeId: this.opts.nodeId, nodeSecret: this.opts.nodeSecret, description: this.opts.description(), addr: this.opts.addr },
        },
      });
    });
  }

  private write(m: WorkerMessage): void {
    const call = this.call;
    if (call && !call.writableEnded) call.write(m);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || !this.registered) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      if (!this.registered || this.pending.size === 0) return;
      const updates = [...this.pending].map(([taskId, status]) => ({ taskId, status }));
      this.pending.clear();
      this.write({ msg: { $case: 'statuses', value: { updates } } });
    });
  }

  private async streamLogs(sub: LogSubscribe, signal: AbortSignal): Promise<void> {
    let error = '';
    try {
      await Promise.all(
        sub.taskIds.map(async (taskId) => {
          for await (const e of this.opts.tasks.logs(taskId, { follow: sub.follow, tail: sub.tail, sinceMs: sub.sinceMs, signal })) {
            if (signal.aborted) break;
            this.write({ msg: { $case: 'logChunk', value: { subscriptionId: sub.subscriptionId, taskId, stream: e.stream, timeMs: e.timeMs, data: e.data } } });
          }
        }),
      );
    } catch (err) {
      if (!signal.aborted) error = (err as Error).message;
    }
    this.write({ msg: { $case: 'logDone', value: { subscriptionId: sub.subscriptionId, error } } });
  }
}
