// ImageStore: the host's images. Blobs in a content store, layers unpacked once per chain id into snapshots,
// and an index (index.json) of images, their names and which containers use them. Entry point for gantryd.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { type ArchiveFormat, loadImages, saveImages } from './archive.ts';
import { applyChanges } from './changes.ts';
import { ContentStore } from './content.ts';
import { applyLayer, sniffCompression, unpackLayer } from './layer.ts';
import {
  chainIds, formatPlatform, hostPlatform, MT,
  type ImageConfigFile, type Manifest, type OciImageConfig, type Platform,
} from './oci.ts';
import { familiarString, formatReference, mustParse, parseReference, type Reference, repoName } from './reference.ts';
import { pullImage, resolveRemoteDigest } from './pull.ts';
import { type PushOptions, type PushResult, pushImage } from './push.ts';
import type { RegistryClientOptions } from './registry.ts';
import { Snapshots } from './snapshots.ts';
import { run } from './unpack.ts';
import { OnceCache } from '../once-cache.ts';
import { Journal } from '../state/journal.ts';

export interface LayerRecord {
  digest: string;
  mediaType: string;
  size: number;
  diffId: string;
  chainId: string;
}

/** What index.json keeps per image (keyed by id = config digest). */
export interface ImageRecord {
  id: string;
  manifestDigest: string;
  manifestMediaType: string;
  /** The index/manifest list this manifest was chosen from, when pulled through one. */
  indexDigest?: string;
  configDigest: string;
  layers: LayerRecord[];
  created?: string;
  platform: Platform;
  /** Fully qualified "docker.io/library/busybox:latest". */
  names: string[];
  /** "127.0.0.1:5000/x@sha256:…" */
  digests: string[];
  addedAt: string;
}

export interface ImageInfo {
  id: string;
  /** As Docker shows them: "busybox:latest". */
  repoTags: string[];
  repoDigests: string[];
  manifestDigest: string;
  indexDigest?: string;
  mediaType: string;
  configDigest: string;
  /** Bytes of blobs (compressed layers + config). */
  size: number;
  created?: string;
  platform: string;
  layers: LayerRecord[];
  /** Containers that use it (markInUse). */
  inUseBy: string[];
}

interface IndexFile {
  version: 1;
  images: Record<string, ImageRecord>;
  /** Container → image, as stores before in-use.jsonl kept it: moved to the journal at open. */
  inUse?: Record<string, string>;
}

/** One line of in-use.jsonl: a container and the image it runs on. */
interface InUse {
  container: string;
  image: string;
}

export interface PullProgress {
  /** Layer or config digest; '' for image-level messages. */
  id: string;
  status: 'resolving' | 'waiting' | 'downloading' | 'verifying' | 'extracting' | 'done' | 'exists' | 'retrying' | 'pushing' | 'mounted';
  current?: number;
  total?: number;
  message?: string;
}

export interface PullOptions {
  platform?: string;
  insecure?: boolean;
  credentials?: Credentials;
  onProgress?(p: PullProgress): void;
  signal?: AbortSignal;
  /** Gives up (aborts) after this long. */
  timeoutMs?: number;
}

export interface Credentials {
  username?: string;
  password?: string;
  /** A registry token (docker's identitytoken) used instead of a password. */
  identityToken?: string;
}

export class ImageNotFoundError extends Error {
  override name = 'ImageNotFoundError';
}
export class ImageInUseError extends Error {
  override name = 'ImageInUseError';
}

export interface StoreOptions {
  /** Registry hosts to reach over plain HTTP / without TLS verification (like dockerd --insecure-registry). */
  insecureRegistries?: string[];
  /** Parallel layer downloads per pull. */
  maxConcurrentDownloads?: number;
  /** Per-registry CAs: <certsDir>/<host[:port]>/*.crt (default /etc/gantry/certs.d, like /etc/docker/certs.d). */
  certsDir?: string;
  /** Loopback registries that speak HTTPS (loopback ones default to plain HTTP, like Docker). */
  tlsRegistries?: string[];
  /**
   * 'deferred' (default): blobs are not fsynced one by one; a `dirty` marker (fsynced) brackets every write
   * operation and one syncfs after it clears it; after a crash, open() re-verifies what was written since the
   * marker and drops unpacked layers from then. 'fsync': fdatasync each blob before it is renamed into place.
   */
  durability?: 'fsync' | 'deferred';
}

