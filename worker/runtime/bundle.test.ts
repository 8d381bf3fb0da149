// Unit tests for buildOciSpec: Docker's defaults, capabilities, users, limits, namespaces, seccomp.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ALL_CAPS, buildOciSpec, capabilitySet, cgroupsPathFor, DEFAULT_CAPS, DEFAULT_PATH, resolveUser } from './bundle.ts';
import { CLONE_NAMESPACE_FLAGS } from './seccomp-default.ts';
import type { ContainerConfig } from './types.ts';

export function config(over: Partial<ContainerConfig> = {}): ContainerConfig {
  return {
    id: 'c1', rootfs: { kind: 'dir', path: '/r' }, args: ['sh'], env: [], cwd: '/', user: '', hostname: 'h1',
    tty: false, readOnlyRootfs: false, capAdd: [], capDrop: [], limits: {}, mounts: [], network: { mode: 'none' },
    stopSignal: 'SIGTERM', labels: {}, ...over,
  };
}

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\nbob:x:1000:1000::/home/bob:/bin/sh\n';
const GROUP = 'root:x:0:\nwww:x:33:\nbob:x:1000:\nwheel:x:10:bob,alice\naudio:x:29:bob\n';

test('bundle: capabilities follow Docker add/drop rules', () => {
  const cases: { add: string[]; drop: string[]; want: (caps: string[]) => void }[] = [
    { add: [], drop: [], want: (c) => assert.deepEqual([...c].sort(), [...DEFAULT_CAPS].sort()) },
    { add: ['net_admin'], drop: ['MKNOD'], want: (c) => { assert.ok(c.includes('CAP_NET_ADMIN')); assert.ok(!c.includes('CAP_MKNOD')); assert.equal(c.length, DEFAULT_CAPS.length); } },
    { add: ['ALL'], drop: [], want: (c) => assert.equal(c.length, ALL_CAPS.length) },
    { add: ['ALL'], drop: ['CAP_SYS_ADMIN'], want: (c) => { assert.equal(c.length, ALL_CAPS.length - 1); assert.ok(!c.includes('CAP_SYS_ADMIN')); } },
    { add: ['CHOWN'], drop: ['ALL'], want: (c) => assert.deepEqual(c, ['CAP_CHOWN']) },
  ];
  for (const k of cases) {
    const r = capabilitySet(k.add, k.drop);
    assert.ok(r.ok);
    k.want(r.caps);
  }
  const bad = capabilitySet(['FLY'], []);
  assert.ok(!bad.ok);
  assert.match(bad.error, /unknown capability "FLY"/);
  const host = capabilitySet(['ALL'], [], ALL_CAPS.filter((c) => c !== 'CAP_SYS_RESOURCE'));
  assert.ok(host.ok && !host.caps.includes('CAP_SYS_RESOURCE'));
});

test('bundle: users resolve from passwd and group like docker --user', () => {
  const cases: [string, { uid: number; gid: number; additionalGids: number[] } | RegExp][] = [
    ['', { uid: 0, gid: 0, additionalGids: [] }],
    ['www', { uid: 33, gid: 33, additionalGids: [] }],
    ['bob', { uid: 1000, gid: 1000, additionalGids: [10, 29] }],
    ['1000', { uid: 1000, gid: 1000, additionalGids: [10, 29] }],
    ['4242', { uid: 4242, gid: 0, additionalGids: [] }],
    ['4242:77', { uid: 4242, gid: 77, additionalGids: [] }],
    ['bob:wheel', { uid: 1000, gid: 10, additionalGids: [] }],
    ['nobody', /user "nobody" not found/],
    ['bob:staff', /group "staff" not found/],
  ];
  for (const [u, want] of cases) {
    const r = resolveUser(u, PASSWD, GROUP);
    if (want instanceof RegExp) {
      assert.ok(!r.ok, u);
      assert.match(r.error, want);
    } else {
      assert.ok(r.ok, u);
      assert.deepEqual({ uid: r.user.uid, gid: r.user.gid, additionalGids: r.user.additionalGids }, want, u);
    }
  }
});

test('bundle: limits become cgroup resources', () => {
  const cases: [ContainerConfig['limits'], Record<string, unknown>][] = [
    [{}, { pids: { limit: 4096 } }],
    [{ pidsLimit: 10 }, { pids: { limit: 10 } }],
    [{ memoryBytes: 64 << 20 }, { memory: { limit: 64 << 20 } }],
    [{ nanoCpus: 1.5e9 }, { cpu: { quota: 150000, period: 100000 } }],
    [{ nanoCpus: 250_000_000 }, { cpu: { quota: 25000, period: 100000 } }],
  ];
  for (const [limits, want] of cases) {
    const r = buildOciSpec(config({ limits }), '/r', { cgroupsPath: '/gantry/c1' });
    assert.ok(r.ok);
    for (const [k, v] of Object.entries(want)) assert.deepEqual(r.spec.linux.resources[k], v, JSON.stringify(limits));
    if (!limits.memoryBytes) assert.equal(r.spec.linux.resources.memory, undefined);
  }
});

