// Autolock and certificate renewal: a manager whose certificate renews writes the new key sealed
// (never key.pem), and after a restart the unlock opens that new key, which matches the new
// certificate (etcd and the control API come back). 20 s certificates (test-only minimum).
process.env.GANTRY_MIN_CERT_LIFETIME_MS = '1000';
process.env.GANTRY_CERT_LIFETIME_MS = '20000';

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';

test('autolock: a renewed manager key is written sealed and is the one the unlock opens after a restart', async (t) => {
  const { startHost, until } = await import('./local-cluster.ts');
  const { identityOf } = await import('../../manager/ca/identity.ts');
  const { Daemon } = await import('../../cli/daemon/node.ts');
  const m = await startHost(t, 'r1');
  const init = await m.gantry(['init', '--autolock', '--advertise-addr', '127.0.0.1', '--listen-addr', '127.0.0.1:0']);
  assert.equal(init.code, 0, init.err);
  const key = init.out.match(/GNTRYKEY-1-[A-Za-z0-9_-]{43}/)?.[0] ?? '';
  const certs = path.join(m.dir, 'data', 'certs');
  const certOf = async () => identityOf(await readFile(path.join(certs, 'cert.pem'), 'utf8'));
  const first = await certOf();
  const sealedFirst = await readFile(path.join(certs, 'key.pem.locked'));
  assert.ok(first && first.notAfter - first.notBefore < 30_000, 'the test lifetime applies');
  await until(async () => ((await certOf())?.serial !== first?.serial ? true : 'not renewed yet'), 30_000);
  assert.ok(!existsSync(path.join(certs, 'key.pem')), 'the renewed key is not written in clear');
  assert.ok(!(await readFile(path.join(certs, 'key.pem.locked'))).equals(sealedFirst), 'the sealed key is the new one');

  await m.daemon.stop();
  const line = (lvl: string) => (msg: string) => m.logs.push(`${lvl} ${msg}`);
  const d = new Daemon({
    dataDir: path.join(m.dir, 'data'),
    socket: m.socket,
    listenAddr: '127.0.0.1:0',
    advertiseAddr: '127.0.0.1',
    runtime: 'sim',
    cgroupParent: 'gantry-sec-test',
    hostname: 'r1',
    log: { debug: () => {}, info: line('info'), warn: line('warn'), error: line('error') },
  });
  t.after(() => d.stop().catch(() => {}));
  m.daemon = d;
  await d.start();
  assert.match((await m.gantry(['info'])).out, /Cluster:\s+locked/);
  const f = path.join(m.dir, 'key');
  await writeFile(f, key, { mode: 0o600 });
  const ok = await m.gantry(['cluster', 'unlock', '--key-file', f]);
  assert.equal(ok.code, 0, ok.err);
  await until(async () => {
    const r = await m.gantry(['node', 'ls']);
    return r.code === 0 && /\br1\b/.test(r.out) ? true : `node ls: ${r.err || r.out}`;
  }, 30_000);
});
