// save/load: images as one tar, readable by `docker load` and skopeo (docker-archive: manifest.json next to an
// OCI layout, as Docker 25 writes it) or as a plain OCI image layout; load reads both and older docker saves.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { sniffCompression } from './layer.ts';
import { chainIds, detectManifestType, isIndex, isManifest, MT, sha256, type ImageConfigFile, type Index, type Manifest } from './oci.ts';
import { familiarString, formatReference, mustParse, parseReference } from './reference.ts';
import { TAR_END, type TarHeader, TarParser, tarHeader, tarPadding } from './tar.ts';
import type { ImageRecord, ImageStore, LayerRecord } from './store.ts';

export type ArchiveFormat = 'docker-archive' | 'oci';

export async function saveImages(store: ImageStore, refs: string[], out: NodeJS.WritableStream | Writable, format: ArchiveFormat): Promise<void> {
  if (format !== 'docker-archive' && format !== 'oci') throw new Error(`unknown archive format "${format}" (docker-archive or oci)`);
  if (refs.length === 0) throw new Error('save needs at least one image');
  const images: Array<{ rec: ImageRecord; tags: string[] }> = [];
  for (const r of refs) {
    const rec = await store.require(r);
    const parsed = parseReference(r);
    // a name given → that name; an id given → all its names
    const tags = parsed.ok && !parsed.ref.digest && rec.names.includes(formatReference(parsed.ref)) ? [formatReference(parsed.ref)] : rec.names;
    const existing = images.find((i) => i.rec.id === rec.id);
    if (existing) existing.tags.push(...tags.filter((t) => !existing.tags.includes(t)));
    else images.push({ rec, tags: [...tags] });
  }
  const blobs = new Set<string>();
  for (const { rec } of images) for (const d of [rec.manifestDigest, rec.configDigest, ...rec.layers.map((l) => l.digest)]) blobs.add(d);
  const sizes = new Map<string, number>();
  for (const d of blobs) {
    const s = await store.content.stat(d);
    if (s === undefined) throw new Error(`save: blob ${d} is missing from the local store; pull the image again`);
    sizes.set(d, s);
  }
  const index: Index = { schemaVersion: 2, mediaType: MT.ociIndex, manifests: [] };
  for (const { rec, tags } of images) {
    const base = { mediaType: rec.manifestMediaType, digest: rec.manifestDigest, size: sizes.get(rec.manifestDigest) ?? 0 };
    if (tags.length === 0) index.manifests.push(base);
    for (const t of tags) {
      const r = mustParse(t);
      index.manifests.push({ ...base, annotations: { 'io.containerd.image.name': t, 'org.opencontainers.image.ref.name': r.tag ?? 'latest' } });
    }
  }
  const mtime = Math.floor(Date.now() / 1000);
  const small = (name: string, data: Buffer) => [tarHeader({ name, type: 'file', size: data.length, mode: 0o644, mtime }), data, tarPadding(data.length)];
  async function* gen(): AsyncGenerator<Buffer> {
    yield tarHeader({ name: 'blobs/', type: 'dir', mode: 0o755, mtime });
    yield tarHeader({ name: 'blobs/sha256/', type: 'dir', mode: 0o755, mtime });
    for (const d of blobs) {
      const size = sizes.get(d) ?? 0;
      yield tarHeader({ name: `blobs/sha256/${d.slice(7)}`, type: 'file', size, mode: 0o644, mtime });
      let n = 0;
      for await (const c of fs.createReadStream(store.content.path(d), { highWaterMark: 1 << 20 })) {
        n += (c as Buffer).length;
        yield c as Buffer;
      }
      if (n !== size) throw new Error(`blob ${d} changed size while saving`);
      yield tarPadding(size);
    }
    yield* small('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
    yield* small('index.json', Buffer.from(JSON.stringify(index)));
    if (format === 'docker-archive') {
      const manifest = images.map(({ rec, tags }) => ({
        Config: `blobs/sha256/${rec.configDigest.slice(7)}`,
        RepoTags: tags.map((t) => familiarString(mustParse(t))),
        Layers: rec.layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`),
      }));
      yield* small('manifest.json', Buffer.from(JSON.stringify(manifest)));
      const repositories: Record<string, Record<string, string>> = {};
      for (const { rec, tags } of images) {
        for (const t of tags) {
          const r = mustParse(t);
          const last = rec.layers[rec.layers.length - 1];
          if (!last) continue;
          const repo = familiarString({ ...r, tag: undefined, digest: undefined });
          repositories[repo] = { ...(repositories[repo] ?? {}), [r.tag ?? 'latest']: last.chainId.slice(7) };
        }
      }
      yield* small('repositories', Buffer.from(JSON.stringify(repositories)));
    }
    yield TAR_END;
  }
  await pipeline(Readable.from(gen()), out as Writable);
}

interface TarIndexEntry {
  offset: number;
  size: number;
  type: TarHeader['type'];
  linkname: string;
}

/** name → where its data sits in the file. */
async function indexTar(file: string): Promise<Map<string, TarIndexEntry>> {
  const entries = new Map<string, TarIndexEntry>();
  const parser = new TarParser({
    entry: (h) => {
      const name = h.name.replace(/^\.\//, '').replace(/\/$/, '');
      entries.set(name, { offset: parser.offset, size: h.size, type: h.type, linkname: h.linkname.replace(/^\.\//, '') });
    },
    data: () => {},
    entryEnd: () => {},
  });
  for await (const c of fs.createReadStream(file, { highWaterMark: 1 << 20 })) parser.write(c as Buffer);
  parser.end();
  return entries;
}

export async function loadImages(store: ImageStore, input: NodeJS.ReadableStream | string): Promise<string[]> {
  let file: string;
  let tmpDir: string | undefined;
  if (typeof input === 'string') file = input;
  else {
    tmpDir = await fsp.mkdtemp(path.join(store.root, 'ingest', 'load-'));
    file = path.join(tmpDir, 'archive.tar');
    await pipeline(input as Readable, fs.createWriteStream(file));
  }
  try {
    const entries = await indexTar(file);
    const resolve = (name: string): TarIndexEntry => {
      let cur = name.replace(/^\.\//, '');
      let e = entries.get(cur);
      for (let i = 0; e && (e.type === 'hardlink' || e.type === 'symlink') && i < 8; i++) {
        // docker save links repeated layers: symlinks relative to their directory, hard links archive-relative
        cur = e.type === 'symlink' ? path.posix.normalize(path.posix.join(path.posix.dirname(cur), e.linkname)) : e.linkname;
        e = entries.get(cur);
      }
      if (e?.type !== 'file') throw new Error(`archive has no file "${name}"`);
      return e;
    };
    const read = async (name: string, max = 64 << 20): Promise<Buffer> => {
      const e = resolve(name);
      if (e.size > max) throw new Error(`"${name}" in the archive is too large (${e.size} bytes)`);
      const fh = await fsp.open(file, 'r');
      try {
        const b = Buffer.alloc(e.size);
        await fh.read(b, 0, e.size, e.offset);
        return b;
      } finally {
        await fh.close();
      }
    };
    const stream = (name: string) => {
      const e = resolve(name);
      return { stream: fs.createReadStream(file, { start: e.offset, end: e.offset + e.size - 1, highWaterMark: 1 << 20 }), size: e.size };
    };
    const importBlob = async (name: string, expected?: string): Promise<{ digest: string; size: number }> => {
      const s = stream(name);
      if (expected && (await store.content.stat(expected)) === s.size) {
        s.stream.destroy();
        return { digest: expected, size: s.size };
      }
      const w = await store.content.writer();
      try {
        for await (const c of s.stream) w.write(c as Buffer);
        return { digest: await w.commit(s.size), size: s.size };
      } catch (e) {
        w.abort(false);
        throw e;
      }
    };
    const loaded: string[] = [];
    if (entries.has('manifest.json')) {
      const dm = JSON.parse((await read('manifest.json')).toString('utf8')) as Array<{ Config: string; RepoTags?: string[] | null; Layers: string[] }>;
      for (const item of dm) {
        const cfgBuf = await read(item.Config);
        const configDigest = await store.content.put(cfgBuf);
        const cfg = JSON.parse(cfgBuf.toString('utf8')) as ImageConfigFile;
        const diffIds = cfg.rootfs?.diff_ids ?? [];
        if (diffIds.length !== item.Layers.length) throw new Error(`archive image ${item.Config}: ${item.Layers.length} layers but its config lists ${diffIds.length}`);
        const chains = chainIds(diffIds);
        const layers: LayerRecord[] = [];
        let anyZstd = false;
        for (const [i, name] of item.Layers.entries()) {
          const m = /blobs\/sha256\/([a-f0-9]{64})$/.exec(name);
          const b = await importBlob(name, m ? `sha256:${m[1]}` : undefined);
          const head = Buffer.alloc(8);
          const fh = await fsp.open(store.content.path(b.digest), 'r');
          await fh.read(head, 0, 8, 0);
          await fh.close();
          const c = sniffCompression(head);
          if (c === 'zstd') anyZstd = true;
          const mediaType = c === 'gzip' ? MT.dockerLayerGzip : c === 'zstd' ? MT.ociLayerZstd : MT.dockerLayer;
          layers.push({ digest: b.digest, mediaType, size: b.size, diffId: diffIds[i], chainId: chains[i] });
        }
        // reuse the OCI manifest of the same image when the archive carries one (our own saves), else make one
        let manifestBuf: Buffer | undefined;
        let manifestMediaType: string = anyZstd ? MT.ociManifest : MT.dockerManifest;
        const fromIndex = entries.has('index.json') ? await findOciManifest(read, configDigest) : undefined;
        if (fromIndex) {
          manifestBuf = fromIndex.buf;
          manifestMediaType = fromIndex.mediaType;
        } else {
          const oci = manifestMediaType === MT.ociManifest;
          const man: Manifest = {
            schemaVersion: 2,
            mediaType: manifestMediaType,
            config: { mediaType: oci ? MT.ociConfig : MT.dockerConfig, digest: configDigest, size: cfgBuf.length },
            layers: layers.map((l) => ({ mediaType: oci && l.mediaType === MT.dockerLayerGzip ? MT.ociLayerGzip : oci && l.mediaType === MT.dockerLayer ? MT.ociLayer : l.mediaType, digest: l.digest, size: l.size })),
          };
          manifestBuf = Buffer.from(JSON.stringify(man));
        }
        const manifestDigest = await store.content.put(manifestBuf);
        await unpackAll(store, layers);
        const tags = item.RepoTags ?? [];
        let info = await store.addImage(
          { id: configDigest, manifestDigest, manifestMediaType, configDigest, layers, created: cfg.created, platform: { os: cfg.os, architecture: cfg.architecture } },
          tags[0] ? mustParse(tags[0]) : undefined,
        );
        for (const t of tags.slice(1)) info = await store.tag(info.id, t);
        loaded.push(...(tags.length ? tags.map((t) => `Loaded image: ${familiarString(mustParse(t))}`) : [`Loaded image ID: ${configDigest}`]));
      }
      return loaded;
    }
    if (entries.has('index.json') && entries.has('oci-layout')) {
      const idx = JSON.parse((await read('index.json')).toString('utf8')) as Index;
      const pending: Array<{ desc: Index['manifests'][number]; name?: string }> = idx.manifests.map((d) => ({ desc: d }));
      while (pending.length) {
        const { desc, name: inherited } = pending.shift() as { desc: Index['manifests'][number]; name?: string };
        const buf = await read(`blobs/sha256/${desc.digest.slice(7)}`);
        if (sha256(buf) !== desc.digest) throw new Error(`archive blob ${desc.digest} does not match its digest`);
        const doc = JSON.parse(buf.toString('utf8')) as Manifest & Index;
        const mt = detectManifestType(doc, desc.mediaType);
        const name = desc.annotations?.['io.containerd.image.name'] ?? inherited ?? desc.annotations?.['org.opencontainers.image.ref.name'];
        if (isIndex(mt)) {
          const host = doc.manifests.find((m) => m.platform?.os === 'linux' && m.platform.architecture === 'amd64') ?? doc.manifests[0];
          if (host) pending.push({ desc: host, name });
          continue;
        }
        if (!isManifest(mt)) continue;
        await store.content.put(buf, desc.digest);
        const cfgBuf = await read(`blobs/sha256/${doc.config.digest.slice(7)}`);
        await store.content.put(cfgBuf, doc.config.digest);
        const cfg = JSON.parse(cfgBuf.toString('utf8')) as ImageConfigFile;
        const diffIds = cfg.rootfs?.diff_ids ?? [];
        const chains = chainIds(diffIds);
        const layers: LayerRecord[] = [];
        for (const [i, l] of doc.layers.entries()) {
          await importBlob(`blobs/sha256/${l.digest.slice(7)}`, l.digest).then((b) => {
            if (b.digest !== l.digest) throw new Error(`archive layer ${l.digest} hashes to ${b.digest}`);
          });
          layers.push({ digest: l.digest, mediaType: l.mediaType, size: l.size, diffId: diffIds[i], chainId: chains[i] });
        }
        await unpackAll(store, layers);
        let ref: ReturnType<typeof mustParse> | undefined;
        if (name) {
          const full = parseReference(name);
          // a bare tag ("v1") is not a reference we can name an image by; skopeo/umoci write those
          if (full.ok && (name.includes('/') || name.includes(':'))) ref = full.ref;
        }
        await store.addImage({ id: doc.config.digest, manifestDigest: desc.digest, manifestMediaType: mt, configDigest: doc.config.digest, layers, created: cfg.created, platform: { os: cfg.os, architecture: cfg.architecture } }, ref);
        loaded.push(ref ? `Loaded image: ${familiarString(ref)}` : `Loaded image ID: ${doc.config.digest}`);
      }
      return loaded;
    }
    throw new Error('archive is neither a docker-archive (manifest.json) nor an OCI image layout (oci-layout, index.json)');
  } finally {
    if (tmpDir) await fsp.rm(tmpDir, { recursive: true, force: true });
  }
}

async function findOciManifest(read: (n: string) => Promise<Buffer>, configDigest: string): Promise<{ buf: Buffer; mediaType: string } | undefined> {
  try {
    const idx = JSON.parse((await read('index.json')).toString('utf8')) as Index;
    for (const d of idx.manifests) {
      const buf = await read(`blobs/sha256/${d.digest.slice(7)}`);
      const doc = JSON.parse(buf.toString('utf8')) as Manifest;
      if (doc.config?.digest === configDigest && isManifest(detectManifestType(doc, d.mediaType))) return { buf, mediaType: detectManifestType(doc, d.mediaType) };
    }
  } catch {}
  return undefined;
}

async function unpackAll(store: ImageStore, layers: LayerRecord[]): Promise<void> {
  await Promise.all(layers.map((l, i) => store.unpackBlob(l, layers.slice(0, i).map((x) => x.chainId))));
}

export function digestOfFile(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    fs.createReadStream(file).on('data', (c) => h.update(c)).on('error', reject).on('end', () => resolve(`sha256:${h.digest('hex')}`));
  });
}
