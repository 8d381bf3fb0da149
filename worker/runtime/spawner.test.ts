import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { mountsUnder } from './rootfs-mount.ts';
import { Spawner } from './spawner.ts';

test('spawner: runs a command in a helper and returns its exit code, stdout and stderr', async (t) => {
  const sp = new Spawner(2);
  t.after(() => sp.close());
  assert.deepEqual(await sp.run('/bin/sh', ['-c', 'echo out; echo err >&2; exit 3']), { code: 3, stdout: 'out\n', stderr: 'err\n' });
  const many = await Promise.all(Array.from({ length: 20 }, (_, i) => sp.run('/bin/sh', ['-c', `echo ${i}`])));
  assert.deepEqual(many.map((r) => r.stdout), Array.from({ length: 20 }, (_, i) => `${i}\n`));
  const cwd = await sp.run('/bin/pwd', [], { cwd: '/tmp' });
  assert.equal(cwd.stdout, '/tmp\n');
  assert.equal((await sp.run('/bin/cat', [], { input: 'fed on stdin\n' })).stdout, 'fed on stdin\n');
});

test('spawner: a missing binary or a timeout is a failed result with the reason, not a throw', async (t) => {
  const sp = new Spawner();
  t.after(() => sp.close());
  const missing = await sp.run('/nonexistent/bin', []);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /ENOENT/);
  const slow = await sp.run('/bin/sleep', ['5'], { timeoutMs: 100 });
  assert.notEqual(slow.code, 0);
  assert.match(slow.stderr, /sleep/);
});

test('spawner: calls in flight when the helper dies fail with the reason; the next call starts a new helper', async (t) => {
  const sp = new Spawner();
  t.after(() => sp.close());
  const inflight = sp.run('/bin/sleep', ['1']);
  await new Promise((r) => setTimeout(r, 200));
  sp.close();
  const r = await inflight;
  assert.equal(r.code, 1);
  assert.match(r.stderr, /spawner helper/);
  assert.equal((await sp.run('/bin/echo', ['again'])).stdout, 'again\n');
});

test('spawner: the mounter mounts an overlay rootfs in the helper, visible here, and unmounts it', async (t) => {
  const sp = new Spawner();
  const dir = mkdtempSync(join(tmpdir(), 'spawner-mount-'));
  const containerDir = join(dir, 'c');
  const m = sp.mounter();
  t.after(async () => {
    await m.unmountRootfs(containerDir).catch(() => {});
    sp.close();
    rmSync(dir, { recursive: true, force: true });
  });
  mkdirSync(join(dir, 'lower'));
  writeFileSync(join(dir, 'lower', 'hello'), 'from the image\n');
  mkdirSync(containerDir);
  const mounted = await m.mountRootfs({ lowerDirs: [join(dir, 'lower')], containerDir, volatile: true });
  assert.equal(readFileSync(join(mounted.rootfs, 'hello'), 'utf8'), 'from the image\n');
  assert.deepEqual(await mountsUnder(mounted.rootfs), [mounted.rootfs]);
  await mounted.unmount();
  assert.deepEqual(await mountsUnder(mounted.rootfs), []);
  await assert.rejects(m.mountRootfs({ lowerDirs: [join(dir, 'missing')], containerDir, volatile: true }), /missing/);
});
