// Pull: resolve a reference to one platform's manifest, fetch config and layers (bounded parallelism), each
// layer streamed once through digest check, blob store and unpack at the same time, resuming cut downloads.
import * as fs from 'node:fs';
import type { BlobWriter } from './content.ts';
import { assignUnpackThreads, type UnpackPlace, unpackLayer, unpackWorkerCount, warmUnpackWorkers } from './layer.ts';
import * as os from 'node:os';
import {
  chainIds, detectManifestType, formatPlatform, hostPlatform, isIndex, isManifest, layerCompression, MANIFEST_ACCEPT,
  parsePlatform, sha256, type ImageConfigFile, type Index, type Manifest,
} from './oci.ts';
import { familiarString, mustParse, type Reference } from './reference.ts';
import { isRetryable, RegistryClient, type RegistryClientOptions } from './registry.ts';
import type { ImageInfo, ImageStore, LayerRecord, PullOptions, PullProgress } from './store.ts';

export interface ResolvedManifest {
  manifest: Manifest;
  manifestBuf: Buffer;
  manifestDigest: string;
  manifestMediaType: string;
  /** The index the manifest was picked from. */
  index?: { buf: Buffer; digest: string; mediaType: string };
}

export function clientFor(store: ImageStore, ref: Reference, opts: PullOptions & Partial<RegistryClientOptions>): RegistryClient {
  const insecure = opts.insecure || (store.options.insecureRegistries ?? []).includes(ref.domain);
  return new RegistryClient(ref.domain, {
    insecure,
    credentials: opts.credentials,
    signal: opts.timeoutMs ? AbortSignal.any([AbortSignal.timeout(opts.timeoutMs), ...(opts.signal ? [opts.signal] : [])]) : opts.signal,
    attempts: opts.attempts,
    backoffMs: opts.backoffMs,
    idleTimeoutMs: opts.idleTimeoutMs,
    sleep: opts.sleep,
    certsDir: store.options.certsDir,
    forceTls: (store.options.tlsRegistries ?? []).includes(ref.domain),
    onRetry: (reason, attempt) => opts.onProgress?.({ id: '', status: 'retrying', message: `${reason} (attempt ${attempt})` }),
  });
}

/** Fetches and verifies the manifest (and index) a reference names, picking the platform from an index. */
export async function resolveManifest(client: RegistryClient, ref: Reference, platform: string | undefined): Promise<ResolvedManifest> {
  const tagOrDigest = ref.digest ?? ref.tag ?? 'latest';
  const name = familiarString(ref);
  const got = await client.getManifest(ref.path, tagOrDigest, MANIFEST_ACCEPT);
  const digest = sha256(got.body);
  if (ref.digest && digest !== ref.digest) throw new Error(`manifest of ${name} hashes to ${digest}, not the digest asked for`);
  if (got.digest && got.digest !== digest && got.digest.startsWith('sha256:')) {
    throw new Error(`manifest of ${name}: registry says ${got.digest} but content hashes to ${digest}`);
  }
  let doc = parseJson<Manifest & Index>(got.body, `manifest of ${name}`);
  const mt = detectManifestType(doc, got.mediaType);
  if (isIndex(mt)) {
    const want = platform ? parsePlatform(platform) : hostPlatform();
    const idx = doc as Index;
    const d = selectFrom(idx, want);
    if (!d) {
      const have = idx.manifests.map((m) => formatPlatform(m.platform)).filter(Boolean).join(', ');
      throw new Error(`image ${name} has no manifest for ${formatPlatform(want)} (it has ${have || 'none'}); choose one with --platform`);
    }
    const sub = await client.getManifest(ref.path, d.digest, MANIFEST_ACCEPT);
    const subDigest = sha256(sub.body);
    if (subDigest !== d.digest) throw new Error(`manifest ${d.digest} of ${name} hashes to ${subDigest}`);
    doc = parseJson<Manifest & Index>(sub.body, `manifest ${d.digest} of ${name}`);
    const subMt = detectManifestType(doc, sub.mediaType);
    if (!isManifest(subMt)) throw new Error(`manifest ${d.digest} of ${name} has unsupported type ${subMt}`);
    return { manifest: doc, manifestBuf: sub.body, manifestDigest: subDigest, manifestMediaType: subMt, index: { buf: got.body, digest, mediaType: mt } };
  }
  if (!isManifest(mt)) {
    throw new Error(`manifest of ${name} has unsupported type "${mt}" (schema1 and other formats are not supported; re-push with a current client)`);
  }
  return { manifest: doc, manifestBuf: got.body, manifestDigest: digest, manifestMediaType: mt };
}

