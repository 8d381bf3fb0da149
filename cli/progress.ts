// Waiting for a service to converge after create/scale/update: a pure assessment of one observation
// (converged, failing, stuck pending, or still moving, with per-slot lines) and the polling loop that prints it.
import type { ServiceSummary } from '../proto/gen/gantry/v1/control.ts';
import type { Service, Task } from '../proto/gen/gantry/v1/objects.ts';
import { taskStateName } from './format.ts';
import { stableJson } from '../manager/update/dirty.ts';

const PENDING = 64;
const ASSIGNED = 192;
const RUNNING = 512;
const COMPLETE = 576;
const SHUTDOWN = 640;
const FAILED = 704;
const REJECTED = 768;

/** Poll period and how long a reasoned "pending" or a dead slot must last before we call it stuck. */
export const progressTiming = { pollMs: 500, settleMs: 5000, failuresPerSlot: 2, stallMs: 30_000 };

export interface Observation {
  service: Service;
  summary: Pick<ServiceSummary, 'running' | 'desired' | 'completed'>;
  tasks: Task[];
  hostnames: Map<string, string>;
  /** Tasks that existed before the command changed anything: their failures are not ours. */
  baseline: Set<string>;
  /** The service's update status before the command: only a newer one is about this change. */
  baselineUpdate?: { state: number; startedAt: number };
  /** The command was `service rollback` (or `update --rollback`): a completed rollback is success. */
  rollback?: boolean;
  now: number;
}

/**
 * Carried between observations: since when each slot has been stuck (pending with a reason, or
 * dead), and since when nothing at all changed (signature of the last printed block).
 */
export type StuckSince = Map<string, number> & { signature?: string; unchangedSince?: number };

const UPDATING = 1;
const UPDATE_PAUSED = 2;
const UPDATE_COMPLETED = 3;
const ROLLBACK_STARTED = 4;
const ROLLBACK_PAUSED = 5;
const ROLLBACK_COMPLETED = 6;

export type Assessment =
  | { kind: 'converged'; headline: string; lines: string[] }
  | { kind: 'waiting'; headline: string; lines: string[] }
  | { kind: 'failed'; headline: string; lines: string[]; error: string }
  | { kind: 'stuck'; headline: string; lines: string[]; error: string };

function isJob(s: Service): boolean {
  const m = s.spec?.mode?.$case;
  return m === 'replicatedJob' || m === 'globalJob';
}

function slotKey(t: Task): string {
  return t.slot > 0 ? String(t.slot) : t.nodeId;
}

function newest(a: Task, b: Task): Task {
  const ca = a.meta?.createdAt ?? 0;
  const cb = b.meta?.createdAt ?? 0;
  if (ca !== cb) return ca > cb ? a : b;
  const liveA = (a.status?.state ?? 0) < COMPLETE;
  const liveB = (b.status?.state ?? 0) < COMPLETE;
  if (liveA !== liveB) return liveA ? a : b;
  return (a.status?.state ?? 0) >= (b.status?.state ?? 0) ? a : b;
}

function reason(t: Task): string {
  return t.status?.err || t.status?.message || '';
}

