// Autolock as an operator meets it: `init --autolock` prints the unlock key; a manager whose gantryd
// restarts comes up locked (no control calls, no secrets, no cluster key readable on disk), refuses a
// wrong key, unlocks with the right one; rotation re-wraps every manager; autolock off unlocks restarts.
// In-process daemons (sim runtime) for the keys; one lab host (real containers) for "not restarted".
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { Daemon } from '../../cli/daemon/node.ts';
import { readLockedClusterKey, readLockedTlsKey } from '../../manager/ca/autolock-files.ts';
import { clusterSkipReason, gantryOk, IMAGE, importImage, type Lab, live, ps, sleepers, summary, until as labUntil } from '../helpers/lab.ts';
import { cleanupLabs, Lab as LabClass } from '../../deploy/lab/lab-hosts.ts';
import { mountsUnder } from '../../deploy/lab/sys.ts';
import { secretsDirFor } from '../../worker/secrets.ts';
import { type LocalHost, runningRows, SIM_IMAGE, startHost, until, waitReady } from './local-cluster.ts';

const KEY_RE = /GNTRYKEY-1-[A-Za-z0-9_-]{43}/;
const LOCKED_RE = /this manager is locked: run `gantry cluster unlock`/i;

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name));
}

function tlsKeyOf(h: LocalHost): string {
  const m = (h.daemon as unknown as { tls: { current(): { keyPem: string } | undefined } }).tls.current();
  assert.ok(m, `${h.name} holds its TLS key`);
  return m.keyPem.replace(/-----[A-Z ]+-----|\s/g, '').slice(0, 64);
}

function clusterKeyOf(h: LocalHost): Buffer {
  const key = (h.daemon as unknown as { tls: { clusterKey(): Buffer | undefined } }).tls.clusterKey();
  assert.ok(key, `${h.name} holds a cluster key`);
  return key;
}

/** Stops the host's gantryd and starts a new one on the same data dir and socket (containers stay). */
async function restart(t: TestContext, h: LocalHost): Promise<void> {
  await h.daemon.stop();
  const line = (lvl: string) => (m: string) => h.logs.push(`${lvl} ${m}`);
  const d = new Daemon({
    dataDir: path.join(h.dir, 'data'),
    socket: h.socket,
    listenAddr: '127.0.0.1:0',
    advertiseAddr: '127.0.0.1',
    runtime: 'sim',
    cgroupParent: 'gantry-sec-test',
    hostname: h.name,
    log: { debug: () => {}, info: line('info'), warn: line('warn'), error: line('error') },
  });
  t.after(() => d.stop().catch(() => {}));
  h.daemon = d;
  await d.start();
}

async function keyFile(h: LocalHost, key: string): Promise<string> {
  const f = path.join(h.dir, `key-${Math.random().toString(36).slice(2)}`);
  await writeFile(f, `${key}\n`, { mode: 0o600 });
  return f;
}