export class ImageStore {
  readonly root: string;
  readonly content: ContentStore;
  readonly snapshots: Snapshots;
  readonly options: StoreOptions;
  private index: IndexFile;
  /** Which container runs on which image: a journal, since a converge marks dozens at once and the index is a whole-file rewrite. */
  private readonly inUse: Journal<InUse>;
  private lock: Promise<unknown> = Promise.resolve();
  private pendingSave: Promise<void> | undefined;
  /** Parsed config blobs by digest (content-addressed, so never stale): every task of a converge asks for the same one. */
  private readonly configs = new OnceCache<ImageConfigFile>();
  private unpacking = new Map<string, Promise<void>>();
  /** Blobs and snapshots an operation in flight is making or using (prune keeps them). */
  private held = new Map<string, number>();

  private constructor(root: string, content: ContentStore, snapshots: Snapshots, index: IndexFile, inUse: Journal<InUse>, options: StoreOptions) {
    this.root = root;
    this.content = content;
    this.snapshots = snapshots;
    this.index = index;
    this.inUse = inUse;
    this.options = options;
  }

  static async open(root: string, options: StoreOptions = {}): Promise<ImageStore> {
    await fsp.mkdir(root, { recursive: true });
    const content = await ContentStore.open(root);
    content.durability = options.durability ?? 'deferred';
    const snapshots = await Snapshots.open(path.join(root, 'snapshots'));
    const index = await readIndex(root);
    const inUse = new Journal<InUse>(path.join(root, 'in-use.jsonl'), (u) => u?.container);
    await inUse.load();
    const store = new ImageStore(root, content, snapshots, index, inUse, options);
    if (index.inUse) {
      // an index from before the journal: its marks move there, then leave the index for good
      if (inUse.values.size === 0) for (const [container, image] of Object.entries(index.inUse)) await inUse.put({ container, image });
      delete index.inUse;
      await store.saveIndex();
    }
    await store.recover();
    return store;
  }

  // ------------------------------------------------------------------ index

  /** Runs fn with the index locked (one change at a time, in order). */
  private locked<T>(fn: () => T | Promise<T>): Promise<T> {
    const p = this.lock.then(fn, fn);
    this.lock = p.catch(() => {});
    return p;
  }

  /** Runs fn with the index locked and resolves once the index is saved with its change (temp file + rename). */
  async mutate<T>(fn: (ix: IndexFile) => T | Promise<T>): Promise<T> {
    const r = await this.locked(() => fn(this.index));
    await this.saveIndex();
    return r;
  }

  /** The containers that run on an image. */
  private usersOf(imageId: string): string[] {
    return [...this.inUse.values.values()].filter((u) => u.image === imageId).map((u) => u.container);
  }

  /**
   * One write for every change made before it starts (each write is a new inode). The write queues
   * on the same lock as the changes, so it never sees half of one.
   */
  private saveIndex(): Promise<void> {
    if (this.pendingSave) return this.pendingSave;
    const write = async (): Promise<void> => {
      this.pendingSave = undefined;
      const tmp = path.join(this.root, `index.json.tmp-${process.pid}`);
      await fsp.writeFile(tmp, JSON.stringify(this.index));
      await fsp.rename(path.join(this.root, 'index.json'), path.join(this.root, 'index.json.prev')).catch(() => {});
      await fsp.rename(tmp, path.join(this.root, 'index.json'));
    };
    const p = this.lock.then(write, write);
    this.lock = p.catch(() => {});
    this.pendingSave = p;
    return p;
  }

  info(rec: ImageRecord): ImageInfo {
    const inUseBy = this.usersOf(rec.id);
    return {
      id: rec.id,
      repoTags: rec.names.map((n) => familiarString(mustParse(n))),
      repoDigests: rec.digests.map((d) => familiarString(mustParse(d))),
      manifestDigest: rec.manifestDigest,
      indexDigest: rec.indexDigest,
      mediaType: rec.manifestMediaType,
      configDigest: rec.configDigest,
      size: rec.layers.reduce((a, l) => a + l.size, 0),
      created: rec.created,
      platform: formatPlatform(rec.platform),
      layers: rec.layers,
      inUseBy,
    };
  }

  record(id: string): ImageRecord | undefined {
    return this.index.images[id];
  }

