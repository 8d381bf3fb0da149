// Tests of task construction: what a new task copies from its service.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PublishMode, TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import { fixtures as f } from '../store/fixtures.ts';
import { newTask, restartPolicy } from './task.ts';

describe('orchestrator/task', () => {
  it('task: a new task is NEW, desired RUNNING, with the service spec, version, name and slot', () => {
    const s = f.service({ id: 's', name: 'web', specVersion: 7 });
    const t = newTask({ id: 't', service: s, slot: 3, now: 42 });
    assert.equal(t.status?.state, TaskState.TASK_STATE_NEW);
    assert.equal(t.status?.message, 'created');
    assert.equal(t.status?.timestamp, 42);
    assert.equal(t.desiredState, TaskState.TASK_STATE_RUNNING);
    assert.deepEqual([t.serviceId, t.serviceName, t.slot, t.specVersion, t.nodeId], ['s', 'web', 3, 7, '']);
    assert.deepEqual(t.spec, s.spec?.task);
  });

  it('task: the endpoint spec is copied (host-mode ports reach the scheduler and the worker)', () => {
    const s = f.service({ id: 's' });
    s.spec!.endpoint = { mode: 0, ports: [{ name: '', protocol: 'tcp', targetPort: 80, publishedPort: 8080, publishMode: PublishMode.PUBLISH_MODE_HOST }] };
    assert.deepEqual(newTask({ id: 't', service: s, slot: 1, now: 0 }).endpoint, { spec: s.spec!.endpoint, ports: [], virtualIps: [] });
    s.endpoint = { spec: s.spec!.endpoint, ports: s.spec!.endpoint.ports, virtualIps: [{ networkId: 'n', addr: '10.0.0.2/24' }] };
    assert.deepEqual(newTask({ id: 't', service: s, slot: 1, now: 0 }).endpoint, s.endpoint);
  });

  it('task: a task without a restart policy gets swarmkit defaults (any, 5 s); a stored 0 delay means none', () => {
    assert.deepEqual(restartPolicy(undefined), { condition: 0, delayMs: 5000, maxAttempts: 0, windowMs: 0 });
    assert.equal(restartPolicy({ condition: 0, delayMs: 0, maxAttempts: 0, windowMs: 0 }).delayMs, 0);
  });
});