test('autolock: a restarted manager is locked until unlocked; wrong keys change nothing; rotation and off work across managers', async (t) => {
  const m1 = await startHost(t, 'm1');
  const m2 = await startHost(t, 'm2');
  const init = await m1.gantry(['init', '--autolock', '--advertise-addr', '127.0.0.1', '--listen-addr', '127.0.0.1:0']);
  assert.equal(init.code, 0, init.err);
  const key1 = init.out.match(KEY_RE)?.[0] ?? '';
  assert.ok(key1, `init --autolock prints the unlock key: ${init.out}`);
  assert.match(init.out, /gantry cluster unlock/);
  assert.equal((await m1.gantry(['cluster', 'unlock-key', '-q'])).out.trim(), key1);
  const addr = init.out.match(/ (\d+\.\d+\.\d+\.\d+:\d+)\s*$/m)?.[1] ?? '';
  const certs1 = path.join(m1.dir, 'data', 'certs');
  assert.ok(existsSync(path.join(certs1, 'cluster.key.locked')) && !existsSync(path.join(certs1, 'cluster.key')), 'the cluster key is on disk only wrapped');
  assert.ok(existsSync(path.join(certs1, 'key.pem.locked')) && !existsSync(path.join(certs1, 'key.pem')), 'so is the TLS key');

  // a second manager joins: it writes the cluster key wrapped with the same unlock key
  const managerToken = (await m1.gantry(['join-token', '-q', 'manager'])).out.trim();
  const j = await m2.gantry(['join', '--token', managerToken, '--advertise-addr', '127.0.0.1', '--listen-addr', '127.0.0.1:0', addr]);
  assert.equal(j.code, 0, j.err);
  await waitReady(m1, 'm2');
  const data2 = path.join(m2.dir, 'data');
  await until(async () => ((await readLockedClusterKey(data2, key1)).ok ? true : 'm2 has not wrapped its key yet'));
  assert.ok(!existsSync(path.join(data2, 'certs', 'cluster.key')));
  await until(async () => (existsSync(path.join(data2, 'certs', 'key.pem.locked')) && !existsSync(path.join(data2, 'certs', 'key.pem')) ? true : 'm2 has not wrapped its TLS key'));

  const secretFile = path.join(m1.dir, 'pw');
  await writeFile(secretFile, 'autolock-secret-value-41');
  assert.equal((await m1.gantry(['secret', 'create', 'pw', secretFile])).code, 0);
  const clusterKey = clusterKeyOf(m1);
  const tlsKey = tlsKeyOf(m1);

  // restart: locked
  await restart(t, m1);
  const info = await m1.gantry(['info']);
  assert.match(info.out, /Cluster:\s+locked/);
  assert.match(info.out, LOCKED_RE);
  const ls = await m1.gantry(['node', 'ls']);
  assert.notEqual(ls.code, 0);
  assert.match(ls.err, LOCKED_RE);
  const sec = await m1.gantry(['secret', 'ls']);
  assert.notEqual(sec.code, 0);
  assert.match(sec.err, LOCKED_RE);
  assert.match((await m1.gantry(['cluster', 'unlock-key'])).err, LOCKED_RE);
  const onDisk = filesUnder(path.join(m1.dir, 'data')).filter((f) => readFileSync(f).includes(clusterKey));
  assert.deepEqual(onDisk, [], 'no file of the locked manager holds the cluster key in clear (the CA key and secrets stay sealed)');
  const tlsOnDisk = filesUnder(m1.dir).filter((f) => readFileSync(f, 'latin1').includes(tlsKey));
  assert.deepEqual(tlsOnDisk, [], 'nor its TLS key (the clear copy etcd read went with the old gantryd)');
  // the other manager still answers (from its copy of the state: two etcd members, one down, have no quorum)
  assert.equal((await m2.gantry(['node', 'ls'])).code, 0);

  // a wrong key is refused and changes nothing
  const wrong = await m1.gantry(['cluster', 'unlock', '--key-file', await keyFile(m1, 'GNTRYKEY-1-' + 'A'.repeat(43))]);
  assert.equal(wrong.code, 1);
  assert.match(wrong.err, /the unlock key is wrong/);
  const garbage = await m1.gantry(['cluster', 'unlock', '--key-file', await keyFile(m1, 'not-a-key')]);
  assert.match(garbage.err, /not a gantry unlock key/);
  assert.match((await m1.gantry(['info'])).out, /Cluster:\s+locked/);
  assert.ok(existsSync(path.join(certs1, 'cluster.key.locked')));

  // the right key unlocks: control calls and secrets work again
  const ok = await m1.gantry(['cluster', 'unlock', '--key-file', await keyFile(m1, key1)]);
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.out, /unlocked/);
  assert.match((await m1.gantry(['cluster', 'unlock', '--key-file', await keyFile(m1, key1)])).err, /not locked/);
  await until(async () => {
    const r = await m1.gantry(['secret', 'ls']);
    return r.code === 0 && /\bpw\b/.test(r.out) ? true : `secret ls: ${r.err || r.out}`;
  });
  const svc = await m1.gantry(['service', 'create', '-d', '--name', 'app', '--secret', 'pw', SIM_IMAGE, 'sleep', '1000']);
  assert.equal(svc.code, 0, svc.err);
  await until(async () => {
    const r = (await m1.gantry(['service', 'ps', 'app'])).out;
    return runningRows(r).length > 0 ? true : `not running: ${r}`;
  });

  // rotation: both managers re-wrap; the old key no longer opens either
  const rot = await m1.gantry(['cluster', 'unlock-key', '--rotate']);
  assert.equal(rot.code, 0, rot.err);
  const key2 = rot.out.match(KEY_RE)?.[0] ?? '';
  assert.ok(key2 && key2 !== key1, rot.out);
  assert.equal((await m2.gantry(['cluster', 'unlock-key', '-q'])).out.trim(), key2, 'every manager shows the new key');
  await until(async () => ((await readLockedClusterKey(data2, key2)).ok ? true : 'm2 has not re-wrapped its key'));
  assert.equal((await readLockedClusterKey(data2, key1)).ok, false);
  await restart(t, m1);
  assert.match((await m1.gantry(['cluster', 'unlock', '--key-file', await keyFile(m1, key1)])).err, /the unlock key is wrong/);
  assert.equal((await m1.gantry(['cluster', 'unlock', '--key-file', await keyFile(m1, key2)])).code, 0);
  await waitReady(m1, 'm1');

  // autolock off: keys in clear again, a restart comes up unlocked
  const off = await m1.gantry(['cluster', 'update', '--autolock=false']);
  assert.equal(off.code, 0, off.err);
  assert.match((await m1.gantry(['cluster', 'unlock-key'])).err, /autolock is off/);
  await until(async () => (existsSync(path.join(data2, 'certs', 'cluster.key')) && existsSync(path.join(data2, 'certs', 'key.pem')) ? true : 'm2 still wrapped'));
  assert.ok(!existsSync(path.join(data2, 'certs', 'key.pem.locked')));
  await restart(t, m1);
  assert.match((await m1.gantry(['info'])).out, /Cluster:\s+(active|pending)/);
  await until(async () => ((await m1.gantry(['node', 'ls'])).code === 0 ? true : 'node ls not answering yet'));

  // and on again on the running cluster: a new key, wrapped right away
  const on = await m1.gantry(['cluster', 'update', '--autolock=true']);
  assert.equal(on.code, 0, on.err);
  const key3 = on.out.match(KEY_RE)?.[0] ?? '';
  assert.ok(key3 && key3 !== key2);
  assert.equal((await readLockedClusterKey(path.join(m1.dir, 'data'), key3)).ok, true);
  await until(async () => ((await readLockedClusterKey(data2, key3)).ok ? true : 'm2 has not wrapped its key with the new one'));

  // a demoted manager keeps no cluster key, wrapped or not, and its (worker) TLS key in clear
  assert.equal((await m1.gantry(['node', 'demote', 'm2'])).code, 0);
  await until(async () => (/Role:\s+worker/.test((await m2.gantry(['info'])).out) ? true : 'm2 not a worker yet'));
  const certs2 = path.join(data2, 'certs');
  await until(async () => (existsSync(path.join(certs2, 'key.pem')) ? true : 'm2 key.pem not in clear yet'));
  for (const f of ['cluster.key', 'cluster.key.locked', 'key.pem.locked']) assert.ok(!existsSync(path.join(certs2, f)), `a worker has no ${f}`);
  for (const h of [m1, m2]) assert.ok(!h.logs.some((l) => l.includes(key1) || l.includes(key2) || l.includes(key3)), `${h.name}'s log never shows an unlock key`);
});

