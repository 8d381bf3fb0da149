import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { createRootCa, type CertRole, issue, newKeyAndCsr } from '../../manager/ca/pki.ts';
import { ClusterServerCredentials, type TlsMaterial } from '../../manager/ca/tls.ts';
import { DispatcherService, type RenewCertificateRequest, type RenewCertificateResponse } from '../../proto/gen/gantry/v1/dispatcher.ts';
import { NodeTls } from './tls.ts';

test('tls: a renewal answered after a promotion installed the manager certificate does not replace it with its worker one', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-tls-'));
  const now = Date.now();
  const root = await createRootCa('c1', now);
  const signed = (csrPem: string, role: CertRole) => issue(root, csrPem, { id: 'n1', role, clusterId: 'c1', ips: ['127.0.0.1'] }, now, 3600_000);
  const material = async (role: CertRole): Promise<TlsMaterial> => {
    const k = await newKeyAndCsr();
    return { keyPem: k.keyPem, certPem: await signed(k.csrPem, role), caPem: root.certPem };
  };

  // the manager that answers the renewal (as a worker: the node was a worker when it asked) holds
  // its answer until the promotion has installed the manager certificate
  let asked!: () => void;
  const wasAsked = new Promise<void>((r) => (asked = r));
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const serverCreds = new ClusterServerCredentials();
  serverCreds.update(await material('manager'));
  const server = new grpc.Server();
  server.addService(DispatcherService, {
    renewCertificate: (call: grpc.ServerUnaryCall<RenewCertificateRequest, RenewCertificateResponse>, cb: grpc.sendUnaryData<RenewCertificateResponse>) => {
      asked();
      void held
        .then(() => signed(Buffer.from(call.request.csr).toString(), 'worker'))
        .then((certPem) => cb(null, { certificate: Buffer.from(certPem), rootCaCert: Buffer.from(root.certPem) }));
    },
  });
  const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', serverCreds, (err, p) => (err ? rej(err) : res(p))));
  const tls = new NodeTls({ dataDir: dir, log: () => {} });
  t.after(async () => {
    tls.stop();
    server.forceShutdown();
    await rm(dir, { recursive: true, force: true });
  });

  await tls.set(await material('worker'));
  tls.startRenewal(() => [`127.0.0.1:${port}`]);
  const renewal = tls.renew();
  await wasAsked;
  await tls.set(await material('manager')); // the promotion
  release();
  await renewal;
  assert.equal(tls.identity()?.role, 'manager');
  // and what is on disk is what is in use (a restart comes back a manager)
  const reloaded = new NodeTls({ dataDir: dir, log: () => {} });
  assert.equal(await reloaded.load(), true);
  assert.equal(reloaded.identity()?.role, 'manager');
});
