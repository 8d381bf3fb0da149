// Test images made from busybox-static (/bin/busybox): a rootfs tarball, hand-made layer tars, and OCI image
// layouts (OCI or Docker media types, gzip/zstd/plain layers) that skopeo can push to a registry.
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { TAR_END, type TarWriteEntry, tarHeader, tarPadding } from '../../worker/image/tar.ts';

export const BUSYBOX = '/bin/busybox';

export interface LayerEntry extends Omit<TarWriteEntry, 'size'> {
  data?: Buffer | string;
}

/** A tar archive (uncompressed) of the given entries, in order. */
export function makeTar(entries: LayerEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.data === undefined ? Buffer.alloc(0) : Buffer.isBuffer(e.data) ? e.data : Buffer.from(e.data);
    parts.push(tarHeader({ mtime: 1_700_000_000, ...e, size: e.type === 'file' ? data.length : 0 }));
    if (e.type === 'file' && data.length) parts.push(data, tarPadding(data.length));
  }
  parts.push(TAR_END);
  return Buffer.concat(parts);
}

let applets: string[] | undefined;
export function busyboxApplets(): string[] {
  applets ??= execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => a && a !== 'busybox');
  return applets;
}

/** Entries of a minimal busybox root filesystem: /bin/busybox, an applet symlink each, the usual dirs. */
export function busyboxEntries(opts: { applets?: string[] } = {}): LayerEntry[] {
  const dirs = ['bin', 'dev', 'etc', 'proc', 'sys', 'tmp', 'root', 'usr', 'usr/bin', 'var', 'home'];
  const out: LayerEntry[] = dirs.map((d) => ({ name: `${d}/`, type: 'dir', mode: d === 'tmp' ? 0o1777 : 0o755 }));
  out.push({ name: 'bin/busybox', type: 'file', mode: 0o755, data: fs.readFileSync(BUSYBOX) });
  for (const a of opts.applets ?? busyboxApplets()) out.push({ name: `bin/${a}`, type: 'symlink', linkname: 'busybox' });
  out.push({ name: 'etc/passwd', type: 'file', mode: 0o644, data: 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' });
  out.push({ name: 'etc/group', type: 'file', mode: 0o644, data: 'root:x:0:\nnobody:x:65534:\n' });
  return out;
}

/** The busybox rootfs as an uncompressed tar. */
export function busyboxRootfsTar(opts: { applets?: string[] } = {}): Buffer {
  return makeTar(busyboxEntries(opts));
}

export type Compression = 'gzip' | 'zstd' | 'none';

export interface BuiltImage {
  manifestDigest: string;
  configDigest: string;
  layerDigests: string[];
  diffIds: string[];
  manifest: Buffer;
  config: Buffer;
}

function sha(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

function compress(b: Buffer, c: Compression): Buffer {
  if (c === 'gzip') return zlib.gzipSync(b, { level: 1 });
  if (c === 'zstd') return zlib.zstdCompressSync(b);
  return b;
}

/**
 * Writes (or adds to) an OCI image layout at `dir` holding one image tagged `tag`, built from uncompressed
 * layer tars. `docker` media types make a Docker schema2 manifest (gzip or plain layers only).
 */
export function writeOciLayout(
  dir: string,
  tag: string,
  layers: Buffer[],
  opts: { compression?: Compression; docker?: boolean; config?: Record<string, unknown>; architecture?: string } = {},
): BuiltImage {
  const c = opts.compression ?? 'gzip';
  const blobs = path.join(dir, 'blobs', 'sha256');
  fs.mkdirSync(blobs, { recursive: true });
  fs.writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const put = (b: Buffer): string => {
    const d = sha(b);
    fs.writeFileSync(path.join(blobs, d.slice(7)), b);
    return d;
  };
  const diffIds = layers.map(sha);
  const compressed = layers.map((l) => compress(l, c));
  const layerDigests = compressed.map(put);
  const layerMT = opts.docker
    ? c === 'gzip' ? 'application/vnd.docker.image.rootfs.diff.tar.gzip' : 'application/vnd.docker.image.rootfs.diff.tar'
    : c === 'gzip' ? 'application/vnd.oci.image.layer.v1.tar+gzip' : c === 'zstd' ? 'application/vnd.oci.image.layer.v1.tar+zstd' : 'application/vnd.oci.image.layer.v1.tar';
  const config = Buffer.from(JSON.stringify({
    created: '2024-01-01T00:00:00Z',
    architecture: opts.architecture ?? 'amd64',
    os: 'linux',
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'], ...(opts.config ?? {}) },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: layers.map(() => ({ created: '2024-01-01T00:00:00Z', created_by: 'test/helpers/busybox.ts' })),
  }));
  const configDigest = put(config);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: opts.docker ? 'application/vnd.docker.distribution.manifest.v2+json' : 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: opts.docker ? 'application/vnd.docker.container.image.v1+json' : 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: compressed.map((b, i) => ({ mediaType: layerMT, digest: layerDigests[i], size: b.length })),
  }));
  const manifestDigest = put(manifest);
  const indexPath = path.join(dir, 'index.json');
  const index = fs.existsSync(indexPath)
    ? (JSON.parse(fs.readFileSync(indexPath, 'utf8')) as { schemaVersion: 2; manifests: Array<{ annotations?: Record<string, string> }> })
    : { schemaVersion: 2 as const, manifests: [] };
  index.manifests = index.manifests.filter((m) => m.annotations?.['org.opencontainers.image.ref.name'] !== tag);
  index.manifests.push({
    mediaType: opts.docker ? 'application/vnd.docker.distribution.manifest.v2+json' : 'application/vnd.oci.image.manifest.v1+json',
    digest: manifestDigest,
    size: manifest.length,
    annotations: { 'org.opencontainers.image.ref.name': tag },
  } as { annotations: Record<string, string> });
  fs.writeFileSync(indexPath, JSON.stringify(index));
  return { manifestDigest, configDigest, layerDigests, diffIds, manifest, config };
}

