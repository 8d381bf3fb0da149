// The gRPC `Images` service (proto/gantry/v1/images.proto) over an ImageStore: request → store call → reply,
// progress as server streams, import/load/save as byte streams; errors become gRPC statuses here only.
import * as grpc from '@grpc/grpc-js';
import { Readable, Writable } from 'node:stream';
import type {
  ImageData, ImageDetail, ImageImportChunk, ImagePullEvent, ImageSummary, ImagesServer, RegistryAuth,
} from '../../proto/gen/gantry/v1/images.ts';
import { DigestMismatchError } from './content.ts';
import { InvalidReferenceError, mustParse } from './reference.ts';
import { RegistryError } from './registry.ts';
import { type Credentials, type ImageInfo, ImageInUseError, ImageNotFoundError, type ImageStore, type PullProgress } from './store.ts';
import { TarFormatError } from './tar.ts';
import { UnsafeEntryError } from './unpack.ts';

export function toStatus(e: unknown): Partial<grpc.StatusObject> & { message: string } {
  const err = e instanceof Error ? e : new Error(String(e));
  const root = (err.cause instanceof Error ? err.cause : undefined) ?? err;
  let code = grpc.status.UNKNOWN;
  // errors from unpack worker threads arrive as plain errors carrying the original class name
  const is = (cls: abstract new (...a: never[]) => Error): boolean => err instanceof cls || root instanceof cls || (root as Error).name === cls.name;
  if (is(ImageNotFoundError)) code = grpc.status.NOT_FOUND;
  else if (is(ImageInUseError)) code = grpc.status.FAILED_PRECONDITION;
  else if (is(InvalidReferenceError) || is(UnsafeEntryError) || is(TarFormatError)) code = grpc.status.INVALID_ARGUMENT;
  else if (is(DigestMismatchError)) code = grpc.status.DATA_LOSS;
  else if (is(RegistryError)) {
    const s = (err instanceof RegistryError ? err : (root as RegistryError)).status;
    code = s === 401 ? grpc.status.UNAUTHENTICATED : s === 403 ? grpc.status.PERMISSION_DENIED : s === 404 ? grpc.status.NOT_FOUND : s === 0 ? grpc.status.UNAVAILABLE : grpc.status.UNKNOWN;
  } else if (/^invalid (reference|platform)|is not supported by import|unknown archive format/.test(err.message)) code = grpc.status.INVALID_ARGUMENT;
  return { code, details: err.message, message: err.message };
}

function fail(cb: (e: grpc.ServiceError | null) => void, e: unknown): void {
  const s = toStatus(e);
  cb(Object.assign(new Error(s.message), { code: s.code, details: s.details, metadata: new grpc.Metadata() }) as grpc.ServiceError);
}