function selectFrom(idx: Index, want: ReturnType<typeof hostPlatform>) {
  const candidates = idx.manifests.filter((m) => isManifest(m.mediaType) || !m.mediaType);
  const byPlatform = candidates.filter((m) => m.platform?.os === want.os && m.platform?.architecture === want.architecture);
  if (want.variant) {
    const exact = byPlatform.find((m) => m.platform?.variant === want.variant);
    if (exact) return exact;
  }
  return byPlatform.find((m) => !m.platform?.variant) ?? byPlatform[0];
}

function parseJson<T>(b: Buffer, what: string): T {
  try {
    return JSON.parse(b.toString('utf8')) as T;
  } catch (e) {
    throw new Error(`${what} is not valid JSON: ${(e as Error).message}`);
  }
}

export async function pullImage(store: ImageStore, refStr: string, opts: PullOptions & Partial<RegistryClientOptions> = {}): Promise<ImageInfo> {
  const ref = mustParse(refStr);
  const name = familiarString(ref);
  const progress = (p: PullProgress) => opts.onProgress?.(p);
  const client = clientFor(store, ref, opts);
  progress({ id: '', status: 'resolving', message: `resolving ${name}` });
  const rm = await resolveManifest(client, ref, opts.platform);
  const m = rm.manifest;
  const releaseHead = store.hold([m.config?.digest ?? '', rm.manifestDigest, ...(rm.index ? [rm.index.digest] : [])]);
  try {
    return await pullResolved(store, client, ref, rm, progress, name);
  } finally {
    releaseHead();
  }
}

async function pullResolved(store: ImageStore, client: RegistryClient, ref: Reference, rm: ResolvedManifest, progress: (p: PullProgress) => void, name: string): Promise<ImageInfo> {
  const m = rm.manifest;
  if (!m.config?.digest || !Array.isArray(m.layers)) throw new Error(`manifest of ${name} has no config or layers`);

  // config
  let cfgBuf: Buffer;
  if ((await store.content.stat(m.config.digest)) !== undefined) cfgBuf = await store.content.read(m.config.digest);
  else {
    cfgBuf = await client.getBlob(ref.path, m.config.digest);
    await store.content.put(cfgBuf, m.config.digest).catch((e: Error) => {
      throw new Error(`config of ${name}: ${e.message}`);
    });
  }
  const cfg = parseJson<ImageConfigFile>(cfgBuf, `config of ${name}`);
  const diffIds = cfg.rootfs?.diff_ids ?? [];
  if (diffIds.length !== m.layers.length) {
    throw new Error(`image ${name}: manifest has ${m.layers.length} layers but its config lists ${diffIds.length} diff ids`);
  }
  const chains = chainIds(diffIds);
  const layers: LayerRecord[] = m.layers.map((l, i) => ({ digest: l.digest, mediaType: l.mediaType, size: l.size, diffId: diffIds[i], chainId: chains[i] }));
  for (const l of layers) {
    if (!layerCompression(l.mediaType)) throw new Error(`image ${name}: layer ${l.digest} has unsupported media type ${l.mediaType}`);
    progress({ id: l.digest, status: 'waiting', total: l.size });
  }

  const release = store.hold(layers.flatMap((l) => [l.digest, l.chainId]));
  try {
    return await fetchAll(store, client, ref, rm, cfg, layers, progress, name);
  } finally {
    release();
  }
}

