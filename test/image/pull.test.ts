// Pull from Debian's docker-registry, images pushed by skopeo: OCI and Docker manifests, indexes and manifest
// lists with --platform, gzip/zstd/plain layers, shared layers fetched once, Basic and Bearer token auth.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { ImageStore, type PullProgress } from '../../worker/image/store.ts';
import { mountRootfs, unmountRootfs } from '../../worker/rootfs/overlay.ts';
import { busyboxRootfsTar, makeTar, skopeo, skopeoPush, writeOciIndex, writeOciLayout } from '../helpers/busybox.ts';
import { type Registry, startRegistry } from '../helpers/registry.ts';

let reg: Registry;
let work: string;
before(async () => {
  reg = await startRegistry();
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-pull-'));
});
after(async () => {
  await reg?.stop();
  if (work) {
    await unmountRootfs(path.join(work, 'ctr')).catch(() => {});
    fs.rmSync(work, { recursive: true, force: true });
  }
});

const base = busyboxRootfsTar({ applets: ['sh', 'ls', 'cat', 'echo'] });
const l2 = makeTar([
  { name: 'etc/', type: 'dir', mode: 0o755 },
  { name: 'etc/.wh.group', type: 'file' },
  { name: 'etc/motd', type: 'file', data: 'layer two\n' },
  { name: 'usr/', type: 'dir', mode: 0o755 },
  { name: 'usr/.wh..wh..opq', type: 'file' },
  { name: 'usr/lib/', type: 'dir', mode: 0o755 },
  { name: 'usr/lib/hl-src', type: 'file', data: 'linked', uid: 42, gid: 42, mode: 0o600 },
  { name: 'usr/lib/hl', type: 'hardlink', linkname: 'usr/lib/hl-src' },
]);

async function openStore(name: string): Promise<ImageStore> {
  return ImageStore.open(path.join(work, name));
}

async function checkRootfs(store: ImageStore, ref: string): Promise<string> {
  const info = await store.resolveLocal(ref);
  assert.ok(info, ref);
  const ctr = path.join(work, 'ctr');
  const m = await mountRootfs({ lowerDirs: await store.snapshotDirs(info), containerDir: ctr, volatile: true });
  try {
    return execFileSync('chroot', [m.rootfs, '/bin/sh', '-c', 'cat /etc/motd; ls /etc; ls /usr; cat /usr/lib/hl'], { encoding: 'utf8' });
  } finally {
    await m.unmount();
    fs.rmSync(ctr, { recursive: true, force: true });
  }
}

for (const [label, compression, docker] of [
  ['OCI gzip', 'gzip', false],
  ['OCI zstd', 'zstd', false],
  ['OCI uncompressed', 'none', false],
  ['Docker schema2 gzip', 'gzip', true],
] as const) {
  test(`pull: ${label} image pushed by skopeo unpacks to the right tree`, async () => {
    const layout = path.join(work, `layout-${compression}-${docker}`);
    const built = writeOciLayout(layout, 'v1', [base, l2], { compression }); // skopeo converts to Docker types
    const repo = `${reg.addr}/pull/${compression}${docker ? '-docker' : ''}`;
    await skopeoPush(layout, 'v1', `${repo}:v1`, docker ? ['--format', 'v2s2'] : []);
    const store = await openStore(`store-${compression}-${docker}`);
    const events: PullProgress[] = [];
    const info = await store.pull(`${repo}:v1`, { onProgress: (p) => events.push(p) });
    assert.equal(info.mediaType, docker ? 'application/vnd.docker.distribution.manifest.v2+json' : 'application/vnd.oci.image.manifest.v1+json');
    if (!docker) assert.equal(info.id, built.configDigest);
    assert.deepEqual(info.layers.map((l) => l.diffId), built.diffIds);
    assert.deepEqual(info.repoTags, [`${repo}:v1`]);
    assert.ok(events.some((e) => e.status === 'downloading'));
    const out = await checkRootfs(store, `${repo}:v1`);
    assert.equal(out, 'layer two\nmotd\npasswd\nlib\nlinked');
    // pulling again does nothing new
    const again: PullProgress[] = [];
    await store.pull(`${repo}:v1`, { onProgress: (p) => again.push(p) });
    assert.equal(again.filter((e) => e.status === 'downloading').length, 0);
    assert.equal(again.filter((e) => e.status === 'exists').length, 2);
    // by digest as well
    const byDigest = await store.pull(`${repo}@${info.manifestDigest}`);
    assert.equal(byDigest.id, info.id);
  });
}

