// Spawner (spawner.ts) against its real helpers: gantry-spawn (C, the default) and the Node spawner-child.ts
// (GANTRY_SPAWNER=node and the fallback): commands, limits, helper deaths, overlay mounts (root), fallbacks.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { mountsUnder } from './rootfs-mount.ts';
import { type HelperKind, Spawner, spawnHelperPath } from './spawner.ts';

const BIN = spawnHelperPath();
if (!existsSync(BIN)) spawnSync('flock', [new URL('../../native-exec/.build.lock', import.meta.url).pathname, 'make', '-s', '-C', new URL('../../native-exec', import.meta.url).pathname, 'build/gantry-spawn'], { stdio: 'inherit' });

/** A Spawner on the given helper; fails the test when the native one is not what runs. */
function spawnerOf(kind: HelperKind, helpers = 1): Spawner {
  const sp = new Spawner(helpers, { kind });
  assert.equal(sp.helperKind(), kind, `${BIN} is missing: build it with make -C native-exec`);
  return sp;
}

const until = async (what: string, ok: () => boolean, ms = 10_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

const alive = (pid: number): boolean => {
  try {
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

for (const kind of ['native', 'node'] as const) {
  test(`spawner (${kind}): runs a command in a helper and returns its exit code, stdout and stderr`, async (t) => {
    const sp = spawnerOf(kind, 2);
    t.after(() => sp.close());
    assert.deepEqual(await sp.run('/bin/sh', ['-c', 'echo out; echo err >&2; exit 3']), { code: 3, stdout: 'out\n', stderr: 'err\n' });
    assert.deepEqual(await sp.run('true', []), { code: 0, stdout: '', stderr: '' }, 'found on PATH, like execFile');
    const cwd = await sp.run('/bin/pwd', [], { cwd: '/tmp' });
    assert.equal(cwd.stdout, '/tmp\n');
    assert.equal((await sp.run('/bin/cat', [], { input: 'fed on stdin\n' })).stdout, 'fed on stdin\n');
    assert.equal((await sp.run('/bin/cat', [])).stdout, '', 'no input: stdin is empty');
    const big = 'x'.repeat(1 << 20); // more than a pipe holds: written as the command reads
    assert.equal((await sp.run('/usr/bin/wc', ['-c'], { input: big })).stdout.trim(), String(big.length));
    const utf = await sp.run('/bin/printf', ['h\\303\\251 "q" \\\\ \\t']);
    assert.equal(utf.stdout, 'hé "q" \\ \t');
    const killed = await sp.run('/bin/sh', ['-c', 'echo dying >&2; kill -9 $$']);
    assert.equal(killed.code, 128 + 9);
    assert.equal(killed.stderr, 'dying\n');
    const quiet = await sp.run('/bin/sh', ['-c', 'kill -9 $$']);
    assert.match(quiet.stderr, /Command failed: \/bin\/sh -c kill -9 \$\$\nkilled by SIGKILL/);
  });

  test(`spawner (${kind}): a missing binary, a missing cwd, a timeout and too much output are failed results with the reason`, async (t) => {
    const sp = spawnerOf(kind);
    t.after(() => sp.close());
    const missing = await sp.run('/nonexistent/bin', []);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, 'spawn /nonexistent/bin ENOENT', 'exactly execFile\'s text: worker/network/sys.ts matches it');
    const nocwd = await sp.run('/bin/pwd', [], { cwd: '/nonexistent-dir' });
    assert.equal(nocwd.code, 1);
    assert.match(nocwd.stderr, /ENOENT/);
    const slow = await sp.run('/bin/sleep', ['5'], { timeoutMs: 100 });
    assert.equal(slow.code, 128 + 15);
    assert.match(slow.stderr, /Command failed: \/bin\/sleep 5\ntimed out after 100 ms \(SIGTERM sent\)/);
    const loud = await sp.run('/bin/sh', ['-c', 'head -c 100000 /dev/zero; exec sleep 30'], { maxBuffer: 1000 });
    assert.equal(loud.code, 1);
    assert.equal(loud.stdout.length, 1000, 'output up to maxBuffer is kept');
    // stderr is empty, so the reason shows
    assert.match(loud.stderr, /stdout maxBuffer length exceeded/);
  });

  test(`spawner (${kind}): 50 concurrent calls each get their own answer`, async (t) => {
    const sp = spawnerOf(kind);
    t.after(() => sp.close());
    // later calls finish first: answers come back out of order and must still match
    const many = await Promise.all(
      Array.from({ length: 50 }, (_, i) => sp.run('/bin/sh', ['-c', `sleep 0.${(50 - i) % 10}; echo ${i}; echo e${i} >&2; exit ${i % 7}`])),
    );
    assert.deepEqual(many, Array.from({ length: 50 }, (_, i) => ({ code: i % 7, stdout: `${i}\n`, stderr: `e${i}\n` })));
  });

  test(`spawner (${kind}): a call in flight when the helper is killed fails with the reason; the next call starts a new helper`, async (t) => {
    const sp = spawnerOf(kind);
    t.after(() => sp.close());
    const inflight = sp.run('/bin/sleep', ['2']);
    await until('the helper to start', () => sp.helperPids().length === 1);
    const [first] = sp.helperPids();
    await new Promise((r) => setTimeout(r, 100));
    process.kill(first, 'SIGKILL');
    const r = await inflight;
    assert.equal(r.code, 1);
    assert.match(r.stderr, /the spawner helper exited \(SIGKILL\) before the call finished/);
    assert.equal((await sp.run('/bin/echo', ['again'])).stdout, 'again\n');
    assert.notEqual(sp.helperPids()[0], first);
    assert.equal(sp.helperKind(), kind);
  });

  test(`spawner (${kind}): a detached grandchild (as gantry-exec monitor) outlives the helper`, async (t) => {
    const sp = spawnerOf(kind);
    const dir = mkdtempSync(join(tmpdir(), 'spawner-detach-'));
    let pid = 0;
    t.after(() => {
      sp.close();
      if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    });
    // the monitor's way: fork, setsid, fork again, stdio away from the caller's pipes
    const script = `(setsid sh -c 'echo $$ > ${dir}/pid; exec sleep 60' </dev/null >/dev/null 2>&1 &); echo started`;
    assert.deepEqual(await sp.run('/bin/sh', ['-c', script]), { code: 0, stdout: 'started\n', stderr: '' });
    await until('the grandchild to write its pid', () => existsSync(join(dir, 'pid')) && readFileSync(join(dir, 'pid'), 'utf8').endsWith('\n'));
    pid = Number(readFileSync(join(dir, 'pid'), 'utf8'));
    const [helper] = sp.helperPids();
    process.kill(helper, 'SIGKILL');
    await until('the helper to die', () => !alive(helper));
    assert.ok(alive(pid), `grandchild ${pid} died with the helper`);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(alive(pid), `grandchild ${pid} died after the helper`);
  });

  test(`spawner (${kind}): the mounter mounts an overlay rootfs, visible here, and unmounts it; missing layers and double mounts are refused`, async (t) => {
    const sp = spawnerOf(kind);
    const dir = mkdtempSync(join(tmpdir(), 'spawner-mount-'));
    const containerDir = join(dir, 'c');
    const m = sp.mounter();
    t.after(async () => {
      for (const p of await mountsUnder(dir)) spawnSync('umount', ['-l', p]);
      sp.close();
      rmSync(dir, { recursive: true, force: true });
    });
    for (const [layer, files] of [['base', { hello: 'from the base\n', shadowed: 'base\n' }], ['top', { shadowed: 'top\n' }]] as const) {
      mkdirSync(join(dir, layer));
      for (const [f, c] of Object.entries(files)) writeFileSync(join(dir, layer, f), c);
    }
    mkdirSync(containerDir);
    const opts = { lowerDirs: [join(dir, 'base'), join(dir, 'top')], containerDir, volatile: true };
    const mounted = await m.mountRootfs(opts);
    assert.equal(mounted.rootfs, join(containerDir, 'rootfs'));
    assert.equal(readFileSync(join(mounted.rootfs, 'hello'), 'utf8'), 'from the base\n');
    assert.equal(readFileSync(join(mounted.rootfs, 'shadowed'), 'utf8'), 'top\n', 'the last lower dir is the topmost');
    assert.equal(readlinkSync(join(containerDir, 'l', '1')), join(dir, 'top'));
    assert.ok(existsSync(join(containerDir, 'l', 'empty')));
    writeFileSync(join(mounted.rootfs, 'written'), 'by the container\n');
    assert.equal(readFileSync(join(containerDir, 'upper', 'written'), 'utf8'), 'by the container\n');
    assert.deepEqual(await mountsUnder(mounted.rootfs), [mounted.rootfs]);
    await assert.rejects(m.mountRootfs(opts), { message: `${mounted.rootfs} is already mounted; unmountRootfs("${containerDir}") first` });
    // a mount below the rootfs (as a container's /proc) goes first
    mkdirSync(join(mounted.rootfs, 'sub'));
    assert.equal(spawnSync('mount', ['-t', 'tmpfs', 'tmpfs', join(mounted.rootfs, 'sub')]).status, 0);
    await mounted.unmount();
    assert.deepEqual(await mountsUnder(mounted.rootfs), []);
    await m.unmountRootfs(containerDir); // nothing mounted: a no-op
    // again on the same dirs: the volatile overlay's work/work/incompat must have been cleared
    const again = await m.mountRootfs(opts);
    assert.equal(readFileSync(join(again.rootfs, 'written'), 'utf8'), 'by the container\n');
    await again.unmount();
    await assert.rejects(m.mountRootfs({ lowerDirs: [join(dir, 'missing')], containerDir, volatile: true }), {
      message: `layer directory ${join(dir, 'missing')} does not exist`,
    });
    assert.deepEqual(await mountsUnder(containerDir), []);
    // with a disk dir: the container's writes land there (twice: the volatile leftovers are cleared there too)
    const diskDir = join(dir, 'disk');
    for (let i = 0; i < 2; i++) {
      const onDisk = await m.mountRootfs({ ...opts, diskDir });
      writeFileSync(join(onDisk.rootfs, `disk${i}`), 'x\n');
      assert.ok(existsSync(join(diskDir, 'upper', `disk${i}`)));
      await onDisk.unmount();
    }
  });
}

test('spawner: without gantry-spawn (missing, or not executable) calls go to the Node helper', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spawner-fallback-'));
  const missing = new Spawner(1, { binary: join(dir, 'gantry-spawn') });
  const notExec = join(dir, 'not-executable');
  writeFileSync(notExec, 'not a program\n', { mode: 0o644 });
  const broken = new Spawner(1, { binary: notExec, kind: 'native' });
  t.after(() => {
    missing.close();
    broken.close();
    rmSync(dir, { recursive: true, force: true });
  });
  assert.equal(missing.helperKind(), 'node');
  assert.equal((await missing.run('/bin/echo', ['ok'])).stdout, 'ok\n');
  assert.equal(broken.helperKind(), 'native');
  // the spawn fails (EACCES) after the call was queued: it is sent again to the Node helper, not failed
  assert.deepEqual(await broken.run('/bin/echo', ['still ok']), { code: 0, stdout: 'still ok\n', stderr: '' });
  assert.equal(broken.helperKind(), 'node');
});
