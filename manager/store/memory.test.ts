// Tests of MemoryStore: the create/update/delete version rules, indexes, snapshots, subscriber
// ordering, batch conflicts, leases, and the informer-side applyChanges/replaceAll.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Conflict, StoreEvent, Write } from './types.ts';
import { fixtures } from './fixtures.ts';
import { MemoryStore } from './memory.ts';

function setup() {
  let now = 1000;
  const store = new MemoryStore({ now: () => now });
  return { store, tick: (ms = 1) => (now += ms) };
}

describe('memory store', () => {
  const cases: Array<{ name: string; run: (s: MemoryStore, id: string, v: number) => Write; expect: Conflict['reason'] | 'ok' }> = [
    { name: 'create of an existing id', run: (_s, id) => ({ op: 'create', kind: 'nodes', object: fixtures.node({ id }) }), expect: 'exists' },
    { name: 'create of a new id', run: () => ({ op: 'create', kind: 'nodes', object: fixtures.node() }), expect: 'ok' },
    {
      name: 'update with the stored version',
      run: (s, id) => ({ op: 'update', kind: 'nodes', object: s.view().get('nodes', id)! }),
      expect: 'ok',
    },
    {
      name: 'update with a stale version',
      run: (s, id, v) => {
        const n = structuredClone(s.view().get('nodes', id)!);
        n.meta!.version = v - 1;
        return { op: 'update', kind: 'nodes', object: n };
      },
      expect: 'version',
    },
    {
      name: 'update with no meta',
      run: (s, id) => ({ op: 'update', kind: 'nodes', object: { ...s.view().get('nodes', id)!, meta: undefined } }),
      expect: 'version',
    },
    { name: 'update of a missing id', run: () => ({ op: 'update', kind: 'nodes', object: fixtures.node() }), expect: 'missing' },
    { name: 'delete without version', run: (_s, id) => ({ op: 'delete', kind: 'nodes', id }), expect: 'ok' },
    { name: 'delete with the stored version', run: (_s, id, v) => ({ op: 'delete', kind: 'nodes', id, version: v }), expect: 'ok' },
    { name: 'delete with a stale version', run: (_s, id, v) => ({ op: 'delete', kind: 'nodes', id, version: v + 7 }), expect: 'version' },
    { name: 'delete of a missing id', run: () => ({ op: 'delete', kind: 'nodes', id: 'nope' }), expect: 'missing' },
  ];
  for (const c of cases) {
    test(`memory store: ${c.name} → ${c.expect}`, async () => {
      const { store } = setup();
      const n = fixtures.node({ hostname: 'a' });
      const r0 = await store.commit([{ op: 'create', kind: 'nodes', object: n }]);
      assert.ok(r0.ok);
      const before = store.revision;
      const r = await store.commit([c.run(store, n.id, r0.revision)]);
      if (c.expect === 'ok') {
        assert.deepEqual(r, { ok: true, revision: before + 1 });
      } else {
        assert.equal(r.ok, false);
        assert.equal(!r.ok && r.conflict.reason, c.expect);
        assert.equal(store.revision, before, 'a refused commit changes nothing');
      }
    });
  }

  test('memory store: a commit is all or nothing', async () => {
    const { store } = setup();
    const a = fixtures.node();
    await store.commit([{ op: 'create', kind: 'nodes', object: a }]);
    const b = fixtures.node();
    const r = await store.commit([
      { op: 'create', kind: 'nodes', object: b },
      { op: 'create', kind: 'nodes', object: a },
    ]);
    assert.deepEqual(r, { ok: false, conflict: { kind: 'nodes', id: a.id, reason: 'exists' } });
    assert.equal(store.view().get('nodes', b.id), undefined);
  });

  test('memory store: two writes to one key in a commit are refused', async () => {
    const { store } = setup();
    const a = fixtures.node();
    await assert.rejects(
      store.commit([
        { op: 'create', kind: 'nodes', object: a },
        { op: 'delete', kind: 'nodes', id: a.id },
      ]),
      /two writes to nodes\//,
    );
  });

  test('memory store: a commit of more writes than etcd takes in one transaction is refused', async () => {
    const { store } = setup();
    const writes = Array.from({ length: 129 }, (): Write => ({ op: 'create', kind: 'tasks', object: fixtures.task() }));
    await assert.rejects(store.commit(writes), /a commit of 129 writes exceeds etcd's 128 per transaction; use batch\(\)/);
    assert.ok((await store.commit(writes.slice(0, 128))).ok);
  });

  test('memory store: meta is set by the store and the written object is copied', async () => {
    const { store, tick } = setup();
    const s = fixtures.service({ name: 'web', replicas: 2 });
    const r1 = await store.commit([{ op: 'create', kind: 'services', object: s }]);
    s.spec!.name = 'mutated-after-commit';
    const got = store.view().get('services', s.id)!;
    assert.equal(got.spec!.name, 'web');
    assert.deepEqual(got.meta, { version: r1.ok && r1.revision, createdAt: 1000, updatedAt: 1000 });
    tick(5);
    const upd = structuredClone(got);
    upd.meta!.createdAt = 0; // the store keeps the stored createdAt
    upd.spec!.mode = { $case: 'replicated', value: { replicas: 3 } };
    const r2 = await store.commit([{ op: 'update', kind: 'services', object: upd }]);
    assert.ok(r2.ok);
    assert.deepEqual(store.view().get('services', s.id)!.meta, { version: r2.revision, createdAt: 1000, updatedAt: 1005 });
    assert.equal(store.view().version('services', s.id), r2.revision);
  });

  test('memory store: indexes follow tasks moving between nodes and services being renamed', async () => {
    const { store } = setup();
    const n1 = fixtures.node();
    const n2 = fixtures.node();
    const svc = fixtures.service({ name: 'web', replicas: 2 });
    const t1 = fixtures.task({ service: svc, slot: 1, nodeId: n1.id });
    const t2 = fixtures.task({ service: svc, slot: 2 });
    let v = await fixtures.seed(store, { nodes: [n1, n2], services: [svc], tasks: [t1, t2] });
    assert.deepEqual(v.tasksByService(svc.id).map((t) => t.slot).sort(), [1, 2]);
    assert.deepEqual(v.tasksByNode(n1.id).map((t) => t.id), [t1.id]);
    assert.deepEqual(v.tasksByNode(n2.id), []);
    assert.equal(v.serviceByName('web')?.id, svc.id);

    const moved = structuredClone(v.get('tasks', t1.id)!);
    moved.nodeId = n2.id;
    const renamed = structuredClone(v.get('services', svc.id)!);
    renamed.spec!.name = 'www';
    const r = await store.commit([
      { op: 'update', kind: 'tasks', object: moved },
      { op: 'update', kind: 'services', object: renamed },
      { op: 'delete', kind: 'tasks', id: t2.id },
    ]);
    assert.ok(r.ok);
    const old = v;
    v = store.view();
    assert.deepEqual(v.tasksByNode(n1.id), []);
    assert.deepEqual(v.tasksByNode(n2.id).map((t) => t.id), [t1.id]);
    assert.deepEqual(v.tasksByService(svc.id).map((t) => t.id), [t1.id]);
    assert.equal(v.serviceByName('web'), undefined);
    assert.equal(v.serviceByName('www')?.id, svc.id);
    // The earlier view is a snapshot: it still shows the old state.
    assert.deepEqual(old.tasksByNode(n1.id).map((t) => t.id), [t1.id]);
    assert.equal(old.serviceByName('web')?.id, svc.id);
    assert.equal(old.list('tasks').length, 2);
    assert.equal(v.list('tasks').length, 1);
  });

  test('memory store: subscribers see change sets in revision order, even when they commit', async () => {
    const { store } = setup();
    const seen: Array<[number, string[]]> = [];
    const a = fixtures.node({ hostname: 'a' });
    const b = fixtures.node({ hostname: 'b' });
    store.subscribe((events, rev) => {
      seen.push([rev, events.map((e) => `${e.op}:${e.kind}`)]);
      // A listener that writes in reaction: the write lands now but is delivered after this set.
      if (rev === 1) void store.commit([{ op: 'create', kind: 'nodes', object: b }]);
    });
    const second: number[] = [];
    const unsub = store.subscribe((_e, rev) => second.push(rev));
    await store.commit([{ op: 'create', kind: 'nodes', object: a }]);
    await store.commit([{ op: 'delete', kind: 'nodes', id: a.id }]);
    unsub();
    await store.commit([{ op: 'delete', kind: 'nodes', id: b.id }]);
    assert.deepEqual(seen, [
      [1, ['put:nodes']],
      [2, ['put:nodes']],
      [3, ['delete:nodes']],
      [4, ['delete:nodes']],
    ]);
    assert.deepEqual(second, [1, 2, 3]);
  });

  test('memory store: events carry the previous object', async () => {
    const { store } = setup();
    const events: StoreEvent[] = [];
    store.subscribe((e) => events.push(...e));
    const n = fixtures.node({ hostname: 'x' });
    await store.commit([{ op: 'create', kind: 'nodes', object: n }]);
    const upd = structuredClone(store.view().get('nodes', n.id)!);
    upd.description!.hostname = 'y';
    await store.commit([{ op: 'update', kind: 'nodes', object: upd }]);
    await store.commit([{ op: 'delete', kind: 'nodes', id: n.id }]);
    assert.equal(events[0].op === 'put' && events[0].previous, undefined);
    assert.equal(events[1].op === 'put' && (events[1].previous as typeof n).description!.hostname, 'x');
    assert.equal(events[2].op === 'delete' && (events[2].previous as typeof n).description!.hostname, 'y');
  });

  test('memory store: a throwing subscriber does not stop the others', async () => {
    const logs: string[] = [];
    const store = new MemoryStore({ log: (m) => logs.push(m) });
    let called = 0;
    store.subscribe(() => {
      throw new Error('boom');
    });
    store.subscribe(() => called++);
    await store.commit([{ op: 'create', kind: 'nodes', object: fixtures.node() }]);
    assert.equal(called, 1);
    assert.match(logs[0], /subscriber threw at revision 1: Error: boom/);
  });

  test('memory store: batch applies what it can and reports each conflict', async () => {
    const { store } = setup();
    const existing = fixtures.task();
    await store.commit([{ op: 'create', kind: 'tasks', object: existing }]);
    const fresh = Array.from({ length: 5 }, () => fixtures.task());
    const again = fixtures.task();
    const { revision, conflicts } = await store.batch([
      ...fresh.map((object): Write => ({ op: 'create', kind: 'tasks', object })),
      { op: 'create', kind: 'tasks', object: existing },
      { op: 'delete', kind: 'tasks', id: 'missing-id' },
      { op: 'create', kind: 'tasks', object: again },
      { op: 'delete', kind: 'tasks', id: again.id }, // second write to a key: sees the first
    ]);
    assert.deepEqual(conflicts, [
      { kind: 'tasks', id: existing.id, reason: 'exists' },
      { kind: 'tasks', id: 'missing-id', reason: 'missing' },
    ]);
    assert.equal(store.view().list('tasks').length, 6);
    assert.equal(store.view().get('tasks', again.id), undefined);
    assert.equal(revision, store.revision);
    await store.waitFor(revision);
  });

  test('memory store: waitFor resolves once the revision is applied', async () => {
    const { store } = setup();
    let done = false;
    const p = store.waitFor(2).then(() => (done = true));
    await store.commit([{ op: 'create', kind: 'nodes', object: fixtures.node() }]);
    await Promise.resolve();
    assert.equal(done, false);
    await store.commit([{ op: 'create', kind: 'nodes', object: fixtures.node() }]);
    await p;
    assert.equal(done, true);
  });

  test('memory store: expireLease removes only leased keys', async () => {
    const { store } = setup();
    const n = fixtures.node();
    const s1 = fixtures.session({ nodeId: n.id });
    const s2 = fixtures.session({ nodeId: 'other' });
    await store.commit([
      { op: 'create', kind: 'nodes', object: n },
      { op: 'create', kind: 'sessions', object: s1, lease: true },
      { op: 'create', kind: 'sessions', object: s2 },
    ]);
    // Sessions have no meta: an update needs only that the key exists.
    const upd = await store.commit([{ op: 'update', kind: 'sessions', object: { ...s1, addr: '10.0.0.1' }, lease: true }]);
    assert.ok(upd.ok);
    assert.equal(store.view().version('sessions', n.id), upd.revision);
    store.expireLease();
    assert.equal(store.view().get('sessions', n.id), undefined);
    assert.ok(store.view().get('sessions', 'other'));
    assert.ok(store.view().get('nodes', n.id));
  });

  test('memory store: setUnavailable makes writes throw', async () => {
    const { store } = setup();
    store.setUnavailable();
    await assert.rejects(store.commit([]), { name: 'StoreUnavailableError' });
    store.setAvailable();
    assert.ok((await store.commit([{ op: 'create', kind: 'nodes', object: fixtures.node() }])).ok);
  });

  test('memory store: replaceAll emits only the differences', async () => {
    const { store } = setup();
    const [a, b, c] = [fixtures.node(), fixtures.node(), fixtures.node()];
    await store.batch([a, b].map((object): Write => ({ op: 'create', kind: 'nodes', object })));
    const va = store.view().get('nodes', a.id)!;
    const vb = structuredClone(store.view().get('nodes', b.id)!);
    vb.meta!.version = 9;
    const cc = structuredClone(c);
    cc.meta!.version = 10;
    let got: StoreEvent[] = [];
    store.subscribe((e) => (got = e));
    store.replaceAll(
      [
        { kind: 'nodes', object: va, version: va.meta!.version },
        { kind: 'nodes', object: vb, version: 9 },
        { kind: 'nodes', object: cc, version: 10 },
      ],
      10,
    );
    assert.deepEqual(got.map((e) => `${e.op}:${e.op === 'put' ? (e.object as { id: string }).id : e.id}`).sort(), [`put:${b.id}`, `put:${c.id}`].sort());
    store.replaceAll([{ kind: 'nodes', object: cc, version: 10 }], 11);
    assert.deepEqual(got.map((e) => `${e.op}:${e.op === 'put' ? (e.object as { id: string }).id : e.id}`).sort(), [`delete:${a.id}`, `delete:${b.id}`].sort());
    assert.equal(store.revision, 11);
  });

  test('memory store: fixtures build what they say', () => {
    const n = fixtures.node({ hostname: 'h1', labels: { zone: 'a' }, role: 'manager', availability: 'drain', cpus: 2, memory: '1GiB' });
    assert.equal(n.description!.resources!.nanoCpus, 2e9);
    assert.equal(n.description!.resources!.memoryBytes, 1024 ** 3);
    assert.equal(n.spec!.availability, 2);
    assert.equal(n.role, 1);
    const g = fixtures.service({ mode: 'global', name: 'agent' });
    assert.equal(g.spec!.mode!.$case, 'global');
    const r = fixtures.service({ replicas: 3, reserveMemory: '512MiB' });
    assert.deepEqual(r.spec!.mode, { $case: 'replicated', value: { replicas: 3 } });
    assert.equal(r.spec!.task!.resources!.reservations!.memoryBytes, 512 * 1024 * 1024);
    const t = fixtures.task({ service: r, slot: 2, state: 'failed', desiredState: 'shutdown' });
    assert.equal(t.serviceId, r.id);
    assert.equal(t.status!.state, 704);
    assert.equal(t.desiredState, 640);
    assert.throws(() => fixtures.task({ state: 'bogus' as 'new' }), /unknown task state "bogus"/);
  });
});

describe('memory election', () => {
  test('memory election: the first candidate leads; resign and setLeader move it on', async () => {
    const { MemoryElection } = await import('./memory-leadership.ts');
    const e = new MemoryElection();
    const log: string[] = [];
    const a = e.leadership('a');
    a.onChange((v) => log.push(`a:${v}`));
    const b = e.leadership('b');
    b.onChange((v) => log.push(`b:${v}`));
    assert.equal(a.isLeader(), true);
    assert.equal(b.isLeader(), false);
    assert.equal(await b.leader(), 'a');
    e.setLeader('b');
    assert.deepEqual(log, ['a:false', 'b:true']);
    await b.resign();
    assert.equal(a.isLeader(), true);
    assert.equal(await a.leader(), 'a');
    assert.throws(() => e.setLeader('zz'), /no candidate "zz" \(candidates: a\)/);
  });
});

describe('memory store snapshots', () => {
  test('memory store: views taken between changes each keep their own revision', async () => {
    const store = new MemoryStore();
    const svc = fixtures.service({ name: 'web' });
    const [t1, t2, t3] = [1, 2, 3].map((slot) => fixtures.task({ service: svc, slot, nodeId: 'n1' }));
    await fixtures.seed(store, { services: [svc], tasks: [t1, t2] });
    const v1 = store.view();
    const moved = { ...v1.get('tasks', t1.id)!, nodeId: 'n2' };
    await store.commit([
      { op: 'update', kind: 'tasks', object: moved },
      { op: 'create', kind: 'tasks', object: t3 },
    ]);
    const v2 = store.view();
    await store.commit([
      { op: 'delete', kind: 'tasks', id: t2.id },
      { op: 'update', kind: 'services', object: { ...v2.get('services', svc.id)!, spec: { ...svc.spec!, name: 'www' } } },
    ]);
    const v3 = store.view();
    const ids = (ts: { slot: number }[]) => ts.map((t) => t.slot).sort();
    assert.deepEqual(ids(v1.tasksByNode('n1')), [1, 2]);
    assert.deepEqual(ids(v2.tasksByNode('n1')), [2, 3]);
    assert.deepEqual(ids(v3.tasksByNode('n1')), [3]);
    assert.deepEqual(ids(v1.tasksByNode('n2')), []);
    assert.deepEqual(ids(v3.tasksByNode('n2')), [1]);
    assert.deepEqual(ids(v1.list('tasks')), [1, 2]);
    assert.deepEqual(ids(v2.list('tasks')), [1, 2, 3]);
    assert.deepEqual(ids(v3.tasksByService(svc.id)), [1, 3]);
    assert.equal(v2.serviceByName('web')?.id, svc.id);
    assert.equal(v2.serviceByName('www'), undefined);
    assert.equal(v3.serviceByName('www')?.id, svc.id);
    assert.equal(v3.serviceByName('web'), undefined);
    assert.equal(v1.version('tasks', t1.id), v1.revision);
    assert.equal(v3.version('tasks', t1.id), v2.revision);
    assert.equal(v1.get('tasks', t3.id), undefined);
    assert.deepEqual([v1.revision + 1, v2.revision + 1], [v2.revision, v3.revision]);
  });
});
