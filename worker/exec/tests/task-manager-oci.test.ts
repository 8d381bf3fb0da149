// TaskManager end to end with real containers (runc, and gantry-exec when it runs containers):
// ASSIGNED → RUNNING → SHUTDOWN → removed; exit 1 → FAILED; a missing image → REJECTED.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { TaskState } from '../../../proto/gen/gantry/v1/objects.ts';
import { nullLog } from '../../runtime/log.ts';
import { OciRuntime } from '../../runtime/runtime-oci.ts';
import {
  busyboxRootfs, cgroupsContaining, GANTRY_EXEC, mountsContaining, processesContaining, RUNC, removeCgroups, requireRuntimes, rmrf, tempDir, unique,
} from '../../runtime/tests/fixtures.ts';
import { TaskManager } from '../task-manager.ts';
import { dirImages, StatusRecorder, task, until } from '../testing.ts';

const S = TaskState;
requireRuntimes([RUNC, GANTRY_EXEC]);

for (const [name, binary] of [
  ['runc', RUNC],
  ['native', GANTRY_EXEC],
] as const) {
  test(`task-manager(${name}): real tasks run, fail, get rejected, shut down and leave nothing`, { timeout: 90_000 }, async (t) => {
    const tmp = tempDir(`gantry-tm-${name}`);
    const cgroupParent = unique('gantry-tmtest');
    const rt = new OciRuntime({ name, binary, root: join(tmp, 'runtime', name), stateDir: join(tmp, 'containers'), monitorBinary: GANTRY_EXEC, cgroupParent });
    const layer = busyboxRootfs(join(tmp, 'layer'));
    const rec = new StatusRecorder();
    const m = new TaskManager({ runtime: rt, images: dirImages(layer), stateDir: join(tmp, 'worker'), clock: { now: () => Date.now() }, log: nullLog, onStatus: rec.onStatus, retryMs: 20 });
    const ids = { run: unique('run'), fail: unique('fail'), ghost: unique('ghost') };
    t.after(async () => {
      await m.close();
      for (const id of Object.values(ids)) await rt.remove(id).catch(() => {});
      for (const id of Object.values(ids)) for (const p of processesContaining(id)) process.kill(p, 'SIGKILL');
      removeCgroups(cgroupParent);
      for (const mp of mountsContaining(tmp).reverse()) spawnSync('umount', ['-l', mp]);
      rmrf(tmp);
    });
    await m.start();
    const run = task(ids.run, { command: ['sh', '-c', "trap 'echo stopping; exit 0' TERM; echo hello from $HOSTNAME; while true; do sleep 0.05; done"], graceMs: 20_000 });
    run.spec!.container!.healthcheck = { test: ['CMD-SHELL', 'test "$(hostname)" = "$HOSTNAME"'], intervalMs: 100, timeoutMs: 5000, retries: 3, startPeriodMs: 0 };
    const fail = task(ids.fail, { command: ['sh', '-c', 'echo failing >&2; exit 1'] });
    const ghost = task(ids.ghost, { image: 'ghost:1' });
    m.assign([run, fail, ghost], true, []);
    await until(() => {
      const st = (id: string) => rec.last(id)?.state;
      return st(ids.run) === S.TASK_STATE_RUNNING && st(ids.fail) === S.TASK_STATE_FAILED && st(ids.ghost) === S.TASK_STATE_REJECTED
        ? null : JSON.stringify([...m.statuses()].map(([k, v]) => [k, v.state, v.err]));
    });
    assert.deepEqual([...new Set(rec.states(ids.run))], [S.TASK_STATE_ACCEPTED, S.TASK_STATE_PREPARING, S.TASK_STATE_READY, S.TASK_STATE_STARTING, S.TASK_STATE_RUNNING]);
    assert.equal(rec.last(ids.fail)!.err, 'task: non-zero exit (1)');
    assert.equal(rec.last(ids.ghost)!.err, 'image "ghost:1" not found in 127.0.0.1:5000 (404): push it or check the name');
    assert.deepEqual(rec.states(ids.ghost), [S.TASK_STATE_ACCEPTED, S.TASK_STATE_PREPARING, S.TASK_STATE_REJECTED]);
    assert.equal((await rt.state(ids.run)).status, 'running');
    assert.equal((await rt.state(ids.ghost)).status, 'unknown', 'a rejected task leaves no container');

    const lines: string[] = [];
    await until(async () => {
      lines.length = 0;
      for await (const e of m.logs(ids.run, { follow: false, tail: -1, sinceMs: 0 })) lines.push(e.data.toString());
      return lines.length ? null : 'no log yet';
    });
    assert.deepEqual(lines, [`hello from ${ids.run.slice(0, 12)}\n`]);

    await until(() => (rec.last(ids.run)?.health === 'healthy' ? null : `health is "${rec.last(ids.run)?.health}"`));
    m.assign([{ ...run, desiredState: S.TASK_STATE_SHUTDOWN }], false, []);
    await until(() => (rec.last(ids.run)?.state === S.TASK_STATE_SHUTDOWN ? null : `run is ${rec.last(ids.run)?.state}`));
    assert.equal(rec.last(ids.run)!.container?.exitCode, 0, 'stopped by its stop signal within the grace');

    m.assign([], true, []);
    await until(async () => ((await rt.list()).length === 0 && m.statuses().size === 0 ? null : `${(await rt.list()).length} containers left`));
    assert.deepEqual(mountsContaining(tmp), []);
    for (const id of Object.values(ids)) {
      assert.deepEqual(cgroupsContaining(id), []);
      assert.deepEqual(processesContaining(id), []);
    }
  });
}

