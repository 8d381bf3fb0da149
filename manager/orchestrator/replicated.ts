// The replicated orchestrator's decision, pure: one runnable task per slot, N slots, restarts per
// the restart policy (history kept: a restart is a new task in the same slot), scale up and down.
import { type Node, type Service, type Task, TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import type { OrchestratorAction, Reconciled } from './actions.ts';
import {
  CAUSE_TEXT,
  decideRestart,
  pastCause,
  promoteAt,
  type RestartHistory,
  replaceCause,
  replacementNotBefore,
  slotKey,
} from './restart.ts';
import { isLive, isRunnable, newestFirst, stateOf } from './task.ts';

export interface ReplicatedInput {
  service: Service;
  /** Every task of the service (any state). */
  tasks: readonly Task[];
  node(id: string): Node | undefined;
  history: RestartHistory;
  now: number;
}

export function replicasOf(service: Service): number {
  const m = service.spec?.mode;
  return m?.$case === 'replicated' ? m.value.replicas : 0;
}

/** The one runnable task a slot keeps when (wrongly) it has several: a healthy one, the most advanced. */
function pickKeeper(runnable: Task[], node: (id: string) => Node | undefined): Task {
  return [...runnable].sort((a, b) => {
    const da = replaceCause(a, node(a.nodeId)) ? 1 : 0;
    const db = replaceCause(b, node(b.nodeId)) ? 1 : 0;
    return da - db || stateOf(b) - stateOf(a) || newestFirst(a, b);
  })[0];
}

/**
 * Decide what to create, replace, shut down or promote for one replicated service.
 *
 * Scale down keeps the best-placed replicas (swarmkit's rule, made explicit): it first drops slots
 * whose task needs replacing anyway, then tasks not yet running, then tasks on the node running
 * the most tasks of this service (recounted after each pick), then the highest slot number.
 *
 * An empty slot is "dead" when its newest task stopped on its own (or lost its node) and the
 * restart policy said no, for the current spec version; dead slots count towards the replicas
 * (a `--restart-condition none` task that finished is not started again) until the spec changes.
 */
export function reconcileReplicated(input: ReplicatedInput): Reconciled {
  const { service, now, history, node } = input;
  const want = replicasOf(service);
  const actions: OrchestratorAction[] = [];
  let wakeAt: number | undefined;

  const bySlot = new Map<number, Task[]>();
  for (const t of input.tasks) {
    if (t.slot <= 0) continue;
    let l = bySlot.get(t.slot);
    if (!l) bySlot.set(t.slot, (l = []));
    l.push(t);
  }

  // 1. Slots with runnable tasks: one keeper each, duplicates shut down.
  const keepers = new Map<number, Task>();
  for (const [slot, ts] of bySlot) {
    const runnable = ts.filter(isRunnable);
    if (runnable.length === 0) continue;
    const keep = pickKeeper(runnable, node);
    keepers.set(slot, keep);
    // A task of another spec version beside it belongs to a rolling update in progress
    // (start-first order starts the new task before stopping the old): the updater owns both.
    for (const t of runnable) {
      if (t === keep || (t.specVersion !== keep.specVersion && !replaceCause(t, node(t.nodeId)))) continue;
      actions.push({ kind: 'shutdown', task: t, reason: 'another task runs in this slot' });
    }
  }

  // 2. Scale down.
  if (keepers.size > want) {
    const perNode = new Map<string, number>();
    for (const t of keepers.values()) if (t.nodeId) perNode.set(t.nodeId, (perNode.get(t.nodeId) ?? 0) + 1);
    const candidates = [...keepers.entries()];
    let excess = keepers.size - want;
    while (excess-- > 0) {
      let best = -1;
      let bestKey: number[] = [];
      for (let i = 0; i < candidates.length; i++) {
        const [slot, t] = candidates[i];
        const key = [
          replaceCause(t, node(t.nodeId)) ? 1 : 0,
          stateOf(t) < TaskState.TASK_STATE_RUNNING ? 1 : 0,
          t.nodeId ? (perNode.get(t.nodeId) ?? 0) : 0,
          slot,
        ];
        if (best < 0 || greater(key, bestKey)) {
          best = i;
          bestKey = key;
        }
      }
      const [slot, t] = candidates.splice(best, 1)[0];
      keepers.delete(slot);
      if (t.nodeId) perNode.set(t.nodeId, (perNode.get(t.nodeId) ?? 1) - 1);
      actions.push({ kind: 'shutdown', task: t, reason: 'scale down' });
    }
  }

  // 3. Kept slots: replace what needs it, promote delayed restarts.
  for (const [slot, t] of keepers) {
    const records = history.get(slotKey(service.id, slot));
    const cause = replaceCause(t, node(t.nodeId));
    if (cause) {
      const d = decideRestart(service, t, cause, records, now);
      const notBefore = d.restart ? replacementNotBefore(t, d.delayMs) : 0;
      if (d.restart && notBefore > now) {
        wakeAt = Math.min(wakeAt ?? notBefore, notBefore);
        continue;
      }
      if (d.restart) {
        actions.push({
          kind: 'replace',
          task: t,
          service,
          slot,
          cause,
          delayUntil: d.delayMs > 0 && notBefore === 0 ? now + d.delayMs : undefined,
        });
      } else {
        actions.push({ kind: 'shutdown', task: t, reason: `${CAUSE_TEXT[cause]}; not restarted: ${d.why}` });
      }
      continue;
    }
    if (t.desiredState === TaskState.TASK_STATE_READY) {
      // A stop-first update's new task waits (prepared) until the old one in its slot has stopped;
      // the updater promotes it then. Nothing is promoted while another task of the slot still runs.
      if ((bySlot.get(slot) ?? []).some((x) => x !== t && !isRunnable(x) && isLive(x, node(x.nodeId)))) continue;
      const previous = (bySlot.get(slot) ?? []).filter((x) => x !== t && !isRunnable(x)).sort(newestFirst)[0];
      const at = promoteAt(service, t, records, previous);
      if (at <= now) actions.push({ kind: 'promote', task: t });
      else wakeAt = Math.min(wakeAt ?? at, at);
    }
  }

  // 4. Scale up: fill the lowest free slots; dead slots (within 1..want) count as filled.
  let dead = 0;
  const deadSlots = new Set<number>();
  const fillPlans = new Map<number, { restart: boolean; delayMs: number }>();
  for (const [slot, ts] of bySlot) {
    if (keepers.has(slot) || ts.some(isRunnable)) continue;
    const newest = [...ts].sort(newestFirst)[0];
    const cause = pastCause(newest, node(newest.nodeId));
    if (!cause || newest.specVersion !== service.specVersion) continue;
    const d = decideRestart(service, newest, cause, history.get(slotKey(service.id, slot)), now);
    const notBefore = d.restart ? replacementNotBefore(newest, d.delayMs) : 0;
    if (!d.restart) {
      deadSlots.add(slot);
      if (slot <= want) dead++;
    } else if (notBefore > now) {
      // not yet: the slot counts as filled until its delayed replacement may be made
      deadSlots.add(slot);
      if (slot <= want) dead++;
      wakeAt = Math.min(wakeAt ?? notBefore, notBefore);
    } else {
      fillPlans.set(slot, { restart: true, delayMs: notBefore > 0 ? 0 : d.delayMs });
    }
  }
  let need = want - keepers.size - dead;
  for (let slot = 1; need > 0; slot++) {
    if (keepers.has(slot) || deadSlots.has(slot)) continue;
    const plan = fillPlans.get(slot);
    actions.push({
      kind: 'create',
      service,
      slot,
      restart: plan?.restart ?? false,
      delayUntil: plan && plan.delayMs > 0 ? now + plan.delayMs : undefined,
    });
    need--;
  }

  return { actions, wakeAt };
}

function greater(a: number[], b: number[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] > b[i];
  return false;
}

