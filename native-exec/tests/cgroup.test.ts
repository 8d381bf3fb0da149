// tests/cgroup.test.ts — resource limits enforced on this host's cgroup v1 (OOM kill, pids limit,
// cpu/cpuset values) and the cgroup v2 writer checked against a fake cgroupfs tree.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Harness, type Spec, tempDir, waitFor } from './helpers.ts';

describe('gantry-exec cgroups', () => {
  const h = new Harness();
  after(() => h.cleanup());

  test('cgroup v1: a memory hog is OOM-killed at the memory limit', () => {
    const { id, bundle } = h.bundle(['sh', '-c', 'x=0123456789abcdef; while :; do x=$x$x; done'], (s) => {
      s.linux.resources.memory = { limit: 16 * 1024 * 1024, swap: 16 * 1024 * 1024 };
    });
    const r = h.gx(['run', '--bundle', bundle, id]);
    assert.equal(r.status, 137, r.stderr);
    assert.deepEqual(h.leftovers(id, bundle), []);
  });

  test('cgroup v1: a fork bomb stops at the pids limit', () => {
    const { id, bundle } = h.bundle(['sh', '-c', 'sh -c "i=0; while [ \\$i -lt 40 ]; do sleep 5 & i=\\$((i+1)); done"; cat /sys/fs/cgroup/pids/pids.current /sys/fs/cgroup/pids/pids.max'], (s) => {
      s.linux.resources.pids = { limit: 10 };
    });
    const r = h.gx(['run', '--bundle', bundle, id]);
    const [current, max] = r.stdout.trim().split('\n');
    assert.equal(max, '10');
    assert.ok(Number(current) <= 10, `pids.current ${current}`);
    assert.match(r.stderr, /fork|Resource temporarily unavailable/i);
    assert.deepEqual(h.leftovers(id, bundle), []);
  });

  test('cgroup v1: cpu shares, quota, period and cpuset are written and visible inside', () => {
    const { id, bundle } = h.bundle(['sh', '-c', 'cat /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/memory/memory.soft_limit_in_bytes'], (s) => {
      s.linux.resources.cpu = { shares: 512, quota: 50000, period: 100000, cpus: '0' };
      s.linux.resources.memory = { reservation: 8 * 1024 * 1024 };
      s.linux.cgroupsPath = `/gx-test-parent/${s.hostname}-leaf`;
    });
    h.cgroupParents.push('gx-test-parent');
    const r = h.gx(['run', '--bundle', bundle, id]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['512', '50000', '100000', '0', String(8 * 1024 * 1024)]);
  });

  test('cgroup v1: a parent cpuset that exists but is still empty (made a moment ago by another start) is filled, not entered empty', () => {
    const parent = `gx-empty-cpuset-${process.pid}`;
    h.cgroupParents.push(parent);
    const dir = `/sys/fs/cgroup/cpuset/${parent}`;
    mkdirSync(dir); // as a concurrent gantry-exec leaves it between its mkdir and its copy of cpus/mems
    assert.equal(readFileSync(join(dir, 'cpuset.cpus'), 'utf8').trim(), '', 'a new cpuset starts empty');
    const { id, bundle } = h.bundle(['cat', '/sys/fs/cgroup/cpuset/cpuset.cpus'], (s) => {
      s.linux.cgroupsPath = `/${parent}/${s.hostname}-leaf`;
    });
    const r = h.gx(['run', '--bundle', bundle, id]);
    assert.equal(r.status, 0, r.stderr);
    const hostCpus = readFileSync('/sys/fs/cgroup/cpuset/cpuset.cpus', 'utf8').trim();
    assert.equal(r.stdout.trim(), hostCpus);
    assert.equal(readFileSync(join(dir, 'cpuset.cpus'), 'utf8').trim(), hostCpus);
    assert.equal(readFileSync(join(dir, 'cpuset.mems'), 'utf8').trim(), readFileSync('/sys/fs/cgroup/cpuset/cpuset.mems', 'utf8').trim());
  });

  test('cgroup v2 (fake cgroupfs): limits, controllers, membership and removal', async () => {
    const fake = tempDir('gx-fake-cgroup2');
    h.dirs.push(fake);
    writeFileSync(join(fake, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
    mkdirSync(join(fake, 'gantry'));
    writeFileSync(join(fake, 'gantry', 'cgroup.controllers'), 'cpu memory pids\n');
    const env = { GANTRY_EXEC_CGROUP_ROOT: fake };
    const { id, bundle } = h.bundle(['sleep', '100'], (s) => {
      s.linux.cgroupsPath = '/gantry/ctr';
      s.linux.resources = {
        memory: { limit: 64 * 1024 * 1024, reservation: 32 * 1024 * 1024, swap: 96 * 1024 * 1024 },
        cpu: { shares: 1024, quota: 50000, period: 100000, cpus: '0-1', mems: '0' },
        pids: { limit: 100 },
        blockIO: { weight: 500 },
      };
    });
    const c = h.gx(['create', '--bundle', bundle, id], { env });
    assert.equal(c.status, 0, c.stderr);
    const dir = join(fake, 'gantry', 'ctr');
    const read = (f: string) => readFileSync(join(dir, f), 'utf8').trim();
    assert.equal(read('memory.max'), String(64 * 1024 * 1024));
    assert.equal(read('memory.low'), String(32 * 1024 * 1024));
    assert.equal(read('memory.swap.max'), String(32 * 1024 * 1024), 'spec swap is memory+swap; v2 wants swap alone');
    assert.equal(read('cpu.weight'), '39', 'shares 1024 -> weight 39 (runc formula)');
    assert.equal(read('cpu.max'), '50000 100000');
    assert.equal(read('cpuset.cpus'), '0-1');
    assert.equal(read('cpuset.mems'), '0');
    assert.equal(read('pids.max'), '100');
    assert.equal(read('io.weight'), '4950', 'blkio 500 -> io 4950 (runc formula)');
    assert.equal(readFileSync(join(fake, 'cgroup.subtree_control'), 'utf8'), '+cpu +cpuset +io +memory +pids');
    assert.equal(readFileSync(join(fake, 'gantry', 'cgroup.subtree_control'), 'utf8'), '+cpu +memory +pids', 'only what the level offers');
    assert.equal(Number(read('cgroup.procs')), h.state(id).pid);
    assert.equal(h.gx(['delete', '--force', id], { env }).status, 0);
    await waitFor(() => (existsSync(dir) ? `${dir} still exists` : null));
    assert.ok(existsSync(join(fake, 'gantry')), 'the parent is not ours to remove');
  });

  test('cgroup v2 (fake cgroupfs): unlimited pids and swap are written as max', () => {
    const fake = tempDir('gx-fake-cgroup2');
    h.dirs.push(fake);
    const env = { GANTRY_EXEC_CGROUP_ROOT: fake };
    const { id, bundle } = h.bundle(['true'], (s) => {
      s.linux.resources = { memory: { swap: -1 }, pids: { limit: -1 }, cpu: { period: 50000 } };
    });
    assert.equal(h.gx(['create', '--bundle', bundle, id], { env }).status, 0);
    const dir = join(fake, id);
    assert.equal(readFileSync(join(dir, 'pids.max'), 'utf8'), 'max');
    assert.equal(readFileSync(join(dir, 'memory.swap.max'), 'utf8'), 'max');
    assert.equal(readFileSync(join(dir, 'cpu.max'), 'utf8'), 'max 50000');
    assert.equal(h.gx(['delete', '--force', id], { env }).status, 0);
    assert.ok(!existsSync(dir));
  });

  for (const mode of ['v1 (devices controller)', 'v2 (the real unified hierarchy of this hybrid host, BPF filter)']) {
  test(`cgroup ${mode}: device rules deny what is not allowed, and a later allow wins`, () => {
    const env: Record<string, string> = mode.startsWith('v2') ? { GANTRY_EXEC_CGROUP_ROOT: '/sys/fs/cgroup/unified' } : {};
    const script = 'rm -f /tmp/blk /tmp/nul; mknod /tmp/blk b 7 0 2>/dev/null; echo blk=$?; mknod /tmp/nul c 1 3; echo nul=$?; echo x > /dev/null; echo write=$?; grep ^0:: /proc/self/cgroup';
    const withMknod = (s: Spec) => {
      s.root.readonly = false;
      for (const k of ['bounding', 'effective', 'permitted']) s.process.capabilities[k].push('CAP_MKNOD');
    };
    const denied = h.bundle(['sh', '-c', script], withMknod);
    const r = h.gx(['run', '--bundle', denied.bundle, denied.id], { env });
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.deepEqual(lines.slice(0, 3), ['blk=1', 'nul=0', 'write=0']);
    if (env.GANTRY_EXEC_CGROUP_ROOT) assert.equal(lines[3], `0::/${denied.id}`, 'in its own cgroup2 group');
    assert.ok(!existsSync(`/sys/fs/cgroup/unified/${denied.id}`) && !existsSync(`/sys/fs/cgroup/devices/${denied.id}`), 'cgroup removed after run');
    const allowed = h.bundle(['sh', '-c', script], (s) => {
      withMknod(s);
      s.linux.resources.devices.push({ allow: true, type: 'b', major: 7, minor: 0, access: 'm' });
    });
    const a = h.gx(['run', '--bundle', allowed.bundle, allowed.id], { env });
    assert.equal(a.status, 0, a.stderr);
    assert.equal(a.stdout.split('\n')[0], 'blk=0', 'an allow rule after the deny-all wins');
  });
  }
});
