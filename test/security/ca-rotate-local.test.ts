// Root CA rotation on in-process daemons (127.0.0.1, sim runtime): every node moves to the new root,
// a node that is down holds the rotation until it is removed, joins work during and after, the old
// root, old tokens and old operator certificates stop working; -d, an operator's own root,
// --cert-expiry; a rotation refused while an etcd member trusts only the previous root. The lab
// test (ca-rotate.test.ts) adds real containers and three etcd members.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { identityOf, splitPem } from '../../manager/ca/identity.ts';
import { createRootCa } from '../../manager/ca/pki.ts';
import { derDigest, issuerDigest } from '../../manager/ca/rotation.ts';
import { initCluster, type LocalHost, startHost, until, waitReady } from './local-cluster.ts';

const certs = (h: LocalHost) => path.join(h.dir, 'data', 'certs');
async function caJson(h: LocalHost) {
  const r = await h.gantry(['cluster', 'ca', '--format', 'json']);
  assert.equal(r.code, 0, r.err);
  return JSON.parse(r.out) as { digest: string; rootCaCert: string; rotation: null | { to: string; rotated: number; total: number } };
}
/** The root (digest) that signed the host's certificate, out of `roots`. */
async function signedBy(h: LocalHost, roots: string[]): Promise<string> {
  return issuerDigest(await readFile(path.join(certs(h), 'cert.pem'), 'utf8'), roots);
}
async function rotationDone(h: LocalHost) {
  return until(async () => {
    const c = await caJson(h);
    return c.rotation === null ? c : `rotation still under way: ${JSON.stringify(c.rotation)}`;
  });
}

