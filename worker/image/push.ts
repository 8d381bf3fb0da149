// Push: every blob of an image to a repository (skipping blobs it has, mounting ones another repository of the
// same registry has, else uploading monolithic or chunked), then the manifest under the tag.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { familiarString, mustParse, repoName } from './reference.ts';
import type { RegistryClientOptions } from './registry.ts';
import { clientFor } from './pull.ts';
import type { ImageStore, PullOptions, PullProgress } from './store.ts';

export interface PushOptions extends PullOptions {
  /** Upload blobs with PATCH chunks of this many bytes instead of one PUT. */
  chunkSize?: number;
}

export interface PushResult {
  ref: string;
  digest: string;
  size: number;
}

export async function pushImage(store: ImageStore, refStr: string, opts: PushOptions & Partial<RegistryClientOptions> = {}): Promise<PushResult> {
  const rec = await store.require(refStr);
  const target = mustParse(refStr);
  const tag = target.digest ? undefined : (target.tag ?? 'latest');
  const name = familiarString(target);
  const progress = (p: PullProgress) => opts.onProgress?.(p);
  const client = clientFor(store, target, opts);
  const repo = target.path;
  // repositories of the same registry that already hold this image: mount sources
  const mountFrom = [...rec.names, ...rec.digests]
    .map((n) => mustParse(n))
    .filter((r) => r.domain === target.domain && r.path !== repo)
    .map((r) => r.path);

  const blobs = [
    ...rec.layers.map((l) => ({ digest: l.digest, size: l.size })),
    { digest: rec.configDigest, size: (await store.content.stat(rec.configDigest)) ?? 0 },
  ];
  for (const b of blobs) {
    if ((await store.content.stat(b.digest)) === undefined) {
      throw new Error(`push ${name}: blob ${b.digest} is not in the local store (the image was pulled incompletely; pull it again)`);
    }
  }
  let next = 0;
  const errors: Error[] = [];
  const work = async () => {
    while (next < blobs.length && errors.length === 0) {
      const b = blobs[next++];
      try {
        await pushBlob(b.digest, b.size);
      } catch (e) {
        errors.push(new Error(`push ${name}: blob ${b.digest.slice(7, 19)}: ${(e as Error).message}`, { cause: e }));
      }
    }
  };
  const pushBlob = async (digest: string, size: number) => {
    if ((await client.hasBlob(repo, digest, [`repository:${repo}:pull,push`])) !== undefined) {
      progress({ id: digest, status: 'exists', current: size, total: size });
      return;
    }
    let location: string | undefined;
    for (const from of mountFrom) {
      const m = await client.mountBlob(repo, digest, from);
      if (m.mounted) {
        progress({ id: digest, status: 'mounted', current: size, total: size, message: `from ${from}` });
        return;
      }
      location = m.location;
      break;
    }
    location ??= await client.startUpload(repo);
    progress({ id: digest, status: 'pushing', current: 0, total: size });
    const file = store.content.path(digest);
    if (opts.chunkSize && size > opts.chunkSize) {
      const fh = await fsp.open(file, 'r');
      try {
        await client.putBlobChunked(repo, location, digest, size, async (start, end) => {
          const buf = Buffer.alloc(end - start);
          await fh.read(buf, 0, buf.length, start);
          progress({ id: digest, status: 'pushing', current: end, total: size });
          return buf;
        }, opts.chunkSize);
      } finally {
        await fh.close();
      }
    } else {
      await client.putBlob(repo, location, digest, size, () => fs.createReadStream(file, { highWaterMark: 1 << 20 }));
    }
    progress({ id: digest, status: 'done', current: size, total: size });
  };
  await Promise.all(Array.from({ length: Math.min(4, blobs.length) }, work));
  if (errors.length) throw errors[0];

  const manifest = await store.content.read(rec.manifestDigest);
  const reference = tag ?? rec.manifestDigest;
  const got = await client.putManifest(repo, reference, manifest, rec.manifestMediaType);
  if (got && got !== rec.manifestDigest) throw new Error(`push ${name}: registry stored the manifest as ${got}, expected ${rec.manifestDigest}`);
  await store.mutate((ix) => {
    const r = ix.images[rec.id];
    const d = `${repoName(target)}@${rec.manifestDigest}`;
    if (r && !r.digests.includes(d)) r.digests.push(d);
  });
  progress({ id: '', status: 'done', message: `${name}: digest: ${rec.manifestDigest} size: ${manifest.length}` });
  return { ref: name, digest: rec.manifestDigest, size: manifest.length };
}
