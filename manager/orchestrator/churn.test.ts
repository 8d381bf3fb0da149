// Property test: random churn (tasks failing, nodes dying and returning, drains, scaling, worker
// reports racing the controllers) never leaves two runnable tasks in one slot, or on one global node.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NodeAvailability, NodeState, TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import { fixtures as f } from '../store/fixtures.ts';
import { Harness } from './harness.ts';

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function violations(h: Harness): string[] {
  const out: string[] = [];
  const seen = new Map<string, string>();
  for (const t of h.tasks()) {
    if (t.desiredState > TaskState.TASK_STATE_RUNNING) continue;
    const key = t.slot > 0 ? `${t.serviceId} slot ${t.slot}` : `${t.serviceId} node ${t.nodeId}`;
    const other = seen.get(key);
    if (other) out.push(`${key}: ${other} and ${t.id}`);
    seen.set(key, t.id);
  }
  return out;
}

async function act(h: Harness, rnd: () => number, pick: <T>(xs: readonly T[]) => T | undefined, nodeIds: string[]): Promise<void> {
  // Land somewhere in the middle of the loops' ticks.
  const turns = Math.floor(rnd() * 40);
  for (let i = 0; i < turns; i++) await new Promise<void>((r) => setImmediate(r));
  const v = h.store.view();
  const r = rnd();
  if (r < 0.25) {
    const t = pick(h.runnable().filter((x) => (x.status?.state ?? 0) >= TaskState.TASK_STATE_ASSIGNED));
    if (t) await h.report([t], pick([TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_COMPLETE, TaskState.TASK_STATE_REJECTED])!);
  } else if (r < 0.35) {
    const id = pick(nodeIds)!;
    const n = v.get('nodes', id)!;
    if (v.get('sessions', id)) {
      await h.store.batch([
        { op: 'delete', kind: 'sessions', id },
        { op: 'update', kind: 'nodes', object: { ...n, status: { ...n.status!, state: NodeState.NODE_STATE_DISCONNECTED, lastHeartbeat: h.clock.now() } } },
      ]);
    } else {
      await h.store.batch([
        { op: 'create', kind: 'sessions', object: f.session({ nodeId: id }) },
        { op: 'update', kind: 'nodes', object: { ...n, status: { ...n.status!, state: NodeState.NODE_STATE_READY } } },
      ]);
    }
  } else if (r < 0.42) {
    const n = v.get('nodes', pick(nodeIds)!)!;
    const availability = pick([NodeAvailability.NODE_AVAILABILITY_ACTIVE, NodeAvailability.NODE_AVAILABILITY_DRAIN, NodeAvailability.NODE_AVAILABILITY_PAUSE])!;
    await h.store.batch([{ op: 'update', kind: 'nodes', object: { ...n, spec: { ...n.spec!, availability } } }]);
  } else if (r < 0.5) {
    const s = v.get('services', pick(['r1', 'r2'])!)!;
    await h.store.batch([
      { op: 'update', kind: 'services', object: { ...s, spec: { ...s.spec!, mode: { $case: 'replicated', value: { replicas: Math.floor(rnd() * 7) } } } } },
    ]);
  } else if (r < 0.75) {
    await h.workersAct();
  }
}

function jobService() {
  const s = f.service({ id: 'jb', mode: 'replicated-job', restart: { condition: 'on-failure', delayMs: 30 } });
  s.spec!.mode = { $case: 'replicatedJob', value: { maxConcurrent: 3, totalCompletions: 1000 } };
  return s;
}

async function churn(seed: number, steps: number): Promise<void> {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T | undefined => (xs.length === 0 ? undefined : xs[Math.floor(rnd() * xs.length)]);
  const h = new Harness({ latency: rnd });
  const nodeIds = ['a', 'b', 'c', 'd', 'e'];
  await f.seed(h.store, {
    clusters: [f.cluster({ nodeDownGraceMs: 300 })],
    nodes: nodeIds.map((id) => f.node({ id })),
    sessions: nodeIds.map((id) => f.session({ nodeId: id })),
    services: [
      f.service({ id: 'r1', replicas: 4, restart: { delayMs: 100 } }),
      f.service({ id: 'r2', replicas: 3, restart: { delayMs: 0, maxAttempts: 5, windowMs: 2000 } }),
      f.service({ id: 'g', mode: 'global', restart: { delayMs: 50 } }),
      jobService(),
    ],
  });
  // Checked at every revision, not only between steps: a transient duplicate is a failure too.
  const seenBad: string[] = [];
  const unsubscribe = h.store.subscribe((_events, revision) => {
    for (const b of violations(h)) seenBad.push(`revision ${revision}: ${b}`);
  });
  h.start();
  try {
    for (let step = 0; step < steps; step++) {
      // The step's action races with the loops' ticks (both run while fake time moves).
      const ms = Math.floor(rnd() * 6) * 10;
      await Promise.all([h.run(ms), act(h, rnd, pick, nodeIds)]);
      assert.deepEqual(seenBad, [], `seed ${seed} step ${step}`);
    }
    // And it converges: with every node back and active, each service has its replicas.
    for (const id of nodeIds) {
      const v = h.store.view();
      const n = v.get('nodes', id)!;
      const writes = [];
      if (!v.get('sessions', id)) writes.push({ op: 'create' as const, kind: 'sessions' as const, object: f.session({ nodeId: id }) });
      writes.push({
        op: 'update' as const,
        kind: 'nodes' as const,
        object: { ...n, spec: { ...n.spec!, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE }, status: { ...n.status!, state: NodeState.NODE_STATE_READY } },
      });
      await h.store.batch(writes);
    }
    await h.run(300);
    const r1 = h.store.view().get('services', 'r1')!;
    const want = r1.spec?.mode?.$case === 'replicated' ? r1.spec.mode.value.replicas : -1;
    assert.equal(h.runnable('r1').length, want, `seed ${seed}: r1 has its ${want} replicas`);
    assert.ok(
      h.runnable('r1').every((t) => t.status?.state === TaskState.TASK_STATE_ASSIGNED || t.status?.state === TaskState.TASK_STATE_RUNNING),
      `seed ${seed}: r1's tasks are placed`,
    );
    const g = h.runnable('g');
    assert.deepEqual(g.map((t) => t.nodeId).sort(), nodeIds, `seed ${seed}: global task on every node`);
  } finally {
    unsubscribe();
    h.stop();
  }
}

describe('controllers under churn', () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    it(`churn: never two runnable tasks in one slot (seed ${seed})`, async () => {
      await churn(seed, 250);
    });
  }
});