  /** Adds (or updates) an image and points `name` (a tag or digest reference) at it. */
  async addImage(rec: Omit<ImageRecord, 'names' | 'digests' | 'addedAt'>, ref: Reference | undefined): Promise<ImageInfo> {
    return this.mutate((ix) => {
      const existing = ix.images[rec.id];
      const r: ImageRecord = existing
        ? { ...existing, ...rec, names: existing.names, digests: existing.digests }
        : { ...rec, names: [], digests: [], addedAt: new Date().toISOString() };
      ix.images[rec.id] = r;
      if (ref) {
        if (ref.tag) this.setTag(ix, formatReference({ ...ref, digest: undefined }), r.id);
        const dg = ref.digest ?? rec.indexDigest ?? rec.manifestDigest;
        const d = `${repoName(ref)}@${dg}`;
        if (!r.digests.includes(d)) r.digests.push(d);
      }
      return this.info(r);
    });
  }

  private setTag(ix: IndexFile, name: string, id: string): void {
    for (const img of Object.values(ix.images)) {
      if (img.id !== id) img.names = img.names.filter((n) => n !== name);
    }
    const img = ix.images[id];
    if (!img.names.includes(name)) img.names.push(name);
  }

  // ------------------------------------------------------------------ lookups

  /** By name[:tag], repo@digest, full image id or a unique id prefix. */
  async resolveLocal(ref: string): Promise<ImageInfo | undefined> {
    const rec = this.find(ref);
    return rec ? this.info(rec) : undefined;
  }

  find(ref: string): ImageRecord | undefined {
    const images = Object.values(this.index.images);
    const s = ref.trim();
    const parsed = parseReference(s);
    if (parsed.ok) {
      const r = parsed.ref;
      if (r.digest) {
        const repo = repoName(r);
        const hit = images.find((i) => i.digests.includes(`${repo}@${r.digest}`))
          ?? images.find((i) => (i.manifestDigest === r.digest || i.indexDigest === r.digest) && (i.names.some((n) => n.startsWith(`${repo}:`)) || i.digests.some((d) => d.startsWith(`${repo}@`))));
        if (hit) return hit;
      } else {
        const name = formatReference(r);
        const hit = images.find((i) => i.names.includes(name));
        if (hit) return hit;
      }
    }
    const m = /^(?:sha256:)?([a-f0-9]{4,64})$/.exec(s);
    if (m) {
      const hits = images.filter((i) => i.id.slice(7).startsWith(m[1]));
      if (hits.length === 1) return hits[0];
    }
    return undefined;
  }

  async require(ref: string): Promise<ImageRecord> {
    const rec = this.find(ref);
    if (!rec) throw new ImageNotFoundError(`image "${ref}" not found locally (pull it first: gantry image pull ${ref})`);
    return rec;
  }

  async list(): Promise<ImageInfo[]> {
    return Object.values(this.index.images)
      .map((r) => this.info(r))
      .sort((a, b) => (b.created ?? '').localeCompare(a.created ?? ''));
  }

  async imageConfig(info: ImageInfo | ImageRecord | string): Promise<OciImageConfig> {
    return (await this.configFile(info)).config ?? {};
  }

  /** The image's config file; shared between callers, who must not change it. */
  async configFile(info: ImageInfo | ImageRecord | string): Promise<ImageConfigFile> {
    const { configDigest } = typeof info === 'string' ? await this.require(info) : info;
    return this.configs.get(configDigest, () => this.content.readJson<ImageConfigFile>(configDigest));
  }

  /** The unpacked layer dirs for an overlay, LOWEST LAYER FIRST. */
  async snapshotDirs(info: ImageInfo | ImageRecord | string): Promise<string[]> {
    const rec = typeof info === 'string' ? await this.require(info) : info;
    const dirs = rec.layers.map((l) => this.snapshots.dir(l.chainId));
    for (const [i, d] of dirs.entries()) {
      if (fs.existsSync(d)) continue;
      // dropped (crash recovery, prune race): unpack it again from its blob when that is here
      const l = rec.layers[i];
      if ((await this.content.stat(l.digest)) === undefined) {
        throw new Error(`image ${rec.id}: layer ${i} (${l.digest}) is not unpacked; pull the image again`);
      }
      await this.op(() => this.unpackBlob(l, rec.layers.slice(0, i).map((x) => x.chainId)));
    }
    return dirs;
  }

