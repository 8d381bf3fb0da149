// isReadyEndpoint: which tasks a service's VIPs, names and published ports lead to.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Task, TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import { isReadyEndpoint } from './network-state.ts';

function task(state: TaskState, desired: TaskState, health: string, check: string[] = []): Task {
  return {
    id: 't', desiredState: desired, status: { state, health },
    spec: { container: { healthcheck: { test: check, intervalMs: 0, timeoutMs: 0, retries: 0, startPeriodMs: 0 } } },
  } as unknown as Task;
}

const R = TaskState.TASK_STATE_RUNNING;
const CHECK = ['CMD-SHELL', 'wget -q localhost'];

test('network state: a running task without a health check is an endpoint; one desired to stop is not', () => {
  assert.equal(isReadyEndpoint(task(R, R, '')), true);
  assert.equal(isReadyEndpoint(task(R, TaskState.TASK_STATE_SHUTDOWN, '')), false);
  assert.equal(isReadyEndpoint(task(TaskState.TASK_STATE_STARTING, R, '')), false);
});

test('network state: a task with a health check is an endpoint only once healthy, not before its first report', () => {
  assert.equal(isReadyEndpoint(task(R, R, '', CHECK)), false, 'RUNNING reported before the first "starting"');
  assert.equal(isReadyEndpoint(task(R, R, 'starting', CHECK)), false);
  assert.equal(isReadyEndpoint(task(R, R, 'unhealthy', CHECK)), false);
  assert.equal(isReadyEndpoint(task(R, R, 'healthy', CHECK)), true);
  assert.equal(isReadyEndpoint(task(R, R, '', ['NONE'])), true, '--no-healthcheck');
  assert.equal(isReadyEndpoint(task(R, R, 'starting')), false, "the image's check, reported");
});