async function fetchAll(
  store: ImageStore, client: RegistryClient, ref: Reference, rm: ResolvedManifest, cfg: ImageConfigFile,
  layers: LayerRecord[], progress: (p: PullProgress) => void, name: string,
): Promise<ImageInfo> {
  const m = rm.manifest;
  // layers, bounded parallelism; each layer's own unpack waits for lower ones only if it needs them
  const limit = Math.max(1, store.options.maxConcurrentDownloads ?? 6);
  const places = assignUnpackThreads(layers.map((l) => l.size), unpackWorkerCount(process.env.GANTRY_UNPACK_WORKERS, os.availableParallelism()));
  // start the thread(s) while the first bytes arrive (first big pull only: they are kept)
  if (places.includes('worker')) void warmUnpackWorkers().catch(() => {});
  let next = 0;
  const errors: Error[] = [];
  const worker = async () => {
    while (next < layers.length && errors.length === 0) {
      const i = next++;
      try {
        await fetchLayer(store, client, ref, layers, i, progress, places[i]);
      } catch (e) {
        errors.push(new Error(`pull ${name}: layer ${layers[i].digest.slice(7, 19)}: ${(e as Error).message}`, { cause: e }));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, layers.length) }, worker));
  if (errors.length) throw errors[0];

  await store.content.put(rm.manifestBuf, rm.manifestDigest);
  if (rm.index) await store.content.put(rm.index.buf, rm.index.digest);
  const info = await store.addImage(
    {
      id: m.config.digest,
      manifestDigest: rm.manifestDigest,
      manifestMediaType: rm.manifestMediaType,
      indexDigest: rm.index?.digest,
      configDigest: m.config.digest,
      layers,
      created: cfg.created,
      platform: { os: cfg.os, architecture: cfg.architecture, ...(cfg.variant ? { variant: cfg.variant } : {}) },
    },
    ref,
  );
  progress({ id: '', status: 'done', message: `${name}: ${rm.index?.digest ?? rm.manifestDigest}` });
  return info;
}

async function fetchLayer(
  store: ImageStore, client: RegistryClient, ref: Reference, layers: LayerRecord[], i: number, progress: (p: PullProgress) => void, place: UnpackPlace,
): Promise<void> {
  const l = layers[i];
  const lowerChains = layers.slice(0, i).map((x) => x.chainId);
  await store.content.exclusive(l.digest, async () => {
    const haveBlob = (await store.content.stat(l.digest)) !== undefined;
    const haveSnap = store.snapshots.has(l.chainId);
    if (haveBlob && haveSnap) {
      progress({ id: l.digest, status: 'exists', current: l.size, total: l.size });
      return;
    }
    if (haveBlob) {
      progress({ id: l.digest, status: 'extracting', total: l.size });
      await store.unpackBlob(l, lowerChains, place !== 'here');
      progress({ id: l.digest, status: 'done', current: l.size, total: l.size });
      return;
    }
    const writer = await store.content.writer(l.digest);
    let ok = false;
    let keepPartial = false;
    try {
      const source = blobBytes(client, ref.path, l, writer, progress);
      let consumed = false;
      if (!haveSnap) {
        await store.ensureSnapshot(l.chainId, l.diffId, async (dir) => {
          consumed = true;
          const r = await unpackLayer(source, layerCompression(l.mediaType) ?? 'none', {
            root: dir,
            lowers: () => store.lowerDirs(lowerChains),
            whiteoutTemplate: store.snapshots.whiteoutTemplate,
            onWorker: place === 'worker',
          });
          // the whole blob must be in (and verified) before the snapshot counts
          progress({ id: l.digest, status: 'verifying', current: l.size, total: l.size });
          await writer.commit(l.size);
          ok = true;
          return r.diffId;
        });
      }
      if (!consumed) {
        // the snapshot exists (or another pull is making it from a differently compressed blob): download only
        for await (const _ of source) {
          // bytes go to the writer
        }
      }
      if (!ok) {
        progress({ id: l.digest, status: 'verifying', current: l.size, total: l.size });
        await writer.commit(l.size);
        ok = true;
      }
      progress({ id: l.digest, status: 'done', current: l.size, total: l.size });
    } catch (e) {
      // a broken connection leaves good bytes worth resuming from; bad data (corrupt, unsafe) leaves nothing
      keepPartial = isRetryable(e);
      throw e;
    } finally {
      if (!ok) writer.abort(keepPartial);
    }
  });
}

