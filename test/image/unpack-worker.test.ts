// Layers unpacked on a worker thread (what pull does with big layers) give exactly what this thread gives,
// and a malicious layer is refused there the same way: by entry name, with nothing written outside the root.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import * as zlib from 'node:zlib';
import { applyLayer, unpackLayer } from '../../worker/image/layer.ts';
import { Snapshots } from '../../worker/image/snapshots.ts';
import { ImageStore } from '../../worker/image/store.ts';
import { makeTar, skopeoPush, writeOciLayout } from '../helpers/busybox.ts';
import { startRegistry } from '../helpers/registry.ts';

async function setup(t: { after(fn: () => void | Promise<void>): void }): Promise<{ dir: string; wt: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-unpack-worker-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const snaps = await Snapshots.open(path.join(dir, 'snapshots'));
  return { dir, wt: snaps.whiteoutTemplate };
}

/** Every path under root with type, mode, owner, mtime, size, content hash or link target. */
function tree(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const n of fs.readdirSync(path.join(root, rel)).sort()) {
      const r = rel ? `${rel}/${n}` : n;
      const p = path.join(root, r);
      const st = fs.lstatSync(p);
      const what = st.isSymbolicLink() ? `-> ${fs.readlinkSync(p)}` : st.isFile() ? fs.readFileSync(p).toString('base64').slice(0, 40) : st.isCharacterDevice() ? `chr ${st.rdev}` : '';
      out.push(`${r} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.isDirectory() ? '' : Math.floor(st.mtimeMs / 1000)} ${st.size} ${st.nlink} ${what}`);
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

const big = Buffer.alloc(3 << 20);
for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);

const layer = makeTar([
  { name: 'a/', type: 'dir', mode: 0o750, uid: 5, gid: 6, mtime: 1_600_000_000 },
  { name: 'a/big', type: 'file', data: big, mode: 0o644 },
  { name: 'a/suid', type: 'file', data: '#!', uid: 1000, gid: 1000, mode: 0o4755, mtime: 1_500_000_000 },
  { name: 'a/hl', type: 'hardlink', linkname: 'a/suid' },
  { name: 'a/sym', type: 'symlink', linkname: '../etc/passwd', uid: 33, gid: 33 },
  { name: 'deep/implied/file', type: 'file', data: 'implied parents' },
  { name: '.wh.gone', type: 'file' },
  { name: 'opq/', type: 'dir' },
  { name: 'opq/.wh..wh..opq', type: 'file' },
]);

test('unpack worker: a gzip layer unpacked on a worker thread equals the same layer unpacked here', async (t) => {
  const { dir, wt } = await setup(t);
  const gz = zlib.gzipSync(layer);
  const here = path.join(dir, 'here');
  const there = path.join(dir, 'there');
  fs.mkdirSync(here);
  fs.mkdirSync(there);
  const r1 = await applyLayer(Readable.from([gz]), 'gzip', { root: here, lowers: async () => [], whiteoutTemplate: wt });
  const chunks = Array.from({ length: Math.ceil(gz.length / 65536) }, (_, i) => gz.subarray(i * 65536, (i + 1) * 65536));
  const r2 = await unpackLayer(Readable.from(chunks), 'gzip', { root: there, lowers: async () => [], whiteoutTemplate: wt, onWorker: true });
  assert.equal(r1.threadId, 0);
  assert.notEqual(r2.threadId, 0, 'onWorker: the layer must have been applied on a worker thread');
  assert.equal(r2.diffId, r1.diffId);
  assert.equal(r2.entries, r1.entries);
  const a = tree(here);
  assert.ok(a.some((l) => l.startsWith('a/big 100644 0:0')), a.join('\n'));
  assert.deepEqual(tree(there), a);
});

