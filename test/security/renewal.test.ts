// Certificates renew by themselves: with an 8 s lifetime (test-only minimum), a worker's and a
// manager's certificates are replaced between 50 % and 80 % of their life, and the worker stays
// connected past the first certificate's expiry (no task restart, no new join).
process.env.GANTRY_MIN_CERT_LIFETIME_MS = '1000';
process.env.GANTRY_CERT_LIFETIME_MS = '8000';

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';

test('renewal: node certificates renew before they expire and sessions keep working past the old expiry', async (t) => {
  const { initCluster, startHost, until, waitReady } = await import('./local-cluster.ts');
  const { identityOf } = await import('../../manager/ca/identity.ts');
  const m = await startHost(t, 'm1');
  const w = await startHost(t, 'w1');
  const { worker, addr } = await initCluster(m);
  assert.equal((await w.gantry(['join', '--token', worker, addr])).code, 0);
  await waitReady(m, 'w1');
  const certOf = async (h: typeof m) => identityOf(await readFile(path.join(h.dir, 'data', 'certs', 'cert.pem'), 'utf8'));
  const first = { m: await certOf(m), w: await certOf(w) };
  assert.ok(first.w && first.w.notAfter - first.w.notBefore < 10_000, 'the test lifetime applies');
  await until(async () => {
    const [cm, cw] = [await certOf(m), await certOf(w)];
    return cm?.serial !== first.m?.serial && cw?.serial !== first.w?.serial ? true : 'not renewed yet';
  }, 20_000);
  const renewed = await certOf(w);
  assert.equal(renewed?.id, first.w?.id, 'same node id');
  assert.equal(renewed?.role, 'worker');
  // past the first certificates' expiry: the worker still holds a session, through any reconnect
  await until(() => (Date.now() > (first.w?.notAfter ?? 0) + 2000 ? true : 'waiting for the old expiry'), 20_000);
  await waitReady(m, 'w1');
  assert.ok(w.logs.some((l) => l.includes("renewed this node's certificate")));
  assert.ok(!m.logs.some((l) => l.includes('refused session')), m.logs.filter((l) => l.includes('refused')).join('\n'));
});