/**
 * The blob's bytes for the unpacker: what an earlier attempt left in the ingest file first, then the registry
 * from that offset (Range), retrying broken or cut-off connections from where they stopped.
 */
async function* blobBytes(client: RegistryClient, repo: string, l: LayerRecord, writer: BlobWriter, progress: (p: PullProgress) => void): AsyncGenerator<Buffer> {
  const resumeFrom = writer.offset;
  if (resumeFrom > 0) {
    if (resumeFrom > l.size) {
      writer.restart();
    } else {
      let left = resumeFrom;
      for await (const c of fs.createReadStream(writer.tmp, { end: resumeFrom - 1, highWaterMark: 256 << 10 })) {
        left -= (c as Buffer).length;
        yield c as Buffer;
      }
      if (left !== 0) throw new Error(`partial download ${writer.tmp} changed while reading`);
    }
  }
  let failures = 0;
  let lastReport = 0;
  while (writer.offset < l.size || l.size === 0) {
    const start = writer.offset;
    try {
      const b = await client.openBlob(repo, l.digest, start);
      let skip = b.partial ? 0 : start; // the server ignored the range: skip what we have
      for await (const chunk of b.body as AsyncIterable<Buffer>) {
        let c = chunk;
        if (skip > 0) {
          const n = Math.min(skip, c.length);
          skip -= n;
          c = c.subarray(n);
          if (c.length === 0) continue;
        }
        if (writer.offset + c.length > l.size) throw new Error(`registry sent more than the ${l.size} bytes the manifest says`);
        writer.write(c);
        if (writer.offset - lastReport >= 256 << 10 || writer.offset === l.size) {
          lastReport = writer.offset;
          progress({ id: l.digest, status: 'downloading', current: writer.offset, total: l.size });
        }
        yield c;
      }
      if (writer.offset < l.size) throw new Error(`connection closed early: ${writer.offset} of ${l.size} bytes`);
      if (l.size === 0) return;
    } catch (e) {
      const madeProgress = writer.offset > start;
      if (madeProgress) failures = 0;
      failures++;
      if (!isRetryable(e) || failures >= 5) throw e;
      progress({ id: l.digest, status: 'retrying', current: writer.offset, total: l.size, message: (e as Error).message });
      await client.backoff(failures);
    }
  }
}

/** The manifest digest a tag has in its registry right now (what `docker pull` would get). */
export async function resolveRemoteDigest(store: ImageStore, refStr: string, opts: PullOptions & Partial<RegistryClientOptions> = {}): Promise<{ digest: string; mediaType: string }> {
  const ref = mustParse(refStr);
  if (ref.digest) return { digest: ref.digest, mediaType: '' };
  const client = clientFor(store, ref, opts);
  const h = await client.headManifest(ref.path, ref.tag ?? 'latest', MANIFEST_ACCEPT);
  if (!h) throw new Error(`image "${familiarString(ref)}" not found in ${ref.domain}`);
  if (h.digest) return { digest: h.digest, mediaType: h.mediaType };
  const got = await client.getManifest(ref.path, ref.tag ?? 'latest', MANIFEST_ACCEPT);
  return { digest: sha256(got.body), mediaType: got.mediaType };
}
