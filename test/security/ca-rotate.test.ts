// Root CA rotation on a lab cluster (netns hosts, real gantryd and etcd, real containers): 3 managers
// and 1 worker move to a new root while a service runs (same task ids, same container pids), etcd
// keeps its quorum through it and after a manager restarts, the old root and old tokens are refused,
// and a new host joins with the new token.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cleanupLabs, Lab, REPO_ROOT } from '../../deploy/lab/lab-hosts.ts';
import { splitPem } from '../../manager/ca/identity.ts';
import { derDigest, issuerDigest } from '../../manager/ca/rotation.ts';
import {
  type ClusterLab,
  clusterSkipReason,
  createSleeper,
  formCluster,
  gantryOk,
  importImage,
  joinHost,
  type LabHost,
  live,
  ps,
  sleepers,
  until,
  waitConverged,
  waitReady,
} from '../helpers/lab.ts';

const MARK = '86731';

function certOf(h: LabHost): string {
  return readFileSync(path.join(h.dataDir, 'certs', 'cert.pem'), 'utf8');
}

describe('ca rotate (lab)', { skip: clusterSkipReason(), concurrency: 1, timeout: 900_000 }, () => {
  let lab: Lab;
  let c: ClusterLab;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'gantry-ca-rotate-'));
  before(async () => {
    await cleanupLabs();
    lab = await Lab.up({ hosts: 5 });
    const first = await formCluster(lab, { hosts: [0] });
    await joinHost(first, lab.host(1), { role: 'manager' });
    await joinHost(first, lab.host(2), { role: 'manager' });
    await joinHost(first, lab.host(3));
    const members = lab.hosts.slice(0, 4);
    await waitReady(first, members, 120_000);
    await Promise.all(members.map((h) => importImage(h)));
    c = { lab, manager: first, members };
  });
  after(async () => {
    try {
      await lab?.down();
    } finally {
      await cleanupLabs();
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('ca rotate: a running cluster moves to a new root without a task restarting; old root and old token refused; new token joins', async (t) => {
    const m = c.manager;
    await createSleeper(m, 'rot', MARK, ['--replicas', '4', '--replicas-max-per-node', '1']);
    const before = live(await waitConverged(c, 'rot', MARK, 4, 120_000));
    const pidsBefore = new Map(c.members.map((h) => [h.name, sleepers(h, MARK).sort().join(',')]));
    const oldWorkerToken = (await gantryOk(m, ['join-token', '-q', 'worker'])).trim();
    const oldDigest = JSON.parse(await gantryOk(m, ['cluster', 'ca', '--format', 'json'])).digest as string;
    const opOld = path.join(tmp, 'op-old');
    await gantryOk(m, ['cluster', 'client-cert', '--out', opOld]);
    const overTcp = (dir: string) =>
      m.exec([process.execPath, path.join(REPO_ROOT, 'cli/gantry.ts'), 'node', 'ls'], { env: { ...process.env, GANTRY_HOST: `${m.ip}:4242`, GANTRY_TLS_DIR: dir } });
    assert.equal((await overTcp(opOld)).code, 0, 'the operator certificate works before the rotation');

    // the rotation, followed by the CLI to the end
    const t0 = Date.now();
    const rot = await m.gantry(['cluster', 'ca', '--rotate'], { timeoutMs: 300_000 });
    t.diagnostic(`gantry cluster ca --rotate (4 nodes, 3 managers) took ${Date.now() - t0} ms`);
    assert.equal(rot.code, 0, `${rot.stdout}\n${rot.stderr}\n--- log ---\n${m.logTail(20)}`);
    assert.match(rot.stdout, /4 of 4 nodes rotated/);
    const info = JSON.parse(await gantryOk(m, ['cluster', 'ca', '--format', 'json'])) as { digest: string; rootCaCert: string; rotation: unknown };
    assert.notEqual(info.digest, oldDigest);
    assert.equal(info.rotation, null);
    const roots = splitPem(info.rootCaCert);
    assert.deepEqual(roots.map(derDigest), [info.digest]);

    // no task restarted: same task ids running, same container processes on every host
    const afterTasks = live(await ps(m, 'rot'));
    assert.deepEqual(afterTasks.map((t) => t.id).sort(), before.map((t) => t.id).sort());
    for (const h of c.members) assert.equal(sleepers(h, MARK).sort().join(','), pidsBefore.get(h.name), `containers on ${h.name} kept their pids`);

    // every node's certificate comes from the new root
    for (const h of c.members) {
      await until(() => (issuerDigest(certOf(h), roots) === info.digest ? true : `${h.name}'s certificate is not from the new root yet`), 30_000);
    }

    // etcd (3 members) still takes writes; after a manager restarts (its etcd now trusts only the new root) too
    await gantryOk(m, ['service', 'scale', 'rot=3']);
    await waitConverged(c, 'rot', MARK, 3, 120_000);
    const m2 = lab.host(1);
    await m2.stop();
    await m2.start();
    await waitReady(m, c.members, 120_000);
    await gantryOk(m2, ['service', 'scale', 'rot=4']);
    await waitConverged(c, 'rot', MARK, 4, 120_000);

    // the old operator certificate is refused, saying why
    const refused = await overTcp(opOld);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /its certificate is signed by another CA than this cluster's; if the cluster's root CA was rotated/);

    // the old token names the old root: the joiner refuses the manager; the new token joins
    const newcomer = lab.host(4);
    await newcomer.start();
    const old = await newcomer.gantry(['join', '--token', oldWorkerToken, `${m.ip}:4242`]);
    assert.notEqual(old.code, 0);
    assert.match(old.stderr, /belongs to another CA .*not sending the join token/);
    const newToken = (await gantryOk(m, ['join-token', '-q', 'worker'])).trim();
    assert.match(newToken, new RegExp(`^GNTRY-1-${info.digest}-`));
    await gantryOk(newcomer, ['join', '--token', newToken, `${m.ip}:4242`]);
    await waitReady(m, [newcomer], 60_000);
    assert.equal(issuerDigest(certOf(newcomer), roots), info.digest);
  });

  test('ca rotate: a second rotation after the managers restarted: etcd members started under either root still reach each other', async () => {
    const m = c.manager;
    const all = [...c.members, lab.host(4)];
    // no operator step: the managers restart their etcd members themselves, one at a time, to
    // read the new roots (host 1 was restarted in the first test); a rotation waits for them
    let rot = await m.gantry(['cluster', 'ca', '--rotate'], { timeoutMs: 300_000 });
    await until(async () => {
      if (rot.code === 0) return true;
      assert.match(rot.stderr, /started before the last root rotation/, rot.stderr);
      const why = rot.stderr.trim();
      rot = await m.gantry(['cluster', 'ca', '--rotate'], { timeoutMs: 300_000 });
      return `refused: ${why}`;
    }, 120_000, 2000);
    assert.match(rot.stdout, /5 of 5 nodes rotated/);
    assert.match(rot.stdout, /each manager now restarts its member, one at a time/);
    // the managers restart their members again for the new root, one at a time: let them finish
    // before this test takes hosts away (two members down at once would be a lost quorum)
    const managers = [lab.host(0), lab.host(1), lab.host(2)];
    const etcdPid = (h: LabHost) => h.processes((argv) => (argv[0] ?? '').endsWith('etcd')).map((p) => p.pid).join(',');
    const before = new Map(managers.map((h) => [h.name, etcdPid(h)]));
    await until(() => {
      const waiting = managers.filter((h) => etcdPid(h) === before.get(h.name)).map((h) => h.name);
      return waiting.length === 0 || `etcd members not restarted yet on ${waiting.join(', ')}`;
    }, 120_000, 500);
    await waitReady(m, all, 120_000);
    // host 2's member restarts trusting only the newest root while host 0's trusts only the previous one; host 1 goes
    // away, so the quorum needs hosts 0 and 2 to connect to each other anew (through the cross-signed root)
    const m3 = lab.host(2);
    await m3.stop();
    await m3.start();
    await waitReady(m, all, 120_000).catch((err) => {
      throw new Error(`${(err as Error).message}\n--- ${m3.name} log ---\n${m3.logTail(60)}\n--- ${m.name} log ---\n${m.logTail(30)}`);
    });
    const m2 = lab.host(1);
    await m2.stop();
    try {
      await until(async () => {
        const r = await m3.gantry(['service', 'scale', 'rot=2']);
        return r.code === 0 || `write refused: ${r.stderr.trim()}`;
      }, 120_000, 1000);
      await until(async () => (live(await ps(m, 'rot')).length === 2 ? true : 'not scaled to 2 yet'), 120_000);
    } finally {
      await m2.start();
    }
    await waitReady(m, all, 120_000);
  });
});
