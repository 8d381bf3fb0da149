// The updater with the leader's controllers on a MemoryStore and a fake clock: orders, parallelism,
// delay, failure actions, failure ratio, monitor window, rollback, pause/resume, force, leader change.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TaskState, UpdateState } from '../../proto/gen/gantry/v1/objects.ts';
import { Updater } from './updater-loop.ts';
import { convergedTo, kit, type KitOptions, stateName } from './testing.ts';

const U = UpdateState;

async function started(t: { after(fn: () => void): void }, o: KitOptions) {
  const k = await kit(o);
  t.after(() => k.stop());
  assert.ok(await k.until(() => convergedTo(k, 'app:1', o.replicas)), 'the service runs before the update');
  return k;
}

const setImage = (image: string) => (s: { spec?: { task?: { container?: { image: string } } } }) => {
  s.spec!.task!.container!.image = image;
};

describe('updater', () => {
  for (const order of ['stop-first', 'start-first'] as const) {
    for (const parallelism of [1, 2, 0]) {
      it(`updater: ${order}, parallelism ${parallelism}: every slot moves to the new image and the guarantees hold at every revision`, async (t) => {
        const k = await started(t, { replicas: 5, parallelism, order });
        await k.update(setImage('app:2'));
        assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_COMPLETED), `state ${stateName(k.service().updateStatus?.state)}`);
        assert.ok(await k.until(() => convergedTo(k, 'app:2', 5), 2000));
        assert.deepEqual(k.violations, []);
        assert.equal(k.service().updateStatus?.message, 'update completed');
      });
    }
  }

  it('updater: parallelism 2 stop-first never has more than 2 slots replaced at once, and uses them', async (t) => {
    const k = await started(t, { replicas: 6, parallelism: 2 });
    let maxBusy = 0;
    const unsub = k.h.store.subscribe(() => {
      // Slots being replaced: a new task not yet running where no old task is still desired to run
      // (a READY task beside a running old one is only prepared ahead).
      const all = k.h.tasks('s');
      const oldRuns = new Set(all.filter((x) => x.spec?.container?.image === 'app:1' && x.desiredState === TaskState.TASK_STATE_RUNNING).map((x) => x.slot));
      const busy = all.filter((x) => x.spec?.container?.image === 'app:2' && (x.status?.state ?? 0) < TaskState.TASK_STATE_RUNNING && x.desiredState <= TaskState.TASK_STATE_RUNNING && !oldRuns.has(x.slot)).length;
      maxBusy = Math.max(maxBusy, busy);
    });
    t.after(unsub);
    await k.update(setImage('app:2'));
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_COMPLETED));
    assert.equal(maxBusy, 2);
  });

  it('updater: a change that does not touch the task spec (replicas, labels) restarts nothing', async (t) => {
    const k = await started(t, { replicas: 3 });
    const before = new Set(k.h.tasks('s').map((x) => x.id));
    await k.update((s) => {
      s.spec!.labels = { team: 'a' };
      if (s.spec!.mode?.$case === 'replicated') s.spec!.mode.value.replicas = 4;
    });
    await k.until(() => false, 2000);
    const runnable = k.h.runnable('s');
    assert.equal(runnable.length, 4);
    assert.equal(runnable.filter((x) => before.has(x.id)).length, 3, 'the three old tasks still run');
    assert.equal(k.service().updateStatus, undefined);
  });

  it('updater: --force replaces every task even without a change', async (t) => {
    const k = await started(t, { replicas: 3 });
    const before = new Set(k.h.tasks('s').map((x) => x.id));
    await k.update((s) => {
      s.spec!.task!.forceUpdate = (s.spec!.task!.forceUpdate ?? 0) + 1;
    });
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_COMPLETED));
    assert.equal(k.h.runnable('s').filter((x) => before.has(x.id)).length, 0);
  });

  it('updater: the delay separates slots, and the monitor window holds completion', async (t) => {
    const k = await started(t, { replicas: 3, delayMs: 10_000, monitorMs: 5_000 });
    const t0 = k.h.clock.now();
    await k.update(setImage('app:2'));
    assert.ok(await k.until(() => convergedTo(k, 'app:2', 3)));
    const t1 = k.h.clock.now();
    assert.ok(t1 - t0 >= 20_000, `two delays between three slots (took ${t1 - t0} fake ms)`);
    assert.equal(k.service().updateStatus?.state, U.UPDATE_STATE_UPDATING, 'still monitoring');
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_COMPLETED, 10_000));
  });

  it('updater: a failing new image pauses the update and names the task, node and exit; stop-first keeps the other slots', async (t) => {
    const k = await started(t, { replicas: 4, failImages: new Set(['app:bad']) });
    await k.update(setImage('app:bad'));
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_PAUSED));
    const msg = k.service().updateStatus!.message;
    assert.match(msg, /^update paused: task web\.1 on node-\d failed: exit 1 after \d+m?s/);
    await k.until(() => false, 5000);
    const old = k.h.runnable('s').filter((x) => x.spec?.container?.image === 'app:1');
    assert.equal(old.length, 3, 'slots 2..4 untouched');
  });

  it('updater: start-first with a failing image keeps every old task running', async (t) => {
    const k = await started(t, { replicas: 3, order: 'start-first', failImages: new Set(['app:bad']) });
    await k.update(setImage('app:bad'));
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_PAUSED));
    await k.until(() => false, 3000);
    assert.equal(k.h.tasks('s').filter((x) => x.spec?.container?.image === 'app:1' && x.status?.state === TaskState.TASK_STATE_RUNNING && x.desiredState === TaskState.TASK_STATE_RUNNING).length, 3);
    assert.deepEqual(k.violations, []);
  });

  it('updater: failure action rollback returns to the previous spec with the rollback settings and says why', async (t) => {
    const k = await started(t, { replicas: 3, failureAction: 'rollback', failImages: new Set(['app:bad']) });
    await k.update(setImage('app:bad'));
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_ROLLBACK_COMPLETED));
    const st = k.service().updateStatus!;
    assert.match(st.message, /^rollback completed \(update rolled back: task web\.1 on node-\d failed: exit 1/);
    assert.equal(k.service().spec?.task?.container?.image, 'app:1');
    assert.ok(await k.until(() => convergedTo(k, 'app:1', 3), 2000));
  });

  it('updater: an automatic rollback first says which task failed', async (t) => {
    const k = await started(t, { replicas: 3, failureAction: 'rollback', failImages: new Set(['app:bad']) });
    await k.update(setImage('app:bad'));
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_ROLLBACK_STARTED));
    assert.match(k.service().updateStatus!.message, /^update rolled back: task web\.1 on node-\d failed: exit 1/);
  });

  it('updater: failure action continue updates every slot; the failed ones are reported at the end', async (t) => {
    const k = await started(t, { replicas: 3, order: 'start-first', failureAction: 'continue', failImages: new Set(['app:bad']) });
    await k.update(setImage('app:bad'));
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_COMPLETED));
    assert.match(k.service().updateStatus!.message, /^update completed with 3 failed tasks: task web\.\d/);
  });

  it('updater: max failure ratio 0.5 tolerates 2 failed slots of 4 and pauses at the third', async (t) => {
    const k = await started(t, { replicas: 4, order: 'start-first', maxFailureRatio: 0.5, failImages: new Set(['app:bad']) });
    await k.update(setImage('app:bad'));
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_PAUSED));
    assert.match(k.service().updateStatus!.message, /^update paused: task web\.3 on node-\d failed: exit 1 after \d+m?s \(3 tasks failed\)$/);
    assert.equal(k.h.tasks('s').filter((x) => x.slot === 4 && x.spec?.container?.image === 'app:1' && x.status?.state === TaskState.TASK_STATE_RUNNING && x.desiredState === TaskState.TASK_STATE_RUNNING).length, 1, 'slot 4 still runs its old task');
  });

  it('updater: a paused update is continued by writing the same spec again (resume)', async (t) => {
    const bad = new Set(['app:flaky']);
    const k = await started(t, { replicas: 3, failImages: bad });
    await k.update(setImage('app:flaky'));
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_PAUSED));
    bad.clear(); // the cause is fixed (a registry came back, a dependency came up)
    const cur = k.service();
    const r = await k.h.store.commit([{ op: 'update', kind: 'services', object: { ...cur, updateStatus: { ...cur.updateStatus!, state: U.UPDATE_STATE_UPDATING, startedAt: k.h.clock.now(), message: 'update resumed' } } }]);
    assert.ok(r.ok);
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_COMPLETED));
    assert.ok(await k.until(() => convergedTo(k, 'app:flaky', 3), 2000));
  });

  it('updater: a manual rollback after a completed update, then a rollback of the rollback', async (t) => {
    const k = await started(t, { replicas: 3, order: 'start-first', parallelism: 2 });
    await k.update(setImage('app:2'));
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_COMPLETED));
    await k.update(() => {}, { rollback: true });
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_ROLLBACK_COMPLETED));
    assert.ok(await k.until(() => convergedTo(k, 'app:1', 3), 2000));
    await k.update(() => {}, { rollback: true });
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_ROLLBACK_COMPLETED && convergedTo(k, 'app:2', 3)));
    assert.deepEqual(k.violations, []);
  });

  it('updater: a rollback of a paused update leaves the never-updated tasks alone', async (t) => {
    const k = await started(t, { replicas: 4, failImages: new Set(['app:bad']) });
    const before = k.h.runnable('s').filter((x) => x.slot !== 1).map((x) => x.id).sort();
    await k.update(setImage('app:bad'));
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_PAUSED));
    await k.update(() => {}, { rollback: true });
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_ROLLBACK_COMPLETED));
    assert.deepEqual(k.h.runnable('s').filter((x) => x.slot !== 1).map((x) => x.id).sort(), before);
  });

  it('updater: a new leader (a fresh Updater on the same store) continues the update where it was', async (t) => {
    const k = await started(t, { replicas: 6, parallelism: 1 });
    await k.update(setImage('app:2'));
    await k.until(() => k.h.tasks('s').filter((x) => x.spec?.container?.image === 'app:2' && x.status?.state === TaskState.TASK_STATE_RUNNING).length >= 2);
    await k.updater.stop();
    const next = new Updater(k.h.deps);
    next.start();
    t.after(() => next.stop());
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_COMPLETED));
    assert.ok(await k.until(() => convergedTo(k, 'app:2', 6), 2000));
    assert.deepEqual(k.violations, []);
  });

  it('updater: a new task whose health is still "starting" when the monitor period ends is a failure (pause, old tasks kept)', async (t) => {
    const k = await started(t, { replicas: 3, order: 'start-first', monitorMs: 3000, startingImages: new Set(['app:slow']) });
    await k.update((s) => {
      s.spec!.task!.container!.image = 'app:slow';
      s.spec!.task!.container!.healthcheck = { test: ['CMD-SHELL', 'check'], intervalMs: 1000, timeoutMs: 0, retries: 3, startPeriodMs: 3_600_000 };
    });
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_PAUSED), `state ${stateName(k.service().updateStatus?.state)}`);
    assert.match(k.service().updateStatus!.message, /^update paused: task web\.1 on node-\d failed: not healthy within the update monitor period \(health check "check" still starting\) after [34]s$/);
    const old = k.h.tasks('s').filter((x) => x.spec?.container?.image === 'app:1' && x.desiredState === TaskState.TASK_STATE_RUNNING);
    assert.equal(old.length, 3, 'every old task still runs');
    assert.deepEqual(k.violations, []);
  });
});

