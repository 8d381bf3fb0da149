// etcd between managers speaks mutual TLS with certificates from the cluster CA: a second manager
// joins (peer TLS), the store works through it (client TLS), and a client without a certificate
// of the cluster is refused by etcd itself.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { createRootCa, issue, newKeyAndCsr } from '../../manager/ca/pki.ts';
import { EtcdRpc } from '../../manager/store/etcd-rpc.ts';
import { initCluster, startHost, until, waitReady } from './local-cluster.ts';

test('security: etcd peers and clients use TLS from the cluster CA; other clients are refused', async (t) => {
  const m1 = await startHost(t, 'm1');
  const m2 = await startHost(t, 'm2');
  const { manager, addr } = await initCluster(m1);
  const j = await m2.gantry(['join', '--token', manager, '--advertise-addr', '127.0.0.1', '--listen-addr', '127.0.0.1:0', addr]);
  assert.equal(j.code, 0, j.err);
  await waitReady(m1, 'm2');
  await until(async () => {
    const o = (await m2.gantry(['node', 'ls'])).out;
    return /Reachable/.test(o) && /Leader/.test(o) ? true : o;
  });
  const clientUrl = (m1.daemon as unknown as { managerRole: { etcd: { clientUrl: string; peerUrl: string } } }).managerRole.etcd.clientUrl;
  assert.match(clientUrl, /^https:\/\//);
  const range = (rpc: EtcdRpc) => rpc.once('KV', 'range', { key: Buffer.from('/gantry/v1/') }, 2000).finally(() => rpc.close());

  const certs = path.join(m1.dir, 'data', 'certs');
  const [caPem, certPem, keyPem] = await Promise.all(['ca.pem', 'cert.pem', 'key.pem'].map((f) => readFile(path.join(certs, f), 'utf8')));
  await range(new EtcdRpc([clientUrl], { tls: { caPem, certPem, keyPem } }));
  await assert.rejects(range(new EtcdRpc([clientUrl])), 'plain text is refused');
  const other = await createRootCa('other', Date.now());
  const k = await newKeyAndCsr();
  const foreign = await issue(other, k.csrPem, { id: 'x', role: 'manager', clusterId: 'other' }, Date.now(), 3600_000);
  await assert.rejects(range(new EtcdRpc([clientUrl], { tls: { caPem, certPem: foreign, keyPem: k.keyPem } })), 'a certificate of another CA is refused');

  // A client given its material as a function presents what it returns now when a connection
  // fails (a renewed or re-rooted certificate), without being reopened.
  let material = { caPem, certPem: foreign, keyPem: k.keyPem };
  const live = new EtcdRpc([clientUrl], { tls: () => material, unavailableAfterMs: 20_000 });
  t.after(() => live.close());
  const ranged = live.call('KV', 'range', { key: Buffer.from('/gantry/v1/') });
  setTimeout(() => {
    material = { caPem, certPem, keyPem };
  }, 300);
  await ranged;
});