test('bundle: Docker defaults for mounts, masks, env, namespaces and cgroups path', () => {
  const r = buildOciSpec(config({ env: ['A=1'], tty: true, user: 'www', readOnlyRootfs: true }), '/x/rootfs', {
    cgroupsPath: cgroupsPathFor('lab1/gantry', 'c1'), passwd: PASSWD, group: GROUP, nofile: 20000,
  });
  assert.ok(r.ok);
  const s = r.spec;
  assert.equal(s.linux.cgroupsPath, '/lab1/gantry/c1');
  assert.equal(cgroupsPathFor('gantry', 'x'), '/gantry/x');
  assert.deepEqual(s.process.env, [DEFAULT_PATH, 'HOSTNAME=h1', 'TERM=xterm', 'A=1', 'HOME=/var/www']);
  assert.deepEqual(s.process.user, { uid: 33, gid: 33 });
  assert.equal(s.process.terminal, true);
  assert.equal(s.process.noNewPrivileges, false);
  assert.deepEqual(s.process.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 20000, soft: 20000 }]);
  assert.deepEqual(s.root, { path: '/x/rootfs', readonly: true });
  assert.deepEqual(s.mounts.map((m) => m.destination), ['/proc', '/dev', '/dev/pts', '/sys', '/sys/fs/cgroup', '/dev/mqueue', '/dev/shm']);
  assert.ok(s.mounts.find((m) => m.destination === '/sys')!.options!.includes('ro'));
  assert.ok(s.linux.maskedPaths.includes('/proc/kcore'));
  assert.ok(s.linux.readonlyPaths.includes('/proc/sys'));
  assert.deepEqual(s.linux.namespaces.map((n) => n.type).sort(), ['cgroup', 'ipc', 'mount', 'network', 'pid', 'uts']);
  assert.deepEqual(s.linux.devices.map((d) => d.path), ['/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom', '/dev/tty']);
  const host = buildOciSpec(config({ network: { mode: 'host' } }), '/r', { cgroupsPath: '/g/c1' });
  assert.ok(host.ok && !host.spec.linux.namespaces.some((n) => n.type === 'network'));
  const path = buildOciSpec(config({ network: { mode: 'path', path: '/run/netns/x' } }), '/r', { cgroupsPath: '/g/c1' });
  assert.ok(path.ok);
  assert.deepEqual(path.spec.linux.namespaces.find((n) => n.type === 'network'), { type: 'network', path: '/run/netns/x' });
});

test('bundle: seccomp denies by default, blocks namespace clone, opens mount with SYS_ADMIN', () => {
  const r = buildOciSpec(config(), '/r', { cgroupsPath: '/g/c1', arch: 'x64' });
  assert.ok(r.ok);
  const sc = r.spec.linux.seccomp;
  assert.equal(sc.defaultAction, 'SCMP_ACT_ERRNO');
  assert.equal(sc.defaultErrnoRet, 1);
  const allowed = new Set(sc.syscalls.filter((s) => s.action === 'SCMP_ACT_ALLOW' && !s.args).flatMap((s) => s.names));
  for (const n of ['read', 'write', 'execve', 'socket', 'arch_prctl']) assert.ok(allowed.has(n), n);
  for (const n of ['mount', 'unshare', 'setns', 'reboot', 'clone', 'init_module']) assert.ok(!allowed.has(n), n);
  const clone = sc.syscalls.find((s) => s.names.includes('clone'))!;
  assert.deepEqual(clone.args, [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }]);
  const admin = buildOciSpec(config({ capAdd: ['SYS_ADMIN'] }), '/r', { cgroupsPath: '/g/c1', arch: 'x64' });
  assert.ok(admin.ok);
  const adminAllowed = new Set(admin.spec.linux.seccomp.syscalls.filter((s) => s.action === 'SCMP_ACT_ALLOW' && !s.args).flatMap((s) => s.names));
  for (const n of ['mount', 'unshare', 'setns', 'clone']) assert.ok(adminAllowed.has(n), n);
});

test('bundle: invalid input is a value that names the problem', () => {
  const cases: [Partial<ContainerConfig>, RegExp][] = [
    [{ args: [] }, /no command/],
    [{ cwd: 'rel' }, /must be absolute/],
    [{ capAdd: ['nope'] }, /unknown capability/],
    [{ user: 'ghost' }, /user "ghost" not found/],
  ];
  for (const [over, re] of cases) {
    const r = buildOciSpec(config(over), '/r', { cgroupsPath: '/g/c1', passwd: PASSWD });
    assert.ok(!r.ok);
    assert.match(r.error, re);
  }
});

test('bundle: mounts and files become bind/tmpfs mounts', () => {
  const r = buildOciSpec(config({
    mounts: [{ type: 'bind', source: '/data', target: '/d', readOnly: true }, { type: 'tmpfs', source: '', target: '/t', readOnly: false }],
    files: [{ path: '/etc/hosts', content: '127.0.0.1 x\n' }],
  }), '/r', { cgroupsPath: '/g/c1', fileSources: { '/etc/hosts': '/state/c1/files/etc_hosts' } });
  assert.ok(r.ok);
  const by = Object.fromEntries(r.spec.mounts.map((m) => [m.destination, m]));
  assert.deepEqual(by['/d'], { destination: '/d', type: 'bind', source: '/data', options: ['rbind', 'ro'] });
  assert.equal(by['/t'].type, 'tmpfs');
  assert.equal(by['/etc/hosts'].source, '/state/c1/files/etc_hosts');
});

test('bundle: no hooks (gantryd starts gantry-exec containers through the exec fifo, which runs no postStart hook: exec-fifo.ts)', () => {
  const r = buildOciSpec(config({ env: ['A=1'], tty: true }), '/r', { cgroupsPath: '/gantry/c1' });
  assert.ok(r.ok);
  assert.equal((r.spec as { hooks?: unknown }).hooks, undefined);
});
