// TaskManager end to end with real containers (runc, and gantry-exec when it runs containers):
// ASSIGNED → RUNNING → SHUTDOWN → removed; exit 1 → FAILED; a missing image → REJECTED.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { TaskState } from '../../../proto/gen/gantry/v1/objects.ts';
import { nullLog } from '../../runtime/log.ts';
import { OciRuntime } from '../../runtime/runtime-oci.ts';
import {
  busyboxRootfs, cgroupsContaining, GANTRY_EXEC, mountsContaining, processesContaining, RUNC, removeCgroups, rmrf, tempDir, unique,
} from '../../runtime/tests/fixtures.ts';
import type { TaskImages } from '../controller.ts';
import { TaskManager } from '../task-manager.ts';
import { StatusRecorder, task, until } from '../testing.ts';

const S = TaskState;
const nativeWorks = existsSync(GANTRY_EXEC) && spawnSync(GANTRY_EXEC, ['--root', '/tmp/gantry-probe-root', 'list'], { timeout: 5000 }).status === 0;

/** An image store with one image, busybox:latest, whose only layer is a busybox dir. */
function dirImages(layer: string): TaskImages<{ id: string }> {
  return {
    async resolveLocal(ref) {
      return ref.startsWith('busybox') ? { id: 'sha256:busybox' } : undefined;
    },
    async pull(ref) {
      throw new Error(`image "${ref}" not found in 127.0.0.1:5000 (404): push it or check the name`);
    },
    async imageConfig() {
      return { Env: ['PATH=/bin'], Cmd: ['sh'] };
    },
    async snapshotDirs() {
      return [layer];
    },
  };
}

for (const [name, binary, skip] of [
  ['runc', RUNC, existsSync(GANTRY_EXEC) ? false : 'gantry-exec (the monitor) is not built'],
  ['native', GANTRY_EXEC, nativeWorks ? false : 'gantry-exec cannot run containers yet'],
] as const) {
  test(`task-manager(${name}): real tasks run, fail, get rejected, shut down and leave nothing`, { skip, timeout: 90_000 }, async (t) => {
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
    const fail = task(ids.fail, { command: ['sh', '-c', 'echo failing >&2; exit 1'] });
    const ghost = task(ids.ghost, { image: 'ghost:1' });
    m.assign([run, fail, ghost], true, []);
    await until(() => {
      const st = (id: string) => rec.last(id)?.state;
      return st(ids.run) === S.TASK_STATE_RUNNING && st(ids.fail) === S.TASK_STATE_FAILED && st(ids.ghost) === S.TASK_STATE_REJECTED
        ? null : JSON.stringify([...m.statuses()].map(([k, v]) => [k, v.state, v.err]));
    });
    assert.deepEqual(rec.states(ids.run), [S.TASK_STATE_ACCEPTED, S.TASK_STATE_PREPARING, S.TASK_STATE_READY, S.TASK_STATE_STARTING, S.TASK_STATE_RUNNING]);
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
