// One layer from bytes to snapshot: decompress (gzip, zstd or none), hash the uncompressed tar (the diff id),
// parse it and apply it with LayerUnpacker. Used by pull, import and load alike.
import type { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import type { Compression } from './oci.ts';
import { TarParser } from './tar.ts';
import { LayerUnpacker } from './unpack.ts';

export interface ApplyResult {
  diffId: string;
  /** Uncompressed tar bytes. */
  tarSize: number;
  entries: number;
}

export function decompressor(c: Compression): NodeJS.ReadWriteStream | undefined {
  switch (c) {
    case 'gzip':
      return zlib.createGunzip({ chunkSize: 256 << 10 });
    case 'zstd':
      return zlib.createZstdDecompress({ chunkSize: 256 << 10 });
    case 'none':
      return undefined;
    default: {
      const never: never = c;
      throw new Error(`unknown compression ${never}`);
    }
  }
}

/** Detects compression from the first bytes (for docker-archive layers and `import`). */
export function sniffCompression(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

/**
 * Streams `input` (compressed as given) into the empty directory `root`. Throws (after closing what it
 * opened) on a malformed or unsafe tar; the caller discards `root` then.
 */
export async function applyLayer(
  input: Readable | AsyncIterable<Buffer>,
  compression: Compression,
  opts: {
    root: string;
    lowers: () => Promise<string[]>;
    whiteoutTemplate: string;
    /** Sees every uncompressed tar chunk (import gzips them into a blob); may return a promise for backpressure. */
    onTarChunk?: (chunk: Buffer) => undefined | Promise<void>;
  },
): Promise<ApplyResult> {
  const unpacker = new LayerUnpacker({ root: opts.root, lowers: opts.lowers, whiteoutTemplate: opts.whiteoutTemplate });
  const parser = new TarParser(unpacker);
  const hash = createHash('sha256');
  let tarSize = 0;
  const sink = async (src: AsyncIterable<Buffer | string>): Promise<void> => {
    for await (const c of src) {
      const chunk = typeof c === 'string' ? Buffer.from(c) : c;
      hash.update(chunk);
      tarSize += chunk.length;
      parser.write(chunk);
      const wait = opts.onTarChunk?.(chunk);
      if (wait) await wait;
    }
    parser.end();
  };
  const dec = decompressor(compression);
  try {
    if (dec) await pipeline(input, dec, sink);
    else await pipeline(input, sink);
    await unpacker.finish();
  } catch (e) {
    unpacker.abort();
    if (e instanceof Error && (e as NodeJS.ErrnoException).code?.startsWith('Z_')) {
      throw new Error(`layer is not valid ${compression} data: ${e.message}`, { cause: e });
    }
    throw e;
  }
  return { diffId: `sha256:${hash.digest('hex')}`, tarSize, entries: unpacker.entries };
}

/**
 * applyLayer in this thread (default: measured faster on a 2-CPU host, see bench/image.ts), or on a worker
 * thread per layer when GANTRY_UNPACK_WORKERS=1.
 */
export async function unpackLayer(
  input: AsyncIterable<Buffer>,
  compression: Compression,
  opts: { root: string; lowers: () => Promise<string[]>; whiteoutTemplate: string },
): Promise<ApplyResult> {
  if (process.env.GANTRY_UNPACK_WORKERS !== '1') return applyLayer(input, compression, opts);
  const { applyLayerInWorker } = await import('./unpack-worker.ts');
  return applyLayerInWorker(input, compression, opts);
}
