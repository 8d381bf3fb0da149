// The orchestrators' one apply step: writes a tick's actions in two store batches (first desired-
// state changes, then new tasks), so a replacement is created only once the task it replaces is shut down.
import { TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import type { Log } from '../controller.ts';
import type { Store, Write } from '../store/types.ts';
import type { OrchestratorAction } from './actions.ts';
import { nodeKey, type RestartRecord, slotKey } from './restart.ts';
import { newTask, withDesired } from './task.ts';

/**
 * Creates whose outcome the view does not show yet. A create is the one write that is not safe to
 * decide twice (a new id never conflicts), so a service with creates in flight is not reconciled
 * again until the view shows them, or until `ttlMs` says they never landed. This covers a batch
 * that threw after some of its transactions applied, and a view that lags behind the writes.
 */
export class InFlight {
  private readonly byId = new Map<string, { serviceId: string; until: number }>();
  private readonly ttlMs: number;

  constructor(ttlMs = 5_000) {
    this.ttlMs = ttlMs;
  }

  add(id: string, serviceId: string, now: number): void {
    this.byId.set(id, { serviceId, until: now + this.ttlMs });
  }

  forget(id: string): void {
    this.byId.delete(id);
  }

  /** Drops what the view shows or what expired; returns the services still waiting. */
  settle(seen: (id: string) => boolean, now: number): Set<string> {
    const waiting = new Set<string>();
    for (const [id, e] of this.byId) {
      if (seen(id) || e.until <= now) this.byId.delete(id);
      else waiting.add(e.serviceId);
    }
    return waiting;
  }

  /** The earliest expiry, to tick then even if the view never shows them. */
  nextExpiry(): number | undefined {
    let at: number | undefined;
    for (const e of this.byId.values()) at = Math.min(at ?? e.until, e.until);
    return at;
  }

  clear(): void {
    this.byId.clear();
  }
}

export interface ApplyContext {
  store: Store;
  /** The current time (in-flight windows start when a batch returns or throws, which may be late). */
  clock?: () => number;
  /** Creates not yet confirmed by the view (see InFlight). */
  inflight: InFlight;
  now: number;
  newId(): string;
  /** Restart records are appended here for restarts that landed. */
  history: Map<string, RestartRecord[]>;
  log: Log;
  name: string;
  /** The loop was stopped (leadership lost) while writing: skip what is left. */
  cancelled?: () => boolean;
}

const MAX_RECORDS = 64;

/** Returns again=true when something conflicted (the next tick re-decides from the fresh view). */
export async function applyOrchestration(ctx: ApplyContext, actions: readonly OrchestratorAction[]): Promise<{ again: boolean }> {
  if (actions.length === 0) return { again: false };
  const first: Write[] = [];
  for (const a of actions) {
    switch (a.kind) {
      case 'shutdown':
      case 'replace':
        first.push({ op: 'update', kind: 'tasks', object: withDesired(a.task, TaskState.TASK_STATE_SHUTDOWN) });
        break;
      case 'promote':
        first.push({ op: 'update', kind: 'tasks', object: withDesired(a.task, TaskState.TASK_STATE_RUNNING) });
        break;
      case 'finish':
        first.push({ op: 'update', kind: 'tasks', object: withDesired(a.task, TaskState.TASK_STATE_COMPLETE) });
        break;
      case 'create':
        break;
      default: {
        const never: never = a;
        throw new Error(`unknown action ${JSON.stringify(never)}`);
      }
    }
  }
  let again = false;
  let revision = 0;
  const refused = new Set<string>();
  if (first.length > 0) {
    const r = await ctx.store.batch(first);
    revision = r.revision;
    for (const c of r.conflicts) refused.add(c.id);
    if (r.conflicts.length > 0) again = true;
  }

  const second: Write[] = [];
  const records: Array<[string, RestartRecord]> = [];
  for (const a of actions) {
    if (a.kind !== 'create' && a.kind !== 'replace') continue;
    if (a.kind === 'replace' && refused.has(a.task.id)) continue;
    const id = ctx.newId();
    const delayed = a.delayUntil !== undefined && a.delayUntil > ctx.now;
    second.push({
      op: 'create',
      kind: 'tasks',
      object: newTask({
        id,
        service: a.service,
        slot: a.slot,
        nodeId: a.nodeId,
        now: ctx.now,
        desiredState: delayed ? TaskState.TASK_STATE_READY : TaskState.TASK_STATE_RUNNING,
      }),
    });
    if (a.kind === 'replace' || a.restart) {
      const key = a.nodeId ? nodeKey(a.service.id, a.nodeId) : slotKey(a.service.id, a.slot);
      records.push([key, { at: ctx.now, specVersion: a.service.specVersion, taskId: id, delayUntil: a.delayUntil ?? ctx.now }]);
    }
  }
  if (second.length > 0 && !ctx.cancelled?.()) {
    const created = second.flatMap((w) => (w.op === 'create' && w.kind === 'tasks' ? [w.object] : []));
    for (const t of created) ctx.inflight.add(t.id, t.serviceId, ctx.now);
    let r: Awaited<ReturnType<Store['batch']>>;
    try {
      r = await ctx.store.batch(second);
    } finally {
      const end = ctx.clock?.() ?? ctx.now;
      for (const t of created) ctx.inflight.add(t.id, t.serviceId, end);
    }
    revision = Math.max(revision, r.revision);
    const failed = new Set(r.conflicts.map((c) => c.id));
    // "exists" means it is there (perhaps from a retried transaction): wait to see it. Otherwise not created.
    for (const c of r.conflicts) if (c.reason !== 'exists') ctx.inflight.forget(c.id);
    if (r.conflicts.length > 0) again = true;
    for (const [key, rec] of records) {
      if (failed.has(rec.taskId)) continue;
      let l = ctx.history.get(key);
      if (!l) ctx.history.set(key, (l = []));
      l.push(rec);
      if (l.length > MAX_RECORDS) l.splice(0, l.length - MAX_RECORDS);
    }
  }
  if (again) ctx.log.debug(`${ctx.name}: ${refused.size} writes conflicted; deciding again`);
  if (revision > 0) await ctx.store.waitFor(revision);
  return { again };
}
