import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { cluster } from '../store/fixtures.ts';
import { MemoryStore } from '../store/memory.ts';
import {
  keysAtRestAction,
  newUnlockKey,
  parseUnlockKey,
  sealUnlockKey,
  UNLOCK_KEY_PREFIX,
  unsealUnlockKey,
  unwrapWithUnlockKey,
  wrapWithUnlockKey,
} from './autolock.ts';
import {
  keysLockedAtRest,
  loadCertsOfLockedKey,
  lockedClusterKeyPath,
  lockedTlsKeyPath,
  readLockedClusterKey,
  readLockedTlsKey,
  writeCertsOnly,
  writeTlsKeyAtRest,
} from './autolock-files.ts';
import { AutolockKeeper } from './autolock-keeper.ts';
import { loadClusterKey, saveClusterKey } from './node-certs.ts';
import { newClusterKey } from './seal.ts';

test('autolock: unlock keys are GNTRYKEY-1- and 32 random bytes; anything else is refused with the reason', () => {
  const k = newUnlockKey();
  assert.ok(k.startsWith(UNLOCK_KEY_PREFIX));
  assert.notEqual(k, newUnlockKey());
  const p = parseUnlockKey(`  ${k}\n`);
  assert.ok(p.ok && p.key.length === 32);
  const wrongPrefix = parseUnlockKey('SWMKEY-1-abc');
  assert.ok(!wrongPrefix.ok && /not a gantry unlock key/.test(wrongPrefix.reason));
  const cut = parseUnlockKey(k.slice(0, -3));
  assert.ok(!cut.ok && /malformed/.test(cut.reason));
});

test('autolock: a key wrapped with the unlock key opens only with that key and context', () => {
  const key = newUnlockKey();
  const plain = newClusterKey();
  const wrapped = wrapWithUnlockKey(key, plain, 'gantry/cluster-key');
  assert.ok(!wrapped.includes(plain));
  const ok = unwrapWithUnlockKey(key, wrapped, 'gantry/cluster-key');
  assert.ok(ok.ok && ok.plain.equals(plain));
  const wrong = unwrapWithUnlockKey(newUnlockKey(), wrapped, 'gantry/cluster-key');
  assert.ok(!wrong.ok && /the unlock key is wrong/.test(wrong.reason));
  assert.equal(unwrapWithUnlockKey(key, wrapped, 'gantry/other').ok, false);
  // two wraps of the same key differ (fresh salt and IV)
  assert.ok(!wrapWithUnlockKey(key, plain, 'c').equals(wrapWithUnlockKey(key, plain, 'c')));
});

test('autolock: the cluster copy of the unlock key opens only with the cluster key', () => {
  const ck = newClusterKey();
  const key = newUnlockKey();
  const sealed = sealUnlockKey(ck, key);
  assert.ok(!sealed.includes(Buffer.from(key)));
  assert.equal(unsealUnlockKey(ck, sealed), key);
  assert.equal(unsealUnlockKey(ck, Buffer.alloc(0)), undefined);
  assert.throws(() => unsealUnlockKey(newClusterKey(), sealed), /cannot unseal/);
});

test('autolock: what to do with keys at rest', () => {
  const rows: Array<[string | undefined, string | undefined | null, string]> = [
    [undefined, undefined, 'none'],
    ['K1', 'K1', 'none'],
    ['K1', undefined, 'wrap'],
    ['K2', 'K1', 'wrap'],
    [undefined, 'K1', 'clear'],
    ['K1', null, 'wrap'],
    [undefined, null, 'clear'],
  ];
  for (const [want, have, action] of rows) assert.equal(keysAtRestAction(want, have), action, `want ${want} have ${have}`);
});

