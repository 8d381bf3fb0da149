// End-to-end global services on lab hosts (4 in the cluster, a 5th joining later): one task per
// node, a task for a node that joins, and the task stopped on a node that is drained.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  type ClusterLab,
  clusterSkipReason,
  countByNode,
  createSleeper,
  fmtMap,
  gantryOk,
  importImage,
  joinHost,
  live,
  removeService,
  sleepers,
  startClusterLab,
  stopClusterLab,
  summary,
  waitConverged,
  waitReady,
} from '../helpers/lab.ts';

describe('cluster global', { skip: clusterSkipReason(), concurrency: 1, timeout: 900_000 }, () => {
  let c: ClusterLab;
  before(async () => {
    c = await startClusterLab({ hosts: 5, join: 4 });
  });
  after(async () => {
    await stopClusterLab(c);
  });

  test('cluster global: one task on every node, a node that joins gets its own, a drained node stops its task', async () => {
    await createSleeper(c.manager, 'agent', '86421', ['--mode', 'global']);
    let tasks = live(await waitConverged(c, 'agent', '86421', 4));
    let by = countByNode(tasks);
    assert.deepEqual([...by.keys()].sort(), c.members.map((h) => h.name).sort(), summary(tasks));
    assert.ok([...by.values()].every((n) => n === 1), fmtMap(by));

    const newcomer = c.lab.host(4);
    await newcomer.start();
    await importImage(newcomer);
    await joinHost(c.manager, newcomer);
    await waitReady(c.manager, [...c.members, newcomer]);
    tasks = live(await waitConverged(c, 'agent', '86421', 5));
    by = countByNode(tasks);
    assert.equal(by.get(newcomer.name), 1, `the new node runs one: ${summary(tasks)}`);

    const drained = c.members[2];
    await gantryOk(c.manager, ['node', 'update', '--availability', 'drain', drained.name]);
    tasks = live(await waitConverged(c, 'agent', '86421', 4));
    assert.ok(!tasks.some((t) => t.node === drained.name), summary(tasks));
    assert.deepEqual(sleepers(drained, '86421'), [], `the global task on ${drained.name} must stop`);

    await gantryOk(c.manager, ['node', 'update', '--availability', 'active', drained.name]);
    tasks = live(await waitConverged(c, 'agent', '86421', 5));
    assert.equal(countByNode(tasks).get(drained.name), 1, `reactivated node runs it again: ${summary(tasks)}`);
    await removeService(c, 'agent', '86421');
  });
});
