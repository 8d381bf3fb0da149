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
  | { type: 'ready' }
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
  port.postMessage({ type: 'ready' } satisfies FromWorker);
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

/**
 * At most `size` threads, kept for the next layer and pull: starting one costs ~0.3 s of CPU (Node bootstraps
 * and strips the TypeScript of layer.ts and what it imports), so gantryd pays it once, not per layer.
 */
class UnpackPool {
  private idle: Worker[] = [];
  private all = new Set<Worker>();
  private ready = new WeakMap<Worker, Promise<void>>();
  private queue: Array<(w: Worker) => void> = [];
  size = 1;

  private spawn(): Worker {
    const w = new Worker(new URL(import.meta.url));
    w.unref();
    this.all.add(w);
    this.ready.set(w, new Promise<void>((resolve) => {
      const onMsg = (m: FromWorker) => {
        if (m.type !== 'ready') return;
        w.off('message', onMsg);
        resolve();
      };
      w.on('message', onMsg);
      w.once('error', () => resolve());
      w.once('exit', () => {
        this.all.delete(w);
        resolve();
      });
    }));
    return w;
  }

  async acquire(): Promise<Worker> {
    const w = this.idle.pop();
    if (w) return w;
    if (this.all.size < this.size) return this.spawn();
    return new Promise<Worker>((resolve) => this.queue.push(resolve));
  }

  release(w: Worker, healthy: boolean): void {
    w.removeAllListeners('message');
    w.removeAllListeners('error');
    if (!healthy) {
      this.all.delete(w);
      void w.terminate();
      const next = this.queue.shift();
      if (next) next(this.spawn());
      return;
    }
    const next = this.queue.shift();
    if (next) next(w);
    else this.idle.push(w);
  }

  /** Starts threads up to `size` and resolves when every one is ready for a layer. */
  async warm(): Promise<void> {
    while (this.all.size < this.size) this.idle.push(this.spawn());
    await Promise.all([...this.all].map((w) => this.ready.get(w)));
  }
}

const pool = new UnpackPool();

/** Sets how many unpack threads may run (and be kept); `warm` starts them now. */
export async function setUnpackWorkers(n: number, warm = false): Promise<void> {
  pool.size = Math.max(1, n);
  if (warm) await pool.warm();
}

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
  const w = await pool.acquire();
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