test('autolock: a manager stopped between wrapping its two keys (TLS key still in clear) starts locked and unlocks; the TLS key is then sealed', async (t) => {
  const m = await startHost(t, 'c1');
  const init = await m.gantry(['init', '--autolock', '--advertise-addr', '127.0.0.1', '--listen-addr', '127.0.0.1:0']);
  assert.equal(init.code, 0, init.err);
  const key = init.out.match(KEY_RE)?.[0] ?? '';
  const clusterKey = clusterKeyOf(m);
  const data = path.join(m.dir, 'data');
  const certs = path.join(data, 'certs');
  await m.daemon.stop();
  const tlsKey = await readLockedTlsKey(data, clusterKey);
  assert.ok(tlsKey?.ok, 'the TLS key is sealed with the cluster key');
  await writeFile(path.join(certs, 'key.pem'), tlsKey.plain, { mode: 0o600 });
  await rm(path.join(certs, 'key.pem.locked'));
  await restart(t, m);
  assert.match((await m.gantry(['info'])).out, /Cluster:\s+locked/);
  const ok = await m.gantry(['cluster', 'unlock', '--key-file', await keyFile(m, key)]);
  assert.equal(ok.code, 0, ok.err);
  await until(async () => ((await m.gantry(['node', 'ls'])).code === 0 ? true : 'node ls not answering'));
  await until(async () => (existsSync(path.join(certs, 'key.pem.locked')) && !existsSync(path.join(certs, 'key.pem')) ? true : 'TLS key not sealed again'));
});

test('autolock: with three managers one locked manager leaves the quorum to the other two; unlocked it serves again', async (t) => {
  const hosts = [await startHost(t, 'a1'), await startHost(t, 'a2'), await startHost(t, 'a3')];
  const [m1, m2, m3] = hosts;
  const init = await m1.gantry(['init', '--autolock', '--advertise-addr', '127.0.0.1', '--listen-addr', '127.0.0.1:0']);
  assert.equal(init.code, 0, init.err);
  const key = init.out.match(KEY_RE)?.[0] ?? '';
  const addr = init.out.match(/ (\d+\.\d+\.\d+\.\d+:\d+)\s*$/m)?.[1] ?? '';
  const token = (await m1.gantry(['join-token', '-q', 'manager'])).out.trim();
  for (const h of [m2, m3]) {
    const j = await h.gantry(['join', '--token', token, '--advertise-addr', '127.0.0.1', '--listen-addr', '127.0.0.1:0', addr]);
    assert.equal(j.code, 0, j.err);
    await waitReady(m1, h.name);
  }
  await until(async () => (existsSync(path.join(m3.dir, 'data', 'certs', 'cluster.key.locked')) ? true : 'a3 not wrapped yet'));
  await restart(t, m3);
  assert.match((await m3.gantry(['info'])).out, /Cluster:\s+locked/);
  // the two others still commit: a service is created and runs
  await until(async () => {
    const r = await m1.gantry(['service', 'create', '-d', '--name', 'q', '--constraint', 'node.hostname!=a3', SIM_IMAGE, 'sleep', '1000']);
    return r.code === 0 || /already exists/.test(r.err) ? true : `service create: ${r.err}`;
  });
  await until(async () => (runningRows((await m1.gantry(['service', 'ps', 'q'])).out).length > 0 ? true : 'q not running'));
  const ok = await m3.gantry(['cluster', 'unlock', '--key-file', await keyFile(m3, key)]);
  assert.equal(ok.code, 0, ok.err);
  await until(async () => {
    const r = await m3.gantry(['service', 'ls']);
    return r.code === 0 && /\bq\b/.test(r.out) ? true : `a3 service ls: ${r.err || r.out}`;
  });
  await waitReady(m1, 'a3');
});

