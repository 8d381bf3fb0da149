// Push (monolithic, chunked, cross-repository mount, skip existing) checked with skopeo and umoci; save/load in
// docker-archive and OCI layout both ways with skopeo; rm of an in-use image; prune.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { ImageStore, type PullProgress } from '../../worker/image/store.ts';
import { busyboxRootfsTar, skopeo } from '../helpers/busybox.ts';
import { type Registry, startRegistry } from '../helpers/registry.ts';

let reg: Registry;
let work: string;
let store: ImageStore;
before(async () => {
  reg = await startRegistry();
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-push-'));
  store = await ImageStore.open(path.join(work, 'images'));
  fs.writeFileSync(path.join(work, 'rootfs.tar'), busyboxRootfsTar());
  await store.importRootfs(path.join(work, 'rootfs.tar'), 'bb:1', { changes: ['CMD ["sh"]'] });
});
after(async () => {
  await reg?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

function umociHasBusybox(layout: string, tag: string): void {
  const bundle = path.join(work, `bundle-${Math.random().toString(36).slice(2)}`);
  execFileSync('umoci', ['unpack', '--image', `${layout}:${tag}`, bundle], { stdio: 'ignore' });
  try {
    assert.ok(fs.statSync(path.join(bundle, 'rootfs', 'bin', 'busybox')).size > 100_000);
    assert.equal(fs.readlinkSync(path.join(bundle, 'rootfs', 'bin', 'sh')), 'busybox');
  } finally {
    fs.rmSync(bundle, { recursive: true, force: true });
  }
}

test('push: monolithic upload, read back by skopeo and unpacked by umoci', async () => {
  const local = await store.tag('bb:1', `${reg.addr}/team/bb:1`);
  const events: PullProgress[] = [];
  const r = await store.push(`${reg.addr}/team/bb:1`, { onProgress: (p) => events.push(p) });
  assert.equal(r.digest, local.manifestDigest);
  assert.ok(events.some((e) => e.status === 'pushing'));
  const inspect = JSON.parse(await skopeo(['inspect', '--tls-verify=false', `docker://${reg.addr}/team/bb:1`])) as { Digest: string; Layers: string[] };
  assert.equal(inspect.Digest, local.manifestDigest);
  assert.deepEqual(inspect.Layers, local.layers.map((l) => l.digest));
  const layout = path.join(work, 'from-registry');
  await skopeo(['copy', '--quiet', '--src-tls-verify=false', `docker://${reg.addr}/team/bb:1`, `oci:${layout}:t`]);
  umociHasBusybox(layout, 't');
  // again: every blob is already there
  const again: PullProgress[] = [];
  await store.push(`${reg.addr}/team/bb:1`, { onProgress: (p) => again.push(p) });
  assert.equal(again.filter((e) => e.status === 'exists').length, 2);
  assert.equal(again.filter((e) => e.status === 'pushing').length, 0);
});

test('push: chunked upload and a cross-repository mount', async () => {
  await store.tag('bb:1', `${reg.addr}/other/bb:2`);
  const events: PullProgress[] = [];
  await store.push(`${reg.addr}/other/bb:2`, { onProgress: (p) => events.push(p) });
  assert.ok(events.some((e) => e.status === 'mounted' && /from team\/bb/.test(e.message ?? '')), JSON.stringify(events.map((e) => e.status)));
  // a fresh image through chunked PATCH uploads
  const big = await store.importRootfs(path.join(work, 'rootfs.tar'), 'bb:chunked', { changes: ['ENV X=chunked'] });
  await store.tag(big.id, `${reg.addr}/chunked/bb:1`);
  const ev2: PullProgress[] = [];
  await store.push(`${reg.addr}/chunked/bb:1`, { chunkSize: 256 << 10, onProgress: (p) => ev2.push(p) });
  assert.ok(ev2.filter((e) => e.status === 'pushing').length > 2, 'several chunks');
  const inspect = JSON.parse(await skopeo(['inspect', '--config', '--tls-verify=false', `docker://${reg.addr}/chunked/bb:1`])) as { config: { Env: string[] } };
  assert.deepEqual(inspect.config.Env, ['X=chunked']);
  // gantry pulls it back into a fresh store
  const s2 = await ImageStore.open(path.join(work, 'images-pullback'));
  const back = await s2.pull(`${reg.addr}/chunked/bb:1`);
  assert.equal(back.id, big.id);
});

test('save: docker-archive is read by skopeo (and umoci after a copy) and loads back unchanged', async () => {
  const file = path.join(work, 'bb.docker.tar');
  await store.save(['bb:1'], fs.createWriteStream(file), 'docker-archive');
  const inspect = JSON.parse(await skopeo(['inspect', `docker-archive:${file}`])) as { RepoTags?: string[]; Layers: string[] };
  assert.equal(inspect.Layers.length, 1);
  const layout = path.join(work, 'from-docker-archive');
  await skopeo(['copy', '--quiet', `docker-archive:${file}`, `oci:${layout}:t`]);
  umociHasBusybox(layout, 't');
  const s2 = await ImageStore.open(path.join(work, 'images-load-docker'));
  const loaded = await s2.load(file);
  assert.deepEqual(loaded, ['Loaded image: bb:1']);
  const orig = await store.resolveLocal('bb:1');
  const got = await s2.resolveLocal('bb:1');
  assert.equal(got?.id, orig?.id);
  assert.equal(got?.manifestDigest, orig?.manifestDigest);
  assert.equal((await s2.snapshotDirs(got as NonNullable<typeof got>)).length, 1);
});

test('save: OCI layout is read by skopeo and umoci; load takes skopeo-made docker-archives and OCI archives', async () => {
  const file = path.join(work, 'bb.oci.tar');
  await store.save(['bb:1'], fs.createWriteStream(file), 'oci');
  const layout = path.join(work, 'oci-extracted');
  fs.mkdirSync(layout);
  execFileSync('tar', ['-xf', file, '-C', layout]);
  umociHasBusybox(layout, '1');
  const inspect = JSON.parse(await skopeo(['inspect', `oci-archive:${file}:1`])) as { Digest: string };
  assert.equal(inspect.Digest, (await store.resolveLocal('bb:1'))?.manifestDigest);

  // skopeo writes, gantry loads
  const dfile = path.join(work, 'skopeo.docker.tar');
  await skopeo(['copy', '--quiet', `oci:${layout}:1`, `docker-archive:${dfile}:made/by-skopeo:v9`]);
  const s2 = await ImageStore.open(path.join(work, 'images-load-skopeo'));
  assert.deepEqual(await s2.load(fs.createReadStream(dfile)), ['Loaded image: made/by-skopeo:v9']);
  const info = await s2.resolveLocal('made/by-skopeo:v9');
  assert.ok(info);
  const dirs = await s2.snapshotDirs(info);
  assert.ok(fs.existsSync(path.join(dirs[0], 'bin', 'busybox')));
  const ofile = path.join(work, 'skopeo.oci.tar');
  await skopeo(['copy', '--quiet', `oci:${layout}:1`, `oci-archive:${ofile}:docker.io/library/fromoci:2`]);
  const lines = await s2.load(ofile);
  assert.deepEqual(lines, ['Loaded image: fromoci:2']);
  await assert.rejects(s2.load(path.join(work, 'rootfs.tar')), /neither a docker-archive/);
});

test('rm: an image a container uses is refused unless forced; prune frees what nothing references', async () => {
  const s = await ImageStore.open(path.join(work, 'images-rm'));
  const info = await s.importRootfs(path.join(work, 'rootfs.tar'), 'inuse:1');
  await s.markInUse(info.id, 'ctr-1');
  await assert.rejects(s.remove('inuse:1'), /image "inuse:1" \([a-f0-9]{12}\) is in use by container ctr-1; stop and remove it first or use --force/);
  const forced = await s.remove('inuse:1', { force: true });
  assert.deepEqual(forced, { untagged: ['inuse:1', `inuse@${info.manifestDigest}`], deleted: [] });
  assert.equal((await s.prune()).snapshots, 0, 'still in use: layers kept');
  assert.equal((await s.snapshotDirs(info)).length, 1);
  await s.release('ctr-1');
  const p = await s.prune();
  assert.deepEqual(p.images, [info.id]);
  assert.equal(p.snapshots, 1);
  assert.equal(p.blobs, 3);
  assert.ok(p.bytes > 0);
  assert.deepEqual(await s.content.list(), []);
  assert.deepEqual(await s.snapshots.list(), []);
  await assert.rejects(s.remove('inuse:1'), /image "inuse:1" not found locally/);
});
