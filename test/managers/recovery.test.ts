// Losing quorum for good and recovering: 3 managers, 2 of their hosts killed; the survivor refuses
// writes saying why, still backs up its state, and `gantry init --force-new-cluster` makes it a
// one-manager cluster that keeps the services, their tasks and the workers.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cleanupLabs, Lab } from '../../deploy/lab/lab-hosts.ts';
import { parseBackup } from '../../manager/backup.ts';
import { clusterSkipReason, createSleeper, formCluster, gantryOk, importImage, joinHost, nodes, until, waitReady, type ClusterLab, waitConverged } from '../helpers/lab.ts';

describe('recovery', { skip: clusterSkipReason(), concurrency: 1, timeout: 600_000 }, () => {
  let lab: Lab;
  let c: ClusterLab;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-backup-'));
  before(async () => {
    await cleanupLabs();
    lab = await Lab.up({ hosts: 4 });
    const first = await formCluster(lab, { hosts: [0] });
    await joinHost(first, lab.host(1), { role: 'manager' });
    await joinHost(first, lab.host(2), { role: 'manager' });
    await joinHost(first, lab.host(3));
    await waitReady(first, lab.hosts);
    await Promise.all(lab.hosts.map((h) => importImage(h)));
    c = { lab, manager: first, members: lab.hosts };
  });
  after(async () => {
    await lab?.down();
    rmSync(dir, { recursive: true, force: true });
  });

  test('recovery: without quorum writes are refused with the reason; backup and --force-new-cluster bring the cluster back whole', async () => {
    await createSleeper(c.manager, 'kept', '86601', ['--replicas', '2', '--constraint', `node.hostname==${lab.host(3).name}`]);
    await waitConverged(c, 'kept', '86601', 2);
    const survivor = lab.host(0);
    await lab.host(1).kill();
    await lab.host(2).kill();

    // no quorum: a write is refused with a message that says what is wrong and what to look at
    await until(async () => {
      const r = await survivor.gantry(['service', 'create', '-d', '--name', 'refused', 'lab/busybox:1', 'sleep', '1']);
      if (r.code === 0) return 'a write succeeded without quorum';
      return /unreachable|no leader|quorum/i.test(r.stderr) || `unexpected refusal: ${r.stderr.trim()}`;
    }, 60_000, 500);

    // the survivor still has its copy of the state and backs it up
    const file = path.join(dir, 'cluster.backup');
    const out = await gantryOk(survivor, ['cluster', 'backup', file]);
    assert.match(out, /Backed up the cluster state at revision \d+/);
    const { header, objects } = parseBackup(readFileSync(file, 'utf8'));
    assert.equal(header.counts.nodes, 4);
    assert.ok(objects.some((o) => o.kind === 'services' && (o.object as { spec?: { name: string } }).spec?.name === 'kept'));

    // recover: a one-manager cluster from the survivor's state
    await gantryOk(survivor, ['init', '--force-new-cluster']);
    await until(async () => {
      const r = await survivor.gantry(['service', 'create', '-d', '--name', 'after', '--replicas', '1', '--constraint', `node.hostname==${lab.host(3).name}`, 'lab/busybox:1', 'sleep', '86602']);
      return r.code === 0 || `write still refused: ${r.stderr.trim()}`;
    }, 60_000, 500);
    const ns = await nodes(survivor);
    assert.deepEqual(ns.filter((n) => n.manager !== '').map((n) => n.hostname), [survivor.name]);
    const alive = { ...c, manager: survivor };
    await waitConverged(alive, 'kept', '86601', 2);
    await waitConverged(alive, 'after', '86602', 1);
    assert.equal((ns.find((n) => n.hostname === lab.host(3).name) ?? { status: '' }).status, 'ready', 'the worker stayed in the cluster');
  });
});