export function assess(o: Observation, stuck: StuckSince): Assessment {
  const name = o.service.spec?.name ?? o.service.id;
  const job = isJob(o.service);
  // A task of an older version whose spec equals the service's is current too (a rollback leaves
  // the tasks that never left the old spec alone: manager/update).
  const specKey = stableJson(o.service.spec?.task ?? {});
  const sameSpec = (t: Task) => t.specVersion === o.service.specVersion || (!job && stableJson(t.spec ?? {}) === specKey);
  const current = o.tasks.filter((t) => sameSpec(t) && t.jobIteration === o.service.jobIteration);
  const running = current.filter((t) => t.status?.state === RUNNING && t.desiredState === RUNNING).length;
  const completed = current.filter((t) => t.status?.state === COMPLETE).length;
  const desired = o.summary.desired;
  const previous = o.tasks.filter(
    (t) => !sameSpec(t) && t.desiredState === RUNNING && (t.status?.state ?? 0) <= RUNNING,
  );
  const onPrevious = previous.length > 0 ? `, ${previous.length} still on the previous spec` : '';
  const headline = job
    ? `${name}: ${completed}/${desired} completed, ${running} running`
    : `${name}: ${running}/${desired} running${onPrevious}`;

  // newest task per slot among those the orchestrator still wants (or that just died)
  const bySlot = new Map<string, Task>();
  const failures = new Map<string, Task[]>();
  for (const t of current) {
    const k = slotKey(t);
    const s = t.status?.state ?? 0;
    // a replicated task that exits, even with 0, is a failure to converge (jobs are meant to exit)
    if ((s === FAILED || s === REJECTED || (s === COMPLETE && !job)) && !o.baseline.has(t.id)) failures.set(k, [...(failures.get(k) ?? []), t]);
    if (!job && t.desiredState > RUNNING && s < SHUTDOWN) continue; // being shut down (scale-down)
    const prev = bySlot.get(k);
    bySlot.set(k, prev ? newest(prev, t) : t);
  }
  const label = (k: string) => (/^\d+$/.test(k) ? `${name}.${k}` : `${name}@${o.hostnames.get(k) ?? k}`);
  const lines: string[] = [];
  const slots = [...bySlot.keys()].sort((a, b) => (/^\d+$/.test(a) && /^\d+$/.test(b) ? Number(a) - Number(b) : a.localeCompare(b)));
  if (o.service.spec?.mode?.$case === 'replicated') {
    const replicas = o.service.spec.mode.value.replicas;
    // Slot numbers need not be 1..replicas: a scale-down keeps the best-placed tasks, whatever their
    // slot. A slot whose newest task a manager shut down (scaled away, replaced) is not one of ours;
    // missing slots are the lowest free numbers.
    for (const k of [...slots]) {
      const t = bySlot.get(k)!;
      const gone = t.desiredState > RUNNING && !((t.status?.state === FAILED || t.status?.state === REJECTED || t.status?.state === COMPLETE) && !o.baseline.has(t.id));
      if (gone) slots.splice(slots.indexOf(k), 1);
    }
    slots.sort((a, b) => Number(a) - Number(b));
    while (slots.length > replicas) slots.pop();
    for (let i = 1; slots.length < replicas; i++) if (!slots.includes(String(i))) slots.push(String(i));
    slots.sort((a, b) => Number(a) - Number(b));
  }
  const stuckSlots: string[] = [];
  for (const k of slots) {
    const t = bySlot.get(k);
    if (!t) {
      const prev = previous.find((t) => slotKey(t) === k);
      const where = prev?.nodeId ? ` on ${o.hostnames.get(prev.nodeId) ?? prev.nodeId}` : '';
      lines.push(prev ? `${label(k)}: ${taskStateName(prev.status?.state).toLowerCase()}${where} (previous spec)` : `${label(k)}: no task yet`);
      continue;
    }
    const s = t.status?.state ?? 0;
    const why = s === RUNNING || s === COMPLETE ? '' : reason(t);
    const host = t.nodeId ? ` on ${o.hostnames.get(t.nodeId) ?? t.nodeId}` : '';
    lines.push(`${label(k)}: ${taskStateName(s).toLowerCase()}${s >= ASSIGNED ? host : ''}${why ? `: ${why}` : ''}`);
    const pendingWithReason = s <= PENDING && why !== '';
    const dead = (s === FAILED || s === REJECTED || (s === COMPLETE && !job)) && !o.baseline.has(t.id);
    if (pendingWithReason || dead) {
      if (!stuck.has(k)) stuck.set(k, o.now);
      // a dead slot may still be restarted after the restart delay: give it that long too
      const grace = progressTiming.settleMs + (dead ? (o.service.spec?.task?.restart?.delayMs ?? 0) : 0);
      if (o.now - (stuck.get(k) ?? o.now) >= grace) stuckSlots.push(k);
    } else {
      stuck.delete(k);
    }
  }

  const us = o.service.updateStatus;
  const fresh = us && us.state !== 0 && !(o.baselineUpdate && o.baselineUpdate.state === us.state && o.baselineUpdate.startedAt === us.startedAt);
  // An update under failure action continue ends "completed with N failed tasks": not converged.
  if (fresh && us.state === UPDATE_COMPLETED && / failed tasks?: /.test(us.message)) {
    return { kind: 'failed', headline, lines, error: `service "${name}": ${us.message} (gantry service ps ${name})` };
  }
  if (fresh && (us.state === UPDATE_PAUSED || us.state === ROLLBACK_PAUSED || (us.state === ROLLBACK_COMPLETED && !o.rollback))) {
    const what =
      us.state === UPDATE_PAUSED ? 'the update was paused' : us.state === ROLLBACK_PAUSED ? 'the rollback was paused' : 'the update failed and was rolled back';
    return {
      kind: 'failed',
      headline,
      lines,
      error: `service "${name}": ${what}${us.message ? `: ${us.message}` : ''} (gantry service inspect --pretty ${name})`,
    };
  }

  const repeated = [...failures.entries()].filter(([, ts]) => ts.length >= progressTiming.failuresPerSlot);
  if (repeated.length > 0) {
    // group slots by their last error, so one cause shared by every slot is said once
    const byReason = new Map<string, string[]>();
    for (const [k, ts] of repeated.sort(([a], [b]) => a.localeCompare(b, undefined, { numeric: true }))) {
      const why = reason(ts.reduce(newest)) || 'no reason given';
      byReason.set(why, [...(byReason.get(why) ?? []), `${label(k)} ×${ts.length}`]);
    }
    const detail = [...byReason].map(([why, slots]) => `${slots.join(', ')} failed: ${why}`);
    return {
      kind: 'failed',
      headline,
      lines,
      error: `service "${name}" does not converge: ${detail.join('; ')}. The service stays and keeps retrying per its restart policy (gantry service ps ${name}); fix it with gantry service update, or gantry service rm ${name}`,
    };
  }
  // A rolling update is done when the updater says so (its monitor window has passed), not before.
  const updating = fresh && (us.state === UPDATING || us.state === ROLLBACK_STARTED);
  const done = job ? completed >= desired : !updating && running >= desired && slots.every((k) => bySlot.get(k)?.status?.state === RUNNING);
  if (done) return { kind: 'converged', headline, lines };
  // Report "stuck" only once every slot has settled (running, or stuck long enough): nothing is still moving.
  const settled = slots.every((k) => stuckSlots.includes(k) || bySlot.get(k)?.status?.state === RUNNING || (job && bySlot.get(k)?.status?.state === COMPLETE));
  if (stuckSlots.length > 0 && settled) {
    const pending = stuckSlots.filter((k) => (bySlot.get(k)?.status?.state ?? 0) <= PENDING);
    const dead = stuckSlots.filter((k) => !pending.includes(k));
    const parts: string[] = [];
    if (pending.length > 0) {
      parts.push(
        `${pending.length} of ${desired} tasks cannot be placed yet (${pending.map((k) => `${label(k)}: ${reason(bySlot.get(k)!)}`).join('; ')}); the service stays and they will be placed when a node fits`,
      );
    }
    if (dead.length > 0) {
      parts.push(`${dead.map((k) => `${label(k)} ended ${taskStateName(bySlot.get(k)?.status?.state).toLowerCase()}${reason(bySlot.get(k)!) ? `: ${reason(bySlot.get(k)!)}` : ''}`).join('; ')} and was not restarted (see its restart policy)`);
    }
    return { kind: 'stuck', headline, lines, error: `service "${name}": ${parts.join('; ')} (gantry service ps ${name})` };
  }
  // Nothing changed for a long while: say what we are waiting for instead of hanging.
  const signature = [headline, ...lines].join('\n');
  if (stuck.signature !== signature) {
    stuck.signature = signature;
    stuck.unchangedSince = o.now;
  } else if (o.now - (stuck.unchangedSince ?? o.now) >= progressTiming.stallMs) {
    const secs = Math.round(progressTiming.stallMs / 1000);
    let why: string;
    if (previous.length > 0) {
      why = `${previous.length} task${previous.length > 1 ? 's' : ''} still run the previous spec and none was replaced in ${secs}s: the spec is saved (gantry service inspect --pretty ${name}) and tasks follow it once the updater replaces them`;
    } else if (current.length === 0) {
      why = `no task was created in ${secs}s: is a manager leading and its orchestrator running? (gantry node ls)`;
    } else {
      why = `nothing changed in ${secs}s (gantry service ps ${name})`;
    }
    return { kind: 'stuck', headline, lines, error: `service "${name}" has not converged: ${why}` };
  }
  return { kind: 'waiting', headline, lines };
}

