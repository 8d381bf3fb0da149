// Convergence assessment: converged, still moving, failing repeatedly, stuck pending with a reason.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fixtures, type TaskOptions } from '../manager/store/fixtures.ts';
import type { Task } from '../proto/gen/gantry/v1/objects.ts';
import { assess, type Observation, progressTiming, type StuckSince } from './progress.ts';

const web = fixtures.service({ name: 'web', replicas: 3 });
const hostnames = new Map([['n1', 'host1']]);

function obs(tasks: Task[], now: number, over: Partial<Observation> = {}): Observation {
  return { service: web, summary: { running: 0, desired: 3, completed: 0 }, tasks, hostnames, baseline: new Set(), now, ...over };
}
function t(slot: number, state: TaskOptions['state'], extra: TaskOptions = {}): Task {
  const task = fixtures.task({ service: web, slot, nodeId: state === 'pending' ? '' : 'n1', state, ...extra });
  task.meta!.createdAt = extra.timestamp ?? 1;
  return task;
}

test('progress: all slots running is converged', () => {
  const a = assess(obs([t(1, 'running'), t(2, 'running'), t(3, 'running')], 0), new Map());
  assert.equal(a.kind, 'converged');
  assert.equal(a.headline, 'web: 3/3 running');
  assert.deepEqual(a.lines, ['web.1: running on host1', 'web.2: running on host1', 'web.3: running on host1']);
});

test('progress: a slot with no task yet or starting is waiting', () => {
  const a = assess(obs([t(1, 'running'), t(2, 'starting')], 0), new Map());
  assert.equal(a.kind, 'waiting');
  assert.deepEqual(a.lines, ['web.1: running on host1', 'web.2: starting on host1', 'web.3: no task yet']);
});

test('progress: pending with a scheduler reason is stuck only after the settle period, and only once the rest settled', () => {
  const stuck: StuckSince = new Map();
  const why = 'no suitable node (1 node lacks 512MiB memory)';
  const tasks = [t(1, 'running'), t(2, 'running'), t(3, 'pending', { message: why })];
  assert.equal(assess(obs(tasks, 1000), stuck).kind, 'waiting');
  const a = assess(obs(tasks, 1000 + progressTiming.settleMs), stuck);
  assert.equal(a.kind, 'stuck');
  assert.ok(a.kind === 'stuck');
  assert.equal(
    a.error,
    `service "web": 1 of 3 tasks cannot be placed yet (web.3: ${why}); the service stays and they will be placed when a node fits (gantry service ps web)`,
  );
  assert.ok(a.lines.includes(`web.3: pending: ${why}`));
  // another slot still starting: keep waiting even though slot 3 is stuck
  const moving = [t(1, 'running'), t(2, 'starting'), t(3, 'pending', { message: why })];
  assert.equal(assess(obs(moving, 1000 + 2 * progressTiming.settleMs), stuck).kind, 'waiting');
});

test('progress: a slot failing repeatedly fails at once with the last error', () => {
  const tasks = [
    t(1, 'running'),
    t(2, 'running'),
    t(3, 'failed', { err: 'exec: "nope": not found', timestamp: 1, desiredState: 'shutdown' }),
    t(3, 'rejected', { err: 'image "x:1" not found', timestamp: 2, desiredState: 'shutdown' }),
    t(3, 'pending', { timestamp: 3 }),
  ];
  tasks[3].meta!.createdAt = 2;
  tasks[4].meta!.createdAt = 3;
  const a = assess(obs(tasks, 0), new Map());
  assert.equal(a.kind, 'failed');
  assert.ok(a.kind === 'failed');
  assert.match(a.error, /^service "web" does not converge: web\.3 ×2 failed: image "x:1" not found\. The service stays/);
});

test('progress: failures of tasks that existed before the command are not counted', () => {
  const old1 = t(3, 'failed', { err: 'old', timestamp: 1 });
  const old2 = t(3, 'failed', { err: 'old', timestamp: 2 });
  const a = assess(obs([t(1, 'running'), t(2, 'running'), old1, old2, t(3, 'running', { timestamp: 3 })], 0, { baseline: new Set([old1.id, old2.id]) }), new Map());
  assert.equal(a.kind, 'converged');
});