/** The credentials for the registry of `ref`, from what the CLI sent. */
export function credentialsFor(ref: string, auth: RegistryAuth[]): Credentials | undefined {
  let domain: string;
  try {
    domain = mustParse(ref).domain;
  } catch {
    return undefined;
  }
  const aliases = domain === 'docker.io' ? ['docker.io', 'index.docker.io', 'registry-1.docker.io', 'https://index.docker.io/v1/'] : [domain];
  const a = auth.find((x) => aliases.includes(x.registry.replace(/^https?:\/\//, '').replace(/\/+$/, '')) || aliases.includes(x.registry));
  if (!a) return undefined;
  return { username: a.username || undefined, password: a.password || undefined, identityToken: a.identityToken || undefined };
}

export function summary(i: ImageInfo): ImageSummary {
  return {
    id: i.id,
    repoTags: i.repoTags,
    repoDigests: i.repoDigests,
    size: i.size,
    created: i.created ?? '',
    platform: i.platform,
    manifestDigest: i.manifestDigest,
    layers: i.layers.length,
    inUseBy: i.inUseBy,
  };
}

/** Forwards progress, at most every 100 ms per layer for byte counts. */
function progressWriter(write: (e: ImagePullEvent) => void): (p: PullProgress) => void {
  const last = new Map<string, number>();
  return (p) => {
    if (p.status === 'downloading' || p.status === 'pushing') {
      const now = Date.now();
      if (now - (last.get(p.id) ?? 0) < 100 && p.current !== p.total) return;
      last.set(p.id, now);
    }
    write({ event: { $case: 'progress', value: { id: p.id, status: p.status, current: p.current ?? 0, total: p.total ?? 0, message: p.message ?? '' } } });
  };
}

async function* dataOf(call: AsyncIterable<ImageData | ImageImportChunk>): AsyncGenerator<Buffer> {
  for await (const m of call) {
    if ('part' in m) {
      if (m.part?.$case === 'data') yield Buffer.from(m.part.value);
    } else if ('data' in m && m.data?.length) yield Buffer.from(m.data);
  }
}

/** Ends a server-streaming call with the error's status (grpc-js: emit 'error' with code and details). */
function failStream(call: grpc.ServerWritableStream<unknown, unknown>, e: unknown): void {
  const s = toStatus(e);
  if (call.cancelled) return;
  call.emit('error', Object.assign(new Error(s.message), { code: s.code, details: s.details, metadata: new grpc.Metadata() }));
}

/** gantryd: server.addService(ImagesService, imagesService(store)). */
export function imagesService(store: ImageStore): ImagesServer {
  return {
    pull(call) {
      const req = call.request;
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort());
      const write = (e: ImagePullEvent) => {
        if (!call.cancelled) call.write(e);
      };
      store
        .pull(req.ref, { platform: req.platform || undefined, insecure: req.insecure, credentials: credentialsFor(req.ref, req.auth), signal: ac.signal, onProgress: progressWriter(write) })
        .then((info) => {
          write({ event: { $case: 'done', value: summary(info) } });
          call.end();
        })
        .catch((e) => failStream(call, e));
    },

    push(call) {
      const req = call.request;
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort());
      const write = (e: ImagePullEvent) => {
        if (!call.cancelled) call.write(e);
      };
      store
        .push(req.ref, { insecure: req.insecure, credentials: credentialsFor(req.ref, req.auth), signal: ac.signal, chunkSize: req.chunked ? 5 << 20 : undefined, onProgress: progressWriter(write) })
        .then((r) => {
          write({ event: { $case: 'pushed', value: r } });
          call.end();
        })
        .catch((e) => failStream(call, e));
    },

    list(call, cb) {
      store
        .list()
        .then((all) => {
          let images = all;
          if (!call.request.all) images = images.filter((i) => i.repoTags.length > 0 || i.repoDigests.length > 0 || i.inUseBy.length > 0);
          const f = call.request.reference;
          if (f) images = images.filter((i) => i.repoTags.some((t) => t === f || t.startsWith(`${f}:`)) || i.id.startsWith(f) || i.id.slice(7).startsWith(f));
          cb(null, { images: images.map(summary) });
        })
        .catch((e) => fail(cb, e));
    },

    inspect(call, cb) {
      (async (): Promise<ImageDetail> => {
        const rec = await store.require(call.request.ref);
        const info = store.info(rec);
        return {
          summary: summary(info),
          configJson: (await store.content.read(rec.configDigest)).toString('utf8'),
          manifestJson: (await store.content.read(rec.manifestDigest)).toString('utf8'),
          mediaType: rec.manifestMediaType,
          indexDigest: rec.indexDigest ?? '',
          layers: rec.layers.map((l) => ({ digest: l.digest, diffId: l.diffId, chainId: l.chainId, size: l.size, mediaType: l.mediaType, snapshotDir: store.snapshots.dir(l.chainId) })),
        };
      })().then((d) => cb(null, d), (e) => fail(cb, e));
    },

    remove(call, cb) {
      (async () => {
        const out = { untagged: [] as string[], deleted: [] as string[], errors: [] as string[] };
        for (const r of call.request.refs) {
          try {
            const res = await store.remove(r, { force: call.request.force });
            out.untagged.push(...res.untagged);
            out.deleted.push(...res.deleted);
          } catch (e) {
            if (call.request.refs.length === 1) throw e;
            out.errors.push((e as Error).message);
          }
        }
        if (out.deleted.length) await store.prune({ keepImages: true }); // free the removed image's blobs and layers
        return out;
      })().then((r) => cb(null, r), (e) => fail(cb, e));
    },

    tag(call, cb) {
      store.tag(call.request.source, call.request.target).then((i) => cb(null, summary(i)), (e) => fail(cb, e));
    },

    prune(call, cb) {
      store.prune({ all: call.request.all }).then(
        (r) => cb(null, { images: r.images, blobs: r.blobs, snapshots: r.snapshots, bytesFreed: r.bytes }),
        (e) => fail(cb, e),
      );
    },

    import(call, cb) {
      (async () => {
        const it = (call as AsyncIterable<ImageImportChunk>)[Symbol.asyncIterator]();
        const first = await it.next();
        if (first.done || first.value.part?.$case !== 'header') throw new Error('invalid import stream: the first message must be the header');
        const h = first.value.part.value;
        const rest = { [Symbol.asyncIterator]: () => it };
        const info = await store.importRootfs(Readable.from(dataOf(rest)), h.ref, { changes: h.changes, message: h.message || undefined });
        return summary(info);
      })().then((s) => cb(null, s), (e) => fail(cb, e));
    },

    save(call) {
      const out = new Writable({
        highWaterMark: 4 << 20,
        write(chunk: Buffer, _enc, done) {
          if (call.cancelled) {
            done(new Error('save cancelled by the client'));
            return;
          }
          const push = (b: Buffer) => call.write({ data: b });
          let ok = true;
          for (let off = 0; off < chunk.length; off += 1 << 20) ok = push(chunk.subarray(off, off + (1 << 20))) && ok;
          if (ok) done();
          else call.once('drain', () => done());
        },
      });
      const format = call.request.format || 'docker-archive';
      store
        .save(call.request.refs, out, format as 'docker-archive' | 'oci')
        .then(() => call.end())
        .catch((e) => failStream(call, e));
    },

    load(call, cb) {
      store.load(Readable.from(dataOf(call as AsyncIterable<ImageData>))).then((loaded) => cb(null, { loaded }), (e) => fail(cb, e));
    },

    resolveRemote(call, cb) {
      store
        .resolveRemote(call.request.ref, { insecure: call.request.insecure, credentials: credentialsFor(call.request.ref, call.request.auth) })
        .then((r) => cb(null, { digest: r.digest }), (e) => fail(cb, e));
    },
  };
}