  // ------------------------------------------------------------------ containers

  /** Marks an image in use by a container: `image rm` refuses it, prune keeps it. Durable when it resolves. */
  async markInUse(imageId: string, containerId: string): Promise<void> {
    // in order with removals and prunes; the append is awaited outside the lock, so a converge's marks share appends
    const appended = await this.locked(() => {
      if (!this.index.images[imageId]) throw new ImageNotFoundError(`image ${imageId} not found`);
      return { done: this.inUse.put({ container: containerId, image: imageId }) };
    });
    await appended.done;
  }

  async release(containerId: string): Promise<void> {
    if (!this.inUse.values.has(containerId)) return;
    const appended = await this.locked(() => ({ done: this.inUse.delete(containerId) }));
    await appended.done;
  }

  // ------------------------------------------------------------------ names

  async tag(src: string, dst: string): Promise<ImageInfo> {
    const rec = await this.require(src);
    const r = mustParse(dst);
    if (r.digest) throw new Error(`cannot tag with a digest reference "${dst}"`);
    return this.mutate((ix) => {
      this.setTag(ix, formatReference(r), rec.id);
      return this.info(ix.images[rec.id]);
    });
  }

  /**
   * Removes a name, or the whole image when given by id (or when its last name goes). An image a
   * container uses is refused unless `force`, and then only untagged: its layers stay until released.
   */
  async remove(ref: string, opts: { force?: boolean } = {}): Promise<{ untagged: string[]; deleted: string[] }> {
    const rec = await this.require(ref);
    return this.mutate((ix) => {
      const users = this.usersOf(rec.id);
      const parsed = parseReference(ref);
      const byName = parsed.ok && !parsed.ref.digest && rec.names.includes(formatReference(parsed.ref));
      const untagged: string[] = [];
      if (byName && rec.names.length > 1) {
        const n = formatReference((parsed as { ok: true; ref: Reference }).ref);
        rec.names = rec.names.filter((x) => x !== n);
        untagged.push(familiarString(mustParse(n)));
        return { untagged, deleted: [] };
      }
      if (users.length > 0 && !opts.force) {
        throw new ImageInUseError(
          `image "${ref}" (${rec.id.slice(7, 19)}) is in use by container${users.length > 1 ? 's' : ''} ${users.join(', ')}; stop and remove ${users.length > 1 ? 'them' : 'it'} first or use --force`,
        );
      }
      for (const n of [...rec.names, ...rec.digests]) untagged.push(familiarString(mustParse(n)));
      rec.names = [];
      rec.digests = [];
      if (users.length > 0) return { untagged, deleted: [] };
      delete ix.images[rec.id];
      return { untagged, deleted: [rec.id] };
    });
  }

  /**
   * Deletes dangling images (no name, no container), then every blob and snapshot no image references,
   * and partial downloads. Returns what went and the bytes freed.
   */
  async prune(opts: { all?: boolean; keepImages?: boolean } = {}): Promise<{ images: string[]; blobs: number; snapshots: number; bytes: number }> {
    return this.mutate(async (ix) => {
      const used = new Set([...this.inUse.values.values()].map((u) => u.image));
      const images: string[] = [];
      for (const img of Object.values(ix.images)) {
        if (used.has(img.id) || opts.keepImages) continue;
        if ((img.names.length === 0 && img.digests.length === 0) || opts.all) {
          delete ix.images[img.id];
          images.push(img.id);
        }
      }
      const keepBlobs = new Set<string>();
      const keepSnaps = new Set<string>();
      for (const img of Object.values(ix.images)) {
        keepBlobs.add(img.manifestDigest);
        keepBlobs.add(img.configDigest);
        if (img.indexDigest) keepBlobs.add(img.indexDigest);
        for (const l of img.layers) {
          keepBlobs.add(l.digest);
          keepSnaps.add(l.chainId);
        }
      }
      // anything written since the oldest operation in flight began may belong to it (not yet in the index)
      const since = this.ops.size ? Math.min(...this.ops.values()) - 2000 : Number.POSITIVE_INFINITY;
      const recent = async (p: string) => ((await fsp.stat(p).catch(() => undefined))?.mtimeMs ?? 0) >= since;
      let bytes = 0;
      let blobs = 0;
      for (const d of await this.content.list()) {
        if (keepBlobs.has(d) || this.held.has(d) || (await recent(this.content.path(d)))) continue;
        bytes += (await this.content.stat(d)) ?? 0;
        await this.content.remove(d);
        blobs++;
      }
      let snapshots = 0;
      for (const c of await this.snapshots.list()) {
        if (keepSnaps.has(c) || this.unpacking.has(c) || this.held.has(c) || (await recent(path.dirname(this.snapshots.dir(c))))) continue;
        await this.snapshots.remove(c);
        snapshots++;
      }
      if (this.ops.size === 0) await this.content.clearIngest();
      return { images, blobs, snapshots, bytes };
    });
  }

