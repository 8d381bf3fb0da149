// Unit tests for step(): one transition per call, REJECTED before STARTING, FAILED after, shutdown
// from any live state, and Docker's merge of image config with the task spec.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TaskState, type TaskStatus } from '../../proto/gen/gantry/v1/objects.ts';
import type { ContainerState } from '../runtime/types.ts';
import { containerConfigFor, mergeArgs, mergeEnv } from './container-config.ts';
import type { Controller } from './controller.ts';
import { step } from './step.ts';
import { task } from './testing.ts';

const S = TaskState;

function fakeController(over: Partial<Record<keyof Controller, () => Promise<unknown>>> = {}): Controller & { calls: string[] } {
  const calls: string[] = [];
  const mk = (name: keyof Controller, dflt: () => Promise<unknown>) => async () => {
    calls.push(name);
    return (over[name] ?? dflt)();
  };
  const stopped: ContainerState = { id: 't', status: 'stopped', pid: 0, exitCode: 0 };
  return {
    calls,
    prepare: mk('prepare', async () => {}) as Controller['prepare'],
    start: mk('start', async () => {}) as Controller['start'],
    wait: mk('wait', async () => stopped) as Controller['wait'],
    shutdown: mk('shutdown', async () => ({ ...stopped, exitCode: 143 })) as Controller['shutdown'],
    remove: mk('remove', async () => {}) as Controller['remove'],
  };
}

function status(state: TaskState): TaskStatus {
  return { timestamp: 0, state, message: '', err: '', ports: [], health: '' };
}

const now = () => 42;

test('step: each call makes exactly one transition with the right controller call', async () => {
  const cases: [TaskState, TaskState, string[]][] = [
    [S.TASK_STATE_ASSIGNED, S.TASK_STATE_ACCEPTED, []],
    [S.TASK_STATE_ACCEPTED, S.TASK_STATE_PREPARING, []],
    [S.TASK_STATE_PREPARING, S.TASK_STATE_READY, ['prepare']],
    [S.TASK_STATE_READY, S.TASK_STATE_STARTING, []],
    [S.TASK_STATE_STARTING, S.TASK_STATE_RUNNING, ['start']],
    [S.TASK_STATE_RUNNING, S.TASK_STATE_COMPLETE, ['wait']],
  ];
  for (const [from, to, calls] of cases) {
    const ctl = fakeController();
    const r = await step(task('t'), status(from), ctl, { now });
    assert.ok(typeof r === 'object', `${from}`);
    assert.equal(r.state, to, `${from} → ${to}`);
    assert.equal(r.timestamp, 42);
    assert.deepEqual(ctl.calls, calls);
  }
});

test('step: RUNNING goes out with health "starting" when a health check applies, and with none otherwise', async () => {
  const checked = { ...fakeController(), hasHealthcheck: () => true };
  const withCheck = await step(task('t'), status(S.TASK_STATE_STARTING), checked, { now });
  assert.ok(typeof withCheck === 'object');
  assert.equal(withCheck.state, S.TASK_STATE_RUNNING);
  assert.equal(withCheck.health, 'starting');
  const plain = await step(task('t'), status(S.TASK_STATE_STARTING), { ...fakeController(), hasHealthcheck: () => false }, { now });
  assert.ok(typeof plain === 'object');
  assert.equal(plain.health, '');
});

