// The global orchestrator's decision, pure: one runnable task per eligible node (ready or unknown,
// active, matching the placement), node id preset; shut down tasks on nodes that no longer qualify.
import { type Node, NodeAvailability, NodeState, type Service, type Task, TaskState, UpdateState } from '../../proto/gen/gantry/v1/objects.ts';
import { placementHolds } from '../scheduler/constraint.ts';
import type { OrchestratorAction, Reconciled } from './actions.ts';
import { CAUSE_TEXT, decideRestart, nodeKey, pastCause, promoteAt, replacementNotBefore, type RestartHistory } from './restart.ts';
import { hasExited, isLive, isRunnable, newestFirst, stateOf } from './task.ts';

export interface GlobalInput {
  service: Service;
  tasks: readonly Task[];
  nodes: readonly Node[];
  history: RestartHistory;
  now: number;
}

/** May this node get a new task of the service? */
export function eligibleForNew(n: Node, service: Service): boolean {
  const st = n.status?.state ?? NodeState.NODE_STATE_UNKNOWN;
  if (st !== NodeState.NODE_STATE_READY && st !== NodeState.NODE_STATE_UNKNOWN) return false;
  if ((n.spec?.availability ?? NodeAvailability.NODE_AVAILABILITY_ACTIVE) !== NodeAvailability.NODE_AVAILABILITY_ACTIVE) return false;
  return placementHolds(n, service.spec?.task?.placement);
}

/** Why a task on this node must stop (not be replaced), or undefined when it may keep running. */
function mustLeave(n: Node | undefined, service: Service): string | undefined {
  if (!n) return 'node was removed';
  if (n.status?.state === NodeState.NODE_STATE_DOWN) return 'node is down';
  if (n.spec?.availability === NodeAvailability.NODE_AVAILABILITY_DRAIN) return 'node is drained';
  if (!placementHolds(n, service.spec?.task?.placement)) return 'node no longer matches the placement constraints';
  return undefined;
}

export function reconcileGlobal(input: GlobalInput): Reconciled {
  const { service, now, history } = input;
  const actions: OrchestratorAction[] = [];
  let wakeAt: number | undefined;
  const nodes = new Map(input.nodes.map((n) => [n.id, n]));

  const byNode = new Map<string, Task[]>();
  for (const t of input.tasks) {
    if (!t.nodeId) continue;
    let l = byNode.get(t.nodeId);
    if (!l) byNode.set(t.nodeId, (l = []));
    l.push(t);
  }

  const covered = new Set<string>();
  for (const [nodeId, ts] of byNode) {
    const runnable = ts.filter(isRunnable).sort((a, b) => Number(hasExited(a)) - Number(hasExited(b)) || stateOf(b) - stateOf(a) || newestFirst(a, b));
    if (runnable.length === 0) continue;
    const [keep, ...extra] = runnable;
    for (const t of extra) {
      // Another spec version beside it: a rolling update in progress owns both (start-first).
      if (t.specVersion !== keep.specVersion && !hasExited(t)) continue;
      actions.push({ kind: 'shutdown', task: t, reason: 'another task of this service runs on the node' });
    }
    const n = nodes.get(nodeId);
    const leave = mustLeave(n, service);
    if (leave) {
      actions.push({ kind: 'shutdown', task: keep, reason: leave });
      continue;
    }
    covered.add(nodeId);
    const records = history.get(nodeKey(service.id, nodeId));
    if (hasExited(keep)) {
      const d = decideRestart(service, keep, 'exited', records, now);
      const notBefore = d.restart ? replacementNotBefore(keep, d.delayMs) : 0;
      if (notBefore > now) {
        wakeAt = Math.min(wakeAt ?? notBefore, notBefore);
        continue;
      }
      if (d.restart) {
        actions.push({
          kind: 'replace',
          task: keep,
          service,
          slot: 0,
          nodeId,
          cause: 'exited',
          delayUntil: d.delayMs > 0 && notBefore === 0 ? now + d.delayMs : undefined,
        });
      } else {
        actions.push({ kind: 'shutdown', task: keep, reason: `${CAUSE_TEXT.exited}; not restarted: ${d.why}` });
      }
      continue;
    }
    if (keep.desiredState === TaskState.TASK_STATE_READY) {
      // During a rolling update, a stop-first update's new task waits (prepared) until the old one
      // on its node has stopped; the updater promotes it then. Outside an update a replacement is
      // promoted as before (an old task whose stop was never reported must not hold it for ever:
      // the fault suite's global service stayed at 2 of 6 that way).
      const st = service.updateStatus?.state;
      const rolling = st === UpdateState.UPDATE_STATE_UPDATING || st === UpdateState.UPDATE_STATE_ROLLBACK_STARTED;
      if (rolling && ts.some((x) => x !== keep && !isRunnable(x) && isLive(x, n))) continue;
      const previous = ts.filter((x) => !isRunnable(x)).sort(newestFirst)[0];
      const at = promoteAt(service, keep, records, previous);
      if (at <= now) actions.push({ kind: 'promote', task: keep });
      else wakeAt = Math.min(wakeAt ?? at, at);
    }
  }

  for (const n of input.nodes) {
    if (covered.has(n.id) || !eligibleForNew(n, service)) continue;
    const past = (byNode.get(n.id) ?? []).filter((t) => !isRunnable(t)).sort(newestFirst)[0];
    let restart = false;
    let delayMs = 0;
    if (past && past.specVersion === service.specVersion) {
      const cause = pastCause(past, n);
      if (cause === 'exited') {
        const d = decideRestart(service, past, cause, history.get(nodeKey(service.id, n.id)), now);
        if (!d.restart) continue; // dead on this node until the spec changes
        const notBefore = replacementNotBefore(past, d.delayMs);
        if (notBefore > now) {
          wakeAt = Math.min(wakeAt ?? notBefore, notBefore);
          continue;
        }
        restart = true;
        delayMs = notBefore > 0 ? 0 : d.delayMs;
      }
    }
    actions.push({ kind: 'create', service, slot: 0, nodeId: n.id, restart, delayUntil: delayMs > 0 ? now + delayMs : undefined });
  }
  return { actions, wakeAt };
}
