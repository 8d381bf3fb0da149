// Layer unpacking: OCI whiteouts/opaque dirs as overlay whiteouts, links, ownership, modes, mtimes and xattrs,
// checked through a real overlay mount; malicious tars refused by name with nothing written outside.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { mountRootfs, unmountRootfs } from '../../worker/rootfs/overlay.ts';
import { applyLayer } from '../../worker/image/layer.ts';
import { ImageStore } from '../../worker/image/store.ts';
import { makeTar } from '../helpers/busybox.ts';

function tmpdir(t: { after(fn: () => void | Promise<void>): void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-unpack-'));
  t.after(async () => {
    await unmountRootfs(path.join(d, 'ctr')).catch(() => {});
    fs.rmSync(d, { recursive: true, force: true });
  });
  return d;
}

function getfattr(p: string, name: string): string | undefined {
  try {
    return execFileSync('getfattr', ['-h', '--only-values', '-n', name, p], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return undefined;
  }
}

test('unpack: whiteouts, opaque dirs, links, owners, modes, mtimes and xattrs through an overlay mount', async (t) => {
  const dir = tmpdir(t);
  const store = await ImageStore.open(path.join(dir, 'images'));
  const l1 = makeTar([
    { name: 'a/', type: 'dir', mode: 0o755 },
    { name: 'a/1', type: 'file', data: 'one' },
    { name: 'a/2', type: 'file', data: 'two', uid: 1234, gid: 5678, mode: 0o640, mtime: 1_500_000_000 },
    { name: 'b/', type: 'dir', mode: 0o700, uid: 7, gid: 8 },
    { name: 'b/x', type: 'file', data: 'x' },
    { name: 'c', type: 'file', data: 'see' },
    { name: 'suid', type: 'file', data: '#!', uid: 1000, gid: 1000, mode: 0o4755 },
    { name: 'hl', type: 'hardlink', linkname: 'a/1' },
    { name: 'sym', type: 'symlink', linkname: '/etc/shadow', uid: 33, gid: 33 },
    { name: 'attr', type: 'file', data: 'x', xattrs: new Map([['user.test', Buffer.from('hello')]]) },
    { name: 'deep/implied/file', type: 'file', data: 'implied parents' },
  ]);
  const l2 = makeTar([
    { name: '.wh.c', type: 'file' },
    { name: 'a/.wh.1', type: 'file' },
    { name: 'b/.wh..wh..opq', type: 'file' },
    { name: 'b/y', type: 'file', data: 'y' },
    { name: 'lowerlink', type: 'hardlink', linkname: 'a/2' },
  ]);
  const s1 = path.join(dir, 's1');
  const s2 = path.join(dir, 's2');
  fs.mkdirSync(s1);
  fs.mkdirSync(s2);
  const wt = store.snapshots.whiteoutTemplate;
  const r1 = await applyLayer(Readable.from([l1]), 'none', { root: s1, lowers: async () => [], whiteoutTemplate: wt });
  const r2 = await applyLayer(Readable.from([l2]), 'none', { root: s2, lowers: async () => [s1], whiteoutTemplate: wt });
  assert.match(r1.diffId, /^sha256:[a-f0-9]{64}$/);
  assert.equal(r2.entries, 5);

  // layer 1 as written
  const a2 = fs.statSync(path.join(s1, 'a/2'));
  assert.equal(a2.uid, 1234);
  assert.equal(a2.gid, 5678);
  assert.equal(a2.mode & 0o7777, 0o640);
  assert.equal(a2.mtimeMs, 1_500_000_000_000);
  assert.equal(fs.statSync(path.join(s1, 'suid')).mode & 0o7777, 0o4755);
  assert.equal(fs.statSync(path.join(s1, 'b')).mode & 0o7777, 0o700);
  assert.equal(fs.statSync(path.join(s1, 'hl')).ino, fs.statSync(path.join(s1, 'a/1')).ino);
  assert.equal(fs.readlinkSync(path.join(s1, 'sym')), '/etc/shadow');
  assert.equal(fs.lstatSync(path.join(s1, 'sym')).uid, 33);
  assert.equal(getfattr(path.join(s1, 'attr'), 'user.test'), 'hello');
  assert.equal(fs.readFileSync(path.join(s1, 'deep/implied/file'), 'utf8'), 'implied parents');
  // layer 2 in overlay form
  const wc = fs.lstatSync(path.join(s2, 'c'));
  assert.ok(wc.isCharacterDevice() && wc.rdev === 0, 'whiteout is a char 0/0 device');
  assert.equal(getfattr(path.join(s2, 'b'), 'trusted.overlay.opaque'), 'y');
  assert.equal(fs.readFileSync(path.join(s2, 'lowerlink'), 'utf8'), 'two');
  assert.equal(fs.statSync(path.join(s2, 'lowerlink')).uid, 1234);
  assert.equal(fs.statSync(path.join(s2, 'b')).mode & 0o7777, 0o700, 'implied dir takes the lower attributes');

  const m = await mountRootfs({ lowerDirs: [s1, s2], containerDir: path.join(dir, 'ctr') });
  try {
    const ls = (p: string) => fs.readdirSync(path.join(m.rootfs, p)).sort();
    assert.deepEqual(ls('a'), ['2']);
    assert.deepEqual(ls('b'), ['y']);
    assert.equal(fs.existsSync(path.join(m.rootfs, 'c')), false);
    assert.equal(fs.readFileSync(path.join(m.rootfs, 'lowerlink'), 'utf8'), 'two');
    fs.writeFileSync(path.join(m.rootfs, 'new'), 'container write');
  } finally {
    await m.unmount();
  }
  assert.equal(fs.readFileSync(path.join(dir, 'ctr', 'upper', 'new'), 'utf8'), 'container write');
  assert.equal(fs.existsSync(path.join(s1, 'new')), false);
  await unmountRootfs(path.join(dir, 'ctr')); // idempotent
});

const malicious: Array<[string, Parameters<typeof makeTar>[0], RegExp]> = [
  ['dot-dot path', [{ name: '../../escaped', type: 'file', data: 'x' }], /"\.\.\/\.\.\/escaped": path with "\.\." refused/],
  ['absolute path', [{ name: '/OUTSIDE/abs', type: 'file', data: 'x' }], /"\/OUTSIDE\/abs": absolute path refused/],
  ['file through symlink to outside', [{ name: 'evil', type: 'symlink', linkname: '/OUTSIDE' }, { name: 'evil/pwned', type: 'file', data: 'x' }], /"evil\/pwned": path goes through symlink "evil" -> "\/OUTSIDE" pointing outside/],
  ['relative symlink escape', [{ name: 'd/', type: 'dir' }, { name: 'd/up', type: 'symlink', linkname: '../../../../OUTSIDE' }, { name: 'd/up/pwned', type: 'file', data: 'x' }], /"d\/up\/pwned": path goes through symlink "d\/up"/],
  ['dir through symlink', [{ name: 'evil', type: 'symlink', linkname: '/OUTSIDE' }, { name: 'evil/sub/', type: 'dir' }], /"evil\/sub\/": path goes through symlink/],
  ['hard link to a file outside (..)', [{ name: 'h', type: 'hardlink', linkname: '../../../OUTSIDE/secret' }], /"h" hard link target "\.\.\/\.\.\/\.\.\/OUTSIDE\/secret": path with "\.\." refused/],
  ['hard link to a file outside (absolute)', [{ name: 'h', type: 'hardlink', linkname: '/OUTSIDE/secret' }], /hard link target "\/OUTSIDE\/secret": absolute path refused/],
  ['hard link through a symlink', [{ name: 's', type: 'symlink', linkname: '/OUTSIDE' }, { name: 'h', type: 'hardlink', linkname: 's/secret' }], /"h": hard link target "s\/secret" goes through symlink "s"/],
  ['whiteout through a symlink', [{ name: 's', type: 'symlink', linkname: '/OUTSIDE' }, { name: 's/.wh.secret', type: 'file' }], /"s\/\.wh\.secret": path goes through symlink "s"/],
];

for (const [name, entries, want] of malicious) {
  test(`unpack: refuses a malicious layer (${name}) and keeps nothing`, async (t) => {
    const dir = tmpdir(t);
    const outside = path.join(dir, 'OUTSIDE');
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, 'secret'), 'secret');
    const rewrite = (s: string | undefined) => s?.replace('/OUTSIDE', outside);
    const tar = makeTar(entries.map((e) => ({ ...e, linkname: e.type === 'symlink' ? rewrite(e.linkname) : e.linkname })));
    const store = await ImageStore.open(path.join(dir, 'images'));
    await assert.rejects(store.importRootfs(Readable.from([tar]), 'evil:1'), (e: Error) => {
      assert.match(e.message.replace(outside, '/OUTSIDE'), want);
      assert.match(e.message, /^import of evil:1: layer entry/);
      return true;
    });
    assert.deepEqual(fs.readdirSync(outside), ['secret'], 'nothing written outside');
    assert.equal(fs.readFileSync(path.join(outside, 'secret'), 'utf8'), 'secret');
    assert.equal(fs.statSync(path.join(outside, 'secret')).nlink, 1, 'no hard link made to the outside file');
    assert.equal(await store.resolveLocal('evil:1'), undefined);
    assert.deepEqual(await store.snapshots.list(), []);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'images', 'snapshots')).filter((n) => n.startsWith('tmp-')), []);
    assert.deepEqual(await store.content.list(), []);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'images', 'ingest')), []);
  });
}

