// One layer from bytes to snapshot: decompress (gzip, zstd or none), hash the uncompressed tar (the diff id),
// parse it and apply it with LayerUnpacker. Used by pull, import and load alike.
import type { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import * as os from 'node:os';
import { threadId } from 'node:worker_threads';
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
  /** The thread that applied it (0: the main thread). */
  threadId: number;
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
  return { diffId: `sha256:${hash.digest('hex')}`, tarSize, entries: unpacker.entries, threadId };
}

/**
 * How many unpack worker threads to use: GANTRY_UNPACK_WORKERS (0 = none), else one fewer than the CPUs, at
 * most 3 (this thread also receives, hashes and stores every blob).
 */
export function unpackWorkerCount(env: string | undefined, cpus: number): number {
  if (env !== undefined && env !== '' && /^\d+$/.test(env)) return Number(env);
  return Math.max(0, Math.min(3, cpus - 1));
}

/** Layers smaller than this (compressed) are never sent to a worker: messages would cost more than they save. */
export const WORKER_MIN_BYTES = 2 << 20;

/** Where a layer is unpacked as its bytes arrive: this thread, or a worker thread (index). */
export type UnpackPlace = 'here' | 'worker';

/**
 * This thread receives, hashes and stores every blob; measured on 2 CPUs, it keeps up best when every layer
 * worth a message goes to a worker (a worker applies several layers at once, interleaved as this thread would).
 */
export function assignUnpackThreads(sizes: number[], workers: number): UnpackPlace[] {
  return sizes.map((s) => (workers > 0 && s >= WORKER_MIN_BYTES ? 'worker' : 'here'));
}

let workersSet = -1;

/** Starts the unpack threads now (gantryd start, benchmarks), so the first pull does not pay for them. */
export async function warmUnpackWorkers(): Promise<void> {
  const n = unpackWorkerCount(process.env.GANTRY_UNPACK_WORKERS, os.availableParallelism());
  if (n === 0) return;
  const { setUnpackWorkers } = await import('./unpack-worker.ts');
  workersSet = n;
  await setUnpackWorkers(n, true);
}

/** applyLayer here, or on an unpack worker thread when `onWorker` (see assignUnpackThreads). */
export async function unpackLayer(
  input: AsyncIterable<Buffer>,
  compression: Compression,
  opts: { root: string; lowers: () => Promise<string[]>; whiteoutTemplate: string; onWorker?: boolean },
): Promise<ApplyResult> {
  if (!opts.onWorker) return applyLayer(input, compression, opts);
  const { applyLayerInWorker, setUnpackWorkers } = await import('./unpack-worker.ts');
  const n = unpackWorkerCount(process.env.GANTRY_UNPACK_WORKERS, os.availableParallelism());
  if (workersSet !== n) {
    workersSet = n;
    await setUnpackWorkers(n);
  }
  return applyLayerInWorker(input, compression, opts);
}
