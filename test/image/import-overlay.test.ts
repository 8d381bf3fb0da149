// importRootfs + snapshotDirs + imageConfig + mountRootfs end to end with the busybox rootfs, and an overlay
// of 120 layers (longer than a page of lowerdir= paths).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import * as zlib from 'node:zlib';
import { ImageStore } from '../../worker/image/store.ts';
import { mountRootfs, unmountRootfs } from '../../worker/rootfs/overlay.ts';
import { busyboxRootfsTar, makeTar } from '../helpers/busybox.ts';

function tmpdir(t: { after(fn: () => void | Promise<void>): void }, ctrs: string[]): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-import-'));
  t.after(async () => {
    for (const c of ctrs) await unmountRootfs(path.join(d, c)).catch(() => {});
    fs.rmSync(d, { recursive: true, force: true });
  });
  return d;
}

test('import: a busybox rootfs becomes a runnable one-layer image with the -c changes', async (t) => {
  const dir = tmpdir(t, ['ctr']);
  const tarPath = path.join(dir, 'rootfs.tar');
  fs.writeFileSync(tarPath, busyboxRootfsTar());
  const store = await ImageStore.open(path.join(dir, 'images'));
  const info = await store.importRootfs(tarPath, 'bb:1', { changes: ['CMD ["sh", "-c", "echo hi"]', 'ENV A=b C="d e"', 'WORKDIR /tmp', 'USER nobody', 'EXPOSE 80'] });
  assert.deepEqual(info.repoTags, ['bb:1']);
  assert.equal(info.layers.length, 1);
  assert.equal(info.platform, 'linux/amd64');
  const cfg = await store.imageConfig(info);
  assert.deepEqual(cfg.Cmd, ['sh', '-c', 'echo hi']);
  assert.deepEqual(cfg.Env, ['A=b', 'C=d e']);
  assert.equal(cfg.WorkingDir, '/tmp');
  assert.equal(cfg.User, 'nobody');
  assert.deepEqual(cfg.ExposedPorts, { '80/tcp': {} });
  for (const r of ['bb:1', 'docker.io/library/bb:1', info.id, info.id.slice(7, 19), `bb@${info.manifestDigest}`]) {
    assert.equal((await store.resolveLocal(r))?.id, info.id, r);
  }
  // stored exactly like a pulled image: the blobs are what the manifest says
  const manifest = await store.content.readJson<{ layers: Array<{ digest: string; size: number }> }>(info.manifestDigest);
  assert.equal(manifest.layers[0].digest, info.layers[0].digest);
  const layerBlob = await store.content.read(info.layers[0].digest);
  assert.equal(layerBlob.length, manifest.layers[0].size);
  assert.deepEqual(zlib.gunzipSync(layerBlob), fs.readFileSync(tarPath));

  const dirs = await store.snapshotDirs(info);
  const m = await mountRootfs({ lowerDirs: dirs, containerDir: path.join(dir, 'ctr'), volatile: true });
  try {
    const out = execFileSync('chroot', [m.rootfs, '/bin/sh', '-c', 'echo hi from $(busybox | head -1 | cut -d" " -f1); ls /bin | wc -l'], { encoding: 'utf8' });
    assert.match(out, /^hi from BusyBox\n\s*\d+\n$/);
  } finally {
    await m.unmount();
  }
  // remount works after a volatile mount
  const m2 = await mountRootfs({ lowerDirs: dirs, containerDir: path.join(dir, 'ctr'), volatile: true });
  await m2.unmount();

  // a compressed tarball imports to the same layer content
  const info2 = await store.importRootfs(Readable.from([zlib.gzipSync(fs.readFileSync(tarPath))]), 'bb:gz');
  assert.equal(info2.layers[0].diffId, info.layers[0].diffId);
  assert.equal(info2.layers[0].chainId, info.layers[0].chainId);
  assert.deepEqual(await store.snapshotDirs(info2), dirs);
});

test('import: a bad change line is refused with the reason', async (t) => {
  const dir = tmpdir(t, []);
  const store = await ImageStore.open(path.join(dir, 'images'));
  await assert.rejects(store.importRootfs(Readable.from([makeTar([])]), 'x:1', { changes: ['RUN rm -rf /'] }), /RUN is not supported by import/);
  await assert.rejects(store.importRootfs(Readable.from([makeTar([])]), 'X:1'), /repository name must be lowercase/);
  const untagged = await store.importRootfs(Readable.from([makeTar([{ name: 'f', type: 'file', data: 'x' }])]), '');
  assert.deepEqual(untagged.repoTags, []);
  assert.equal((await store.resolveLocal(untagged.id.slice(7, 19)))?.id, untagged.id);
});

test('overlay: mounts 120 layers (option string longer than a page) with the topmost layer winning', async (t) => {
  const dir = tmpdir(t, ['ctr']);
  const lowers: string[] = [];
  for (let i = 0; i < 120; i++) {
    // long paths on purpose: 120 absolute paths of this length would not fit in a page
    const l = path.join(dir, 'snapshots', `${'x'.repeat(60)}-${String(i).padStart(3, '0')}`, 'fs');
    fs.mkdirSync(l, { recursive: true });
    fs.writeFileSync(path.join(l, `layer-${i}`), String(i));
    fs.writeFileSync(path.join(l, 'top'), String(i));
    lowers.push(l);
  }
  assert.ok(lowers.join(':').length > 4096);
  const m = await mountRootfs({ lowerDirs: lowers, containerDir: path.join(dir, 'ctr') });
  try {
    assert.equal(fs.readFileSync(path.join(m.rootfs, 'top'), 'utf8'), '119');
    assert.equal(fs.readFileSync(path.join(m.rootfs, 'layer-0'), 'utf8'), '0');
    assert.equal(fs.readdirSync(m.rootfs).length, 121);
  } finally {
    await m.unmount();
  }
  await assert.rejects(mountRootfs({ lowerDirs: [path.join(dir, 'nope')], containerDir: path.join(dir, 'ctr') }), /does not exist/);
});

test('overlay: unmountRootfs takes mounts below the rootfs with it and is idempotent', async (t) => {
  const dir = tmpdir(t, ['ctr']);
  const lower = path.join(dir, 'lower');
  fs.mkdirSync(path.join(lower, 'proc'), { recursive: true });
  const m = await mountRootfs({ lowerDirs: [lower], containerDir: path.join(dir, 'ctr') });
  execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', path.join(m.rootfs, 'proc')]);
  const mounted = () => fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${m.rootfs}`);
  assert.ok(mounted());
  await unmountRootfs(path.join(dir, 'ctr'));
  assert.equal(mounted(), false);
  await unmountRootfs(path.join(dir, 'ctr'));
  await unmountRootfs(path.join(dir, 'never-mounted'));
});