test('progress: scaled-down slots being shut down are not waited for', () => {
  const one = fixtures.service({ name: 'web', replicas: 1 });
  one.id = web.id;
  const tasks = [t(1, 'running'), t(2, 'running', { desiredState: 'shutdown' })];
  assert.equal(assess(obs(tasks, 0, { service: one, summary: { running: 1, desired: 1, completed: 0 } }), new Map()).kind, 'converged');
});

test('progress: a job converges when its completions are reached', () => {
  const job = fixtures.service({ name: 'batch', mode: 'replicated-job', replicas: 2 });
  const done = [1, 2].map((slot) => fixtures.task({ service: job, slot, nodeId: 'n1', state: 'complete', desiredState: 'complete' }));
  const a = assess(obs(done, 0, { service: job, summary: { running: 0, desired: 2, completed: 2 } }), new Map());
  assert.equal(a.kind, 'converged');
  assert.equal(a.headline, 'batch: 2/2 completed, 0 running');
});

test('progress: without a TTY each changed line prints once; on a TTY the block is redrawn in place', async () => {
  const { waitForConvergence } = await import('./progress.ts');
  const steps = [[t(1, 'pending'), t(2, 'starting'), t(3, 'starting')], [t(1, 'running'), t(2, 'starting'), t(3, 'running')], [t(1, 'running'), t(2, 'running'), t(3, 'running')]];
  for (const isTTY of [false, true]) {
    let i = 0;
    let text = '';
    const out = {
      write: (s: string) => {
        text += s;
        return true;
      },
    } as unknown as NodeJS.WritableStream;
    const res = await waitForConvergence({ out, isTTY, sleep: async () => {}, observe: async () => obs(steps[Math.min(i++, 2)], 0) });
    assert.deepEqual(res, { ok: true });
    if (!isTTY) {
      assert.equal(
        text,
        'web: 0/3 running\n  web.1: pending\n  web.2: starting on host1\n  web.3: starting on host1\n' +
          'web: 2/3 running\n  web.1: running on host1\n  web.3: running on host1\n' +
          'web: 3/3 running\n  web.2: running on host1\nverify: Service converged\n',
      );
    } else {
      assert.equal((text.match(/\x1b\[4A/g) ?? []).length, 2, 'two redraws of four lines');
      assert.ok(text.endsWith('\x1b[2K  web.3: running on host1\n\x1b[Jverify: Service converged\n'));
    }
  }
});

test('progress: a paused update or an automatic rollback fails at once; an old status from before does not', () => {
  const rolled = structuredClone(web);
  rolled.updateStatus = { state: 6, startedAt: 10, completedAt: 20, message: 'update rolled back: 2 of 3 tasks failed' };
  const tasks = [t(1, 'running'), t(2, 'running'), t(3, 'running')];
  const a = assess(obs(tasks, 0, { service: rolled }), new Map());
  assert.equal(a.kind, 'failed');
  assert.ok(a.kind === 'failed');
  assert.equal(a.error, 'service "web": the update failed and was rolled back: update rolled back: 2 of 3 tasks failed (gantry service inspect --pretty web)');
  assert.equal(assess(obs(tasks, 0, { service: rolled, baselineUpdate: { state: 6, startedAt: 10 } }), new Map()).kind, 'converged');
  const paused = structuredClone(web);
  paused.updateStatus = { state: 2, startedAt: 30, completedAt: 0, message: 'update paused due to failure or early termination of task x' };
  assert.match((assess(obs(tasks, 0, { service: paused }), new Map()) as { error: string }).error, /^service "web": the update was paused: update paused due to/);
});

test('progress: tasks left on the previous spec with nothing changing end the wait with the reason', () => {
  const v2 = structuredClone(web);
  v2.specVersion = 2;
  v2.spec!.task!.container!.image = 'web:2';
  const old = [t(1, 'running'), t(2, 'running'), t(3, 'running')];
  const stuck: StuckSince = new Map();
  assert.equal(assess(obs(old, 0, { service: v2 }), stuck).kind, 'waiting');
  assert.equal(assess(obs(old, progressTiming.stallMs - 1, { service: v2 }), stuck).kind, 'waiting');
  const a = assess(obs(old, progressTiming.stallMs, { service: v2 }), stuck);
  assert.equal(a.kind, 'stuck');
  assert.match((a as { error: string }).error, /^service "web" has not converged: 3 tasks still run the previous spec and none was replaced in \d+s/);
  const none: StuckSince = new Map();
  assess(obs([], 0), none);
  assert.match((assess(obs([], progressTiming.stallMs), none) as { error: string }).error, /no task was created in \d+s: is a manager leading/);
});

test('progress: during an update, slots show the task still on the previous spec', () => {
  const v2 = structuredClone(web);
  v2.specVersion = 2;
  v2.spec!.task!.container!.image = 'web:2';
  const a = assess(obs([t(1, 'running'), t(2, 'running', { specVersion: 2, spec: v2.spec!.task })], 0, { service: v2 }), new Map());
  assert.equal(a.headline, 'web: 1/3 running, 1 still on the previous spec');
  assert.deepEqual(a.lines, ['web.1: running on host1 (previous spec)', 'web.2: running on host1', 'web.3: no task yet']);
});

test('progress: a global service shows one line per node and converges when every eligible node runs one', () => {
  const agent = fixtures.service({ name: 'agent', mode: 'global' });
  const tasks = ['n1', 'n2'].map((nodeId) => fixtures.task({ service: agent, nodeId, state: nodeId === 'n1' ? 'running' : 'starting' }));
  const hosts = new Map([
    ['n1', 'host1'],
    ['n2', 'host2'],
  ]);
  const waiting = assess(obs(tasks, 0, { service: agent, hostnames: hosts, summary: { running: 1, desired: 2, completed: 0 } }), new Map());
  assert.equal(waiting.kind, 'waiting');
  assert.deepEqual(waiting.lines, ['agent@host1: running on host1', 'agent@host2: starting on host2']);
  tasks[1].status!.state = 512;
  assert.equal(assess(obs(tasks, 0, { service: agent, hostnames: hosts, summary: { running: 2, desired: 2, completed: 0 } }), new Map()).kind, 'converged');
});

test('progress: a dead slot is reported only after the restart delay has passed too', () => {
  const svc = structuredClone(web);
  svc.spec!.task!.restart = { condition: 2, delayMs: 5000, maxAttempts: 0, windowMs: 0 };
  const tasks = [t(1, 'running'), t(2, 'running'), t(3, 'failed', { err: 'exit status 1' })];
  const stuck: StuckSince = new Map();
  assert.equal(assess(obs(tasks, 0, { service: svc }), stuck).kind, 'waiting');
  assert.equal(assess(obs(tasks, progressTiming.settleMs, { service: svc }), stuck).kind, 'waiting');
  const a = assess(obs(tasks, progressTiming.settleMs + 5000, { service: svc }), stuck);
  assert.equal(a.kind, 'stuck');
  assert.match((a as { error: string }).error, /web\.3 ended failed: exit status 1 and was not restarted \(see its restart policy\)/);
});

test('progress: after a rollback, tasks of an older version with the service\'s spec are current', () => {
  const back = structuredClone(web);
  back.specVersion = 3; // v1 → v2 (image web:2) → rolled back to v1's spec as v3
  back.updateStatus = { state: 6, startedAt: 40, completedAt: 50, message: 'rollback completed' };
  const tasks = [t(1, 'running'), t(2, 'running'), t(3, 'running', { specVersion: 3 })];
  assert.equal(assess(obs(tasks, 0, { service: back, rollback: true }), new Map()).kind, 'converged', 'a manual rollback that completed is success');
  const auto = assess(obs(tasks, 0, { service: back }), new Map());
  assert.equal(auto.kind, 'failed', 'an update that ended rolled back is a failure');
});

test('progress: an update in progress is not done before the updater says so (monitor window)', () => {
  const v2 = structuredClone(web);
  v2.specVersion = 2;
  v2.spec!.task!.container!.image = 'web:2';
  v2.updateStatus = { state: 1, startedAt: 40, completedAt: 0, message: 'update started' };
  const tasks = [1, 2, 3].map((n) => t(n, 'running', { specVersion: 2, spec: v2.spec!.task }));
  assert.equal(assess(obs(tasks, 0, { service: v2 }), new Map()).kind, 'waiting');
  v2.updateStatus = { ...v2.updateStatus, state: 3, message: 'update completed' };
  assert.equal(assess(obs(tasks, 0, { service: v2 }), new Map()).kind, 'converged');
});

test('progress: after a scale-down the slots kept need not be 1..replicas', () => {
  const tasks = [t(1, 'running'), t(2, 'shutdown', { desiredState: 'shutdown' }), t(3, 'running'), t(4, 'running')];
  assert.equal(assess(obs(tasks, 0), new Map()).kind, 'converged');
});