test('ca rotate: a down node holds the rotation until removed; joins during and after; old root, old token and old operator certificate refused', async (t) => {
  const m1 = await startHost(t, 'm1');
  const m2 = await startHost(t, 'm2');
  const w1 = await startHost(t, 'w1');
  const w2 = await startHost(t, 'w2');
  const late = await startHost(t, 'late');
  const { worker, manager, addr } = await initCluster(m1);
  assert.equal((await m2.gantry(['join', '--token', manager, addr])).code, 0);
  assert.equal((await w1.gantry(['join', '--token', worker, addr])).code, 0);
  await waitReady(m1, 'm2');
  await waitReady(m1, 'w1');
  const before = await caJson(m1);
  const opOld = path.join(m1.dir, 'op-old');
  assert.equal((await m1.gantry(['cluster', 'client-cert', '--out', opOld])).code, 0);
  assert.equal((await m1.gantry(['node', 'ls'], { GANTRY_HOST: addr, GANTRY_TLS_DIR: opOld })).code, 0, 'the old operator certificate works before');

  // w1 is down: the rotation cannot finish, and says which node and what to do
  await w1.daemon.stop();
  await until(async () => (/\bw1\b.*\bDown\b/.test((await m1.gantry(['node', 'ls'])).out) ? true : 'w1 not down yet'));
  const stuck = await m1.gantry(['cluster', 'ca', '--rotate']);
  assert.equal(stuck.code, 1, stuck.out + stuck.err);
  assert.match(stuck.out, /Rotating the root CA: sha256:\S+ -> sha256:/);
  assert.match(stuck.err, /cannot finish now: 1 node\(s\) still hold a certificate from the old root/);
  assert.match(stuck.err, /w1 \(\S+\): down: it gets a certificate from the new root when it comes back, or remove it with `gantry node rm w1`/);
  const mid = await caJson(m1);
  assert.ok(mid.rotation && mid.rotation.rotated === mid.rotation.total - 1, JSON.stringify(mid.rotation));
  assert.equal(mid.digest, before.digest, 'tokens keep the old root until the rotation is done');
  assert.equal(splitPem(mid.rootCaCert).length, 2, 'both roots trusted meanwhile');
  assert.match((await m1.gantry(['cluster', 'ca'])).out, /Rotating to: +sha256:\S+ \(2 of 3 nodes rotated\)\n +w1 /);
  const again = await m1.gantry(['cluster', 'ca', '--rotate', '-d']);
  assert.notEqual(again.code, 0);
  assert.match(again.err, /a root CA rotation to sha256:\S+ is under way: wait for it/);

  // joining during the rotation: the current token (old root's digest) works, the certificate comes from the new root
  assert.equal((await late.gantry(['join', '--token', worker, addr])).code, 0);
  await waitReady(m1, 'late');
  assert.equal(await signedBy(late, splitPem(mid.rootCaCert)), mid.rotation?.to);

  // removing the down node lets the rotation finish
  assert.equal((await m1.gantry(['node', 'rm', '--force', 'w1'])).code, 0);
  const after = await rotationDone(m1);
  assert.equal(after.digest, mid.rotation?.to);
  const newRoots = splitPem(after.rootCaCert);
  assert.deepEqual(newRoots.map(derDigest), [after.digest], 'only the new root is trusted');
  const newWorker = (await m1.gantry(['join-token', '-q', 'worker'])).out.trim();
  assert.match(newWorker, new RegExp(`^GNTRY-1-${after.digest}-`));
  for (const h of [m1, m2, late]) {
    await until(async () => ((await readFile(path.join(certs(h), 'ca.pem'), 'utf8')) === after.rootCaCert ? true : `${h.name} still trusts the old root`));
    assert.equal(await signedBy(h, newRoots), after.digest, `${h.name} holds a certificate from the new root`);
  }
  await waitReady(m1, 'late');
  await waitReady(m2, 'm1');

  // the old operator certificate is refused, saying why; a new one works
  const oldOp = await m1.gantry(['node', 'ls'], { GANTRY_HOST: addr, GANTRY_TLS_DIR: opOld });
  assert.notEqual(oldOp.code, 0);
  assert.match(oldOp.err, /needs a certificate of this cluster \(its certificate is signed by another CA than this cluster's; if the cluster's root CA was rotated .* certificates from the old root no longer work: get a new one\)/);
  const opNew = path.join(m1.dir, 'op-new');
  assert.equal((await m1.gantry(['cluster', 'client-cert', '--out', opNew])).code, 0);
  const newOp = await m1.gantry(['node', 'ls'], { GANTRY_HOST: addr, GANTRY_TLS_DIR: opNew });
  assert.equal(newOp.code, 0, newOp.err);

  // the old token names the old root: the joiner refuses the manager; the new token joins
  const old = await w2.gantry(['join', '--token', worker, addr]);
  assert.match(old.err, /belongs to another CA .*not sending the join token/);
  const ok = await w2.gantry(['join', '--token', newWorker, addr]);
  assert.equal(ok.code, 0, ok.err);
  await waitReady(m1, 'w2');
  assert.equal(await signedBy(w2, newRoots), after.digest);
});

