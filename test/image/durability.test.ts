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

test('durability: changes made together are saved by one index write that holds all of them', async (t) => {
  const root = path.join(tmpdir(t), 'images');
  const s1 = await ImageStore.open(root);
  const img = await s1.importRootfs(Readable.from([makeTar([{ name: 'a', type: 'file', data: '1' }])]), 'one:1');
  const ids = Array.from({ length: 40 }, (_, i) => `c${i}`);
  await Promise.all(ids.map((c) => s1.markInUse(img.id, c)));
  const inUse = (file: string) => Object.keys(JSON.parse(fs.readFileSync(path.join(root, file), 'utf8')).inUse).sort();
  assert.deepEqual(inUse('index.json'), [...ids].sort());
  assert.deepEqual(inUse('index.json.prev'), [], 'one write for the 40 changes: the previous index has none of them');
  const s2 = await ImageStore.open(root);
  assert.equal((await s2.list()).find((i) => i.id === img.id)?.inUseBy.length, 40);
});
