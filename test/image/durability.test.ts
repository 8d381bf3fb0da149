// Crash consistency of the store: deferred durability (a fsynced `dirty` marker around writes, one syncfs after)
// re-verifies blobs and drops layers written since the marker on the next open; a torn index falls back.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { ImageStore } from '../../worker/image/store.ts';
import { busyboxRootfsTar, makeTar } from '../helpers/busybox.ts';

function tmpdir(t: { after(fn: () => void): void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-durable-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

test('durability: after a crash, blobs written since the dirty marker are re-verified and their layers dropped', async (t) => {
  const root = path.join(tmpdir(t), 'images');
  const s1 = await ImageStore.open(root);
  const info = await s1.importRootfs(Readable.from([busyboxRootfsTar({ applets: ['sh'] })]), 'bb:1');
  await s1.flush();
  assert.equal(fs.existsSync(path.join(root, 'dirty')), false, 'the marker goes once everything is synced');

  // a crash in the middle of a later write: marker present, the layer blob torn, the snapshot half there
  fs.writeFileSync(path.join(root, 'dirty'), '0');
  const blob = s1.content.path(info.layers[0].digest);
  fs.truncateSync(blob, 1000);
  const s2 = await ImageStore.open(root);
  assert.equal(fs.existsSync(path.join(root, 'dirty')), false);
  assert.equal(await s2.content.stat(info.layers[0].digest), undefined, 'the torn blob is gone');
  assert.ok(await s2.content.stat(info.configDigest), 'intact blobs stay');
  const again = await s2.resolveLocal('bb:1');
  assert.ok(again);
  await assert.rejects(s2.snapshotDirs(again), /layer 0 \(sha256:[a-f0-9]{64}\) is not unpacked; pull the image again/);
});

test('durability: a layer dropped by recovery is unpacked again from its verified blob', async (t) => {
  const root = path.join(tmpdir(t), 'images');
  const s1 = await ImageStore.open(root);
  const info = await s1.importRootfs(Readable.from([busyboxRootfsTar({ applets: ['sh'] })]), 'bb:1');
  await s1.flush();
  fs.writeFileSync(path.join(root, 'dirty'), '0');
  const s2 = await ImageStore.open(root);
  assert.deepEqual(await s2.snapshots.list(), [], 'recovery dropped the layer');
  const [dir] = await s2.snapshotDirs(info);
  assert.ok(fs.existsSync(path.join(dir, 'bin', 'busybox')));
});

test('durability: a torn index.json falls back to the previous version; fsync mode works too', async (t) => {
  const root = path.join(tmpdir(t), 'images');
  const s1 = await ImageStore.open(root, { durability: 'fsync' });
  await s1.importRootfs(Readable.from([makeTar([{ name: 'a', type: 'file', data: '1' }])]), 'one:1');
  await s1.importRootfs(Readable.from([makeTar([{ name: 'b', type: 'file', data: '2' }])]), 'two:1');
  assert.equal(fs.existsSync(path.join(root, 'dirty')), false, 'no marker in fsync mode');
  fs.writeFileSync(path.join(root, 'index.json'), '{"version":1,"ima');
  const s2 = await ImageStore.open(root);
  assert.ok(await s2.resolveLocal('one:1'), 'the previous index knows one:1');
});

test('durability: containers marked in use together cost a few appends to in-use.jsonl, no index write, and survive a reopen', async (t) => {
  const root = path.join(tmpdir(t), 'images');
  const s1 = await ImageStore.open(root);
  const img = await s1.importRootfs(Readable.from([makeTar([{ name: 'a', type: 'file', data: '1' }])]), 'one:1');
  const index = fs.readFileSync(path.join(root, 'index.json'), 'utf8');
  const ids = Array.from({ length: 40 }, (_, i) => `c${i}`);
  await Promise.all(ids.map((c) => s1.markInUse(img.id, c)));
  assert.equal(fs.readFileSync(path.join(root, 'index.json'), 'utf8'), index, 'the index is not rewritten for a mark');
  assert.equal(fs.readFileSync(path.join(root, 'in-use.jsonl'), 'utf8').trim().split('\n').length, 40);
  await s1.release('c0');
  await assert.rejects(s1.remove('one:1'), /in use by containers c1, c2/);
  const s2 = await ImageStore.open(root);
  assert.deepEqual((await s2.list()).find((i) => i.id === img.id)?.inUseBy.sort(), ids.slice(1).sort());
});

test('durability: an index from before in-use.jsonl keeps its marks, which move to the journal', async (t) => {
  const root = path.join(tmpdir(t), 'images');
  const s1 = await ImageStore.open(root);
  const img = await s1.importRootfs(Readable.from([makeTar([{ name: 'a', type: 'file', data: '1' }])]), 'one:1');
  const ix = JSON.parse(fs.readFileSync(path.join(root, 'index.json'), 'utf8'));
  fs.writeFileSync(path.join(root, 'index.json'), JSON.stringify({ ...ix, inUse: { old1: img.id, old2: img.id } }));
  const s2 = await ImageStore.open(root);
  assert.deepEqual((await s2.list()).find((i) => i.id === img.id)?.inUseBy.sort(), ['old1', 'old2']);
  assert.equal(JSON.parse(fs.readFileSync(path.join(root, 'index.json'), 'utf8')).inUse, undefined, 'gone from the index');
  await s2.release('old1');
  const s3 = await ImageStore.open(root);
  assert.deepEqual((await s3.list()).find((i) => i.id === img.id)?.inUseBy, ['old2'], 'a release is not undone by the old index');
});