test('autolock keeper: turning on wraps the cluster key on disk, rotation re-wraps it (old key refused), off puts it back in clear', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-autolock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const store = new MemoryStore();
  await store.batch([{ op: 'create', kind: 'clusters', object: cluster() }]);
  const ck = newClusterKey();
  await saveClusterKey(dir, ck);
  const keeper = new AutolockKeeper({ store, clusterKey: ck, dataDir: dir, atRest: undefined, log: () => {} });
  t.after(() => keeper.stop());
  await keeper.start();
  assert.equal(keeper.unlockKey(), undefined);
  assert.ok((await loadClusterKey(dir))?.equals(ck), 'autolock off: the key stays in clear');

  const k1 = (await keeper.setAutolock(true)) as string;
  assert.ok(k1.startsWith(UNLOCK_KEY_PREFIX));
  assert.equal(await keeper.setAutolock(true), k1, 'already on: the same key');
  assert.ok(await keysLockedAtRest(dir));
  assert.equal(await loadClusterKey(dir), undefined);
  for (const f of await readdir(path.join(dir, 'certs'))) assert.ok(!(await readFile(path.join(dir, 'certs', f))).includes(ck), `${f} does not hold the key in clear`);
  const opened = await readLockedClusterKey(dir, k1);
  assert.ok(opened.ok && opened.plain.equals(ck));

  const k2 = newUnlockKey();
  await keeper.setUnlockKey(k2);
  assert.equal(keeper.unlockKey(), k2);
  assert.equal((await readLockedClusterKey(dir, k1)).ok, false, 'the old key no longer opens it');
  assert.equal((await readLockedClusterKey(dir, k2)).ok, true);

  assert.equal(await keeper.setAutolock(false), undefined);
  assert.ok((await loadClusterKey(dir))?.equals(ck));
  assert.equal(existsSync(lockedClusterKeyPath(dir)), false);
  assert.equal(await keysLockedAtRest(dir), false);
});

test('autolock keeper: another manager rotating the key (a store event) re-wraps this one', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-autolock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const store = new MemoryStore();
  const ck = newClusterKey();
  const k1 = newUnlockKey();
  await store.batch([{ op: 'create', kind: 'clusters', object: { ...cluster(), unlockKeySealed: sealUnlockKey(ck, k1) } }]);
  const keeper = new AutolockKeeper({ store, clusterKey: ck, dataDir: dir, atRest: null, log: () => {} });
  t.after(() => keeper.stop());
  await keeper.start();
  assert.equal((await readLockedClusterKey(dir, k1)).ok, true, 'a joining manager writes its key wrapped from the start');
  const other = new AutolockKeeper({ store, clusterKey: ck, dataDir: path.join(dir, 'other'), atRest: null, log: () => {} });
  t.after(() => other.stop());
  await other.start();
  const k2 = newUnlockKey();
  await other.setUnlockKey(k2);
  await keeper.apply(); // waits for the event-driven rewrite queued before it
  assert.equal((await readLockedClusterKey(dir, k2)).ok, true);
  assert.equal((await readLockedClusterKey(dir, k1)).ok, false);
});

test('autolock files: the TLS key sealed with the cluster key replaces key.pem (certificates stay readable), and back in clear', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-autolock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const keyPem = '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n';
  await writeCertsOnly(dir, 'CERT', 'CA');
  await writeTlsKeyAtRest(dir, keyPem, undefined);
  assert.equal(await readLockedTlsKey(dir, newClusterKey()), undefined, 'in clear: nothing to unlock');
  assert.equal(await loadCertsOfLockedKey(dir), undefined);
  const ck = newClusterKey();
  await writeTlsKeyAtRest(dir, keyPem, ck);
  assert.equal(existsSync(path.join(dir, 'certs', 'key.pem')), false);
  assert.ok(!(await readFile(lockedTlsKeyPath(dir), 'latin1')).includes('MIGHAgEA'));
  assert.deepEqual(await loadCertsOfLockedKey(dir), { certPem: 'CERT', caPem: 'CA' });
  const wrong = await readLockedTlsKey(dir, newClusterKey());
  assert.ok(wrong && !wrong.ok && /does not open with this manager's cluster key/.test(wrong.reason));
  const right = await readLockedTlsKey(dir, ck);
  assert.ok(right?.ok && right.plain.toString() === keyPem);
  await writeTlsKeyAtRest(dir, keyPem, undefined);
  assert.equal(await readFile(path.join(dir, 'certs', 'key.pem'), 'utf8'), keyPem);
  assert.equal(existsSync(lockedTlsKeyPath(dir)), false);
});
