// Layer unpacking on worker threads: decompress, hash and apply a layer off the main thread, fed chunk by chunk
// with credit-based flow control, so downloads, digests and several layers' unpacking run on all CPUs at once.
//
//   main thread                                   worker (one layer at a time)
//     start {root, compression, whiteoutTemplate} -->
//     data {chunk} ...                            -->   applyLayer(...)  (sync fs calls)
//                                                 <--   ack {bytes}        (consumed; main sends more)
//                                                 <--   lowers?           (finish() needs parent layers)
//     lowers {dirs}                               -->
//     end                                         -->
//                                                 <--   done {diffId, tarSize, entries} | error {name, message}
import * as os from 'node:os';
import { Readable } from 'node:stream';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import type { ApplyResult } from './layer.ts';
import type { Compression } from './oci.ts';

type ToWorker =
  | { type: 'start'; root: string; compression: Compression; whiteoutTemplate: string }
  | { type: 'data'; chunk: Uint8Array }
  | { type: 'end' }
  | { type: 'abort'; message: string }
  | { type: 'lowers'; dirs?: string[]; error?: string };

type FromWorker =
  | { type: 'ack'; bytes: number }
  | { type: 'lowers?' }
  | { type: 'done'; result: ApplyResult }
  | { type: 'error'; name: string; message: string };

const MAX_INFLIGHT = 8 << 20;

// ------------------------------------------------------------------ worker side

if (!isMainThread && parentPort) {
  const { applyLayer } = await import('./layer.ts');
  const port = parentPort;
  let src: Readable | undefined;
  let lowersWaiter: ((m: Extract<ToWorker, { type: 'lowers' }>) => void) | undefined;
  port.on('message', (m: ToWorker) => {
    switch (m.type) {
      case 'start': {
        const input = new Readable({ read() {} });
        src = input;
        const counted = (async function* () {
          for await (const c of input as AsyncIterable<Buffer>) {
            yield c;
            port.postMessage({ type: 'ack', bytes: c.length } satisfies FromWorker);
          }
        })();
        applyLayer(Readable.from(counted), m.compression, {
          root: m.root,
          whiteoutTemplate: m.whiteoutTemplate,
          lowers: () =>
            new Promise<string[]>((resolve, reject) => {
              lowersWaiter = (r) => (r.dirs ? resolve(r.dirs) : reject(new Error(r.error ?? 'lower layers unavailable')));
              port.postMessage({ type: 'lowers?' } satisfies FromWorker);
            }),
        }).then(
          (result) => port.postMessage({ type: 'done', result } satisfies FromWorker),
          (e: Error) => port.postMessage({ type: 'error', name: e.name, message: e.message } satisfies FromWorker),
        );
        break;
      }
      case 'data':
        src?.push(Buffer.from(m.chunk.buffer, m.chunk.byteOffset, m.chunk.byteLength));
        break;
      case 'end':
        src?.push(null);
        break;
      case 'abort':
        src?.destroy(new Error(m.message));
        break;
      case 'lowers':
        lowersWaiter?.(m);
        lowersWaiter = undefined;
        break;
    }
  });
}

// ------------------------------------------------------------------ main side

class UnpackPool {
  private idle: Worker[] = [];
  private readonly max = Math.max(2, Math.min(8, os.availableParallelism?.() ?? 2));

  acquire(): Worker {
    const w = this.idle.pop();
    if (w) return w;
    const nw = new Worker(new URL(import.meta.url));
    nw.unref();
    return nw;
  }

  release(w: Worker, healthy: boolean): void {
    w.removeAllListeners('message');
    w.removeAllListeners('error');
    if (healthy && this.idle.length < this.max) this.idle.push(w);
    else void w.terminate();
  }
}

const pool = new UnpackPool();

export class WorkerUnpackError extends Error {
  constructor(name: string, message: string) {
    super(message);
    this.name = name;
  }
}

/** applyLayer on a worker thread: same contract (bytes in, ApplyResult or a thrown error out). */
export async function applyLayerInWorker(
  input: AsyncIterable<Buffer>,
  compression: Compression,
  opts: { root: string; lowers: () => Promise<string[]>; whiteoutTemplate: string },
): Promise<ApplyResult> {
  const w = pool.acquire();
  let inflight = 0;
  let wake: (() => void) | undefined;
  let settled = false;
  let healthy = true;
  const outcome = new Promise<ApplyResult>((resolve, reject) => {
    w.on('message', (m: FromWorker) => {
      switch (m.type) {
        case 'ack':
          inflight -= m.bytes;
          if (inflight < MAX_INFLIGHT / 2) {
            wake?.();
            wake = undefined;
          }
          break;
        case 'lowers?':
          opts.lowers().then(
            (dirs) => w.postMessage({ type: 'lowers', dirs } satisfies ToWorker),
            (e: Error) => w.postMessage({ type: 'lowers', error: e.message } satisfies ToWorker),
          );
          break;
        case 'done':
          settled = true;
          resolve(m.result);
          break;
        case 'error':
          settled = true;
          reject(Object.assign(new WorkerUnpackError(m.name, m.message), { name: m.name }));
          break;
      }
      if (settled) {
        wake?.();
        wake = undefined;
      }
    });
    w.on('error', (e) => {
      settled = true;
      healthy = false;
      reject(e);
      wake?.();
    });
  });
  outcome.catch(() => {});
  w.postMessage({ type: 'start', root: opts.root, compression, whiteoutTemplate: opts.whiteoutTemplate } satisfies ToWorker);
  try {
    for await (const chunk of input) {
      if (settled) break; // the worker failed early: stop reading
      inflight += chunk.length;
      w.postMessage({ type: 'data', chunk } satisfies ToWorker);
      if (inflight >= MAX_INFLIGHT) await new Promise<void>((r) => (wake = r));
    }
    if (!settled) w.postMessage({ type: 'end' } satisfies ToWorker);
  } catch (e) {
    if (!settled) w.postMessage({ type: 'abort', message: (e as Error).message } satisfies ToWorker);
    await outcome.catch(() => {});
    pool.release(w, healthy);
    throw e;
  }
  try {
    return await outcome;
  } finally {
    pool.release(w, healthy);
  }
}
