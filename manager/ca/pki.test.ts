import assert from 'node:assert/strict';
import { test } from 'node:test';
import { certDigest, createRootCa, identityOf, issue, newKeyAndCsr, renewalTime, signedBy } from './pki.ts';

test('ca: issued certificates carry the node id in CN, the role in OU, and chain to the root', async () => {
  const now = Date.now();
  const ca = await createRootCa('cluster1', now);
  const { csrPem } = await newKeyAndCsr();
  const cert = await issue(ca, csrPem, { id: 'node1', role: 'worker', clusterId: 'cluster1' }, now, 3600_000);
  const id = identityOf(cert);
  assert.equal(id?.id, 'node1');
  assert.equal(id?.role, 'worker');
  assert.equal(id?.clusterId, 'cluster1');
  assert.ok(id && id.notAfter > now && id.notAfter <= now + 3600_000 + 1000);
  assert.ok(signedBy(cert, ca.certPem));
  const other = await createRootCa('cluster2', now);
  assert.ok(!signedBy(cert, other.certPem));
  assert.ok(signedBy(cert, other.certPem + ca.certPem), 'a bundle of roots (rotation) accepts either');
  assert.match(certDigest(ca.certPem), /^[0-9a-f]{64}$/);
  assert.notEqual(certDigest(ca.certPem), certDigest(other.certPem));
});

test('ca: a malformed request is refused with a message', async () => {
  const ca = await createRootCa('c', Date.now());
  await assert.rejects(issue(ca, 'nonsense', { id: 'n', role: 'worker', clusterId: 'c' }, Date.now(), 1000), /not a PEM PKCS#10/);
});

test('ca: renewal falls between 50% and 80% of the lifetime', () => {
  assert.equal(renewalTime(0, 1000, 0), 500);
  assert.equal(renewalTime(0, 1000, 0.999999) <= 800, true);
  for (let i = 0; i < 100; i++) {
    const t = renewalTime(1000, 2000, Math.random());
    assert.ok(t >= 1500 && t < 1800);
  }
});