export interface ProgressIO {
  observe(): Promise<Observation | undefined>;
  out: NodeJS.WritableStream;
  isTTY: boolean;
  sleep(ms: number): Promise<void>;
}

/**
 * Polls until the service converges (0), fails or gets stuck (1, with the reasons on stderr via the
 * returned message). Without a TTY it prints each changed line once; on a TTY it redraws in place.
 */
export async function waitForConvergence(io: ProgressIO): Promise<{ ok: true } | { ok: false; error: string }> {
  const stuck: StuckSince = new Map();
  const printed = new Map<string, string>();
  let drawn = 0;
  let lastHeadline = '';
  for (;;) {
    const o = await io.observe();
    if (!o) return { ok: false, error: 'the service was removed while waiting for it to converge' };
    const a = assess(o, stuck);
    if (io.isTTY) {
      if (drawn > 0) io.out.write(`\x1b[${drawn}A`);
      const all = [a.headline, ...a.lines.map((l) => `  ${l}`)];
      io.out.write(`${all.map((l) => `\x1b[2K${l}\n`).join('')}\x1b[J`);
      drawn = all.length;
    } else {
      if (a.headline !== lastHeadline) io.out.write(`${a.headline}\n`);
      lastHeadline = a.headline;
      for (const l of a.lines) {
        const key = l.slice(0, l.indexOf(':'));
        if (printed.get(key) !== l) io.out.write(`  ${l}\n`);
        printed.set(key, l);
      }
    }
    if (a.kind === 'converged') {
      io.out.write('verify: Service converged\n');
      return { ok: true };
    }
    if (a.kind === 'failed' || a.kind === 'stuck') return { ok: false, error: a.error };
    await io.sleep(progressTiming.pollMs);
  }
}