test('step: errors before STARTING reject, from STARTING on fail, with the error text', async () => {
  const boom = (m: string) => async () => {
    throw new Error(m);
  };
  const prep = await step(task('t'), status(S.TASK_STATE_PREPARING), fakeController({ prepare: boom('image "x:1" not found in 127.0.0.1:5000') }), { now });
  assert.ok(typeof prep === 'object');
  assert.equal(prep.state, S.TASK_STATE_REJECTED);
  assert.equal(prep.err, 'image "x:1" not found in 127.0.0.1:5000');
  const start = await step(task('t'), status(S.TASK_STATE_STARTING), fakeController({ start: boom('exec failed') }), { now });
  assert.ok(typeof start === 'object');
  assert.equal(start.state, S.TASK_STATE_FAILED);
  assert.equal(start.err, 'exec failed');
  const exit1 = await step(task('t'), status(S.TASK_STATE_RUNNING), fakeController({ wait: async () => ({ id: 't', status: 'stopped', pid: 0, exitCode: 1 }) }), { now });
  assert.ok(typeof exit1 === 'object');
  assert.equal(exit1.state, S.TASK_STATE_FAILED);
  assert.equal(exit1.err, 'task: non-zero exit (1)');
  assert.equal(exit1.container?.exitCode, 1);
  const vanished = await step(task('t'), status(S.TASK_STATE_RUNNING), fakeController({ wait: async () => ({ id: 't', status: 'stopped', pid: 0 }) }), { now });
  assert.ok(typeof vanished === 'object');
  assert.match(vanished.err, /vanished/);
});

test('step: desired SHUTDOWN stops from any live state; terminal and READY-desired states idle; aborted wait retries', async () => {
  for (const from of [S.TASK_STATE_ASSIGNED, S.TASK_STATE_PREPARING, S.TASK_STATE_READY, S.TASK_STATE_RUNNING]) {
    const ctl = fakeController();
    const r = await step(task('t', { desired: S.TASK_STATE_SHUTDOWN, graceMs: 1234 }), status(from), ctl, { now });
    assert.ok(typeof r === 'object');
    assert.equal(r.state, S.TASK_STATE_SHUTDOWN);
    assert.deepEqual(ctl.calls, ['shutdown']);
  }
  for (const from of [S.TASK_STATE_COMPLETE, S.TASK_STATE_FAILED, S.TASK_STATE_REJECTED, S.TASK_STATE_SHUTDOWN]) {
    assert.equal(await step(task('t', { desired: S.TASK_STATE_SHUTDOWN }), status(from), fakeController(), { now }), 'idle');
  }
  assert.equal(await step(task('t', { desired: S.TASK_STATE_READY }), status(S.TASK_STATE_READY), fakeController(), { now }), 'idle');
  const ac = new AbortController();
  ac.abort();
  const r = await step(task('t'), status(S.TASK_STATE_RUNNING), fakeController({ wait: async () => { throw new Error('aborted'); } }), { now, signal: ac.signal });
  assert.equal(r, 'retry');
});

test('container-config: Docker merge rules for command, args, env, workdir, user, labels', () => {
  const img = { Entrypoint: ['/ep'], Cmd: ['c1'], Env: ['PATH=/x', 'A=1'], WorkingDir: '/w', User: 'www', StopSignal: 'SIGQUIT', Labels: { l: 'img' } };
  const cases: [string[], string[], string[]][] = [
    [[], [], ['/ep', 'c1']],
    [[], ['a'], ['/ep', 'a']],
    [['/cmd'], [], ['/cmd']],
    [['/cmd'], ['a'], ['/cmd', 'a']],
  ];
  for (const [command, args, want] of cases) assert.deepEqual(mergeArgs(command, args, img), want, `${command} ${args}`);
  assert.deepEqual(mergeEnv(['PATH=/x', 'A=1'], ['A=2', 'B=3']), ['PATH=/x', 'A=2', 'B=3']);
  const t = task('t123456789abcdef', { env: ['A=2'] });
  const r = containerConfigFor(t, img, ['/l1', '/l2']);
  assert.ok(r.ok);
  assert.deepEqual(r.config.args, ['/ep', 'c1']);
  assert.equal(r.config.cwd, '/w');
  assert.equal(r.config.user, 'www');
  assert.equal(r.config.stopSignal, 'SIGQUIT');
  assert.equal(r.config.hostname, 't123456789ab');
  assert.deepEqual(r.config.rootfs, { kind: 'layers', lowerDirs: ['/l1', '/l2'] });
  assert.equal(r.config.labels['gantry.task.id'], 't123456789abcdef');
  assert.equal(r.config.labels.l, 'img');
  const none = containerConfigFor(task('t'), {}, []);
  assert.ok(!none.ok);
  assert.match(none.error, /no Entrypoint or Cmd/);
});
