// tests/errors.test.ts — bad configs and failures at each stage of create: a non-zero exit, one
// line naming the failed call and path/value, and nothing left behind.
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Harness, type Spec } from './helpers.ts';

describe('gantry-exec errors', () => {
  const h = new Harness();
  after(() => h.cleanup());

  const cases: { name: string; edit?: (s: Spec) => void; bundle?: (dir: string) => void; message: RegExp }[] = [
    { name: 'missing rootfs', bundle: (d) => rmSync(join(d, 'rootfs'), { recursive: true }), message: /rootfs `.*\/rootfs`: ENOENT/ },
    { name: 'bad JSON', bundle: (d) => writeFileSync(join(d, 'config.json'), '{"process": {"args": ["true"],}'), message: /invalid JSON in .*config\.json at line 1 col \d+/ },
    { name: 'unknown namespace', edit: (s) => s.linux.namespaces.push({ type: 'bogus' }), message: /unknown namespace type `bogus`/ },
    { name: 'invalid seccomp action', edit: (s) => { s.linux.seccomp = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mount'], action: 'SCMP_ACT_EXPLODE' }] }; }, message: /seccomp: unknown action `SCMP_ACT_EXPLODE`/ },
    { name: 'invalid seccomp operator', edit: (s) => { s.linux.seccomp = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mount'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 1, op: 'SCMP_CMP_SOMETIMES' }] }] }; }, message: /seccomp: unknown argument operator `SCMP_CMP_SOMETIMES`/ },
    { name: 'unknown capability', edit: (s) => s.process.capabilities.bounding.push('CAP_FLY'), message: /unknown capability `CAP_FLY`/ },
    { name: 'empty args', edit: (s) => { s.process.args = []; }, message: /process\.args must not be empty/ },
    { name: 'missing bind source (fails in the child, after clone)', edit: (s) => s.mounts.push({ destination: '/data', type: 'bind', source: '/nonexistent/gx-src', options: ['rbind'] }), message: /bind mount source `\/nonexistent\/gx-src`: ENOENT/ },
    { name: 'bad mount type (fails in the child)', edit: (s) => s.mounts.push({ destination: '/x', type: 'nosuchfs', source: 'x' }), message: /mount nosuchfs on `\/x`: ENODEV/ },
    { name: 'missing executable', edit: (s) => { s.process.args = ['/bin/nope']; }, message: /exec `\/bin\/nope`: ENOENT/ },
    { name: 'rlimit above the hard limit (no CAP_SYS_RESOURCE here)', edit: (s) => { s.process.rlimits = [{ type: 'RLIMIT_NOFILE', soft: 1 << 30, hard: 1 << 30 }]; }, message: /setrlimit RLIMIT_NOFILE soft=1073741824 hard=1073741824.*: EPERM/ },
    { name: 'bad sysctl', edit: (s) => { s.linux.sysctl = { 'net.nonexistent.key': '1' }; }, message: /sysctl open `\/proc\/sys\/net\/nonexistent\/key`: ENOENT/ },
  ];

  for (const c of cases) {
    test(`errors: ${c.name} fails create with one line and leaves nothing`, () => {
      const { id, bundle } = h.bundle(['true'], c.edit);
      c.bundle?.(bundle);
      const r = h.gx(['create', '--bundle', bundle, id]);
      assert.equal(r.status, 1, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
      assert.match(r.stderr, c.message);
      assert.match(r.stderr, /^gantry-exec: /);
      assert.deepEqual(h.leftovers(id, bundle), []);
    });
  }

  test('errors: an id with a slash is refused', () => {
    const r = h.gx(['create', '--bundle', '/tmp', '../evil']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /container id `..\/evil` has an invalid character/);
  });
});
