// End-to-end placement on 4 lab hosts (1 manager + 3 workers, real gantryd, etcd, gRPC and
// containers): spread, max replicas per node, constraints on labels, placement preferences, drain.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  type ClusterLab,
  clusterSkipReason,
  countByNode,
  createSleeper,
  fmtMap,
  gantryOk,
  live,
  nodes,
  ps,
  reason,
  removeService,
  sleepers,
  startClusterLab,
  stopClusterLab,
  summary,
  until,
  waitConverged,
} from '../helpers/lab.ts';

describe('cluster placement', { skip: clusterSkipReason(), concurrency: 1, timeout: 900_000 }, () => {
  let c: ClusterLab;
  before(async () => {
    c = await startClusterLab({ hosts: 4 });
  });
  after(async () => {
    await stopClusterLab(c);
  });

  test('cluster placement: 6 replicas spread over 4 hosts, every host runs some, none more than 2', async () => {
    await createSleeper(c.manager, 'spread', '86401', ['--replicas', '6']);
    const tasks = live(await waitConverged(c, 'spread', '86401', 6));
    const by = countByNode(tasks);
    assert.equal(by.size, 4, `every host gets a task: ${fmtMap(by)}`);
    for (const [host, n] of by) assert.ok(n >= 1 && n <= 2, `${host} runs ${n}: ${fmtMap(by)}`);
    assert.deepEqual([...new Set(tasks.map((t) => t.slot))].sort(), ['1', '2', '3', '4', '5', '6'], summary(tasks));
    await removeService(c, 'spread', '86401');
  });

  test('cluster placement: --replicas-max-per-node 2 leaves the extra replicas pending with the reason, scale down places all', async () => {
    await createSleeper(c.manager, 'capped', '86402', ['--replicas', '10', '--replicas-max-per-node', '2']);
    await until(async () => {
      const t = await ps(c.manager, 'capped');
      const running = live(t);
      const pending = t.filter((x) => x.desired === 'running' && x.state === 'pending');
      if (running.length !== 8 || pending.length !== 2) return `want 8 running + 2 pending: ${summary(t)}`;
      if ([...countByNode(running).values()].some((n) => n > 2)) return `a node runs more than 2: ${summary(t)}`;
      const why = pending.map(reason);
      if (!why.every((w) => /max \d+ per node|max.*replica|replicas-max-per-node/i.test(w))) return `pending tasks do not say why: ${why.join(' | ')}`;
      return true;
    }, 60_000);
    await gantryOk(c.manager, ['service', 'scale', 'capped=8']);
    await waitConverged(c, 'capped', '86402', 8);
    const t = await ps(c.manager, 'capped');
    assert.deepEqual(t.filter((x) => x.desired === 'running' && x.state === 'pending'), [], summary(t));
    await removeService(c, 'capped', '86402');
  });

  test('cluster placement: a constraint no node matches stays pending with the reason; labelling a node places the tasks there', async () => {
    const target = c.members[2];
    await createSleeper(c.manager, 'zoned', '86403', ['--replicas', '2', '--constraint', 'node.labels.zone==a']);
    await until(async () => {
      const t = await ps(c.manager, 'zoned');
      const pending = t.filter((x) => x.state === 'pending');
      if (pending.length !== 2) return `want 2 pending: ${summary(t)}`;
      const why = pending.map(reason);
      return why.every((w) => /constraint|no suitable node/i.test(w)) || `pending tasks do not say why: ${why.join(' | ')}`;
    }, 30_000);
    for (const h of c.lab.hosts) assert.deepEqual(sleepers(h, '86403'), [], `nothing may run on ${h.name} yet`);

    await gantryOk(c.manager, ['node', 'update', '--label-add', 'zone=a', target.name]);
    const tasks = live(await waitConverged(c, 'zoned', '86403', 2));
    assert.deepEqual([...countByNode(tasks).keys()], [target.name], summary(tasks));
    await removeService(c, 'zoned', '86403');
    await c.manager.gantry(['node', 'update', '--label-rm', 'zone', target.name]); // tidy-up only
  });

  test('cluster placement: spread=node.labels.rack puts half the replicas in each rack', async () => {
    const [h0, h1, h2, h3] = c.members;
    await gantryOk(c.manager, ['node', 'update', '--label-add', 'rack=r1', h0.name]);
    for (const h of [h1, h2, h3]) await gantryOk(c.manager, ['node', 'update', '--label-add', 'rack=r2', h.name]);
    await createSleeper(c.manager, 'racked', '86404', ['--replicas', '4', '--placement-pref', 'spread=node.labels.rack']);
    const tasks = live(await waitConverged(c, 'racked', '86404', 4));
    const onR1 = tasks.filter((t) => t.node === h0.name).length;
    assert.equal(onR1, 2, `rack r1 (only ${h0.name}) should get half: ${summary(tasks)}`);
    await removeService(c, 'racked', '86404');
    for (const h of c.members) await c.manager.gantry(['node', 'update', '--label-rm', 'rack', h.name]); // tidy-up only
  });

  test('cluster placement: draining a node moves its replicated tasks to the others; nothing new lands there', async () => {
    const drained = c.members[1];
    await createSleeper(c.manager, 'mover', '86405', ['--replicas', '6']);
    const before = live(await waitConverged(c, 'mover', '86405', 6));
    assert.ok(before.some((t) => t.node === drained.name), `${drained.name} should run some first: ${summary(before)}`);

    await gantryOk(c.manager, ['node', 'update', '--availability', 'drain', drained.name]);
    const after = live(await waitConverged(c, 'mover', '86405', 6));
    assert.ok(!after.some((t) => t.node === drained.name), summary(after));
    assert.deepEqual(sleepers(drained, '86405'), [], `no container left on ${drained.name}`);
    const n = (await nodes(c.manager)).find((x) => x.hostname === drained.name);
    assert.equal(n?.availability, 'drain');

    await gantryOk(c.manager, ['service', 'scale', 'mover=9']);
    const scaled = live(await waitConverged(c, 'mover', '86405', 9));
    assert.ok(!scaled.some((t) => t.node === drained.name), `scale-up must skip the drained node: ${summary(scaled)}`);

    await gantryOk(c.manager, ['node', 'update', '--availability', 'active', drained.name]);
    await removeService(c, 'mover', '86405');
  });
});
