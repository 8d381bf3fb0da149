// tests/security.test.ts — what a container must not be able to do: see host processes, write
// /proc/sys, load modules, mount, use blocked syscalls, or reach host paths through `..`,
// symlinks or /proc/self/root; also user-namespace mapping.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Harness, tempDir } from './helpers.ts';

const BLOCKING_PROFILE = {
  defaultAction: 'SCMP_ACT_ALLOW',
  architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
  syscalls: [
    { names: ['unshare', 'keyctl', 'mount', 'finit_module', 'init_module'], action: 'SCMP_ACT_ERRNO' },
    // an argument condition: personality(0xffffffff) only
    { names: ['personality'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 4294967295, op: 'SCMP_CMP_EQ' }] },
  ],
};

describe('gantry-exec security', () => {
  const h = new Harness();
  after(() => h.cleanup());

  test('security: a default container cannot see host processes, write /proc/sys, load modules or mount', () => {
    const { id, bundle } = h.bundle(['/bin/probe']);
    const r = h.gx(['run', '--bundle', bundle, id]);
    assert.equal(r.status, 0, r.stderr);
    const p = JSON.parse(r.stdout);
    assert.equal(p.pid, 1);
    assert.ok(p.visiblePids <= 2, `sees ${p.visiblePids} pids`);
    assert.notEqual(p.procSysWrite, 'ok', '/proc/sys is read-only');
    assert.ok(['EPERM', 'ENOSYS'].includes(p.initModule), `init_module: ${p.initModule}`); // ENOSYS: kernel without modules
    assert.equal(p.mount, 'EPERM');
    assert.equal(p.procSelfRoot, '/');
    const root = p.mounts.find((m: { path: string }) => m.path === '/');
    assert.match(root.opts, /^ro/, 'root.readonly is honoured');
    const proc = p.mounts.find((m: { path: string }) => m.path === '/proc');
    assert.equal(proc.type, 'proc');
    assert.ok(p.mounts.some((m: { path: string }) => m.path === '/proc/keys'), 'maskedPaths are masked');
    const cgroupMounts = p.mounts.filter((m: { path: string }) => m.path.startsWith('/sys/fs/cgroup'));
    assert.ok(cgroupMounts.length > 1, 'the cgroup tmpfs and its hierarchies are mounted');
    for (const m of cgroupMounts) assert.match(m.opts, /^ro,nosuid,nodev,noexec/, `${m.path} is read-only`);
    assert.deepEqual(h.leftovers(id, bundle), []);
  });

  test('security: seccomp makes unshare, keyctl and mount fail with EPERM', () => {
    const { id, bundle } = h.bundle(['/bin/probe'], (s) => {
      s.linux.seccomp = BLOCKING_PROFILE;
      s.process.capabilities.bounding.push('CAP_SYS_ADMIN');
      s.process.capabilities.effective.push('CAP_SYS_ADMIN');
      s.process.capabilities.permitted.push('CAP_SYS_ADMIN');
    });
    const r = h.gx(['run', '--bundle', bundle, id]);
    assert.equal(r.status, 0, r.stderr);
    const p = JSON.parse(r.stdout);
    assert.equal(p.seccomp, '2', 'filter mode');
    assert.equal(p.unshare, 'EPERM');
    assert.equal(p.keyctl, 'EPERM');
    assert.equal(p.mount, 'EPERM', 'blocked even with CAP_SYS_ADMIN');
  });

  test('security: mount destinations and paths cannot escape the rootfs via .., symlinks or /proc/self/root', () => {
    const hostDir = tempDir('gx-host');
    h.dirs.push(hostDir);
    writeFileSync(join(hostDir, 'secret'), 'host');
    const src = tempDir('gx-src');
    h.dirs.push(src);
    const { id, bundle } = h.bundle(['/bin/probe', '--exists', `${hostDir}/secret`, '--exists', '/proc/self/root/../../secret', '--exists', '/evil/secret'], (s) => {
      s.root.readonly = false;
      s.mounts.push({ destination: '/evil', type: 'bind', source: src, options: ['rbind', 'ro'] });
      s.mounts.push({ destination: '/../../../../escape-dotdot', type: 'tmpfs', source: 'tmpfs', options: ['size=1k'] });
    });
    // a symlink in the rootfs pointing at the host dir: mounting over it must stay inside the rootfs
    symlinkSync(hostDir, join(bundle, 'rootfs', 'evil'));
    const r = h.gx(['run', '--bundle', bundle, id]);
    assert.equal(r.status, 0, r.stderr);
    const p = JSON.parse(r.stdout);
    assert.equal(p.paths[`${hostDir}/secret`], 'ENOENT');
    assert.equal(p.paths['/proc/self/root/../../secret'], 'ENOENT');
    assert.equal(p.paths['/evil/secret'], 'ENOENT', 'the bind landed inside the rootfs, not on the host dir');
    assert.ok(existsSync(join(bundle, 'rootfs', hostDir)), 'the symlink target was created inside the rootfs');
    assert.ok(!existsSync('/escape-dotdot'), 'a `..` destination stayed inside the rootfs');
    assert.deepEqual(readdirSync(hostDir), ['secret'], 'nothing mounted or created on the host dir');
    assert.deepEqual(h.leftovers(id, bundle), []);
  });

  test('security: a user namespace maps container root to an unprivileged host uid', () => {
    const { id, bundle } = h.bundle(['sh', '-c', 'cat /proc/self/uid_map; /bin/probe'], (s) => {
      s.linux.namespaces.push({ type: 'user' });
      s.linux.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
      s.linux.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
    });
    chmodSync(bundle, 0o755);
    const r = h.gx(['run', '--bundle', bundle, id]);
    assert.equal(r.status, 0, r.stderr);
    const [map, probe] = r.stdout.split('\n');
    assert.match(map, /^\s*0\s+100000\s+65536$/);
    const p = JSON.parse(probe);
    assert.equal(p.uid, 0);
    assert.ok(['EPERM', 'ENOSYS'].includes(p.initModule), `init_module: ${p.initModule}`); // ENOSYS: kernel without modules
    assert.deepEqual(h.leftovers(id, bundle), []);
  });

  test('exec: joins a user-namespaced container as its root', () => {
    const { id, bundle } = h.bundle(['sleep', '100'], (s) => {
      s.linux.namespaces.push({ type: 'user' });
      s.linux.uidMappings = [{ containerID: 0, hostID: 200000, size: 65536 }];
      s.linux.gidMappings = [{ containerID: 0, hostID: 200000, size: 65536 }];
    });
    chmodSync(bundle, 0o755);
    assert.equal(h.gx(['create', '--bundle', bundle, id]).status, 0);
    assert.equal(h.gx(['start', id]).status, 0);
    const r = h.gx(['exec', id, 'sh', '-c', 'id -u; cat /proc/self/uid_map']);
    assert.equal(r.status, 0, r.stderr);
    const [uid, map] = r.stdout.split('\n');
    assert.equal(uid, '0');
    assert.match(map, /^\s*0\s+200000\s+65536$/);
    assert.equal(h.gx(['delete', '--force', id]).status, 0);
    assert.deepEqual(h.leftovers(id, bundle), []);
  });

  void mkdirSync;
});
