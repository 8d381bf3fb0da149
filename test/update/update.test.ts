// Rolling updates on lab hosts (3 managers + 1 worker): the guarantees sampled while updates run in
// both orders and two parallelisms; failing updates (missing image, exiting command, health check
// that never passes) under each failure action, with the message and exit code the user gets;
// resume of a paused update; rollback after rollback; the leader killed mid-update.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Lab as LabClass, cleanupLabs } from '../../deploy/lab/lab-hosts.ts';
import {
  type ClusterLab,
  clusterSkipReason,
  formCluster,
  gantryOk,
  IMAGE,
  importImage,
  joinHost,
  type Lab,
  type LabHost,
  nodes,
  sleepersByHost,
  until,
  waitReady,
} from '../helpers/lab.ts';
import { busyboxRootfsTar } from '../helpers/lab-rootfs.ts';

const IMAGE2 = 'lab/busybox:2';
const RUNNING = 512;
/** An image nobody has: its registry (a closed port) refuses at once, so the failure comes fast. */
const LATER = '127.0.0.1:1/later:1';

interface Row {
  id: string;
  slot: number;
  nodeId?: string;
  specVersion: number;
  desiredState: number;
  spec?: { container?: { image?: string; args?: string[]; command?: string[] } };
  status?: { state?: number; health?: string; err?: string };
}

async function rows(h: LabHost, service: string): Promise<Row[]> {
  return JSON.parse(await gantryOk(h, ['service', 'ps', service, '--format', 'json'])) as Row[];
}

async function inspect(h: LabHost, service: string): Promise<{ state: number; message: string; image: string }> {
  const [s] = JSON.parse(await gantryOk(h, ['service', 'inspect', service, '--format', 'json'])) as {
    updateStatus?: { state?: number; message?: string };
    spec?: { task?: { container?: { image?: string } } };
  }[];
  return { state: s.updateStatus?.state ?? 0, message: s.updateStatus?.message ?? '', image: s.spec?.task?.container?.image ?? '' };
}

const isUp = (r: Row) => r.status?.state === RUNNING && r.status?.health !== 'starting' && r.status?.health !== 'unhealthy';
const liveRows = (rs: Row[]) => rs.filter((r) => r.status?.state === RUNNING && r.desiredState === RUNNING);
const show = (rs: Row[]) => rs.map((r) => `${r.slot || r.nodeId?.slice(0, 6)}:${r.spec?.container?.image}:${r.desiredState}/${r.status?.state}${r.status?.err ? `‹${r.status.err}›` : ''}`).join(' ');

/**
 * Samples the store (service ps) and the processes until stopped, and records every moment a
 * guarantee did not hold: stop-first ≤ parallelism slots without an up task; start-first every
 * slot up (and at least `replicas` containers); never two up tasks of one version in a slot.
 * Global services: `nodes` are the slots (a task's slot is its node).
 */
function sample(c: ClusterLab, via: LabHost, service: string, mark: string, replicas: number, order: string, parallelism: number, nodes?: string[]) {
  const slotOf = (x: Row) => (nodes ? (x.nodeId ?? '') : String(x.slot));
  const allSlots = nodes ?? Array.from({ length: replicas }, (_, i) => String(i + 1));
  let stop = false;
  const bad: string[] = [];
  let samples = 0;
  const window = parallelism === 0 ? replicas : parallelism;
  const store = (async () => {
    while (!stop) {
      const r = await via.gantry(['service', 'ps', service, '--format', 'json']).catch(() => undefined);
      if (r?.code === 0) {
        samples++;
        const rs = JSON.parse(r.stdout) as Row[];
        const up = rs.filter(isUp);
        const slots = new Set(up.map(slotOf));
        let down = 0;
        for (const s of allSlots) if (!slots.has(s)) down++;
        if (order === 'start-first' && down > 0) bad.push(`start-first: ${down} slots without a running task: ${show(rs)}`);
        if (order === 'stop-first' && down > window) bad.push(`stop-first: ${down} slots down > parallelism ${window}: ${show(rs)}`);
        const seen = new Set<string>();
        for (const x of up) {
          const k = `${slotOf(x)}/${x.specVersion}`;
          if (seen.has(k)) bad.push(`slot ${slotOf(x)} runs two tasks of version ${x.specVersion}: ${show(rs)}`);
          seen.add(k);
        }
      }
    }
  })();
  // Processes: a container reported RUNNING may take a moment to exec its `sleep` (and /proc is
  // read while it changes), so a shortfall counts when two samples in a row (≥ 30 ms apart) see it.
  const procs = (async () => {
    let short = 0;
    while (!stop) {
      const n = [...sleepersByHost(c.lab.hosts, mark).values()].reduce((a, b) => a + b, 0);
      const min = order === 'start-first' ? replicas : replicas - window;
      short = n < min ? short + 1 : 0;
      if (short >= 2) bad.push(`${order}: only ${n} containers running (at least ${min} expected)`);
      await new Promise((res) => setTimeout(res, 30));
    }
  })();
  return {
    async end(): Promise<{ bad: string[]; samples: number }> {
      stop = true;
      await Promise.all([store, procs]);
      return { bad, samples };
    },
  };
}

