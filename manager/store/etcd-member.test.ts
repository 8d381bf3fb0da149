// Tests of the supervised etcd member: ports persist across a stop/start, data survives, and members
// can be added and removed to make a 3-manager etcd that a store fails over across.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { EtcdStore } from './etcd.ts';
import { addMember, type EtcdMember, listMembers, memberUrls, removeMember, startEtcdMember } from './etcd-member.ts';
import { until } from './etcd-testing.ts';
import { fixtures } from './fixtures.ts';

async function tempDir(t: TestContext): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'gantry-etcd-member-'));
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

describe('etcd member', () => {
  test('etcd member: a stopped member starts again on the same ports with its data', async (t) => {
    const dir = await tempDir(t);
    const logs: string[] = [];
    let m: EtcdMember | undefined = await startEtcdMember({ dataDir: dir, name: 'one', host: '127.0.0.1', log: (l) => logs.push(l) });
    t.after(() => m?.stop());
    const persisted = JSON.parse(await readFile(join(dir, 'member.json'), 'utf8'));
    assert.equal(m.clientUrl, `http://127.0.0.1:${persisted.clientPort}`);
    assert.equal(m.peerUrl, `http://127.0.0.1:${persisted.peerPort}`);
    const s = await EtcdStore.open({ endpoints: [m.clientUrl], managerId: 'x' });
    const n = fixtures.node({ hostname: 'survivor' });
    const r = await s.commit([{ op: 'create', kind: 'nodes', object: n }]);
    assert.ok(r.ok);
    await s.close();
    const { clientUrl, peerUrl } = m;
    await m.stop();
    assert.equal(m.pid(), undefined);
    m = await startEtcdMember({ dataDir: dir, name: 'one', host: '127.0.0.1', log: (l) => logs.push(l) });
    assert.equal(m.clientUrl, clientUrl);
    assert.equal(m.peerUrl, peerUrl);
    const s2 = await EtcdStore.open({ endpoints: [m.clientUrl], managerId: 'x' });
    t.after(() => s2.close());
    assert.equal(s2.view().get('nodes', n.id)?.description?.hostname, 'survivor');
  });

  test('etcd member: a missing etcd binary fails start with a message naming it', async (t) => {
    const dir = await tempDir(t);
    await assert.rejects(
      startEtcdMember({ dataDir: dir, name: 'x', host: '127.0.0.1', binary: '/nonexistent/etcd', startTimeoutMs: 1500 }),
      /etcd x: cannot run \/nonexistent\/etcd: spawn \/nonexistent\/etcd ENOENT \(is etcd-server installed\?\)/,
    );
  });

  test('etcd member: three members by MemberAdd; a store fails over when one dies; MemberRemove', async (t) => {
    const members: EtcdMember[] = [];
    t.after(async () => {
      for (const m of members) await m.stop().catch(() => {});
    });
    const first = await startEtcdMember({ dataDir: await tempDir(t), name: 'm1', host: '127.0.0.1' });
    members.push(first);
    for (const name of ['m2', 'm3']) {
      const dataDir = await tempDir(t);
      const urls = await memberUrls({ dataDir, name, host: '127.0.0.1' });
      const { initialCluster } = await addMember([first.clientUrl], urls.peerUrl, name);
      const m = await startEtcdMember({ dataDir, name, host: '127.0.0.1', initialCluster, clusterState: 'existing' });
      members.push(m);
      assert.equal(m.peerUrl, urls.peerUrl);
    }
    const list = await listMembers([members[2].clientUrl]);
    assert.deepEqual(list.map((m) => m.name).sort(), ['m1', 'm2', 'm3']);

    const store = await EtcdStore.open({ endpoints: members.map((m) => m.clientUrl), managerId: 'x', unavailableAfterMs: 10_000 });
    t.after(() => store.close());
    const r1 = await store.commit([{ op: 'create', kind: 'nodes', object: fixtures.node() }]);
    assert.ok(r1.ok);
    // The store talks to m1 first; take m1 away for good.
    await first.stop();
    const n = fixtures.node({ hostname: 'after-failover' });
    const r2 = await store.commit([{ op: 'create', kind: 'nodes', object: n }]);
    assert.ok(r2.ok);
    await store.waitFor(r2.revision);
    assert.equal(store.view().get('nodes', n.id)?.description?.hostname, 'after-failover');

    const m1 = list.find((m) => m.name === 'm1')!;
    const left = await removeMember([members[1].clientUrl], m1.id);
    assert.deepEqual(left.map((m) => m.name).sort(), ['m2', 'm3']);
    await until(async () => ((await listMembers([members[2].clientUrl])).length === 2 ? undefined : 'm1 still listed'));
  });
});