  private ops = new Map<number, number>();
  private opSeq = 0;
  private dirty = false;
  private syncing: Promise<void> = Promise.resolve();

  /** Marks an operation that writes blobs/snapshots: prune keeps anything written since it began. */
  private async op<T>(fn: () => Promise<T>): Promise<T> {
    const id = ++this.opSeq;
    this.ops.set(id, Date.now());
    try {
      if (this.content.durability === 'deferred') await this.markDirty();
      return await fn();
    } finally {
      this.ops.delete(id);
      if (this.ops.size === 0 && this.content.durability === 'deferred') this.scheduleSync();
    }
  }

  private dirtyPath(): string {
    return path.join(this.root, 'dirty');
  }

  /** Durably notes "writes in flight since T" before any blob or layer is written without its own fsync. */
  private async markDirty(): Promise<void> {
    if (this.dirty) return;
    this.dirty = true;
    const fh = await fsp.open(this.dirtyPath(), 'w');
    try {
      await fh.writeFile(String(Date.now() - 2000));
      await fh.sync();
    } finally {
      await fh.close();
    }
    const dir = await fsp.open(this.root, 'r');
    await dir.sync().finally(() => dir.close());
  }

  /** One syncfs after the last operation; then the marker goes. Resolves when done (tests await it). */
  scheduleSync(): Promise<void> {
    const seq = this.opSeq;
    this.syncing = (async () => {
      await run('sync', ['-f', this.root], this.root).catch(() => {});
      if (this.ops.size === 0 && this.opSeq === seq && this.dirty) {
        await fsp.rm(this.dirtyPath(), { force: true });
        this.dirty = false;
      }
    })();
    return this.syncing;
  }

  /** Waits for a deferred sync in flight (gantryd shutdown, tests). */
  async flush(): Promise<void> {
    await this.syncing;
  }

  /**
   * After a crash in deferred mode: blobs written since the marker are re-hashed (bad ones deleted) and layers
   * unpacked since then are dropped (a later pull unpacks them again from the verified blobs).
   */
  private async recover(): Promise<void> {
    let since: number;
    try {
      since = Number(await fsp.readFile(this.dirtyPath(), 'utf8'));
    } catch {
      return;
    }
    if (!Number.isFinite(since)) since = 0;
    for (const d of await this.content.list()) {
      const p = this.content.path(d);
      const st = await fsp.stat(p).catch(() => undefined);
      if (!st || st.mtimeMs < since) continue;
      if ((await hashFile(p)) !== d) await fsp.rm(p, { force: true });
    }
    for (const c of await this.snapshots.list()) {
      const st = await fsp.stat(path.dirname(this.snapshots.dir(c))).catch(() => undefined);
      if (st && st.mtimeMs >= since) await this.snapshots.remove(c);
    }
    await run('sync', ['-f', this.root], this.root).catch(() => {});
    await fsp.rm(this.dirtyPath(), { force: true });
  }