describe('update', { skip: clusterSkipReason(), concurrency: 1, timeout: 600_000 }, () => {
  let c: ClusterLab;
  let lab: Lab;
  before(async () => {
    await cleanupLabs();
    lab = await LabClass.up({ hosts: 4 });
    const first = await formCluster(lab, { hosts: [0] });
    await joinHost(first, lab.host(1), { role: 'manager' });
    await joinHost(first, lab.host(2), { role: 'manager' });
    await joinHost(first, lab.host(3));
    await waitReady(first, lab.hosts);
    await Promise.all(lab.hosts.map(async (h) => {
      await importImage(h);
      await gantryOk(h, ['image', 'import', busyboxRootfsTar(), IMAGE2]);
    }));
    c = { lab, manager: first, members: lab.hosts };
  });
  after(async () => {
    try {
      await lab?.down();
    } finally {
      await cleanupLabs();
    }
  });

  test('update: both orders, parallelism 1 and 2 — every task moves to the new image and the guarantees hold at every sample', async () => {
    const m = c.manager;
    await gantryOk(m, ['service', 'create', '--name', 'roll', '--replicas', '4', '--stop-signal', 'SIGKILL', '--restart-delay', '1s', IMAGE, 'sleep', '87101']);
    let image = IMAGE;
    for (const [order, p] of [['stop-first', 1], ['stop-first', 2], ['start-first', 1], ['start-first', 2]] as const) {
      image = image === IMAGE ? IMAGE2 : IMAGE;
      const s = sample(c, lab.host(1), 'roll', '87101', 4, order, p);
      const r = await m.gantry(['service', 'update', '--image', image, '--update-order', order, '--update-parallelism', String(p), '--update-monitor', '0s', 'roll']);
      const { bad, samples } = await s.end();
      assert.equal(r.code, 0, `${order} p=${p}: ${r.stderr}`);
      assert.match(r.stdout, /verify: Service converged/);
      assert.ok(samples >= 2, `sampled ${samples} times`);
      assert.deepEqual(bad, [], `${order} p=${p}`);
      const live = liveRows(await rows(m, 'roll'));
      assert.equal(live.length, 4, show(live));
      assert.ok(live.every((x) => x.spec?.container?.image === image), show(live));
      assert.equal((await inspect(m, 'roll')).state, 3, 'completed');
    }
  });

  test('update: a change that does not touch tasks (replicas, labels, update settings) restarts none', async () => {
    const m = c.manager;
    const before = new Set(liveRows(await rows(m, 'roll')).map((x) => x.id));
    await gantryOk(m, ['service', 'update', '--label-add', 'team=a', '--update-delay', '1s', '--replicas', '5', 'roll']);
    const live = liveRows(await rows(m, 'roll'));
    assert.equal(live.length, 5);
    assert.equal(live.filter((x) => before.has(x.id)).length, 4, 'the four tasks kept running');
    await gantryOk(m, ['service', 'update', '--replicas', '4', '--update-delay', '0s', 'roll']);
  });

  test('update: a missing image pauses the update (exit 1, the task and node named); fixed, --resume finishes it', async () => {
    const m = c.manager;
    const r = await m.gantry(['service', 'update', '--image', LATER, '--update-failure-action', 'pause', '--update-parallelism', '1', '--update-order', 'stop-first', 'roll']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /the update was paused: update paused: task roll\.\d on gl\d+h\d failed: /, r.stderr);
    const st = await inspect(m, 'roll');
    assert.equal(st.state, 2, 'paused');
    const rs = await rows(m, 'roll');
    assert.equal(liveRows(rs).filter((x) => x.spec?.container?.image !== LATER).length, 3, `three slots untouched: ${show(rs)}`);
    // The cause goes away (the image appears), the user continues the update.
    await Promise.all(lab.hosts.map((h) => gantryOk(h, ['image', 'import', busyboxRootfsTar(), LATER])));
    const resumed = await m.gantry(['service', 'update', '--resume', 'roll']);
    assert.equal(resumed.code, 0, resumed.stderr);
    const live = liveRows(await rows(m, 'roll'));
    assert.ok(live.length === 4 && live.every((x) => x.spec?.container?.image === LATER), show(live));
  });

  test('update: a command that exits at once with failure action rollback goes back, exits 1 and says which task failed and how', async () => {
    const m = c.manager;
    const r = await m.gantry(['service', 'update', '--args', "sh -c 'exit 3'", '--update-failure-action', 'rollback', '--update-monitor', '2s', 'roll']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /the update failed and was rolled back: rollback completed \(update rolled back: task roll\.\d on gl\d+h\d failed: exit \d+ after \d+m?s/, r.stderr);
    await until(async () => {
      const live = liveRows(await rows(m, 'roll'));
      return (live.length === 4 && live.every((x) => !(x.spec?.container?.args ?? []).includes('exit 3'))) || show(live);
    }, 30_000);
  });

  test('update: a health check that never passes pauses a start-first update with the old tasks still running; continue reports the failed tasks', async () => {
    const m = c.manager;
    const before = new Set(liveRows(await rows(m, 'roll')).map((x) => x.id));
    const r = await m.gantry(['service', 'update', '--health-cmd', 'false', '--health-interval', '300ms', '--health-retries', '2', '--update-order', 'start-first', '--update-failure-action', 'pause', 'roll']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /update paused: task roll\.\d on gl\d+h\d failed: health check "false" failed 2 times/, r.stderr);
    const live = liveRows(await rows(m, 'roll'));
    assert.equal(live.filter((x) => before.has(x.id)).length, 4, `old tasks kept: ${show(live)}`);
    // the same with continue: every slot is tried, the update ends "completed with 4 failed tasks", exit 1
    const again = await m.gantry(['service', 'update', '--health-retries', '3', '--update-parallelism', '0', '--update-failure-action', 'continue', 'roll']);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /update completed with 4 failed tasks: task roll\.\d on gl\d+h\d failed: health check "false" failed 3 times/, again.stderr);
  });

  test('update: a health check still "starting" when the monitor period ends is a failure: the update pauses (exit 1, the check named)', async () => {
    const m = c.manager;
    // Failures within the start period do not count: the new tasks stay "starting" for an hour.
    const r = await m.gantry(['service', 'update', '--health-cmd', 'false', '--health-interval', '300ms', '--health-start-period', '1h', '--update-order', 'start-first', '--update-parallelism', '1', '--update-monitor', '2s', '--update-failure-action', 'pause', 'roll']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /the update was paused: update paused: task roll\.\d on gl\d+h\d failed: not healthy within the update monitor period \(health check "false" still starting\)/, r.stderr);
    assert.equal((await inspect(m, 'roll')).state, 2, 'paused');
  });

  test('update: rollback, then rollback of the rollback: each exits 0 once the spec it returns to runs everywhere', async () => {
    const m = c.manager;
    await gantryOk(m, ['service', 'update', '--no-healthcheck', '--update-parallelism', '2', '--update-failure-action', 'pause', '--rollback-parallelism', '0', 'roll']);
    const imageNow = (await inspect(m, 'roll')).image;
    await gantryOk(m, ['service', 'update', '--image', imageNow === IMAGE ? IMAGE2 : IMAGE, 'roll']);
    for (const want of [imageNow, imageNow === IMAGE ? IMAGE2 : IMAGE]) {
      const r = await m.gantry(['service', 'rollback', 'roll']);
      assert.equal(r.code, 0, r.stderr);
      const st = await inspect(m, 'roll');
      assert.equal(st.state, 6, `rollback completed: ${st.message}`);
      const live = liveRows(await rows(m, 'roll'));
      assert.ok(live.length === 4 && live.every((x) => x.spec?.container?.image === want), `${want}: ${show(live)}`);
    }
    await gantryOk(m, ['service', 'rm', 'roll']);
  });

  test('update: a global service on 3 hosts — start-first and stop-first, then a rollback: every node moves, the guarantees hold per node at every sample', async () => {
    const m = c.manager;
    // One task on each of the three managers (the constraint leaves out the worker host).
    await gantryOk(m, ['service', 'create', '--name', 'glob', '--mode', 'global', '--constraint', 'node.role==manager', '--stop-signal', 'SIGKILL', '--restart-delay', '1s', '--update-monitor', '0s', IMAGE, 'sleep', '87103']);
    let ids: string[] = [];
    await until(async () => {
      const live = liveRows(await rows(m, 'glob'));
      ids = [...new Set(live.map((x) => x.nodeId ?? ''))].sort();
      return (live.length === 3 && ids.length === 3) || show(live);
    }, 60_000);
    const managers = (await nodes(m)).filter((n) => n.manager).length;
    assert.equal(managers, 3);
    // The rollback returns to the first update's spec; its update settings and the second update's
    // rollback settings agree (start-first, 1), so the guarantee sampled holds whichever applies.
    const steps: [string[], string, number, string][] = [
      [['update', '--image', IMAGE2, '--update-order', 'start-first', '--update-parallelism', '1'], 'start-first', 1, IMAGE2],
      [['update', '--image', IMAGE, '--update-order', 'stop-first', '--update-parallelism', '1', '--rollback-order', 'start-first', '--rollback-parallelism', '1'], 'stop-first', 1, IMAGE],
      [['rollback'], 'start-first', 1, IMAGE2],
    ];
    for (const [args, order, p, image] of steps) {
      const s = sample(c, lab.host(1), 'glob', '87103', 3, order, p, ids);
      const r = await m.gantry(['service', ...args, 'glob']);
      const { bad, samples } = await s.end();
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.ok(samples >= 2, `sampled ${samples} times`);
      assert.deepEqual(bad, [], args.join(' '));
      const live = liveRows(await rows(m, 'glob'));
      assert.deepEqual([...new Set(live.map((x) => x.nodeId ?? ''))].sort(), ids, `one task on each of the same nodes: ${show(live)}`);
      assert.ok(live.length === 3 && live.every((x) => x.spec?.container?.image === image && x.slot === 0), `${image}: ${show(live)}`);
    }
  });

  test('update: a global service rollback is recorded as a rollback', async () => {
    const st = await inspect(c.manager, 'glob');
    await gantryOk(c.manager, ['service', 'rm', 'glob']);
    assert.equal(st.state, 6, `rollback completed: ${st.message}`);
  });

  test('update: the leader killed mid-update — another manager continues it from where it was', async () => {
    const leaderName = (await nodes(c.manager)).find((n) => n.manager === 'leader')?.hostname;
    const leader = lab.hosts.find((h) => h.name === leaderName);
    assert.ok(leader, 'a leader is known');
    const survivor = lab.hosts.slice(0, 3).find((h) => h !== leader)!;
    await gantryOk(survivor, ['service', 'create', '--name', 'lead', '--replicas', '6', '--stop-signal', 'SIGKILL', '--update-delay', '1s', '--update-monitor', '0s', IMAGE, 'sleep', '87102']);
    await gantryOk(survivor, ['service', 'update', '-d', '--image', IMAGE2, 'lead']);
    await until(async () => {
      const n = liveRows(await rows(survivor, 'lead')).filter((x) => x.spec?.container?.image === IMAGE2).length;
      return n >= 2 || `${n} slots updated`;
    }, 60_000);
    await leader.kill();
    await until(async () => {
      const st = await inspect(survivor, 'lead');
      const live = liveRows(await rows(survivor, 'lead'));
      if (st.state !== 3) return `update state ${st.state}: ${st.message}; ${show(live)}`;
      return (live.length === 6 && live.every((x) => x.spec?.container?.image === IMAGE2)) || show(live);
    }, 120_000);
  });
});