describe('updater: global services', () => {
  for (const order of ['stop-first', 'start-first'] as const) {
    for (const parallelism of [1, 0]) {
      it(`updater (global): ${order}, parallelism ${parallelism}: every node's task moves to the new image and the guarantees hold at every revision`, async (t) => {
        const k = await started(t, { mode: 'global', replicas: 4, parallelism, order });
        const before = new Map(k.h.runnable('s').map((x) => [x.nodeId, x.id]));
        assert.equal(before.size, 4, 'one task per node');
        await k.update(setImage('app:2'));
        assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_COMPLETED), `state ${stateName(k.service().updateStatus?.state)}`);
        assert.ok(await k.until(() => convergedTo(k, 'app:2', 4), 2000));
        assert.deepEqual(k.violations, []);
        assert.deepEqual(new Set(k.h.runnable('s').map((x) => x.nodeId)), new Set(before.keys()), 'each node got its replacement');
        assert.ok(k.h.runnable('s').every((x) => x.slot === 0));
      });
    }
  }

  it('updater (global): stop-first p=1 never has two nodes without a running task', async (t) => {
    const k = await started(t, { mode: 'global', replicas: 4, parallelism: 1 });
    let maxDown = 0;
    const unsub = k.h.store.subscribe(() => {
      const running = new Set(k.h.tasks('s').filter((x) => x.status?.state === TaskState.TASK_STATE_RUNNING).map((x) => x.nodeId));
      maxDown = Math.max(maxDown, 4 - running.size);
    });
    t.after(unsub);
    await k.update(setImage('app:2'));
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_COMPLETED));
    assert.equal(maxDown, 1);
  });

  it('updater (global): a failing image with failure action rollback goes back on every node and names the task', async (t) => {
    const k = await started(t, { mode: 'global', replicas: 3, failureAction: 'rollback', failImages: new Set(['app:bad']) });
    await k.update(setImage('app:bad'));
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_ROLLBACK_COMPLETED), `state ${stateName(k.service().updateStatus?.state)}`);
    assert.match(k.service().updateStatus!.message, /^rollback completed \(update rolled back: task web\.n\d on node-\d failed: exit 1/);
    assert.ok(await k.until(() => convergedTo(k, 'app:1', 3), 2000));
  });

  it('updater (global): a manual rollback, then a rollback of the rollback', async (t) => {
    const k = await started(t, { mode: 'global', replicas: 3, order: 'start-first' });
    await k.update(setImage('app:2'));
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_COMPLETED));
    await k.update(() => {}, { rollback: true });
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_ROLLBACK_COMPLETED && convergedTo(k, 'app:1', 3)));
    await k.update(() => {}, { rollback: true });
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_ROLLBACK_COMPLETED && convergedTo(k, 'app:2', 3)));
    assert.deepEqual(k.violations, []);
  });

  it('updater (global): a spec change written without an update status (as the control API does for global today) still rolls out', async (t) => {
    const k = await started(t, { mode: 'global', replicas: 3 });
    const cur = k.service();
    const spec = structuredClone(cur.spec!);
    spec.task!.container!.image = 'app:2';
    const r = await k.h.store.commit([{ op: 'update', kind: 'services', object: { ...cur, spec, previousSpec: cur.spec, specVersion: cur.specVersion + 1 } }]);
    assert.ok(r.ok);
    assert.ok(await k.until(() => k.service().updateStatus?.state === U.UPDATE_STATE_COMPLETED && convergedTo(k, 'app:2', 3)));
    assert.deepEqual(k.violations, []);
  });
});
