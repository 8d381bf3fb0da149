// The leader's controllers on a real etcd (EtcdStore, real time): the loops' contract with the store
// (batch, conflicts, waitFor, watch-fed view) holds outside the in-memory double.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NodeState, type Task, TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import { Allocator } from '../allocator/allocator-loop.ts';
import { type ControllerDeps, silentLog, systemClock } from '../controller.ts';
import { NodeHealth } from '../nodehealth/node-health-loop.ts';
import { TaskReaper } from '../reaper/reaper-loop.ts';
import { Scheduler } from '../scheduler/scheduler-loop.ts';
import { testEtcd, until } from '../store/etcd-testing.ts';
import { fixtures as f } from '../store/fixtures.ts';
import type { Store, Write } from '../store/types.ts';
import { GlobalOrchestrator } from './global-loop.ts';
import { ReplicatedOrchestrator } from './replicated-loop.ts';

const S = TaskState;

async function report(store: Store, ts: readonly Task[], state: TaskState): Promise<void> {
  const v = store.view();
  const writes: Write[] = [];
  for (const t of ts) {
    const cur = v.get('tasks', t.id);
    if (cur && (cur.status?.state ?? 0) < state) {
      writes.push({ op: 'update', kind: 'tasks', object: { ...cur, status: { ...cur.status!, state, timestamp: Date.now(), message: 'test' } } });
    }
  }
  const r = await store.batch(writes);
  await store.waitFor(r.revision);
}

describe('controllers on etcd', () => {
  it('etcd: a service converges, a failed task is replaced, a node without a session goes DOWN and its tasks move', async (t) => {
    const etcd = await testEtcd(t, 'controllers');
    const store = await etcd.store();
    const nodes = ['a', 'b', 'c'].map((id) => f.node({ id }));
    await f.seed(store, {
      clusters: [f.cluster({ nodeDownGraceMs: 500 })],
      nodes,
      sessions: nodes.map((n) => f.session({ nodeId: n.id })),
    });
    const deps: ControllerDeps = { store, clock: systemClock, log: silentLog };
    const loops = [
      new NodeHealth(deps),
      new ReplicatedOrchestrator(deps),
      new GlobalOrchestrator(deps),
      new TaskReaper(deps),
      new Allocator(deps),
      new Scheduler(deps),
    ];
    for (const l of loops) l.start();
    t.after(async () => {
      await Promise.all(loops.map((l) => l.stop()));
    });

    await f.seed(store, { services: [f.service({ id: 's', replicas: 3, restart: { delayMs: 0 } })] });
    const tasks = () => store.view().tasksByService('s');
    const runnable = () => tasks().filter((x) => x.desiredState <= S.TASK_STATE_RUNNING);
    await until(() => {
      const ts = tasks();
      if (ts.length !== 3) return `${ts.length} tasks`;
      const notYet = ts.filter((x) => x.status?.state !== S.TASK_STATE_ASSIGNED).length;
      return notYet ? `${notYet} not assigned` : undefined;
    });
    assert.deepEqual(tasks().map((x) => x.nodeId).sort(), ['a', 'b', 'c']);
    await report(store, tasks(), S.TASK_STATE_RUNNING);

    const victim = runnable().find((x) => x.slot === 2)!;
    await report(store, [victim], S.TASK_STATE_FAILED);
    await until(() => {
      const slot2 = tasks().filter((x) => x.slot === 2);
      const repl = slot2.find((x) => x.id !== victim.id);
      if (!repl) return 'no replacement yet';
      return repl.status?.state === S.TASK_STATE_ASSIGNED ? undefined : `replacement is ${repl.status?.state}`;
    });
    assert.equal(store.view().get('tasks', victim.id)?.desiredState, S.TASK_STATE_SHUTDOWN);
    await report(store, runnable(), S.TASK_STATE_RUNNING);

    const onC = runnable().find((x) => x.nodeId === 'c')!;
    const r = await store.batch([{ op: 'delete', kind: 'sessions', id: 'c' }]);
    await store.waitFor(r.revision);
    await until(() => (store.view().get('nodes', 'c')?.status?.state === NodeState.NODE_STATE_DOWN ? undefined : 'c is not down yet'));
    assert.equal(store.view().get('nodes', 'c')?.status?.message, 'heartbeat failure');
    await until(() => {
      const repl = runnable().find((x) => x.slot === onC.slot);
      if (!repl || repl.id === onC.id) return 'not replaced yet';
      return repl.status?.state === S.TASK_STATE_ASSIGNED && repl.nodeId !== 'c' ? undefined : `replacement ${repl.status?.state} on ${repl.nodeId}`;
    });
    assert.equal(runnable().length, 3);
  });
});
