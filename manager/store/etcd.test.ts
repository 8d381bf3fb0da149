// Tests of EtcdStore against a real etcd (spawned per test on free ports in a temp dir): watches, optimistic
// concurrency, batches, leases, leadership, recovery after etcd dies, and the member supervisor.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startEtcdMember } from './etcd-member.ts';
import { EtcdRpc } from './etcd-rpc.ts';
import { testEtcd, until } from './etcd-testing.ts';
import { fixtures } from './fixtures.ts';
import type { Write } from './types.ts';

const log = (m: string) => {
  if (process.env.GANTRY_TRACE?.includes('store')) console.error(m);
};

describe('etcd store', () => {
  test('etcd store: two stores on one etcd see each other\'s writes through their watches', async (t) => {
    const e = await testEtcd(t);
    const a = await e.store();
    const b = await e.store();
    const svc = fixtures.service({ name: 'web', replicas: 2 });
    const seenByB: string[] = [];
    b.subscribe((evs) => {
      for (const ev of evs) seenByB.push(`${ev.op}:${ev.kind}`);
    });
    const t0 = performance.now();
    const r = await a.commit([{ op: 'create', kind: 'services', object: svc }]);
    log(`commit latency ${(performance.now() - t0).toFixed(1)} ms`);
    assert.ok(r.ok);
    await a.waitFor(r.revision);
    await b.waitFor(r.revision);
    const got = b.view().serviceByName('web');
    assert.equal(got?.id, svc.id);
    assert.equal(got?.meta?.version, r.revision, 'meta.version is the mod_revision');
    assert.ok((got?.meta?.createdAt ?? 0) > 0);
    assert.deepEqual(seenByB, ['put:services']);

    // B writes back, A sees it; a delete travels too.
    const upd = structuredClone(got!);
    upd.spec!.mode = { $case: 'replicated', value: { replicas: 5 } };
    const r2 = await b.commit([{ op: 'update', kind: 'services', object: upd }]);
    assert.ok(r2.ok);
    await a.waitFor(r2.revision);
    assert.deepEqual(a.view().get('services', svc.id)?.spec?.mode, { $case: 'replicated', value: { replicas: 5 } });
    assert.equal(a.view().get('services', svc.id)?.meta?.createdAt, got!.meta!.createdAt, 'createdAt survives an update');
    const r3 = await a.commit([{ op: 'delete', kind: 'services', id: svc.id, version: r2.revision }]);
    assert.ok(r3.ok);
    await b.waitFor(r3.revision);
    assert.equal(b.view().get('services', svc.id), undefined);
    assert.deepEqual(seenByB, ['put:services', 'put:services', 'delete:services']);

    // A third store opened now lists the state (initial read) rather than replaying it.
    await a.commit([{ op: 'create', kind: 'nodes', object: fixtures.node({ hostname: 'n1' }) }]);
    const c = await e.store();
    assert.deepEqual(c.view().list('nodes').map((n) => n.description?.hostname), ['n1']);
  });

  test('etcd store: two updates of one version: one wins, the other gets a version conflict', async (t) => {
    const e = await testEtcd(t);
    const a = await e.store();
    const b = await e.store();
    const n = fixtures.node({ hostname: 'x' });
    const r = await a.commit([{ op: 'create', kind: 'nodes', object: n }]);
    assert.ok(r.ok);
    await Promise.all([a.waitFor(r.revision), b.waitFor(r.revision)]);
    const na = structuredClone(a.view().get('nodes', n.id)!);
    const nb = structuredClone(b.view().get('nodes', n.id)!);
    na.spec!.labels = { by: 'a' };
    nb.spec!.labels = { by: 'b' };
    const [ra, rb] = await Promise.all([
      a.commit([{ op: 'update', kind: 'nodes', object: na }]),
      b.commit([{ op: 'update', kind: 'nodes', object: nb }]),
    ]);
    const results = [ra, rb];
    assert.equal(results.filter((x) => x.ok).length, 1, JSON.stringify(results));
    const loser = results.find((x) => !x.ok);
    assert.deepEqual(loser, { ok: false, conflict: { kind: 'nodes', id: n.id, reason: 'version' } });

    // The other rules, through real transactions.
    assert.deepEqual(await a.commit([{ op: 'create', kind: 'nodes', object: n }]), {
      ok: false,
      conflict: { kind: 'nodes', id: n.id, reason: 'exists' },
    });
    assert.deepEqual(await a.commit([{ op: 'delete', kind: 'nodes', id: 'nope' }]), {
      ok: false,
      conflict: { kind: 'nodes', id: 'nope', reason: 'missing' },
    });
    assert.deepEqual(await a.commit([{ op: 'delete', kind: 'nodes', id: n.id, version: r.revision }]), {
      ok: false,
      conflict: { kind: 'nodes', id: n.id, reason: 'version' },
    });
    // All or nothing: a good create next to a bad one does not land.
    const fresh = fixtures.node();
    const bad = await a.commit([
      { op: 'create', kind: 'nodes', object: fresh },
      { op: 'create', kind: 'nodes', object: n },
    ]);
    assert.equal(bad.ok, false);
    const probe = await a.commit([{ op: 'create', kind: 'nodes', object: fixtures.node() }]);
    assert.ok(probe.ok);
    await a.waitFor(probe.revision);
    assert.equal(a.view().get('nodes', fresh.id), undefined);
  });

  test('etcd store: a batch of 1000 task creates lands in several transactions and reports conflicts', async (t) => {
    const e = await testEtcd(t);
    const a = await e.store();
    const b = await e.store();
    const svc = fixtures.service({ name: 'big', replicas: 1000 });
    const tasks = Array.from({ length: 1000 }, (_, i) => fixtures.task({ service: svc, slot: i + 1 }));
    const revisions = new Set<number>();
    b.subscribe((evs, rev) => {
      if (evs.some((ev) => ev.kind === 'tasks')) revisions.add(rev);
    });
    // One task already exists: it is reported, the other 999 land.
    const first = await a.commit([{ op: 'create', kind: 'tasks', object: tasks[500] }]);
    assert.ok(first.ok);
    revisions.clear();
    await b.waitFor(first.revision);
    revisions.clear();
    const t0 = performance.now();
    const { revision, conflicts } = await a.batch(tasks.map((object): Write => ({ op: 'create', kind: 'tasks', object })));
    const ms = performance.now() - t0;
    await b.waitFor(revision);
    log(`batch of 1000 creates: ${ms.toFixed(0)} ms, ${revisions.size} transactions, view caught up ${(performance.now() - t0).toFixed(0)} ms`);
    assert.deepEqual(conflicts, [{ kind: 'tasks', id: tasks[500].id, reason: 'exists' }]);
    assert.equal(b.view().tasksByService(svc.id).length, 1000);
    assert.ok(revisions.size >= 8, `1000 writes need at least 8 transactions of 128, saw ${revisions.size}`);

    // Repeating the batch is safe: everything conflicts, nothing changes.
    const again = await a.batch(tasks.slice(0, 10).map((object): Write => ({ op: 'create', kind: 'tasks', object })));
    assert.equal(again.conflicts.length, 10);
  });

  test('etcd store: a lease-attached key disappears when its owner dies without cleanup', async (t) => {
    const e = await testEtcd(t);
    const a = await e.store();
    const holder = spawn(process.execPath, [fileURLToPath(new URL('./testdata/lease-holder.ts', import.meta.url)), e.member.clientUrl, 'node-1', '2000'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    t.after(() => {
      holder.kill('SIGKILL');
    });
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: holder.stdout! }).once('line', resolve);
      holder.once('exit', (code) => reject(new Error(`lease-holder exited ${code}`)));
    });
    const rev = Number(line.split(' ')[1]);
    await a.waitFor(rev);
    assert.equal(a.view().get('sessions', 'node-1')?.managerId, 'lease-holder');
    holder.kill('SIGKILL');
    const killedAt = Date.now();
    await until(() => (a.view().get('sessions', 'node-1') ? 'session still there' : undefined), 10_000);
    log(`leased key gone ${Date.now() - killedAt} ms after SIGKILL (ttl 2 s)`);
  });

  test('etcd store: leadership: two candidates, one leader; the leader closes and the other takes over', async (t) => {
    const e = await testEtcd(t);
    const a = await e.store({ managerId: 'A' });
    const b = await e.store({ managerId: 'B' });
    const la = a.leadership('A');
    const changes: string[] = [];
    la.onChange((v) => changes.push(`A:${v}`));
    await until(() => (la.isLeader() ? undefined : 'A not leader yet'));
    assert.equal(a.leadership('A'), la, 'asking again returns the same campaign');
    const lb = b.leadership('B');
    lb.onChange((v) => changes.push(`B:${v}`));
    await until(async () => ((await lb.leader()) === 'A' ? undefined : `B sees leader ${await lb.leader()}`));
    assert.equal(lb.isLeader(), false);
    assert.equal(la.isLeader(), true);
    const t0 = Date.now();
    await a.close();
    await until(() => (lb.isLeader() ? undefined : 'B not leader yet'));
    log(`leadership passed ${Date.now() - t0} ms after the leader's close`);
    assert.equal(await lb.leader(), 'B');
    assert.deepEqual(changes, ['A:true', 'A:false', 'B:true']);
    await lb.resign();
    assert.equal(lb.isLeader(), false);
  });

  test('etcd store: a leader whose etcd goes away steps down within the lease TTL and leads again when it is back', async (t) => {
    const e = await testEtcd(t);
    const a = await e.store({ leaseTtlMs: 2000, unavailableAfterMs: 1000, callTimeoutMs: 300 });
    const la = a.leadership('A');
    const changes: boolean[] = [];
    la.onChange((v) => changes.push(v));
    await until(() => (la.isLeader() ? undefined : 'not leader yet'));
    const lost = new Promise<void>((resolve) => a.onLeaseLost(resolve));
    await e.member.stop();
    const t0 = Date.now();
    await until(() => (la.isLeader() ? 'still leader with etcd gone' : undefined), 5000);
    log(`leader stepped down ${Date.now() - t0} ms after etcd stopped (lease ttl 2 s)`);
    await lost;
    const again = await startEtcdMember({ dataDir: e.dataDir, name: 'test', host: '127.0.0.1' });
    t.after(() => again.stop());
    assert.equal(again.clientUrl, e.member.clientUrl);
    await until(() => (la.isLeader() ? undefined : 'not leader again yet'), 15_000);
    assert.deepEqual(changes, [true, false, true]);
    // Writes and the watch work again on the new lease.
    const r = await a.commit([{ op: 'create', kind: 'sessions', object: fixtures.session({ nodeId: 'n' }), lease: true }]);
    assert.ok(r.ok);
    await a.waitFor(r.revision);
    assert.ok(a.view().get('sessions', 'n'));
  });

  test('etcd store: waitFor a revision the watch never brings fails with StoreUnavailableError', async (t) => {
    const e = await testEtcd(t);
    const a = await e.store({ unavailableAfterMs: 500 });
    const rpc = new EtcdRpc([e.member.clientUrl]);
    t.after(() => rpc.close());
    // A write outside our prefix: its revision has no event of ours.
    const res = await rpc.txn({ compare: [], success: [{ request_put: { key: Buffer.from('/elsewhere/x'), value: Buffer.from('1') } }], failure: [] });
    await assert.rejects(a.waitFor(Number(res.header.revision)), (err: Error) => {
      assert.equal(err.name, 'StoreUnavailableError');
      assert.match(err.message, /^store's watch has not reached revision \d+ after 0.5s \(at \d+; etcd at http:\/\/127.0.0.1:\d+\)/);
      return true;
    });
    // Our next write passes it.
    const r = await a.commit([{ op: 'create', kind: 'nodes', object: fixtures.node() }]);
    assert.ok(r.ok);
    await a.waitFor(r.revision);
    assert.ok(a.revision > Number(res.header.revision));
  });

  test('etcd store: after etcd is killed and restarted by its supervisor, writes work and the view catches up', async (t) => {
    const e = await testEtcd(t);
    // Generous: a loaded machine may take several seconds to bring etcd back.
    const a = await e.store({ unavailableAfterMs: 20_000 });
    const b = await e.store({ unavailableAfterMs: 20_000 });
    const pid = e.member.pid()!;
    const url = e.member.clientUrl;
    const exits: string[] = [];
    e.member.onExit = (code, signal) => exits.push(`${signal ?? code}`);
    process.kill(pid, 'SIGKILL');
    // A write during the outage is retried until etcd is back.
    const n = fixtures.node({ hostname: 'during-outage' });
    const t0 = Date.now();
    const r = await a.commit([{ op: 'create', kind: 'nodes', object: n }]);
    log(`commit across an etcd kill -9 + restart took ${Date.now() - t0} ms`);
    assert.ok(r.ok);
    await b.waitFor(r.revision);
    assert.equal(b.view().get('nodes', n.id)?.description?.hostname, 'during-outage');
    assert.deepEqual(exits, ['SIGKILL']);
    assert.equal(e.member.restarts(), 1);
    assert.notEqual(e.member.pid(), pid);
    assert.equal(e.member.clientUrl, url, 'the restarted etcd reuses its ports');
    // And the other direction, after the restart.
    const r2 = await b.commit([{ op: 'delete', kind: 'nodes', id: n.id }]);
    assert.ok(r2.ok);
    await a.waitFor(r2.revision);
    assert.equal(a.view().get('nodes', n.id), undefined);
  });

  test('etcd store: an unreachable etcd gives StoreUnavailableError saying what to check', async (t) => {
    const e = await testEtcd(t);
    const a = await e.store({ unavailableAfterMs: 1000, callTimeoutMs: 300 });
    await e.member.stop();
    await assert.rejects(a.commit([{ op: 'create', kind: 'nodes', object: fixtures.node() }]), (err: Error) => {
      assert.equal(err.name, 'StoreUnavailableError');
      assert.match(err.message, /^etcd at http:\/\/127\.0\.0\.1:\d+ unreachable for 1s .*is the etcd member running\? see gantryd's log$/);
      return true;
    });
  });

  test('etcd store: the informer lists again when the revisions it missed were compacted', async (t) => {
    const e = await testEtcd(t);
    const a = await e.store();
    const b = await e.store();
    const n1 = fixtures.node({ hostname: 'kept' });
    const n2 = fixtures.node({ hostname: 'deleted-while-away' });
    const seeded = await a.batch([n1, n2].map((object): Write => ({ op: 'create', kind: 'nodes', object })));
    await b.waitFor(seeded.revision);
    // Take B's watch away, change things, compact past them, then let B resume.
    const informer = (b as unknown as { informer: { suspend(): () => void } }).informer;
    const events: string[] = [];
    b.subscribe((evs) => {
      for (const ev of evs) events.push(`${ev.op}:${ev.op === 'put' ? (ev.object as { id: string }).id : ev.id}`);
    });
    const rpc = new EtcdRpc([e.member.clientUrl]);
    t.after(() => rpc.close());
    const resume = informer.suspend();
    const n3 = fixtures.node({ hostname: 'new' });
    const r = await a.commit([
      { op: 'delete', kind: 'nodes', id: n2.id },
      { op: 'create', kind: 'nodes', object: n3 },
    ]);
    assert.ok(r.ok);
    // Compact at exactly r, the revision of the delete: etcd keeps r's puts but drops its tombstone.
    await rpc.call('KV', 'compact', { revision: r.revision, physical: true });
    resume();
    await b.waitFor(r.revision);
    assert.deepEqual(b.view().list('nodes').map((n) => n.description?.hostname).sort(), ['kept', 'new'], e.logs.join('\n'));
    assert.deepEqual(events.sort(), [`delete:${n2.id}`, `put:${n3.id}`].sort());
    assert.ok(e.logs.some((l) => /compacted .* listing again/.test(l)), e.logs.join('\n'));
  });
});
