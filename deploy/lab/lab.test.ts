// Tests of the lab on its own, with a stand-in daemon that behaves like gantryd where it matters:
// a container in the host's cgroup parent, a monitor in its own session, an overlay-like mount.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { until } from './lab-cluster.ts';
import { cleanupLabs, type HostInfo, Lab, listLabs, REPO_ROOT } from './lab-hosts.ts';
import { cgroupDirs, mountsUnder, netnsList, run } from './sys.ts';

// Like gantryd: a "container" in <v1 pids>/<parent>/c1 and <unified>/<parent>/c2, a "monitor" that
// leaves the process group (setsid), a tmpfs where container rootfs mounts would be.
const STAND_IN = `
set -e
cg=$1; data=$2
mkdir -p /sys/fs/cgroup/pids/$cg/c1 /sys/fs/cgroup/unified/$cg/c2 $data/mnt
sh -c "echo \\$\\$ > /sys/fs/cgroup/pids/$cg/c1/cgroup.procs; exec sleep 86401" &
sh -c "echo \\$\\$ > /sys/fs/cgroup/unified/$cg/c2/cgroup.procs; exec sleep 86402" &
setsid sleep 86403 &
mount -t tmpfs lab-test $data/mnt
exec sleep infinity
`;
const standIn = (h: HostInfo) => ['sh', '-c', STAND_IN, 'stand-in', h.cgroupParent, h.dataDir];

const isSleep = (n: string) => (argv: string[]) => argv[0] === 'sleep' && argv[1] === n;

describe('lab', () => {
  let lab: Lab;
  before(async () => {
    lab = await Lab.up({ hosts: 3, daemon: standIn });
  });
  after(async () => {
    await lab?.down();
  });

  test('lab: hosts reach each other over the switch, and the root netns gains nothing', async () => {
    const r = await lab.host(0).exec(['busybox', 'ping', '-c1', '-W2', lab.host(2).ip]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const links = spawnSync('ip', ['-o', 'link'], { encoding: 'utf8' }).stdout;
    assert.doesNotMatch(links, /gl\d+|veth|br0/);
    const addrs = spawnSync('ip', ['-o', 'addr'], { encoding: 'utf8' }).stdout;
    assert.doesNotMatch(addrs, /10\.213\./);
    assert.deepEqual(
      lab.hosts.map((h) => h.ip),
      [0, 1, 2].map((i) => `10.213.${lab.id}.${10 + i}`),
    );
  });

  test('lab: partition drops traffic between two hosts only, heal restores it', async () => {
    await lab.partition(0, 1);
    const cut = await lab.host(0).exec(['busybox', 'ping', '-c1', '-W1', lab.host(1).ip]);
    assert.notEqual(cut.code, 0, 'h0 → h1 should be cut');
    const other = await lab.host(0).exec(['busybox', 'ping', '-c1', '-W2', lab.host(2).ip]);
    assert.equal(other.code, 0, 'h0 → h2 should still work');
    await lab.heal();
    const back = await lab.host(1).exec(['busybox', 'ping', '-c1', '-W2', lab.host(0).ip]);
    assert.equal(back.code, 0, back.stdout + back.stderr);
  });

  test('lab: kill takes the daemon, its containers, its detached monitors, mounts and cgroups; start works again', async () => {
    const h = lab.host(1);
    await h.start();
    await until(() => h.processes(isSleep('86403')).length === 1 && mountsUnder(h.dataDir).length === 1 || `stand-in not up: ${JSON.stringify(h.processes())}`, 10_000, 50);
    assert.equal(h.processes(isSleep('86401')).length, 1, 'container in v1 cgroup');
    assert.equal(h.processes(isSleep('86402')).length, 1, 'container in unified cgroup');
    const other = lab.host(2);
    await other.start();
    await until(() => other.processes(isSleep('86403')).length === 1 || 'h2 stand-in not up', 10_000, 50);

    await h.kill();
    assert.deepEqual(h.pids(), [], 'no process left in the host');
    assert.equal(h.running(), false);
    assert.deepEqual(mountsUnder(h.dir), []);
    assert.deepEqual(cgroupDirs(h.cgroupParent, { whole: true }), []);
    assert.ok(fs.existsSync(h.dataDir), 'the data dir survives like a disk');
    assert.equal(other.processes(isSleep('86403')).length, 1, 'the other host is untouched');

    await h.start();
    await until(() => h.processes(isSleep('86401')).length === 1 || 'restarted stand-in not up', 10_000, 50);
  });

  test('lab: stop ends the daemon gracefully and keeps its containers', async () => {
    const h = lab.host(0);
    await h.start();
    await until(() => h.processes(isSleep('86401')).length === 1 || 'stand-in not up', 10_000, 50);
    await h.stop();
    assert.equal(h.running(), false);
    assert.equal(h.processes(isSleep('86401')).length, 1, 'containers outlive a daemon stop');
  });
});

test('lab: down removes everything even with daemons running; cleanup removes labs of dead owners only', async () => {
  const lab = await Lab.up({ hosts: 2, daemon: standIn });
  try {
    await lab.host(0).start();
    await until(() => lab.host(0).processes(isSleep('86401')).length === 1 || 'stand-in not up', 10_000, 50);
  } finally {
    await lab.down();
  }
  assert.deepEqual(netnsList().filter((n) => n.startsWith(`gl${lab.id}h`) || n === `gl${lab.id}sw`), []);
  assert.deepEqual(cgroupDirs(`gantry-lab${lab.id}-`), []);
  assert.equal(fs.existsSync(lab.root), false);

  // A lab made by a process that died without tearing down is stale: cleanup takes it, not ours.
  const mine = await Lab.up({ hosts: 1, daemon: standIn });
  try {
    const code = `
      import { Lab } from ${JSON.stringify(`${REPO_ROOT}/deploy/lab/lab-hosts.ts`)};
      const stand = (h) => ['sh', '-c', ${JSON.stringify(STAND_IN)}, 'x', h.cgroupParent, h.dataDir];
      const lab = await Lab.up({ hosts: 2, daemon: stand });
      await lab.host(0).start();
      await new Promise((r) => setTimeout(r, 500));
      console.log(lab.id);
      process.exit(0);`;
    const r = await run(process.execPath, ['--input-type=module', '-e', code]);
    assert.equal(r.code, 0, r.stderr);
    const orphan = Number(r.stdout.trim());
    assert.ok(listLabs().some((l) => l.id === orphan && !l.ownerAlive));
    const res = await cleanupLabs();
    assert.deepEqual(res.errors, []);
    assert.ok(res.removed.includes(orphan), `cleanup removed ${res.removed}`);
    assert.ok(!res.removed.includes(mine.id), 'a live lab is left alone');
    assert.ok(fs.existsSync(mine.root));
    assert.deepEqual(netnsList().filter((n) => n.startsWith(`gl${orphan}`)), []);
    assert.deepEqual(cgroupDirs(`gantry-lab${orphan}-`), []);
  } finally {
    await mine.down();
  }
});
