// Security between nodes on in-process daemons (127.0.0.1, sim runtime): the root CA made by init,
// join tokens that pin the CA and carry a secret, certificates as identities, the role in the
// certificate deciding what a caller may do, revocation by `node rm`, token rotation, renewal.
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { mkdir, writeFile } from 'node:fs/promises';
import { certDigest, createRootCa, identityOf, issue, newKeyAndCsr } from '../../manager/ca/pki.ts';
import { initCluster, startHost, until, waitReady } from './local-cluster.ts';

async function operatorDir(dir: string, files: { caPem: string; certPem: string; keyPem: string }): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'ca.pem'), files.caPem);
  await writeFile(path.join(dir, 'cert.pem'), files.certPem);
  await writeFile(path.join(dir, 'key.pem'), files.keyPem, { mode: 0o600 });
  return dir;
}

describe('security', () => {
  test('security: init makes a root CA whose digest the tokens carry; keys on disk are 0600 and the CA key is not in etcd in clear', async (t) => {
    const m = await startHost(t, 'm1');
    const { worker, manager } = await initCluster(m);
    assert.notEqual(worker, manager);
    const certs = path.join(m.dir, 'data', 'certs');
    const caPem = await readFile(path.join(certs, 'ca.pem'), 'utf8');
    const digest = certDigest(caPem);
    assert.match(worker, new RegExp(`^GNTRY-1-${digest}-[0-9a-f]{40}-w$`));
    assert.match(manager, new RegExp(`^GNTRY-1-${digest}-[0-9a-f]{40}-m$`));
    assert.equal((await stat(path.join(certs, 'key.pem'))).mode & 0o777, 0o600);
    assert.equal((await stat(path.join(certs, 'cluster.key'))).mode & 0o777, 0o600);
    const id = identityOf(await readFile(path.join(certs, 'cert.pem'), 'utf8'));
    assert.equal(id?.role, 'manager');
    const info = await m.gantry(['cluster', 'ca', '--format', 'json']);
    assert.equal(JSON.parse(info.out).digest, digest);
    // what etcd holds: the cluster object as a manager reads it back
    const backup = path.join(m.dir, 'backup');
    const b = await m.gantry(['cluster', 'backup', backup]);
    assert.equal(b.code, 0, b.err);
    const dump = await readFile(backup);
    assert.ok(!dump.includes('PRIVATE KEY'), 'the root CA key is sealed in the store');
  });

  test('security: joins without the right token or to another CA are refused with what to do; the right one joins by certificate', async (t) => {
    const m = await startHost(t, 'm1');
    const w = await startHost(t, 'w1');
    const other = await startHost(t, 'o1');
    const { worker, addr } = await initCluster(m);
    const o = await initCluster(other);

    const missing = await w.gantry(['join', addr]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.err, /token/);

    const garbage = await w.gantry(['join', '--token', 'GNTRY-1-nonsense-w', addr]);
    assert.match(garbage.err, /not a gantry join token/);

    // a worker token with its role letter changed is not a manager token
    const promoted = await w.gantry(['join', '--token', `${worker.slice(0, -1)}m`, addr]);
    assert.match(promoted.err, /join token is not valid for this cluster \(wrong or rotated\)/);

    // the other cluster's token names another CA: the joiner refuses the manager before sending it
    const wrongCa = await w.gantry(['join', '--token', o.worker, addr]);
    assert.match(wrongCa.err, /belongs to another CA .*not sending the join token/);
    assert.ok(!m.logs.some((l) => l.includes('joined as')), 'the manager never saw a join');

    const ok = await w.gantry(['join', '--token', worker, addr]);
    assert.equal(ok.code, 0, ok.err);
    await waitReady(m, 'w1');
    const wid = identityOf(await readFile(path.join(w.dir, 'data', 'certs', 'cert.pem'), 'utf8'));
    assert.equal(wid?.role, 'worker');
    assert.equal((await stat(path.join(w.dir, 'data', 'certs', 'key.pem'))).mode & 0o777, 0o600);
    await assert.rejects(stat(path.join(w.dir, 'data', 'certs', 'cluster.key')), 'a worker holds no cluster key');
    const ls = await m.gantry(['node', 'ls']);
    assert.match(ls.out, new RegExp(`${wid?.id}\\s+w1\\s+Ready`));
  });

  test('security: the control API over TCP needs a manager or operator certificate of this CA, valid and not revoked', async (t) => {
    const m = await startHost(t, 'm1');
    const w = await startHost(t, 'w1');
    const { worker, addr } = await initCluster(m);
    assert.equal((await w.gantry(['join', '--token', worker, addr])).code, 0);
    await waitReady(m, 'w1');
    const tcp = (dir: string) => m.gantry(['node', 'ls'], { GANTRY_HOST: addr, GANTRY_TLS_DIR: dir });

    const none = await tcp(path.join(m.dir, 'nothing'));
    assert.match(none.err, /mutual TLS .* holds no certificate: run `gantry cluster client-cert/);

    const asWorker = await tcp(path.join(w.dir, 'data', 'certs'));
    assert.match(asWorker.err, /holds a worker certificate: workers may not call the control API/);

    const op = path.join(m.dir, 'op');
    assert.equal((await m.gantry(['cluster', 'client-cert', '--out', op, '--name', 'alice'])).code, 0);
    const asOperator = await tcp(op);
    assert.equal(asOperator.code, 0, asOperator.err);
    assert.match(asOperator.out, /w1\s+Ready/);

    const caPem = await readFile(path.join(op, 'ca.pem'), 'utf8');
    // a certificate from another CA, offered to a manager the client trusts
    const foreign = await createRootCa('elsewhere', Date.now());
    const fk = await newKeyAndCsr();
    const foreignCert = await issue(foreign, fk.csrPem, { id: 'operator-mallory', role: 'operator', clusterId: 'elsewhere' }, Date.now(), 3600_000);
    const asForeign = await tcp(await operatorDir(path.join(m.dir, 'foreign'), { caPem, certPem: foreignCert, keyPem: fk.keyPem }));
    assert.match(asForeign.err, /needs a certificate of this cluster \(its certificate is signed by another CA/);

    // an expired certificate of the right CA: issued with the cluster's own CA, 100 days ago
    const { ClusterCa } = await import('../../manager/ca/ca.ts');
    const role = (m.daemon as unknown as { managerRole: { store: ConstructorParameters<typeof ClusterCa>[0]['store'] } }).managerRole;
    const clusterKey = await readFile(path.join(m.dir, 'data', 'certs', 'cluster.key'));
    const past = new ClusterCa({ store: role.store, clusterKey, now: () => Date.now() - 100 * 24 * 3600_000 });
    const ek = await newKeyAndCsr();
    const old = await past.issueOperator(ek.csrPem, 'old');
    assert.ok((identityOf(old.certPem)?.notAfter ?? Infinity) < Date.now());
    const asExpired = await tcp(await operatorDir(path.join(m.dir, 'expired'), { caPem, certPem: old.certPem, keyPem: ek.keyPem }));
    assert.match(asExpired.err, /needs a certificate of this cluster \(its certificate has expired\)/);

    // node rm revokes: the worker's certificate no longer opens a session, and says why
    const wid = identityOf(await readFile(path.join(w.dir, 'data', 'certs', 'cert.pem'), 'utf8'))?.id as string;
    assert.equal((await m.gantry(['node', 'rm', '--force', 'w1'])).code, 0);
    await until(() => (m.logs.some((l) => l.includes(`refused session: certificate of ${wid} was revoked`)) ? true : 'no refused session yet'));
    const ca = await m.gantry(['cluster', 'ca', '--format', 'json']);
    assert.deepEqual(JSON.parse(ca.out).revoked, [wid]);
  });

  test('security: rotating the worker token makes the old one useless and leaves joined nodes connected', async (t) => {
    const m = await startHost(t, 'm1');
    const w1 = await startHost(t, 'w1');
    const w2 = await startHost(t, 'w2');
    const { worker, manager, addr } = await initCluster(m);
    assert.equal((await w1.gantry(['join', '--token', worker, addr])).code, 0);
    await waitReady(m, 'w1');
    const sessionsBefore = m.logs.filter((l) => l.includes('session') && l.includes('open for node')).length;
    assert.equal((await m.gantry(['join-token', '--rotate', 'worker'])).code, 0);
    const fresh = (await m.gantry(['join-token', '-q', 'worker'])).out.trim();
    assert.notEqual(fresh, worker);
    assert.equal((await m.gantry(['join-token', '-q', 'manager'])).out.trim(), manager, 'the manager token is unchanged');
    const old = await w2.gantry(['join', '--token', worker, addr]);
    assert.match(old.err, /join token is not valid for this cluster \(wrong or rotated\)/);
    assert.equal((await w2.gantry(['join', '--token', fresh, addr])).code, 0);
    await waitReady(m, 'w2');
    await waitReady(m, 'w1');
    const w1Sessions = m.logs.filter((l) => l.includes('open for node') && l.includes('session')).length;
    assert.equal(w1Sessions, sessionsBefore + 1, 'only the new node opened a session: w1 kept its own');
  });
});
