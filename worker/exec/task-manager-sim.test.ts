// TaskManager over SimRuntime: many tasks at once, exits, shutdown, rejection, full-set removal,
// and a restart that re-adopts running containers without restarting them.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import { nullLog } from '../runtime/log.ts';
import { SimRuntime } from '../runtime/runtime-sim.ts';
import { simImages } from './sim-images.ts';
import { TaskManager } from './task-manager.ts';
import { StatusRecorder, task, until } from './testing.ts';

const S = TaskState;

function manager(runtime: SimRuntime, stateDir: string, rec: StatusRecorder, missing: string[] = []) {
  return new TaskManager({ runtime, images: simImages({ missing }), stateDir, clock: { now: () => Date.now() }, log: nullLog, onStatus: rec.onStatus, retryMs: 5 });
}

function tmp(t: { after(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'gantry-tm-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('task-manager(sim): 500 tasks reach RUNNING, each state reported once and in order', async (t) => {
  const rt = new SimRuntime();
  const rec = new StatusRecorder();
  const m = manager(rt, '', rec);
  t.after(() => m.close());
  await m.start();
  const tasks = Array.from({ length: 500 }, (_, i) => task(`t${i}`));
  m.assign(tasks, true, []);
  await until(() => {
    const n = [...m.statuses().values()].filter((s) => s.state === S.TASK_STATE_RUNNING).length;
    return n === 500 ? null : `${n}/500 running`;
  });
  const want = [S.TASK_STATE_ACCEPTED, S.TASK_STATE_PREPARING, S.TASK_STATE_READY, S.TASK_STATE_STARTING, S.TASK_STATE_RUNNING];
  for (const x of tasks) assert.deepEqual(rec.states(x.id), want, x.id);
  assert.equal((await rt.list()).filter((c) => c.status === 'running').length, 500);
});

test('task-manager(sim): exit codes, shutdown with the stop signal, a missing image is rejected', async (t) => {
  const rt = new SimRuntime();
  const rec = new StatusRecorder();
  const m = manager(rt, tmp(t), rec, ['ghost:1']);
  t.after(() => m.close());
  await m.start();
  const ok = task('ok', { command: ['sim-exit', '0', '10ms'] });
  const bad = task('bad', { command: ['sim-exit', '1', '10ms'] });
  const lr = task('lr');
  const ghost = task('ghost', { image: 'ghost:1' });
  m.assign([ok, bad, lr, ghost], true, []);
  await until(() => (rec.last('ok')?.state === S.TASK_STATE_COMPLETE && rec.last('bad')?.state === S.TASK_STATE_FAILED
    && rec.last('lr')?.state === S.TASK_STATE_RUNNING && rec.last('ghost')?.state === S.TASK_STATE_REJECTED ? null : JSON.stringify([...m.statuses()].map(([k, v]) => [k, v.state]))));
  assert.equal(rec.last('bad')!.err, 'task: non-zero exit (1)');
  assert.equal(rec.last('bad')!.container?.exitCode, 1);
  assert.equal(rec.last('ghost')!.err, 'image "ghost:1" not found in the simulated registry (404)');
  assert.deepEqual(rec.states('ghost'), [S.TASK_STATE_ACCEPTED, S.TASK_STATE_PREPARING, S.TASK_STATE_REJECTED]);
  m.assign([{ ...lr, desiredState: S.TASK_STATE_SHUTDOWN }], false, []);
  await until(() => (rec.last('lr')?.state === S.TASK_STATE_SHUTDOWN ? null : `lr is ${rec.last('lr')?.state}`));
  assert.equal(rec.last('lr')!.container?.exitCode, 143);
  // A report never goes backwards, even if the manager sends an old status.
  m.assign([{ ...ok, status: { ...ok.status!, state: S.TASK_STATE_RUNNING } }], false, []);
  assert.equal(m.statuses().get('ok')!.state, S.TASK_STATE_COMPLETE);
});

test('task-manager(sim): a full set removes what it leaves out; removed ids are stopped and deleted', async (t) => {
  const rt = new SimRuntime();
  const rec = new StatusRecorder();
  const m = manager(rt, tmp(t), rec);
  t.after(() => m.close());
  await m.start();
  m.assign([task('a'), task('b'), task('c')], true, []);
  await until(async () => ((await rt.list()).filter((c) => c.status === 'running').length === 3 ? null : 'not all running'));
  m.assign([task('a')], true, []);
  m.assign([], false, ['a']);
  await until(async () => ((await rt.list()).length === 0 && m.statuses().size === 0 ? null : `${(await rt.list()).length} containers, ${m.statuses().size} tasks`));
  assert.equal(rec.last('b')!.state, S.TASK_STATE_SHUTDOWN);
  m.assign([task('d'), task('e')], false, []);
  await until(async () => ((await rt.list()).length === 2 ? null : 'd and e not created'));
  m.assign([], true, []);
  await m.drain();
  assert.deepEqual(await rt.list(), []);
  assert.equal(m.statuses().size, 0);
});

test('task-manager(sim): after a restart running containers are re-adopted, not restarted; orphans go after the first full set', async (t) => {
  const rt = new SimRuntime();
  const dir = tmp(t);
  const rec1 = new StatusRecorder();
  const m1 = manager(rt, dir, rec1);
  await m1.start();
  m1.assign([task('keep'), task('drop'), task('done', { command: ['sim-exit', '0', '0ms'] })], true, []);
  await until(() => (rec1.last('keep')?.state === S.TASK_STATE_RUNNING && rec1.last('drop')?.state === S.TASK_STATE_RUNNING && rec1.last('done')?.state === S.TASK_STATE_COMPLETE ? null : 'converging'));
  const startedAt = (await rt.state('keep')).startedAt;
  await m1.close();
  // While "gantryd" is down: an orphan container appears, and the kept task's container keeps running.
  await rt.create({ id: 'orphan', rootfs: { kind: 'dir', path: '/' }, args: ['x'], env: [], cwd: '/', user: '', hostname: '', tty: false, readOnlyRootfs: false, capAdd: [], capDrop: [], limits: {}, mounts: [], network: { mode: 'none' }, stopSignal: 'SIGTERM', labels: {} });
  assert.equal((await rt.state('keep')).status, 'running');

  const rec2 = new StatusRecorder();
  const m2 = manager(rt, dir, rec2);
  t.after(() => m2.close());
  await m2.start();
  assert.deepEqual([...m2.statuses()].map(([k, v]) => [k, v.state]).sort(), [['done', S.TASK_STATE_COMPLETE], ['drop', S.TASK_STATE_RUNNING], ['keep', S.TASK_STATE_RUNNING]]);
  assert.equal((await rt.state('orphan')).status, 'created', 'orphans wait for the first full set');
  m2.assign([task('keep'), task('done', { command: ['sim-exit', '0', '0ms'] })], true, []);
  await until(async () => {
    const ids = (await rt.list()).map((c) => c.id).sort().join(',');
    return ids === 'done,keep' ? null : `containers: ${ids}`;
  });
  assert.equal((await rt.state('keep')).startedAt, startedAt, 'not restarted');
  assert.equal((await rt.state('keep')).status, 'running');
  assert.deepEqual(rec2.states('keep'), [], 'nothing new to report for the kept task');
  assert.equal(rec2.last('drop')!.state, S.TASK_STATE_SHUTDOWN);
});

test('task-manager(sim): a task wanted only READY is prepared after the tasks wanted RUNNING, and at once when its turn comes', async (t) => {
  const rt = new SimRuntime();
  const rec = new StatusRecorder();
  const waiting: (() => void)[] = [];
  const gate = { release: () => { for (const r of waiting.splice(0)) r(); } };
  const prepared: string[] = [];
  const images = simImages({});
  // the RUNNING task's image resolves only when the test says so: it stays PREPARING until then
  const slow = { ...images, resolveLocal: async (ref: string) => {
    if (ref === 'slow:1') await new Promise<void>((r) => waiting.push(r));
    return images.resolveLocal(ref);
  } };
  const m = new TaskManager({
    runtime: rt, images: slow, stateDir: '', clock: { now: () => Date.now() }, log: nullLog, retryMs: 5,
    onStatus: (id, st) => {
      rec.onStatus(id, st);
      if (st.state === S.TASK_STATE_READY) prepared.push(id);
    },
  });
  t.after(() => {
    gate.release();
    return m.close();
  });
  await m.start();
  const now = task('now', { image: 'slow:1' });
  const ahead = task('ahead', { desired: S.TASK_STATE_READY });
  m.assign([now, ahead], true, []);
  await until(() => (m.statuses().get('ahead')?.state === S.TASK_STATE_PREPARING && m.statuses().get('now')?.state === S.TASK_STATE_PREPARING ? null : 'both preparing'));
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(prepared, [], 'the ahead task waits while the RUNNING one prepares');
  gate.release();
  await until(() => (prepared.length === 2 ? null : `prepared: ${prepared.join(',')}`));
  assert.deepEqual(prepared, ['now', 'ahead']);

  // its turn: a held task goes at once when it is wanted RUNNING
  const now2 = task('now2', { image: 'slow:1' });
  const ahead2 = task('ahead2', { desired: S.TASK_STATE_READY });
  m.assign([now, ahead, now2, ahead2], true, []);
  await until(() => (m.statuses().get('ahead2')?.state === S.TASK_STATE_PREPARING ? null : 'ahead2 preparing'));
  m.assign([now, ahead, now2, { ...ahead2, desiredState: S.TASK_STATE_RUNNING }], true, []);
  await until(() => (m.statuses().get('ahead2')?.state === S.TASK_STATE_RUNNING ? null : `ahead2 ${m.statuses().get('ahead2')?.state}`));
  assert.notEqual(m.statuses().get('now2')?.state, S.TASK_STATE_RUNNING, 'now2 still waits on its image');
  gate.release();
});
