// Health checks: which check applies, probe argv, the per-probe state rule (start period, retries),
// and through TaskManager+SimRuntime: healthy is reported, unhealthy fails the task and stops it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Task, TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import { nullLog } from '../runtime/log.ts';
import { SimRuntime } from '../runtime/runtime-sim.ts';
import { HEALTH_DEFAULTS, healthSpecFor, nextHealth, probeArgs } from './health.ts';
import { simImages } from './sim-images.ts';
import { TaskManager } from './task-manager.ts';
import { StatusRecorder, task, until } from './testing.ts';

function withHealth(t: Task, test: string[], over: Partial<{ intervalMs: number; retries: number; startPeriodMs: number }> = {}): Task {
  t.spec!.container!.healthcheck = { test, intervalMs: over.intervalMs ?? 0, timeoutMs: 0, retries: over.retries ?? 0, startPeriodMs: over.startPeriodMs ?? 0 };
  return t;
}

test('health: probe argv and which check applies', () => {
  assert.deepEqual(probeArgs(['CMD', 'curl', '-f', 'x']), ['curl', '-f', 'x']);
  assert.deepEqual(probeArgs(['CMD-SHELL', 'exit 0']), ['/bin/sh', '-c', 'exit 0']);
  assert.equal(probeArgs(['NONE']), undefined);
  const img = { Test: ['CMD-SHELL', 'img'], Interval: 5e9, Retries: 7 };
  assert.deepEqual(healthSpecFor(task('t'), img), { args: ['/bin/sh', '-c', 'img'], intervalMs: 5000, timeoutMs: HEALTH_DEFAULTS.timeoutMs, retries: 7, startPeriodMs: 0 });
  assert.equal(healthSpecFor(withHealth(task('t'), ['NONE']), img), undefined, 'the task can disable the image check');
  assert.deepEqual(healthSpecFor(withHealth(task('t'), ['CMD', 'ok'], { intervalMs: 100 }), img)?.args, ['ok']);
  assert.equal(healthSpecFor(task('t')), undefined);
});

test('health: failures count after the start period (or a first success), retries in a row make it unhealthy', () => {
  const spec = { args: ['x'], intervalMs: 1, timeoutMs: 1, retries: 2, startPeriodMs: 1000 };
  let s = { health: 'starting' as const, failures: 0, started: false } as Parameters<typeof nextHealth>[0];
  s = nextHealth(s, false, 500, spec);
  assert.deepEqual(s, { health: 'starting', failures: 0, started: false }, 'ignored in the start period');
  s = nextHealth(s, true, 600, spec);
  assert.equal(s.health, 'healthy');
  s = nextHealth(s, false, 700, spec);
  assert.deepEqual(s, { health: 'healthy', failures: 1, started: true }, 'counts after a success even in the start period');
  s = nextHealth(s, false, 800, spec);
  assert.equal(s.health, 'unhealthy');
  assert.equal(nextHealth({ health: 'starting', failures: 1, started: false }, false, 2000, spec).health, 'unhealthy');
});

test('task-manager(sim): health is reported; an unhealthy task fails and its container is stopped', async (t) => {
  const rt = new SimRuntime();
  const rec = new StatusRecorder();
  const m = new TaskManager({ runtime: rt, images: simImages(), stateDir: '', clock: { now: () => Date.now() }, log: nullLog, onStatus: rec.onStatus, retryMs: 5 });
  t.after(() => m.close());
  await m.start();
  m.assign([
    withHealth(task('good'), ['CMD', 'check'], { intervalMs: 5 }),
    withHealth(task('sick'), ['CMD', 'sim-exit', '1'], { intervalMs: 5, retries: 2 }),
  ], true, []);
  await until(() => (rec.last('good')?.health === 'healthy' && rec.last('sick')?.state === TaskState.TASK_STATE_FAILED ? null
    : `good=${rec.last('good')?.health} sick=${rec.last('sick')?.state}/${rec.last('sick')?.health}`));
  const sick = rec.all.filter((x) => x.id === 'sick').map((x) => [x.status.state, x.status.health]);
  assert.deepEqual(sick.slice(-3), [[TaskState.TASK_STATE_RUNNING, 'starting'], [TaskState.TASK_STATE_RUNNING, 'unhealthy'], [TaskState.TASK_STATE_FAILED, 'unhealthy']]);
  assert.equal(rec.last('sick')!.err, 'task: unhealthy container');
  assert.equal((await rt.state('sick')).status, 'stopped');
  assert.equal((await rt.state('good')).status, 'running');
});
