// Root rotation's pure decisions: reading the root bundle, which nodes still need a certificate from
// the new root, when the old root goes; and that the cross-signed root links new certificates to the old root.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { splitPem } from './identity.ts';
import { describe, test } from 'node:test';
import { createRootCa, crossSign, importRootCa, issue, newKeyAndCsr } from './pki.ts';
import { chainFor, derDigest, etcdRestartTurn, extendChain, staleEtcdMembers, finishedBundle, issuerDigest, mergeReports, parseRootBundle, rotatingBundle, rotationProgress } from './rotation.ts';

const now = Date.now();

async function rotated() {
  const oldRoot = await createRootCa('c1', now);
  const newRoot = await createRootCa('c1', now, 1);
  const cross = await crossSign(oldRoot, newRoot.certPem, now);
  return { oldRoot, newRoot, cross, bundle: rotatingBundle(oldRoot.certPem, newRoot.certPem, cross) };
}

describe('ca rotation', () => {
  test('ca rotation: one root is not a rotation; tokens and signing use it', async () => {
    const root = await createRootCa('c1', now);
    const b = parseRootBundle(root.certPem);
    assert.equal(b.rotating, false);
    assert.equal(b.signing, b.token);
    assert.deepEqual(b.intermediates, []);
  });

  test('ca rotation: during a rotation both roots are trusted, tokens keep the old root, the new root signs', async () => {
    const { oldRoot, newRoot, cross, bundle } = await rotated();
    const b = parseRootBundle(bundle);
    assert.equal(b.rotating, true);
    assert.equal(b.roots.length, 2);
    assert.equal(derDigest(b.token), derDigest(oldRoot.certPem));
    assert.equal(derDigest(b.signing), derDigest(newRoot.certPem));
    assert.deepEqual(b.intermediates.map(derDigest), [derDigest(cross)]);
    assert.equal(derDigest(finishedBundle(b)), derDigest(newRoot.certPem));
    assert.notEqual(new X509Certificate(newRoot.certPem).subject, new X509Certificate(oldRoot.certPem).subject, 'the roots are told apart by name');
  });

  test('ca rotation: a certificate from the new root chains to the old root through the cross-signed root', async () => {
    const { oldRoot, newRoot, cross } = await rotated();
    const k = await newKeyAndCsr();
    const leaf = await issue(newRoot, k.csrPem, { id: 'n1', role: 'worker', clusterId: 'c1' }, now, 3600_000);
    const x = new X509Certificate(cross);
    const old = new X509Certificate(oldRoot.certPem);
    const l = new X509Certificate(leaf);
    assert.ok(l.checkIssued(x) && l.verify(x.publicKey), 'the leaf is signed by the cross-signed root');
    assert.ok(x.checkIssued(old) && x.verify(old.publicKey), 'which the old root signed');
    assert.ok(x.ca);
    assert.equal(issuerDigest(leaf, [oldRoot.certPem, newRoot.certPem]), derDigest(newRoot.certPem));
    assert.equal(issuerDigest(leaf, [oldRoot.certPem]), '', 'not signed by the old root directly');
    // the chain a node sends: the cross-signed root only while the old root is trusted
    assert.equal(chainFor(leaf + cross, [oldRoot.certPem, newRoot.certPem]).length, (leaf + cross).length);
    assert.equal(chainFor(leaf + cross, [newRoot.certPem]), leaf);
  });

  test('ca rotation: a renewed certificate keeps the cross-signed root that links it to the previous root (etcd members started before)', async () => {
    const r0 = await createRootCa('c1', now);
    const r1 = await createRootCa('c1', now, 1);
    const r2 = await createRootCa('c1', now, 2);
    const x1 = await crossSign(r0, r1.certPem, now);
    const x2 = await crossSign(r1, r2.certPem, now);
    const leaf = async (root: typeof r0) => issue(root, (await newKeyAndCsr()).csrPem, { id: 'n1', role: 'worker', clusterId: 'c1' }, now, 3600_000);
    const digests = (pem: string) => splitPem(pem).map(derDigest);
    // first rotation: issued with x1; a later plain renewal from r1 keeps x1
    const a = await leaf(r1);
    const during1 = extendChain(a + x1, undefined, now);
    assert.deepEqual(digests(during1).slice(1), [derDigest(x1)]);
    const b = await leaf(r1);
    assert.deepEqual(digests(extendChain(b, during1, now)).slice(1), [derDigest(x1)]);
    // second rotation: issued with x2; x1 is not kept (roots allow one intermediate: it could not verify)
    const c = await leaf(r2);
    assert.deepEqual(digests(extendChain(c + x2, extendChain(b, during1, now), now)).slice(1), [derDigest(x2)]);
    assert.deepEqual(digests(extendChain(await leaf(r2), extendChain(c + x2, during1, now), now)).slice(1), [derDigest(x2)]);
    // nothing links a certificate of an unrelated root; expired links go
    const other = await createRootCa('c2', now);
    assert.deepEqual(digests(extendChain(await leaf(other), during1, now)).length, 1);
    assert.deepEqual(digests(extendChain(b, during1, now + 30 * 365 * 24 * 3600_000)).length, 1);
  });

  test('ca rotation: the old root goes only when every node presented a certificate from the new root', () => {
    const nodes = [
      { id: 'm1', hostname: 'm1', state: 'ready' },
      { id: 'w1', hostname: 'w1', state: 'ready' },
      { id: 'w2', hostname: 'w2', state: 'down' },
    ];
    const reports = mergeReports([
      [{ nodeId: 'm1', issuerDigest: 'new', atMs: 20 }, { nodeId: 'w1', issuerDigest: 'new', atMs: 5 }],
      // another manager saw w1 later, still with the old certificate
      [{ nodeId: 'w1', issuerDigest: 'old', atMs: 15 }, { nodeId: 'w2', issuerDigest: 'old', atMs: 1 }],
    ]);
    const p = rotationProgress(nodes, reports, 'new', 10);
    assert.equal(p.done, false);
    assert.equal(p.rotated, 1);
    assert.equal(p.total, 3);
    const byId = Object.fromEntries(p.nodes.map((n) => [n.id, n]));
    assert.match(byId.w1.why, /old root/);
    assert.match(byId.w2.why, /down: .*when it comes back, or remove it with `gantry node rm w2`/);

    const later = mergeReports([[...reports.values()], [{ nodeId: 'w1', issuerDigest: 'new', atMs: 30 }]]);
    assert.equal(rotationProgress(nodes, later, 'new', 10).done, false, 'w2 is still pending');
    // w2 removed (node rm): done
    const done = rotationProgress(nodes.slice(0, 2), later, 'new', 10);
    assert.equal(done.done, true);
    assert.equal(done.rotated, 2);
    assert.equal(rotationProgress([], later, 'new', 10).done, false, 'no nodes known: never done');
  });

  test('ca rotation: a new rotation waits for etcd members that do not trust the current root (started before the last rotation)', () => {
    const members = [
      { managerId: 'm1', etcdRootDigests: ['old'] },
      { managerId: 'm2', etcdRootDigests: ['old', 'cur'] },
      { managerId: 'm3', etcdRootDigests: ['cur'] },
      { managerId: 'm4', etcdRootDigests: [] }, // said nothing: not counted
    ];
    assert.deepEqual(staleEtcdMembers(members, 'cur'), ['m1']);
    assert.deepEqual(staleEtcdMembers(members.slice(1), 'cur'), []);
  });

  test('ca rotation: stale etcd members restart one at a time, followers by id first, the leader last, only when every manager answered', () => {
    const notes = [
      { managerId: 'm1', etcdRootDigests: ['old'] },
      { managerId: 'm2', etcdRootDigests: ['old'] },
      { managerId: 'm3', etcdRootDigests: ['old'] },
    ];
    const turn = (selfId: string, n = notes, managerIds = ['m1', 'm2', 'm3']) => etcdRestartTurn(n, { selfId, leaderId: 'm1', managerIds, currentDigest: 'cur' });
    assert.deepEqual(['m1', 'm2', 'm3'].map((id) => turn(id)), [false, true, false], 'm2 first: the lowest follower');
    const m2done = [notes[0], { managerId: 'm2', etcdRootDigests: ['cur'] }, notes[2]];
    assert.deepEqual(['m1', 'm2', 'm3'].map((id) => turn(id, m2done)), [false, false, true]);
    const followersDone = [notes[0], m2done[1], { managerId: 'm3', etcdRootDigests: ['cur'] }];
    assert.deepEqual(['m1', 'm2', 'm3'].map((id) => turn(id, followersDone)), [true, false, false], 'the leader last');
    assert.equal(turn('m2', notes.slice(0, 2)), false, 'm3 did not answer: nobody restarts');
    assert.equal(turn('m1', [{ managerId: 'm1', etcdRootDigests: ['cur'] }], ['m1']), false, 'not stale: nothing to do');
  });

  test('ca rotation: an operator root must be a self-signed P-256 CA with its own key', async () => {
    const a = await createRootCa('c1', now);
    const b = await createRootCa('c1', now);
    assert.equal((await importRootCa(a.certPem, a.keyPem, now)).certPem.trim(), a.certPem.trim());
    await assert.rejects(importRootCa(a.certPem, b.keyPem, now), /--ca-key is not the key of --ca-cert/);
    await assert.rejects(importRootCa('nonsense', a.keyPem, now), /--ca-cert is not a PEM certificate/);
    const k = await newKeyAndCsr();
    const leaf = await issue(a, k.csrPem, { id: 'n', role: 'worker', clusterId: 'c1' }, now, 3600_000);
    await assert.rejects(importRootCa(leaf, k.keyPem, now), /not a CA certificate/);
  });
});