test('unpack worker: a malicious layer is refused on the worker by entry name and writes nothing outside', async (t) => {
  const { dir, wt } = await setup(t);
  const outside = path.join(dir, 'OUTSIDE');
  fs.mkdirSync(outside);
  const root = path.join(dir, 'root');
  fs.mkdirSync(root);
  const evil = makeTar([
    { name: 'big', type: 'file', data: big },
    { name: 'evil', type: 'symlink', linkname: outside },
    { name: 'evil/pwned', type: 'file', data: 'x' },
  ]);
  await assert.rejects(
    unpackLayer(Readable.from([zlib.gzipSync(evil)]), 'gzip', { root, lowers: async () => [], whiteoutTemplate: wt, onWorker: true }),
    (e: Error) => {
      assert.equal(e.name, 'UnsafeEntryError');
      assert.match(e.message, /"evil\/pwned": path goes through symlink "evil" -> .* pointing outside/);
      return true;
    },
  );
  assert.deepEqual(fs.readdirSync(outside), []);
  // and the worker is fine for the next layer
  const ok = path.join(dir, 'ok');
  fs.mkdirSync(ok);
  const r = await unpackLayer(Readable.from([zlib.gzipSync(layer)]), 'gzip', { root: ok, lowers: async () => [], whiteoutTemplate: wt, onWorker: true });
  assert.notEqual(r.threadId, 0);
  assert.equal(fs.statSync(path.join(ok, 'a', 'big')).size, big.length);
});

test('unpack worker: a pull whose big layers all go to one worker, the upper ones needing the lower ones, completes', async (t) => {
  const { dir } = await setup(t);
  const reg = await startRegistry();
  t.after(() => reg.stop());
  const noise = (seed: number) => {
    const b = Buffer.alloc(3 << 20);
    for (let i = 0; i < b.length; i += 4) b.writeUInt32LE(((i + seed) * 2654435761) >>> 0, i);
    return b;
  };
  // layers 2 and 3 only name files under usr/lib: their usr/ and usr/lib/ are implied and take their owner,
  // mode and mtime from below at finish(), so they wait for layer 1, which must not wait for them in turn
  const layers = [
    makeTar([{ name: 'usr/', type: 'dir', mode: 0o711, uid: 3, gid: 4 }, { name: 'usr/lib/', type: 'dir', mode: 0o750 }, { name: 'usr/lib/one', type: 'file', data: noise(1) }]),
    makeTar([{ name: 'usr/lib/two', type: 'file', data: noise(2) }]),
    makeTar([{ name: 'usr/lib/three', type: 'file', data: noise(3) }, { name: 'usr/lib/link', type: 'hardlink', linkname: 'usr/lib/one' }]),
  ];
  const layout = path.join(dir, 'layout');
  writeOciLayout(layout, 'v1', layers, { compression: 'gzip' });
  await skopeoPush(layout, 'v1', `${reg.addr}/worker/app:v1`);
  const store = await ImageStore.open(path.join(dir, 'images'), { insecureRegistries: [reg.addr] });
  const prev = process.env.GANTRY_UNPACK_WORKERS;
  process.env.GANTRY_UNPACK_WORKERS = '1';
  t.after(() => {
    if (prev === undefined) delete process.env.GANTRY_UNPACK_WORKERS;
    else process.env.GANTRY_UNPACK_WORKERS = prev;
  });
  const info = await store.pull(`${reg.addr}/worker/app:v1`);
  await store.flush();
  const dirs = await store.snapshotDirs(info);
  assert.equal(dirs.length, 3);
  const top = dirs[2]; // lowest first
  const st = fs.statSync(path.join(top, 'usr'));
  assert.equal(st.mode & 0o7777, 0o711);
  assert.equal(`${st.uid}:${st.gid}`, '3:4');
  assert.equal(fs.statSync(path.join(top, 'usr', 'lib')).mode & 0o7777, 0o750);
  assert.ok(fs.readFileSync(path.join(top, 'usr', 'lib', 'link')).equals(noise(1)));
});