test('ca rotate: the CLI follows the rotation to the end and prints the new tokens; the manager restarts its etcd member to trust the new root, and a second rotation works', async (t) => {
  const m1 = await startHost(t, 'm1');
  const w1 = await startHost(t, 'w1');
  const { worker, addr } = await initCluster(m1);
  assert.equal((await w1.gantry(['join', '--token', worker, addr])).code, 0);
  await waitReady(m1, 'w1');
  const etcd = () => (m1.daemon as unknown as { managerRole: { etcd: { pid(): number | undefined } } }).managerRole.etcd;
  const etcdPid = etcd().pid();
  const t0 = Date.now();
  const rot = await m1.gantry(['cluster', 'ca', '--rotate']);
  t.diagnostic(`rotation of 2 nodes took ${Date.now() - t0} ms`);
  assert.equal(rot.code, 0, rot.err + rot.out);
  assert.match(rot.out, /2 of 2 nodes rotated\nRoot CA rotated: every node holds a certificate from sha256:/);
  assert.match(rot.out, /Operator certificates issued before the rotation .* stop working/);
  const info = await caJson(m1);
  assert.equal(info.rotation, null);
  const printed = rot.out.match(/worker: +(\S+)/)?.[1];
  assert.equal(printed, (await m1.gantry(['join-token', '-q', 'worker'])).out.trim());
  assert.match(printed ?? '', new RegExp(`^GNTRY-1-${info.digest}-`));
  await until(async () => ((await signedBy(w1, splitPem(info.rootCaCert))) === info.digest ? true : 'w1 not on the new root'));
  // m1's etcd member started under the old root (a second rotation would lose it): the manager
  // restarts it to read the new roots; until then a rotation is refused, saying why
  await until(async () => {
    const pid = etcd().pid();
    if (pid === etcdPid) return 'the etcd member still runs with the roots it read before the rotation';
    const next = await m1.gantry(['cluster', 'ca', '--rotate']);
    if (next.code === 0) return true;
    assert.match(next.err, /the etcd member of manager\(s\) m1 started before the last root rotation/);
    return `refused: ${next.err.trim()}`;
  }, 60_000);
  const second = await caJson(m1);
  assert.notEqual(second.digest, info.digest, 'a second rotation made another root');
  assert.equal(second.rotation, null, 'and finished');
  await until(async () => ((await signedBy(w1, splitPem(second.rootCaCert))) === second.digest ? true : 'w1 not on the second root'));
  assert.equal((await m1.gantry(['node', 'ls'])).code, 0, 'the store still answers');
});

test('ca rotate: -d returns at once and the rotation finishes by itself; an operator root (--ca-cert/--ca-key) and --cert-expiry', async (t) => {
  const m1 = await startHost(t, 'm1');
  const w1 = await startHost(t, 'w1');
  const { worker, addr } = await initCluster(m1);
  assert.equal((await w1.gantry(['join', '--token', worker, addr])).code, 0);
  await waitReady(m1, 'w1');
  const info = await caJson(m1);
  const own = await createRootCa('mine', Date.now());
  const certFile = path.join(m1.dir, 'own-ca.pem');
  const keyFile = path.join(m1.dir, 'own-ca.key');
  await writeFile(certFile, own.certPem);
  await writeFile(keyFile, own.keyPem, { mode: 0o600 });

  const half = await m1.gantry(['cluster', 'ca', '--rotate', '-d', '--ca-cert', certFile]);
  assert.equal(half.code, 2, 'usage error');
  assert.match(half.err, /--ca-cert and --ca-key go together/);
  const wrongKey = path.join(m1.dir, 'other.key');
  await writeFile(wrongKey, (await createRootCa('x', Date.now())).keyPem);
  const bad = await m1.gantry(['cluster', 'ca', '--rotate', '--ca-cert', certFile, '--ca-key', wrongKey]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /--ca-key is not the key of --ca-cert/);
  assert.equal((await caJson(m1)).rotation, null, 'a refused rotation changes nothing');

  const d = await m1.gantry(['cluster', 'ca', '--rotate', '-d', '--ca-cert', certFile, '--ca-key', keyFile, '--cert-expiry', '48h']);
  assert.equal(d.code, 0, d.err);
  assert.match(d.out, /Follow it with `gantry cluster ca`/);
  const ownDigest = derDigest(own.certPem);
  const done = await rotationDone(m1);
  assert.equal(done.digest, ownDigest, 'the operator root is the cluster root');
  assert.notEqual(done.digest, info.digest);
  for (const h of [m1, w1]) {
    await until(async () => {
      const cert = await readFile(path.join(certs(h), 'cert.pem'), 'utf8');
      const id = identityOf(cert);
      return issuerDigest(cert, [own.certPem]) === ownDigest && id && id.notAfter - id.notBefore > 47 * 3600_000 ? true : `${h.name} not on the operator root with 48 h certificates`;
    });
  }
  assert.match((await m1.gantry(['cluster', 'ca'])).out, /Node certificates: +48 h/);
});
