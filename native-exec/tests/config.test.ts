// tests/config.test.ts — config.json features beyond the basics: joining namespaces by path,
// sysctl, extra devices, seccomp argument conditions, bind options, domainname, exec with a tty.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Harness, PROBE, tempDir, unique, waitFor } from './helpers.ts';

describe('gantry-exec config', () => {
  const h = new Harness();
  const netns = unique('gxns');
  after(() => {
    spawnSync('ip', ['netns', 'del', netns]);
    h.cleanup();
  });

  test('namespaces: joins an existing network namespace and another container pid namespace by path', () => {
    assert.equal(spawnSync('ip', ['netns', 'add', netns]).status, 0);
    const first = h.bundle(['sleep', '100']);
    assert.equal(h.gx(['create', '--bundle', first.bundle, first.id]).status, 0);
    const pid = h.state(first.id).pid;
    const { id, bundle } = h.bundle(['/bin/probe'], (s) => {
      s.linux.namespaces = s.linux.namespaces.map((n: { type: string }) =>
        n.type === 'network' ? { type: 'network', path: `/var/run/netns/${netns}` } : n.type === 'pid' ? { type: 'pid', path: `/proc/${pid}/ns/pid` } : n,
      );
    });
    const r = h.gx(['run', '--bundle', bundle, id]);
    assert.equal(r.status, 0, r.stderr);
    const p = JSON.parse(r.stdout);
    assert.equal(p.netns, `net:[${statSync(`/var/run/netns/${netns}`).ino}]`);
    assert.ok(p.pid > 1, 'not the pid namespace init: joined the first container');
    assert.ok(p.visiblePids >= 2, 'sees the first container init');
    assert.equal(h.gx(['delete', '--force', first.id]).status, 0);
  });

  test('config: sysctl, domainname, an extra device and bind options apply inside', () => {
    const data = tempDir('gx-data');
    h.dirs.push(data);
    writeFileSync(join(data, 'f'), 'x');
    const { id, bundle } = h.bundle(['sh', '-c', 'cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/domainname; ls -l /dev/fuse | cut -c1; touch /data/g 2>&1 | grep -c "Read-only"; grep " /data " /proc/self/mountinfo | grep -c "nosuid,nodev,noexec"'], (s) => {
      s.linux.sysctl = { 'net.ipv4.ip_forward': '1' };
      s.domainname = 'example.org';
      s.linux.devices = [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o666 }];
      s.mounts.push({ destination: '/data', type: 'bind', source: data, options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'] });
    });
    const r = h.gx(['run', '--bundle', bundle, id]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['1', 'example.org', 'c', '1', '1']);
  });

  test('config: a read-only bind mount with a propagation option (as Docker gives /etc/hosts) applies both', () => {
    const data = tempDir('gx-data');
    h.dirs.push(data);
    writeFileSync(join(data, 'hosts'), '127.0.0.1 localhost\n');
    const { id, bundle } = h.bundle(['sh', '-c', 'cat /etc/hosts; sh -c "echo x >> /etc/hosts" 2>&1 | grep -c "Read-only"'], (s) => {
      s.mounts.push({ destination: '/etc/hosts', type: 'bind', source: join(data, 'hosts'), options: ['rbind', 'ro', 'rprivate'] });
    });
    const r = h.gx(['run', '--bundle', bundle, id]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['127.0.0.1 localhost', '1']);
  });

  test('seccomp: argument conditions only match the given value', () => {
    const { id, bundle } = h.bundle(['/bin/probe'], (s) => {
      s.linux.seccomp = {
        defaultAction: 'SCMP_ACT_ALLOW',
        architectures: ['SCMP_ARCH_X86_64'],
        flags: ['SECCOMP_FILTER_FLAG_SPEC_ALLOW'],
        syscalls: [{ names: ['personality'], action: 'SCMP_ACT_ERRNO', errnoRet: 1, args: [{ index: 0, value: 4294967295, op: 'SCMP_CMP_EQ' }] },
          { names: ['mount'], action: 'SCMP_ACT_ERRNO', args: [{ index: 3, value: 1, op: 'SCMP_CMP_MASKED_EQ', valueTwo: 1 }] }],
      };
    });
    const r = h.gx(['run', '--bundle', bundle, id]);
    assert.equal(r.status, 0, r.stderr);
    const p = JSON.parse(r.stdout);
    assert.equal(p.personality, 'EPERM', 'errnoRet 1 = EPERM for the matching argument');
    const { id: id2, bundle: b2 } = h.bundle(['sh', '-c', 'echo ok'], (s) => {
      s.linux.seccomp = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['personality'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 4294967295, op: 'SCMP_CMP_EQ' }] }] };
    });
    assert.equal(h.gx(['run', '--bundle', b2, id2]).stdout, 'ok\n', 'other values of the argument still work');
  });

  test('exec: --tty sends a pty to the console socket', async () => {
    const { id, bundle } = h.bundle(['sleep', '100']);
    assert.equal(h.gx(['create', '--bundle', bundle, id]).status, 0);
    assert.equal(h.gx(['start', id]).status, 0);
    const sock = join(bundle, 'exec-console.sock');
    const server = spawn(PROBE, ['--recv-console', sock], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    server.stdout.on('data', (d) => { out += d; });
    try {
      await waitFor(() => (out.includes('listening') ? null : 'console server not listening'));
      const r = h.gx(['exec', '--tty', '--console-socket', sock, id, '/bin/probe']);
      assert.equal(r.status, 0, r.stderr);
      await waitFor(() => (out.includes('"paths"') ? null : `no probe output yet: ${out}`));
      assert.deepEqual(JSON.parse(out.slice(out.indexOf('{')).trim()).isatty, [1, 1, 1]);
    } finally {
      server.kill('SIGKILL');
    }
    assert.equal(h.gx(['delete', '--force', id]).status, 0);
    assert.deepEqual(h.leftovers(id, bundle), []);
  });
});
