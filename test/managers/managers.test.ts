// Several managers on lab hosts: joining with the manager token, the leader's host killed (gantryd,
// etcd and containers) while a service runs, the dead manager coming back, demote/promote moving
// the etcd member with the role, and join tokens that are wrong or rotated.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  type ClusterLab,
  clusterSkipReason,
  createSleeper,
  explainFailure,
  formCluster,
  gantryOk,
  importImage,
  joinHost,
  type Lab,
  type LabHost,
  live,
  sleepersByHost,
  nodes,
  ps,
  summary,
  until,
  waitConverged,
  waitReady,
} from '../helpers/lab.ts';
import { Lab as LabClass } from '../../deploy/lab/lab-hosts.ts';
import { cleanupLabs } from '../../deploy/lab/lab-hosts.ts';

/** The host whose gantryd is the current leader, as `node ls` on `via` says. */
async function leaderOf(lab: Lab, via: LabHost): Promise<LabHost | undefined> {
  const leader = (await nodes(via)).find((n) => n.manager === 'leader');
  return lab.hosts.find((h) => h.name === leader?.hostname);
}

/**
 * Samples until stopped: no slot of `service` ever has two tasks that should run and do (by the
 * store), and the live hosts never run more `sleep MARK` containers than `replicas` (by processes).
 */
function watchSlots(c: ClusterLab, service: string, mark: string, replicas: number, via: () => LabHost, alive: () => LabHost[]) {
  let stop = false;
  const doubles: string[] = [];
  const done = (async () => {
    while (!stop) {
      const r = await via().gantry(['service', 'ps', service, '--format', 'json']).catch(() => undefined);
      if (r?.code === 0) {
        const rows = JSON.parse(r.stdout) as { slot: number; desiredState: number; status?: { state: number } }[];
        const running = rows.filter((t) => t.status?.state === 512 && t.desiredState === 512);
        const slots = running.map((t) => t.slot);
        const dup = slots.filter((s, i) => slots.indexOf(s) !== i);
        if (dup.length > 0) doubles.push(`slot ${dup.join(',')} ran twice`);
      }
      const procs = [...sleepersByHost(alive(), mark).values()].reduce((a, b) => a + b, 0);
      if (procs > replicas) doubles.push(`${procs} containers of ${service} ran at once (${replicas} replicas)`);
      await new Promise((res) => setTimeout(res, 200));
    }
  })();
  return {
    async end(): Promise<string[]> {
      stop = true;
      await done;
      return doubles;
    },
  };
}

