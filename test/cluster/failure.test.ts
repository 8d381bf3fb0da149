// End-to-end failures on 4 lab hosts: a container that dies, a host that dies (gantryd, etcd,
// monitors and containers) and comes back, a host cut off by the network and healed.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  type ClusterLab,
  clusterSkipReason,
  createSleeper,
  fmtMap,
  live,
  nodes,
  ps,
  removeService,
  sleepers,
  sleepersByHost,
  startClusterLab,
  stopClusterLab,
  summary,
  until,
  waitConverged,
  waitReady,
} from '../helpers/lab.ts';

describe('cluster failure', { skip: clusterSkipReason(), concurrency: 1, timeout: 900_000 }, () => {
  let c: ClusterLab;
  before(async () => {
    c = await startClusterLab({ hosts: 4 });
  });
  after(async () => {
    await stopClusterLab(c);
  });

  async function nodeStatus(name: string): Promise<string> {
    return (await nodes(c.manager)).find((n) => n.hostname === name)?.status ?? 'missing';
  }

  test('cluster failure: a container that exits is replaced by a new task in the same slot, and the old one stays in history', async () => {
    await createSleeper(c.manager, 'crashy', '86431', ['--replicas', '1']);
    const [first] = live(await waitConverged(c, 'crashy', '86431', 1));
    const host = c.lab.hosts.find((h) => h.name === first.node);
    assert.ok(host, `task runs on a lab host: ${first.node}`);
    const [pid] = sleepers(host, '86431');
    process.kill(pid, 'SIGKILL');

    await until(async () => {
      const t = await ps(c.manager, 'crashy');
      const now = live(t);
      if (now.length !== 1 || now[0].id === first.id) return `no replacement yet: ${summary(t)}`;
      if (now[0].slot !== first.slot) return `replacement in slot ${now[0].slot}, not ${first.slot}: ${summary(t)}`;
      const old = t.find((x) => x.id === first.id);
      if (!old) return `the old task ${first.id} is gone from history: ${summary(t)}`;
      if (old.desired !== 'shutdown' || !/failed|complete|shutdown/.test(old.state)) return `old task not finished: ${summary(t)}`;
      return true;
    }, 60_000);
    await waitConverged(c, 'crashy', '86431', 1);
    await removeService(c, 'crashy', '86431');
  });

  test('cluster failure: a killed host goes Down, its tasks run elsewhere; restarted it is Ready and nothing runs twice', async () => {
    const victim = c.members[3];
    await createSleeper(c.manager, 'sturdy', '86432', ['--replicas', '6']);
    const before = live(await waitConverged(c, 'sturdy', '86432', 6));
    assert.ok(before.some((t) => t.node === victim.name), `${victim.name} should run some first: ${summary(before)}`);

    await victim.kill();
    await until(async () => (await nodeStatus(victim.name)) === 'down' || `${victim.name} is ${await nodeStatus(victim.name)}`, 60_000);
    const moved = live(await waitConverged(c, 'sturdy', '86432', 6));
    assert.ok(!moved.some((t) => t.node === victim.name), summary(moved));

    await victim.start();
    await waitReady(c.manager, [victim]);
    // Its old tasks must not come back to life: still exactly 6 containers, matching service ps.
    const settled = await waitConverged(c, 'sturdy', '86432', 6);
    assert.deepEqual(
      live(settled).filter((t) => t.node === victim.name).length,
      sleepers(victim, '86432').length,
      summary(settled),
    );
    await removeService(c, 'sturdy', '86432');
  });

  test('cluster failure: a host cut off from the others is replaced; when the network heals its stale containers stop', async () => {
    const island = c.members[2];
    await createSleeper(c.manager, 'island', '86433', ['--replicas', '6']);
    const before = live(await waitConverged(c, 'island', '86433', 6));
    const stranded = before.filter((t) => t.node === island.name).length;
    assert.ok(stranded > 0, `${island.name} should run some first: ${summary(before)}`);

    await c.lab.isolate(island.index);
    try {
      await until(async () => (await nodeStatus(island.name)) === 'down' || `${island.name} is ${await nodeStatus(island.name)}`, 60_000);
      await until(async () => {
        const t = live(await ps(c.manager, 'island')).filter((x) => x.node !== island.name);
        return t.length === 6 || `${t.length}/6 running off ${island.name}`;
      }, 60_000);
    } finally {
      await c.lab.heal();
    }
    await waitReady(c.manager, [island]);
    await until(() => {
      const m = sleepersByHost(c.lab.hosts, '86433');
      const total = [...m.values()].reduce((a, b) => a + b, 0);
      return total === 6 || `${total} containers run for 6 replicas: ${fmtMap(m)}`;
    }, 60_000);
    await waitConverged(c, 'island', '86433', 6);
    await removeService(c, 'island', '86433');
  });
});
