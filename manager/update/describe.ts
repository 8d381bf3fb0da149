// The sentence a user sees when an update pauses or rolls back: which task failed, where, how and
// after how long (`task web.3 on node-2 failed: exit 1 after 2s`).
import { type Node, type Task, TaskState } from '../../proto/gen/gantry/v1/objects.ts';

function duration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s}s` : `${Math.round(s / 60)}m`;
}

/** What went wrong with this task, in words. */
export function failureReason(t: Task): string {
  const err = t.status?.err ?? '';
  const hc = t.spec?.container?.healthcheck;
  const check = hc?.test?.length ? (hc.test[0] === 'CMD-SHELL' ? hc.test.slice(1).join(' ') : hc.test[0] === 'CMD' ? hc.test.slice(1).join(' ') : '') : '';
  if (t.status?.state === TaskState.TASK_STATE_RUNNING && t.status?.health === 'starting') {
    return `not healthy within the update monitor period (${check ? `health check "${check}"` : 'the image\'s health check'} still starting)`;
  }
  if (err.includes('unhealthy') || t.status?.health === 'unhealthy') {
    const n = hc?.retries || 3;
    return check ? `health check "${check}" failed ${n} times` : 'the image\'s health check failed';
  }
  const exit = /non-zero exit \((-?\d+)\)/.exec(err);
  if (exit) return `exit ${exit[1]}`;
  if (t.status?.state === TaskState.TASK_STATE_COMPLETE) return 'exit 0 (a service task must keep running)';
  if (t.status?.state === TaskState.TASK_STATE_REJECTED) return `rejected: ${err || t.status?.message || 'no reason given'}`;
  return err || t.status?.message || 'failed';
}

/** `task web.3 on node-2 failed: exit 1 after 2s` (`now`: when a task still running counts as failed). */
export function describeFailure(t: Task, node: Node | undefined, now?: number): string {
  const name = `${t.serviceName || t.serviceId}.${t.slot || t.nodeId}`;
  const where = node?.description?.hostname || t.nodeId || 'no node';
  const born = t.meta?.createdAt ?? 0;
  // A task still running (health "starting") failed now, not at its last status.
  const stillRunning = t.status?.state === TaskState.TASK_STATE_RUNNING && t.status?.health === 'starting';
  const at = stillRunning && now !== undefined ? now : (t.status?.timestamp ?? 0);
  const after = born > 0 && at >= born ? ` after ${duration(at - born)}` : '';
  return `task ${name} on ${where} failed: ${failureReason(t)}${after}`;
}