describe('managers', { skip: clusterSkipReason(), concurrency: 1, timeout: 900_000 }, () => {
  let c: ClusterLab;
  let lab: Lab;
  before(async () => {
    await cleanupLabs();
    lab = await LabClass.up({ hosts: 5 });
    const first = await formCluster(lab, { hosts: [0] });
    await joinHost(first, lab.host(1), { role: 'manager' });
    await joinHost(first, lab.host(2), { role: 'manager' });
    await joinHost(first, lab.host(3));
    await joinHost(first, lab.host(4));
    await waitReady(first, lab.hosts);
    await Promise.all(lab.hosts.map((h) => importImage(h)));
    c = { lab, manager: first, members: lab.hosts };
  });
  after(async () => {
    await lab?.down();
  });

  test('managers: hosts joined with the manager token are managers; one leads, the others are reachable', explainFailure(() => lab.hosts, async () => {
    const ns = await nodes(lab.host(0));
    const managers = ns.filter((n) => n.manager !== '');
    assert.deepEqual(managers.map((n) => n.hostname).sort(), ['gl' + lab.id + 'h0', 'gl' + lab.id + 'h1', 'gl' + lab.id + 'h2'].sort());
    assert.equal(managers.filter((n) => n.manager === 'leader').length, 1);
    // every manager serves the control API from the same state
    for (const h of lab.hosts.slice(0, 3)) assert.equal((await nodes(h)).length, 5);
  }));

  test('managers: the leader host killed — another manager leads, writes resume, the service keeps its replicas and no slot runs twice', explainFailure(() => lab.hosts, async (t) => {
    await createSleeper(c.manager, 'steady', '86501', ['--replicas', '6']);
    await waitConverged(c, 'steady', '86501', 6);
    const leader = await leaderOf(lab, lab.host(0));
    assert.ok(leader, 'a leader is known');
    const survivors = lab.hosts.slice(0, 3).filter((h) => h !== leader);
    const slots = watchSlots(c, 'steady', '86501', 6, () => survivors[0], () => lab.hosts.filter((h) => h !== leader));
    t.after(() => slots.end()); // a failed assertion must not leave the sampler running
    await leader.kill();

    await until(async () => {
      const r = await survivors[0].gantry(['service', 'create', '-d', '--name', 'after-failover', '--replicas', '1', 'lab/busybox:1', 'sleep', '86502']);
      return r.code === 0 || `write refused: ${r.stderr.trim()}`;
    }, 60_000, 250);
    await until(async () => {
      const l = await leaderOf(lab, survivors[0]);
      return (l !== undefined && survivors.includes(l)) || `leader is ${l?.name ?? 'unknown'}`;
    }, 30_000);
    // the killed host's tasks are replaced on the others; the service is whole again
    const alive = { ...c, manager: survivors[0], lab: { ...lab, hosts: lab.hosts.filter((h) => h !== leader) } as unknown as Lab };
    await waitConverged(alive, 'steady', '86501', 6, 90_000);
    const tasks = live(await ps(survivors[0], 'steady'));
    assert.ok(tasks.every((x) => x.node !== leader.name), `no live task on the dead host: ${summary(tasks)}`);
    assert.deepEqual(await slots.end(), []);

    // the dead manager comes back: its etcd member rejoins and it is a reachable manager again
    await leader.start();
    await until(async () => {
      const n = (await nodes(survivors[0])).find((x) => x.hostname === leader.name);
      return (n?.status === 'ready' && n.manager !== '') || `${leader.name}: ${n?.status}/${n?.manager}`;
    }, 60_000);
    assert.equal((await nodes(leader)).length, 5, 'the returning manager serves the cluster state');
    await gantryOk(survivors[0], ['service', 'rm', 'steady', 'after-failover']);
  }));

  test('managers: demote and promote move the manager role; the last manager cannot be demoted', explainFailure(() => lab.hosts, async () => {
    const h0 = lab.host(0);
    const via = lab.host(1);
    await gantryOk(via, ['node', 'demote', h0.name]);
    await until(async () => {
      const n = (await nodes(via)).find((x) => x.hostname === h0.name);
      return (n?.manager === '' && n.status === 'ready') || `${h0.name}: ${n?.status}/${n?.manager || 'worker'}`;
    }, 60_000);
    // the store says worker before the host has finished leaving etcd: ask the host itself
    await until(async () => /Role:\s+worker/.test(await gantryOk(h0, ['info'])) || `${h0.name} still says it is a manager`, 30_000);
    const refused = await h0.gantry(['node', 'ls']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /this host is a worker: run cluster commands on a manager/);

    await gantryOk(via, ['node', 'promote', h0.name]);
    await until(async () => {
      const n = (await nodes(via)).find((x) => x.hostname === h0.name);
      return (n?.manager === 'reachable' || n?.manager === 'leader') || `${h0.name}: ${n?.manager || 'worker'}`;
    }, 60_000);
    await until(async () => ((await h0.gantry(['node', 'ls'])).code === 0) || 'promoted host does not serve the control API yet', 30_000);

    // promoted again while it still hands over (recorded as a worker, its etcd member not yet
    // removed): the promotion reaches it before it is a worker, and it acts on it once it is one
    await gantryOk(via, ['node', 'demote', h0.name]);
    await until(async () => ((await nodes(via)).find((x) => x.hostname === h0.name)?.manager === '') || `${h0.name} not recorded as a worker yet`, 30_000);
    await gantryOk(via, ['node', 'promote', h0.name]);
    await until(async () => {
      const n = (await nodes(via)).find((x) => x.hostname === h0.name);
      return (n?.manager === 'reachable' || n?.manager === 'leader') || `${h0.name} promoted mid-demotion: ${n?.manager || 'worker'}`;
    }, 60_000);
    await until(async () => ((await h0.gantry(['node', 'ls'])).code === 0) || 'promoted-again host does not serve the control API yet', 30_000);

    // demoting every manager but one is fine; the last one is refused
    await gantryOk(via, ['node', 'demote', h0.name, lab.host(2).name]);
    await until(async () => ((await nodes(via)).filter((n) => n.manager !== '').length === 1) || 'still more than one manager', 60_000);
    const last = await via.gantry(['node', 'demote', via.name]);
    assert.notEqual(last.code, 0);
    assert.match(last.stderr, /last manager/);
  }));

  test('managers: a wrong or rotated join token is refused with what to do; the new one works', explainFailure(() => lab.hosts, async () => {
    const via = lab.host(1);
    const h4 = lab.host(4);
    await gantryOk(h4, ['leave']);
    const printed = await gantryOk(via, ['join-token', '-q', 'worker']);
    const shape = /GNTRY-1-([0-9a-f]{64})-([0-9A-Za-z]+)-([wm])/;
    const old = shape.exec(printed)?.[0];
    assert.ok(old, `join-token -q printed a token: ${JSON.stringify(printed)}`);
    // well formed, the right CA digest, a wrong secret: the manager refuses it
    const wrong = old.replace(shape, (_all, digest: string, secret: string, role: string) => `GNTRY-1-${digest}-${'0'.repeat(secret.length)}-${role}`);
    const bogus = await h4.gantry(['join', '--token', wrong, `${via.ip}:4242`]);
    assert.notEqual(bogus.code, 0);
    assert.match(bogus.stderr, /join token is not valid for this cluster \(wrong or rotated\).*gantry join-token worker/, `token ${wrong}`);
    const garbage = await h4.gantry(['join', '--token', 'not-a-token', `${via.ip}:4242`]);
    assert.notEqual(garbage.code, 0);
    assert.match(garbage.stderr, /not a gantry join token/);
    await gantryOk(via, ['join-token', '--rotate', 'worker']);
    const rotated = await h4.gantry(['join', '--token', old, `${via.ip}:4242`]);
    assert.notEqual(rotated.code, 0);
    assert.match(rotated.stderr, /wrong or rotated/);
    const fresh = (await gantryOk(via, ['join-token', '-q', 'worker'])).trim();
    await gantryOk(h4, ['join', '--token', fresh, `${via.ip}:4242`]);
    await until(async () => ((await nodes(via)).filter((n) => n.hostname === h4.name && n.status === 'ready').length === 1) || 'rejoined host not ready', 30_000);
  }));

  test('managers: a demotion that would lose quorum is refused; a dead manager demoted has its etcd member removed by the leader', explainFailure(() => lab.hosts, async () => {
    const via = lab.host(1);
    const [h0, h2] = [lab.host(0), lab.host(2)];
    await gantryOk(via, ['node', 'promote', h0.name, h2.name]);
    await until(async () => ((await nodes(via)).filter((n) => n.manager !== '' && n.status === 'ready').length === 3) || 'not three ready managers', 90_000);
    await h2.kill();
    await until(async () => ((await nodes(via)).find((n) => n.hostname === h2.name)?.status === 'down') || `${h2.name} not down yet`, 30_000);

    const refused = await via.gantry(['node', 'demote', h0.name]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /would leave 2 managers of which 1 is reachable, fewer than the 2 a quorum needs: bring the unreachable managers back first, or use --force/);

    await gantryOk(via, ['node', 'demote', h2.name]);
    await until(async () => {
      const n = (await nodes(via)).find((x) => x.hostname === h2.name);
      return n?.manager === '' || `${h2.name} is still a manager (${n?.manager})`;
    }, 30_000);
    // two voting members left, both up: writes still work
    await gantryOk(via, ['service', 'create', '-d', '--name', 'after-demote', 'lab/busybox:1', 'sleep', '86503']);
    await gantryOk(via, ['service', 'rm', 'after-demote']);
  }));
});