/** skopeo copy of an OCI layout tag to a plain-HTTP registry (async: a token server may run in this process). */
export async function skopeoPush(layoutDir: string, tag: string, dest: string, extra: string[] = []): Promise<void> {
  await skopeo(['copy', '--quiet', '--dest-tls-verify=false', ...extra, `oci:${layoutDir}:${tag}`, `docker://${dest}`]);
}

/** Runs skopeo without blocking the event loop; rejects with its stderr. */
export function skopeo(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('skopeo', args, { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`skopeo ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** Adds a multi-platform image index tagged `tag` to the layout at `dir`, over already written manifests. */
export function writeOciIndex(dir: string, tag: string, entries: Array<{ image: BuiltImage; platform: { os: string; architecture: string; variant?: string }; docker?: boolean }>, opts: { docker?: boolean } = {}): string {
  const idx = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: opts.docker ? 'application/vnd.docker.distribution.manifest.list.v2+json' : 'application/vnd.oci.image.index.v1+json',
    manifests: entries.map((e) => ({
      mediaType: e.docker ? 'application/vnd.docker.distribution.manifest.v2+json' : 'application/vnd.oci.image.manifest.v1+json',
      digest: e.image.manifestDigest,
      size: e.image.manifest.length,
      platform: e.platform,
    })),
  }));
  const d = sha(idx);
  fs.writeFileSync(path.join(dir, 'blobs', 'sha256', d.slice(7)), idx);
  const indexPath = path.join(dir, 'index.json');
  const index = JSON.parse(fs.readFileSync(indexPath, 'utf8')) as { manifests: Array<{ annotations?: Record<string, string> }> };
  index.manifests = index.manifests.filter((m) => m.annotations?.['org.opencontainers.image.ref.name'] !== tag);
  index.manifests.push({ mediaType: opts.docker ? 'application/vnd.docker.distribution.manifest.list.v2+json' : 'application/vnd.oci.image.index.v1+json', digest: d, size: idx.length, annotations: { 'org.opencontainers.image.ref.name': tag } } as { annotations: Record<string, string> });
  fs.writeFileSync(indexPath, JSON.stringify(index));
  return d;
}