test('unpack: a directory replaced by a symlink later in the layer takes no deferred work outside', async (t) => {
  const dir = tmpdir(t);
  const outside = path.join(dir, 'OUTSIDE');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'b'), 'host file');
  fs.utimesSync(outside, 1000, 1000);
  fs.utimesSync(path.join(outside, 'b'), 1000, 1000);
  const tar = makeTar([
    { name: 'a/', type: 'dir', mtime: 1_234_567_890 },
    { name: 'a/b', type: 'file', data: 'x', xattrs: new Map([['user.evil', Buffer.from('1')]]) },
    { name: 'a/.wh..wh..opq', type: 'file' },
    { name: 'a', type: 'symlink', linkname: outside },
  ]);
  const store = await ImageStore.open(path.join(dir, 'images'));
  const info = await store.importRootfs(Readable.from([tar]), 'replaced:1');
  const [snap] = await store.snapshotDirs(info);
  assert.equal(fs.readlinkSync(path.join(snap, 'a')), outside);
  assert.equal(fs.statSync(outside).mtimeMs, 1_000_000, 'outside dir mtime untouched');
  assert.equal(fs.statSync(path.join(outside, 'b')).mtimeMs, 1_000_000);
  assert.equal(getfattr(path.join(outside, 'b'), 'user.evil'), undefined, 'no xattr set outside');
  assert.equal(getfattr(outside, 'trusted.overlay.opaque'), undefined);
});