describe('autolock on a lab host', { skip: clusterSkipReason(), timeout: 600_000 }, () => {
  let lab: Lab | undefined;
  before(async () => {
    await cleanupLabs();
    lab = await LabClass.up({ hosts: 1 });
  });
  after(async () => {
    await lab?.down();
    await cleanupLabs();
  });

  test('autolock: a locked manager keeps its containers running (not restarted) and runs a service with a secret once unlocked', async (t) => {
    const h = (lab as Lab).hosts[0];
    await h.start();
    const init = await gantryOk(h, ['init', '--autolock', '--advertise-addr', h.ip]);
    const key = init.match(KEY_RE)?.[0] ?? '';
    assert.ok(key, init);
    await importImage(h);
    await writeFile(path.join(h.dir, 'token.txt'), 'lab-autolock-token-value');
    await gantryOk(h, ['secret', 'create', 'token', path.join(h.dir, 'token.txt')]);
    await gantryOk(h, ['service', 'create', '-d', '--name', 'keep', IMAGE, 'sleep', '86471']);
    await labUntil(() => (sleepers(h, '86471').length === 1 ? true : `sleepers: ${sleepers(h, '86471').length}`), 60_000);
    const [pid] = sleepers(h, '86471');

    await h.stop();
    await h.start();
    const info = await h.gantry(['info']);
    assert.match(info.stdout, LOCKED_RE);
    const ls = await h.gantry(['node', 'ls']);
    assert.notEqual(ls.code, 0);
    assert.match(ls.stderr, LOCKED_RE);
    assert.deepEqual(sleepers(h, '86471'), [pid], 'the container keeps running while the manager is locked');

    const wrong = await h.gantry(['cluster', 'unlock'], { input: `GNTRYKEY-1-${'B'.repeat(43)}\n` });
    assert.match(wrong.stderr, /the unlock key is wrong/);
    const started = Date.now();
    const ok = await h.gantry(['cluster', 'unlock'], { input: `${key}\n` });
    assert.equal(ok.code, 0, ok.stderr);
    const unlocked = Date.now();
    await labUntil(async () => ((await h.gantry(['node', 'ls'])).code === 0 ? true : 'node ls not answering'), 60_000);
    t.diagnostic(`cluster unlock took ${unlocked - started} ms (CLI included); node ls answered ${Date.now() - started} ms after it began`);

    await gantryOk(h, ['service', 'create', '-d', '--name', 'uses-secret', '--secret', 'token', IMAGE, 'sleep', '86472']);
    await labUntil(async () => {
      const tasks = await ps(h, 'uses-secret');
      return live(tasks).length === 1 ? true : summary(tasks);
    }, 90_000);
    const keep = await ps(h, 'keep');
    assert.equal(keep.length, 1, `the old container's task was neither replaced nor restarted: ${summary(keep)}`);
    assert.deepEqual(sleepers(h, '86471'), [pid], 'the same container process after the unlock');

    // gantryd stopping takes the secrets tmpfs out of the host's view; the running container keeps its file
    const [user] = sleepers(h, '86472');
    const inContainer = () => readFileSync(`/proc/${user}/root/run/secrets/token`, 'utf8');
    assert.equal(inContainer(), 'lab-autolock-token-value');
    const secrets = secretsDirFor(h.dataDir);
    assert.deepEqual(mountsUnder(secrets), [secrets], 'the secrets tmpfs is mounted while gantryd runs');
    await h.stop();
    assert.deepEqual(mountsUnder(secrets), [], 'no secrets tmpfs left on the host once gantryd stopped');
    assert.equal(existsSync(secrets), false);
    assert.equal(inContainer(), 'lab-autolock-token-value', 'the running container still reads its secret');
  });
});