  /** Keeps digests / chain ids from prune until the returned release is called. */
  hold(keys: string[]): () => void {
    for (const k of keys) this.held.set(k, (this.held.get(k) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      for (const k of keys) {
        const n = (this.held.get(k) ?? 1) - 1;
        if (n <= 0) this.held.delete(k);
        else this.held.set(k, n);
      }
    };
  }

  // ------------------------------------------------------------------ snapshots

  /**
   * Ensures the snapshot for `chainId` exists, running `fill(tmpFsDir)` once even when several pulls want it
   * at the same time. fill returns the diff id it saw, which must equal `diffId`.
   */
  async ensureSnapshot(chainId: string, diffId: string | undefined, fill: (dir: string) => Promise<string>): Promise<void> {
    if (this.snapshots.has(chainId)) return;
    const running = this.unpacking.get(chainId);
    if (running) return running;
    const p = (async () => {
      const tmp = await this.snapshots.prepare(chainId);
      try {
        const got = await fill(tmp);
        if (diffId && got !== diffId) throw new Error(`layer content hashes to ${got} but the image config says ${diffId}`);
        await this.snapshots.commit(tmp, chainId);
      } catch (e) {
        await this.snapshots.discard(tmp);
        throw e;
      }
    })();
    this.unpacking.set(chainId, p);
    try {
      await p;
    } finally {
      this.unpacking.delete(chainId);
    }
  }

  /** Resolves once the snapshot exists (waiting for an unpack in flight); false if nobody is making it. */
  async waitSnapshot(chainId: string): Promise<boolean> {
    const running = this.unpacking.get(chainId);
    if (running) await running.catch(() => {});
    return this.snapshots.has(chainId);
  }

  /** Unpacks a blob already in the content store (after an interrupted pull, or load). */
  async unpackBlob(layer: LayerRecord, lowerChainIds: string[], onWorker = false): Promise<void> {
    await this.ensureSnapshot(layer.chainId, layer.diffId, async (dir) => {
      const fh = fs.createReadStream(this.content.path(layer.digest), { highWaterMark: 256 << 10 });
      const head = await readHead(this.content.path(layer.digest));
      const r = await unpackLayer(fh as AsyncIterable<Buffer>, sniffCompression(head), {
        root: dir,
        lowers: () => this.lowerDirs(lowerChainIds),
        whiteoutTemplate: this.snapshots.whiteoutTemplate,
        onWorker,
      });
      return r.diffId;
    });
  }

  /** Snapshot dirs of the given chain ids, TOPMOST FIRST, waiting for ones being unpacked. */
  async lowerDirs(lowerChainIds: string[]): Promise<string[]> {
    const out: string[] = [];
    for (const c of [...lowerChainIds].reverse()) {
      if (!(await this.waitSnapshot(c))) throw new Error(`lower layer ${c} is not unpacked`);
      out.push(this.snapshots.dir(c));
    }
    return out;
  }

  // ------------------------------------------------------------------ registries

  /** Pulls ref (tag or digest) from its registry; layers already here are not fetched again. */
  async pull(ref: string, opts: PullOptions & Partial<RegistryClientOptions> = {}): Promise<ImageInfo> {
    return this.op(() => pullImage(this, ref, opts));
  }

  /** The manifest (or index) digest a tag has in its registry now. */
  async resolveRemote(ref: string, opts: PullOptions & Partial<RegistryClientOptions> = {}): Promise<{ digest: string }> {
    const r = await resolveRemoteDigest(this, ref, opts);
    return { digest: r.digest };
  }

  /** Pushes a local image under `ref` (which names the target repository and tag). */
  async push(ref: string, opts: PushOptions & Partial<RegistryClientOptions> = {}): Promise<PushResult> {
    return pushImage(this, ref, opts);
  }

  /** Writes images as one tar: docker-archive (docker load / skopeo docker-archive:) or an OCI layout. */
  async save(refs: string[], out: NodeJS.WritableStream, format: ArchiveFormat = 'docker-archive'): Promise<void> {
    return saveImages(this, refs, out, format);
  }

  /** Loads a docker-archive or OCI-layout tar (a path or a stream); returns "Loaded image: …" lines. */
  async load(input: NodeJS.ReadableStream | string): Promise<string[]> {
    return this.op(() => loadImages(this, input));
  }

  // ------------------------------------------------------------------ import

  /**
   * `docker import`: one rootfs tar (plain, gzip or zstd; a path or a stream) becomes a one-layer image stored
   * like a pulled one (gzip layer blob + OCI manifest + config), unpacked, and named `ref`.
   */
  async importRootfs(tar: NodeJS.ReadableStream | string, ref: string, opts: { changes?: string[]; platform?: Platform; message?: string } = {}): Promise<ImageInfo> {
    return this.op(() => this.importOnce(tar, ref, opts));
  }

  private async importOnce(tar: NodeJS.ReadableStream | string, ref: string, opts: { changes?: string[]; platform?: Platform; message?: string }): Promise<ImageInfo> {
    const r = ref ? mustParse(ref) : undefined; // no name: an untagged image, as `docker import FILE`
    const changed = applyChanges({}, opts.changes ?? []);
    if (!changed.ok) throw new Error(changed.reason);
    const input: AsyncIterable<Buffer> = typeof tar === 'string' ? fs.createReadStream(tar, { highWaterMark: 256 << 10 }) : (tar as AsyncIterable<Buffer>);
    const it = input[Symbol.asyncIterator]();
    const first = await it.next();
    const head: Buffer = first.done ? Buffer.alloc(0) : first.value;
    const source = Readable.from((async function* () {
      if (head.length) yield head;
      for (;;) {
        const n = await it.next();
        if (n.done) return;
        yield n.value;
      }
    })());
    const writer = await this.content.writer();
    const gz = zlib.createGzip({ level: 6, chunkSize: 256 << 10 });
    const gzDone = new Promise<void>((resolve, reject) => {
      gz.on('data', (c: Buffer) => writer.write(c));
      gz.on('end', resolve);
      gz.on('error', reject);
    });
    let diffId = '';
    let blobDigest = '';
    try {
      const tmpChain = `sha256:${'0'.repeat(48)}${Date.now().toString(16).padStart(16, '0')}`;
      const tmp = await this.snapshots.prepare(tmpChain);
      try {
        const res = await applyLayer(source, sniffCompression(head), {
          root: tmp,
          lowers: async () => [],
          whiteoutTemplate: this.snapshots.whiteoutTemplate,
          onTarChunk: (c) => (gz.write(c) ? undefined : new Promise<void>((res) => gz.once('drain', res))),
        });
        gz.end();
        await gzDone;
        diffId = res.diffId;
        blobDigest = await writer.commit();
        if (this.snapshots.has(diffId)) await this.snapshots.discard(tmp);
        else await this.snapshots.commit(tmp, diffId);
      } catch (e) {
        await this.snapshots.discard(tmp);
        throw e;
      }
    } catch (e) {
      gz.destroy();
      writer.abort(false);
      throw new Error(`import of ${ref || 'rootfs'}: ${(e as Error).message}`, { cause: e });
    }
    const blobSize = (await this.content.stat(blobDigest)) ?? 0;
    const platform = opts.platform ?? hostPlatform();
    const created = new Date().toISOString();
    const cfg: ImageConfigFile = {
      created,
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant ? { variant: platform.variant } : {}),
      config: changed.config,
      rootfs: { type: 'layers', diff_ids: [diffId] },
      history: [{ created, created_by: 'gantry image import', comment: opts.message ?? 'Imported from tarball' }],
    };
    const cfgBuf = Buffer.from(JSON.stringify(cfg));
    const configDigest = await this.content.put(cfgBuf);
    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType: MT.ociManifest,
      config: { mediaType: MT.ociConfig, digest: configDigest, size: cfgBuf.length },
      layers: [{ mediaType: MT.ociLayerGzip, digest: blobDigest, size: blobSize }],
    };
    const manBuf = Buffer.from(JSON.stringify(manifest));
    const manifestDigest = await this.content.put(manBuf);
    return this.addImage(
      {
        id: configDigest,
        manifestDigest,
        manifestMediaType: MT.ociManifest,
        configDigest,
        layers: [{ digest: blobDigest, mediaType: MT.ociLayerGzip, size: blobSize, diffId, chainId: chainIds([diffId])[0] }],
        created,
        platform,
      },
      r && (r.tag || r.digest ? r : { ...r, tag: 'latest' }),
    );
  }
}

async function readHead(file: string): Promise<Buffer> {
  const fh = await fsp.open(file, 'r');
  try {
    const b = Buffer.alloc(8);
    const { bytesRead } = await fh.read(b, 0, 8, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

async function readIndex(root: string): Promise<IndexFile> {
  for (const name of ['index.json', 'index.json.prev']) {
    let text: string;
    try {
      text = await fsp.readFile(path.join(root, name), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw e;
    }
    try {
      return JSON.parse(text) as IndexFile;
    } catch {
      // torn by a crash: fall back to the previous version
    }
  }
  return { version: 1, images: {} };
}

function hashFile(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    fs.createReadStream(file).on('data', (c) => h.update(c)).on('error', reject).on('end', () => resolve(`sha256:${h.digest('hex')}`));
  });
}
