// The leader's controllers together against a MemoryStore on a fake clock: tasks converge from NEW to
// ASSIGNED, restarts wait their delay, DOWN nodes are replaced, pending tasks wait for capacity.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NodeAvailability, NodeState, TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import { fixtures as f } from '../store/fixtures.ts';
import { Harness, LaggingStore } from './harness.ts';

async function cluster(t: { after(fn: () => void): void }, nodes: Parameters<typeof f.node>[0][]) {
  const h = new Harness();
  const ns = nodes.map((o) => f.node(o));
  await f.seed(h.store, { clusters: [f.cluster()], nodes: ns, sessions: ns.map((n) => f.session({ nodeId: n.id })) });
  h.start();
  t.after(() => h.stop());
  return h;
}

const S = TaskState;

describe('controllers', () => {
  it('controllers: a 3-replica service goes NEW → PENDING → ASSIGNED on distinct nodes', async (t) => {
    const h = await cluster(t, [{ id: 'a' }, { id: 'b' }, { id: 'c' }]);
    await f.seed(h.store, { services: [f.service({ id: 's', replicas: 3 })] });
    await h.run(100);
    const ts = h.tasks('s');
    assert.equal(ts.length, 3);
    assert.deepEqual(ts.map((x) => x.slot).sort(), [1, 2, 3]);
    for (const x of ts) {
      assert.equal(x.status?.state, S.TASK_STATE_ASSIGNED);
      assert.equal(x.status?.message, 'scheduler assigned task to node');
      assert.equal(x.desiredState, S.TASK_STATE_RUNNING);
      assert.equal(x.specVersion, 1);
      assert.equal(x.serviceName, h.store.view().get('services', 's')?.spec?.name);
    }
    assert.deepEqual(ts.map((x) => x.nodeId).sort(), ['a', 'b', 'c']);
  });

  it('controllers: 50 replicas are all ASSIGNED within a few debounce periods', async (t) => {
    const h = await cluster(t, Array.from({ length: 10 }, (_, i) => ({ id: `n${i}` })));
    await h.run(50); // the loops' first full scan is over: from now on only events drive them
    await f.seed(h.store, { services: [f.service({ id: 's', replicas: 50 })] });
    await h.run(60);
    const ts = h.tasks('s');
    assert.equal(ts.length, 50);
    assert.ok(ts.every((x) => x.status?.state === S.TASK_STATE_ASSIGNED));
  });

  it('controllers: a failed task is replaced in its slot after the restart delay', async (t) => {
    const h = await cluster(t, [{ id: 'a' }, { id: 'b' }]);
    await f.seed(h.store, { services: [f.service({ id: 's', replicas: 2, restart: { delayMs: 5000 } })] });
    await h.run(100);
    await h.workersAct();
    await h.run(50);
    const victim = h.tasks('s').find((x) => x.slot === 1)!;
    await h.report([victim], S.TASK_STATE_FAILED, 1);
    await h.run(100);
    let slot1 = h.tasks('s').filter((x) => x.slot === 1);
    assert.equal(slot1.length, 2, 'history is kept: old and new task in slot 1');
    const old = slot1.find((x) => x.id === victim.id)!;
    const repl = slot1.find((x) => x.id !== victim.id)!;
    assert.equal(old.desiredState, S.TASK_STATE_SHUTDOWN);
    assert.equal(repl.desiredState, S.TASK_STATE_READY, 'waits out the delay as READY');
    assert.equal(repl.status?.state, S.TASK_STATE_ASSIGNED, 'but is already placed');
    await h.run(4000);
    assert.equal(h.store.view().get('tasks', repl.id)?.desiredState, S.TASK_STATE_READY);
    await h.run(1100);
    assert.equal(h.store.view().get('tasks', repl.id)?.desiredState, S.TASK_STATE_RUNNING);
    slot1 = h.tasks('s').filter((x) => x.slot === 1);
    assert.equal(slot1.length, 2);
  });

  it('controllers: a node that loses its session goes DOWN after the grace and its tasks move at once', async (t) => {
    const h = await cluster(t, [{ id: 'a' }, { id: 'b' }, { id: 'c' }]);
    await f.seed(h.store, { services: [f.service({ id: 's', replicas: 3, restart: { delayMs: 5000 } })] });
    await h.run(100);
    await h.workersAct();
    const onA = h.tasks('s').find((x) => x.nodeId === 'a')!;
    // The dispatcher ends the session and records the last heartbeat.
    const v = h.store.view();
    const node = v.get('nodes', 'a')!;
    await h.store.batch([
      { op: 'delete', kind: 'sessions', id: 'a' },
      {
        op: 'update',
        kind: 'nodes',
        object: { ...node, status: { ...node.status!, state: NodeState.NODE_STATE_DISCONNECTED, lastHeartbeat: h.clock.now() } },
      },
    ]);
    await h.run(2900);
    assert.equal(h.store.view().get('nodes', 'a')?.status?.state, NodeState.NODE_STATE_DISCONNECTED);
    assert.equal(h.store.view().get('tasks', onA.id)?.desiredState, S.TASK_STATE_RUNNING);
    await h.run(200);
    const a = h.store.view().get('nodes', 'a')!;
    assert.equal(a.status?.state, NodeState.NODE_STATE_DOWN);
    assert.equal(a.status?.message, 'node disconnected');
    assert.equal(h.store.view().get('tasks', onA.id)?.desiredState, S.TASK_STATE_SHUTDOWN);
    const repl = h.runnable('s').find((x) => x.slot === onA.slot)!;
    assert.equal(repl.desiredState, S.TASK_STATE_RUNNING, 'no restart delay for a node failure');
    assert.equal(repl.status?.state, S.TASK_STATE_ASSIGNED);
    assert.notEqual(repl.nodeId, 'a');
  });

  it('controllers: a pending task is placed when a matching node joins (and explains why until then)', async (t) => {
    const h = await cluster(t, [{ id: 'a', labels: { zone: 'b' } }]);
    await f.seed(h.store, { services: [f.service({ id: 's', replicas: 1, constraints: ['node.labels.zone==a'] })] });
    await h.run(100);
    let [x] = h.tasks('s');
    assert.equal(x.status?.state, S.TASK_STATE_PENDING);
    assert.equal(x.status?.message, 'no suitable node (1 node does not match node.labels.zone==a)');
    const before = x.meta?.version;
    await h.run(500);
    assert.equal(h.tasks('s')[0].meta?.version, before, 'no rewrites while nothing changes');
    const n = f.node({ id: 'z', labels: { zone: 'a' } });
    await f.seed(h.store, { nodes: [n], sessions: [f.session({ nodeId: 'z' })] });
    await h.run(50);
    [x] = h.tasks('s');
    assert.equal(x.status?.state, S.TASK_STATE_ASSIGNED);
    assert.equal(x.nodeId, 'z');
  });

  it('controllers: a label added to a node places a waiting task', async (t) => {
    const h = await cluster(t, [{ id: 'a' }]);
    await f.seed(h.store, { services: [f.service({ id: 's', replicas: 1, constraints: ['node.labels.gpu==yes'] })] });
    await h.run(100);
    assert.equal(h.tasks('s')[0].status?.state, S.TASK_STATE_PENDING);
    const a = h.store.view().get('nodes', 'a')!;
    await h.store.batch([{ op: 'update', kind: 'nodes', object: { ...a, spec: { ...a.spec!, labels: { gpu: 'yes' } } } }]);
    await h.run(50);
    assert.equal(h.tasks('s')[0].status?.state, S.TASK_STATE_ASSIGNED);
  });

  it('controllers: capacity freed by a finished task places a waiting one (no moby#32999)', async (t) => {
    const h = await cluster(t, [{ id: 'a', memory: '1GiB' }]);
    await f.seed(h.store, {
      services: [
        f.service({ id: 'big', replicas: 1, reserveMemory: '1GiB', restart: { condition: 'none' } }),
      ],
    });
    await h.run(100);
    await f.seed(h.store, { services: [f.service({ id: 'next', replicas: 1, reserveMemory: '512MiB' })] });
    await h.run(100);
    assert.equal(h.tasks('next')[0].status?.message, 'no suitable node (1 node lacks 512MiB memory)');
    await h.workersAct();
    await h.report(h.tasks('big'), S.TASK_STATE_COMPLETE, 0);
    await h.run(50);
    assert.equal(h.tasks('next')[0].status?.state, S.TASK_STATE_ASSIGNED);
    assert.equal(h.runnable('big').length, 0, 'restart condition none: not restarted');
  });

  it('controllers: scaling down shuts tasks down; a deleted service has its tasks removed, then deleted', async (t) => {
    const h = await cluster(t, [{ id: 'a' }, { id: 'b' }]);
    const svc = f.service({ id: 's', replicas: 4 });
    await f.seed(h.store, { services: [svc] });
    await h.run(100);
    await h.workersAct();
    const cur = h.store.view().get('services', 's')!;
    await h.store.batch([{ op: 'update', kind: 'services', object: { ...cur, spec: { ...cur.spec!, mode: { $case: 'replicated', value: { replicas: 2 } } } } }]);
    await h.run(50);
    assert.equal(h.runnable('s').length, 2);
    assert.deepEqual(h.runnable('s').map((x) => x.nodeId).sort(), ['a', 'b'], 'the survivors stay spread');
    await h.store.batch([{ op: 'delete', kind: 'services', id: 's' }]);
    await h.run(200);
    assert.ok(h.tasks('s').length > 0);
    assert.ok(h.tasks('s').every((x) => x.desiredState >= S.TASK_STATE_SHUTDOWN));
    assert.ok(h.tasks('s').some((x) => x.desiredState === S.TASK_STATE_REMOVE));
    await h.workersAct();
    await h.run(200);
    assert.equal(h.tasks('s').length, 0);
  });

  it('controllers: global service follows nodes joining, draining and pausing', async (t) => {
    const h = await cluster(t, [{ id: 'a' }, { id: 'b' }]);
    await f.seed(h.store, { services: [f.service({ id: 'g', mode: 'global' })] });
    await h.run(100);
    assert.deepEqual(h.runnable('g').map((x) => `${x.nodeId} ${x.status?.state}`).sort(), [`a ${S.TASK_STATE_ASSIGNED}`, `b ${S.TASK_STATE_ASSIGNED}`]);
    await f.seed(h.store, { nodes: [f.node({ id: 'c' })], sessions: [f.session({ nodeId: 'c' })] });
    await h.run(50);
    assert.deepEqual(h.runnable('g').map((x) => x.nodeId).sort(), ['a', 'b', 'c']);
    const b = h.store.view().get('nodes', 'b')!;
    await h.store.batch([{ op: 'update', kind: 'nodes', object: { ...b, spec: { ...b.spec!, availability: NodeAvailability.NODE_AVAILABILITY_DRAIN } } }]);
    await h.run(50);
    assert.deepEqual(h.runnable('g').map((x) => x.nodeId).sort(), ['a', 'c']);
    const c = h.store.view().get('nodes', 'c')!;
    await h.store.batch([{ op: 'update', kind: 'nodes', object: { ...c, spec: { ...c.spec!, availability: NodeAvailability.NODE_AVAILABILITY_PAUSE } } }]);
    await h.run(50);
    assert.deepEqual(h.runnable('g').map((x) => x.nodeId).sort(), ['a', 'c'], 'pause keeps running tasks');
  });

  it('controllers: history beyond the retention limit is reaped', async (t) => {
    const h = await cluster(t, [{ id: 'a' }]);
    const cl = h.store.view().cluster()!;
    await h.store.batch([{ op: 'update', kind: 'clusters', object: { ...cl, spec: { ...cl.spec!, taskHistoryRetentionLimit: 2 } } }]);
    await f.seed(h.store, { services: [f.service({ id: 's', replicas: 1, restart: { delayMs: 0 } })] });
    await h.run(100);
    for (let i = 0; i < 4; i++) {
      await h.workersAct();
      await h.report(h.runnable('s'), S.TASK_STATE_FAILED, 1);
      await h.run(200);
    }
    assert.equal(h.tasks('s').length, 2);
    assert.equal(h.runnable('s').length, 1);
  });

  it('controllers: stop() stops all writes; start() again resumes', async (t) => {
    const h = await cluster(t, [{ id: 'a' }]);
    h.stop();
    await f.seed(h.store, { services: [f.service({ id: 's', replicas: 2 })] });
    await h.run(200);
    assert.equal(h.tasks('s').length, 0);
    h.start();
    await h.run(100);
    assert.equal(h.tasks('s').length, 2);
  });

  it('controllers: a replicated job runs its completions, at most max-concurrent at a time', async (t) => {
    const h = await cluster(t, [{ id: 'a' }, { id: 'b' }]);
    const job = f.service({ id: 'j', mode: 'replicated-job', restart: { condition: 'on-failure', delayMs: 0 } });
    job.spec!.mode = { $case: 'replicatedJob', value: { maxConcurrent: 2, totalCompletions: 3 } };
    await f.seed(h.store, { services: [job] });
    await h.run(100);
    assert.equal(h.runnable('j').length, 2);
    await h.workersAct();
    await h.report(h.runnable('j'), S.TASK_STATE_COMPLETE, 0);
    await h.run(100);
    assert.equal(h.tasks('j').filter((x) => x.desiredState === S.TASK_STATE_COMPLETE).length, 2);
    assert.equal(h.runnable('j').length, 1, 'the third completion');
    await h.workersAct();
    await h.report(h.runnable('j'), S.TASK_STATE_FAILED, 1);
    await h.run(100);
    assert.equal(h.runnable('j').length, 1, 'the failure is retried');
    await h.workersAct();
    await h.report(h.runnable('j'), S.TASK_STATE_COMPLETE, 0);
    await h.run(100);
    assert.equal(h.runnable('j').length, 0);
    assert.deepEqual(
      h.tasks('j').filter((x) => x.status?.state === S.TASK_STATE_COMPLETE).map((x) => x.slot).sort(),
      [1, 2, 3],
    );
  });

  it('controllers: after the store was unavailable, work left undone is picked up again', async (t) => {
    const h = await cluster(t, [{ id: 'a' }]);
    await h.run(50);
    await f.seed(h.store, { services: [f.service({ id: 's', replicas: 2 })] });
    h.store.setUnavailable();
    await h.run(1200);
    assert.equal(h.tasks('s').length, 0, 'nothing could be written');
    h.store.setAvailable();
    // The orchestrator cannot know whether its failed batch landed: it waits (5 s) for the view
    // to show those tasks before creating them again, so they are never created twice.
    await h.run(3000);
    assert.equal(h.tasks('s').length, 0);
    await h.run(3000);
    assert.equal(h.tasks('s').length, 2);
    assert.ok(h.tasks('s').every((x) => x.status?.state === S.TASK_STATE_ASSIGNED));
  });

  it('controllers: a task whose allocation failed once is allocated when the store is back', async (t) => {
    const h = await cluster(t, [{ id: 'a' }]);
    await h.run(50);
    // The store fails right after the orchestrator created the task, before the allocator's turn.
    const off = h.store.subscribe((events) => {
      if (events.some((e) => e.kind === 'tasks' && e.op === 'put' && !e.previous)) h.store.setUnavailable();
    });
    await f.seed(h.store, { services: [f.service({ id: 's', replicas: 1 })] });
    await h.run(100);
    off();
    assert.equal(h.tasks('s')[0]?.status?.state, S.TASK_STATE_NEW);
    h.store.setAvailable();
    await h.run(600);
    assert.equal(h.tasks('s')[0].status?.state, S.TASK_STATE_ASSIGNED);
  });

  it('controllers: removing a service frees its capacity for a waiting one', async (t) => {
    const h = await cluster(t, [{ id: 'a', cpus: 2 }]);
    await f.seed(h.store, { services: [f.service({ id: 'old', replicas: 2, reserveCpus: 1 })] });
    await h.run(100);
    await h.workersAct();
    await f.seed(h.store, { services: [f.service({ id: 'new', replicas: 1, reserveCpus: 1 })] });
    await h.run(100);
    assert.equal(h.tasks('new')[0].status?.message, 'no suitable node (1 node lacks 1 CPU)');
    await h.store.batch([{ op: 'delete', kind: 'services', id: 'old' }]);
    await h.run(200);
    assert.equal(h.tasks('new')[0].status?.state, S.TASK_STATE_PENDING, 'the old tasks still run until stopped');
    await h.workersAct();
    await h.run(50);
    assert.equal(h.tasks('new')[0].status?.state, S.TASK_STATE_ASSIGNED);
  });

  it('controllers: a create batch that failed after landing, seen through a lagging view, creates nothing twice', async () => {
    let laggy: LaggingStore | undefined;
    const h = new Harness({ wrap: (store, clock) => (laggy = new LaggingStore(store, clock, 1000)) });
    const ns = [f.node({ id: 'a' }), f.node({ id: 'b' })];
    await f.seed(h.store, { clusters: [f.cluster()], nodes: ns, sessions: ns.map((n) => f.session({ nodeId: n.id })) });
    h.start();
    try {
      await h.run(1100);
      await f.seed(h.store, { services: [f.service({ id: 's', replicas: 3 })] });
      await h.run(1000); // the service reaches the controllers
      laggy!.failNextBatch = true; // the orchestrator's create batch lands but reports failure
      await h.run(8000);
      assert.equal(h.tasks('s').length, 3);
      assert.ok(h.tasks('s').every((x) => x.status?.state === S.TASK_STATE_ASSIGNED));
    } finally {
      h.stop();
    }
  });
});