test('task-manager(runc): a gantryd restart re-adopts the running task without restarting it', { timeout: 90_000 }, async (t) => {
  const tmp = tempDir('gantry-tm-readopt');
  const cgroupParent = unique('gantry-tmtest');
  const taskId = unique('readopt');
  const dirs = { name: 'runc', binary: RUNC, root: join(tmp, 'runtime', 'runc'), stateDir: join(tmp, 'containers'), monitor: GANTRY_EXEC, cgroupParent };
  const layer = busyboxRootfs(join(tmp, 'layer'));
  const rt = new OciRuntime({ ...dirs, monitorBinary: GANTRY_EXEC });
  const rec = new StatusRecorder();
  const m = new TaskManager({ runtime: rt, images: dirImages(layer), stateDir: join(tmp, 'worker'), clock: { now: () => Date.now() }, log: nullLog, onStatus: rec.onStatus, retryMs: 20 });
  const child = spawn(process.execPath, [new URL('./readopt-child.ts', import.meta.url).pathname, JSON.stringify({
    ...dirs, layer, workerDir: join(tmp, 'worker'), taskId, command: ['sh', '-c', "trap 'exit 0' TERM; while true; do sleep 0.05; done"],
  })], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(async () => {
    child.kill('SIGKILL');
    await m.close();
    await rt.remove(taskId).catch(() => {});
    for (const p of processesContaining(taskId)) process.kill(p, 'SIGKILL');
    removeCgroups(cgroupParent);
    for (const mp of mountsContaining(tmp).reverse()) spawnSync('umount', ['-l', mp]);
    rmrf(tmp);
  });
  const pid = await new Promise<number>((resolve, reject) => {
    child.stdout.on('data', (d) => {
      const mm = /running (\d+)/.exec(String(d));
      if (mm) resolve(Number(mm[1]));
    });
    child.on('exit', (c) => reject(new Error(`child gantryd exited ${c}`)));
  });
  assert.ok(pid > 0);
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));

  await m.start();
  assert.equal(m.statuses().get(taskId)?.state, S.TASK_STATE_RUNNING);
  m.assign([task(taskId, { command: ['sh', '-c', 'ignored: the container exists'], graceMs: 20_000 })], true, []);
  const st = await rt.state(taskId);
  assert.equal(st.status, 'running');
  assert.equal(st.pid, pid, 'the same process: not restarted');
  assert.deepEqual(rec.states(taskId), [], 'nothing new to report');
  m.assign([task(taskId, { desired: S.TASK_STATE_SHUTDOWN, graceMs: 20_000 })], false, []);
  await until(() => (rec.last(taskId)?.state === S.TASK_STATE_SHUTDOWN ? null : `state ${rec.last(taskId)?.state}`));
  assert.equal(rec.last(taskId)!.container?.exitCode, 0);
  m.assign([], true, []);
  await m.drain();
  assert.deepEqual(await rt.list(), []);
  assert.deepEqual(mountsContaining(tmp), []);
});

test('task-manager(runc): with the real ImageStore (imported image, CMD from --change) a task runs on an overlay of its snapshots', { timeout: 90_000 }, async (t) => {
  const { ImageStore } = await import('../../image/store.ts');
  const tmp = tempDir('gantry-tm-store');
  const cgroupParent = unique('gantry-tmtest');
  const rt = new OciRuntime({ name: 'runc', binary: RUNC, root: join(tmp, 'runtime', 'runc'), stateDir: join(tmp, 'containers'), monitorBinary: GANTRY_EXEC, cgroupParent });
  const rec = new StatusRecorder();
  const store = await ImageStore.open(join(tmp, 'images'));
  const m = new TaskManager({ runtime: rt, images: store, stateDir: join(tmp, 'worker'), clock: { now: () => Date.now() }, log: nullLog, onStatus: rec.onStatus, retryMs: 20 });
  const taskId = unique('store');
  t.after(async () => {
    await m.close();
    await rt.remove(taskId).catch(() => {});
    for (const p of processesContaining(taskId)) process.kill(p, 'SIGKILL');
    removeCgroups(cgroupParent);
    for (const mp of mountsContaining(tmp).reverse()) spawnSync('umount', ['-l', mp]);
    rmrf(tmp);
  });
  const rootfs = busyboxRootfs(join(tmp, 'rootfs'));
  const tar = join(tmp, 'rootfs.tar');
  assert.equal(spawnSync('tar', ['-C', rootfs, '-cf', tar, '.']).status, 0);
  await store.importRootfs(tar, 'gantry-test/busybox:1', { changes: ['CMD ["sh", "-c", "echo from-image-cmd $GREETING; exit 4"]', 'ENV GREETING=hi'] });
  await m.start();
  m.assign([task(taskId, { image: 'gantry-test/busybox:1' })], true, []);
  await until(() => (rec.last(taskId)?.state === S.TASK_STATE_FAILED ? null : `state ${rec.last(taskId)?.state} ${rec.last(taskId)?.err}`));
  assert.equal(rec.last(taskId)!.err, 'task: non-zero exit (4)');
  const lines: string[] = [];
  for await (const e of m.logs(taskId, { follow: false, tail: -1, sinceMs: 0 })) lines.push(e.data.toString());
  assert.deepEqual(lines, ['from-image-cmd hi\n']);
  assert.ok(mountsContaining(join(tmp, 'containers', taskId)).length > 0, 'the overlay stays until the task is removed');
  m.assign([], true, []);
  await m.drain();
  assert.deepEqual(mountsContaining(tmp), []);
});