test('pull: an index / manifest list picks linux/amd64 by default and another with --platform', async () => {
  const layout = path.join(work, 'layout-index');
  const amd = writeOciLayout(layout, 'amd', [base], { architecture: 'amd64' });
  const arm = writeOciLayout(layout, 'arm', [base, l2], { architecture: 'arm64' });
  writeOciIndex(layout, 'multi', [
    { image: arm, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
    { image: amd, platform: { os: 'linux', architecture: 'amd64' } },
  ]);
  const repo = `${reg.addr}/pull/multi`;
  await skopeo(['copy', '--quiet', '--all', '--dest-tls-verify=false', `oci:${layout}:multi`, `docker://${repo}:1`]);
  const store = await openStore('store-index');
  const def = await store.pull(`${repo}:1`);
  assert.equal(def.id, amd.configDigest);
  assert.equal(def.platform, 'linux/amd64');
  assert.ok(def.indexDigest);
  const remote = await store.resolveRemote(`${repo}:1`);
  assert.equal(remote.digest, def.indexDigest, 'resolveRemote gives the index digest of the tag');
  const a = await store.pull(`${repo}:1`, { platform: 'linux/arm64' });
  assert.equal(a.id, arm.configDigest);
  assert.equal(a.platform, 'linux/arm64');
  await assert.rejects(store.pull(`${repo}:1`, { platform: 'linux/s390x' }), /has no manifest for linux\/s390x \(it has linux\/arm64\/v8, linux\/amd64\); choose one with --platform/);
  await assert.rejects(store.pull(`${repo}:1`, { platform: 'bogus' }), /invalid platform "bogus"/);
});

test('pull: a second image sharing all but one layer fetches only that layer', async () => {
  const layout = path.join(work, 'layout-shared');
  const l3a = makeTar([{ name: 'app', type: 'file', data: 'version a' }]);
  const l3b = makeTar([{ name: 'app', type: 'file', data: 'version b' }]);
  writeOciLayout(layout, 'a', [base, l2, l3a]);
  writeOciLayout(layout, 'b', [base, l2, l3b]);
  await skopeoPush(layout, 'a', `${reg.addr}/shared/app:a`);
  await skopeoPush(layout, 'b', `${reg.addr}/shared/app:b`);
  const store = await openStore('store-shared');
  await store.pull(`${reg.addr}/shared/app:a`);
  const events: PullProgress[] = [];
  const b = await store.pull(`${reg.addr}/shared/app:b`, { onProgress: (p) => events.push(p) });
  const downloaded = new Set(events.filter((e) => e.status === 'downloading').map((e) => e.id));
  assert.deepEqual([...downloaded], [b.layers[2].digest]);
  assert.equal(events.filter((e) => e.status === 'exists').length, 2);
  assert.equal((await store.snapshots.list()).length, 4);
});

test('pull: unknown image and unknown registry are errors naming them', async () => {
  const store = await openStore('store-missing');
  await assert.rejects(store.pull(`${reg.addr}/nope/nothing:1`), (e: Error) => {
    assert.match(e.message, /manifest "nope\/nothing:1" not found or not readable in 127\.0\.0\.1:\d+ \(404: MANIFEST_UNKNOWN/);
    return true;
  });
  await assert.rejects(store.pull('127.0.0.1:1/x:1', { attempts: 1 }), /registry 127\.0\.0\.1:1 unreachable at http:\/\/127\.0\.0\.1:1: .*ECONNREFUSED/);
  await assert.rejects(store.pull('Bad:Ref'), /invalid reference "Bad:Ref"/);
});

for (const mode of ['basic', 'token'] as const) {
  test(`pull: ${mode} auth refuses anonymous and wrong passwords, accepts the right one`, async (t) => {
    const authReg = await startRegistry({ auth: mode, users: { alice: 'wonderland' } });
    t.after(() => authReg.stop());
    const layout = path.join(work, `layout-${mode}`);
    writeOciLayout(layout, 'v1', [base]);
    await skopeo(['copy', '--quiet', '--dest-tls-verify=false', '--dest-creds', 'alice:wonderland', `oci:${layout}:v1`, `docker://${authReg.addr}/private/app:v1`]);
    const store = await openStore(`store-${mode}`);
    const ref = `${authReg.addr}/private/app:v1`;
    await assert.rejects(store.pull(ref), /check credentials \(gantry login 127\.0\.0\.1:\d+\)|refused anonymous access/);
    await assert.rejects(store.pull(ref, { credentials: { username: 'alice', password: 'nope' } }), /401|refused user "alice"/);
    const info = await store.pull(ref, { credentials: { username: 'alice', password: 'wonderland' } });
    assert.equal(info.layers.length, 1);
    if (mode === 'token') {
      assert.ok(authReg.tokenRequests.some((r) => r.user === 'alice' && r.scopes.includes('repository:private/app:pull')));
    }
  });
}

test('pull: HTTPS registries are verified against the system store plus certs.d; --insecure skips verification or falls back to HTTP', async (t) => {
  const tlsReg = await startRegistry({ tls: true });
  t.after(() => tlsReg.stop());
  const layout = path.join(work, 'layout-tls');
  writeOciLayout(layout, 'v1', [base]);
  await skopeo(['copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${tlsReg.addr}/secure/app:v1`]);
  const ref = `${tlsReg.addr}/secure/app:v1`;
  const certsDir = path.join(work, 'certs.d');
  const untrusted = await ImageStore.open(path.join(work, 'store-tls-untrusted'), { tlsRegistries: [tlsReg.addr], certsDir });
  await assert.rejects(untrusted.pull(ref, { attempts: 1 }), (e: Error) => {
    assert.match(e.message, new RegExp(`registry ${tlsReg.addr} unreachable at https://${tlsReg.addr}: .*(self-signed|self signed)`));
    assert.match(e.message, new RegExp(`trust its CA in /etc/gantry/certs.d/${tlsReg.addr}/ca.crt or mark it --insecure-registry`));
    return true;
  });
  assert.equal((await untrusted.pull(ref, { insecure: true })).layers.length, 1, 'insecure: TLS without verification');
  fs.mkdirSync(path.join(certsDir, tlsReg.addr), { recursive: true });
  fs.writeFileSync(path.join(certsDir, tlsReg.addr, 'ca.crt'), tlsReg.caCert as string);
  const trusted = await ImageStore.open(path.join(work, 'store-tls-trusted'), { tlsRegistries: [tlsReg.addr], certsDir });
  assert.equal((await trusted.pull(ref)).layers.length, 1, 'verified with the certs.d CA');
  // an insecure registry that only speaks HTTP: TLS first, then plain HTTP
  const layoutPlain = path.join(work, 'layout-plain');
  writeOciLayout(layoutPlain, 'v1', [base]);
  await skopeoPush(layoutPlain, 'v1', `${reg.addr}/plain/app:v1`);
  const fallback = await ImageStore.open(path.join(work, 'store-tls-fallback'), { tlsRegistries: [reg.addr] });
  assert.equal((await fallback.pull(`${reg.addr}/plain/app:v1`, { insecure: true })).layers.length, 1);
});
