// Layer unpacking on worker threads: decompress, hash and apply layers off the main thread, fed chunk by chunk
// with credit-based flow control. A worker runs any number of layers at once (each message names its job), so a
// layer waiting for its lower layers (finish() needs them) never blocks another layer: no deadlock by design.
//
//   main thread                                       worker (several jobs interleaved)
//     start {id, root, compression, whiteoutTemplate} -->
//     data {id, chunk} ...                            -->   applyLayer(...)  (sync fs calls)
//                                                     <--   ack {id, bytes}    (consumed; main sends more)
//                                                     <--   lowers? {id}      (finish() needs parent layers)
//     lowers {id, dirs}                               -->
//     end {id}                                        -->
//                                                     <--   done {id, result} | error {id, name, message}
import { Readable } from 'node:stream';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import type { ApplyResult } from './layer.ts';
import type { Compression } from './oci.ts';

type ToWorker =
  | { type: 'start'; id: number; root: string; compression: Compression; whiteoutTemplate: string }
  | { type: 'data'; id: number; chunk: Uint8Array }
  | { type: 'end'; id: number }
  | { type: 'abort'; id: number; message: string }
  | { type: 'lowers'; id: number; dirs?: string[]; error?: string };

type FromWorker =
  | { type: 'ready' }
  | { type: 'ack'; id: number; bytes: number }
  | { type: 'lowers?'; id: number }
  | { type: 'done'; id: number; result: ApplyResult }
  | { type: 'error'; id: number; name: string; message: string };

type JobMessage = Exclude<FromWorker, { type: 'ready' }>;

/** Bytes sent to a worker for one layer and not yet consumed there. */
const MAX_INFLIGHT = 8 << 20;

// ------------------------------------------------------------------ worker side

if (!isMainThread && parentPort) {
  const { applyLayer } = await import('./layer.ts');
  const port = parentPort;
  const jobs = new Map<number, { src: Readable; lowersWaiter?: (m: Extract<ToWorker, { type: 'lowers' }>) => void }>();
  port.postMessage({ type: 'ready' } satisfies FromWorker);
  port.on('message', (m: ToWorker) => {
    switch (m.type) {
      case 'start': {
        const id = m.id;
        const input = new Readable({ read() {} });
        const job: { src: Readable; lowersWaiter?: (r: Extract<ToWorker, { type: 'lowers' }>) => void } = { src: input };
        jobs.set(id, job);
        const counted = (async function* () {
          for await (const c of input as AsyncIterable<Buffer>) {
            yield c;
            port.postMessage({ type: 'ack', id, bytes: c.length } satisfies FromWorker);
          }
        })();
        applyLayer(Readable.from(counted), m.compression, {
          root: m.root,
          whiteoutTemplate: m.whiteoutTemplate,
          lowers: () =>
            new Promise<string[]>((resolve, reject) => {
              job.lowersWaiter = (r) => (r.dirs ? resolve(r.dirs) : reject(new Error(r.error ?? 'lower layers unavailable')));
              port.postMessage({ type: 'lowers?', id } satisfies FromWorker);
            }),
        })
          .then(
            (result) => port.postMessage({ type: 'done', id, result } satisfies FromWorker),
            (e: Error) => port.postMessage({ type: 'error', id, name: e.name, message: e.message } satisfies FromWorker),
          )
          .finally(() => jobs.delete(id));
        break;
      }
      case 'data':
        jobs.get(m.id)?.src.push(Buffer.from(m.chunk.buffer, m.chunk.byteOffset, m.chunk.byteLength));
        break;
      case 'end':
        jobs.get(m.id)?.src.push(null);
        break;
      case 'abort':
        jobs.get(m.id)?.src.destroy(new Error(m.message));
        break;
      case 'lowers': {
        const job = jobs.get(m.id);
        const w = job?.lowersWaiter;
        if (job) job.lowersWaiter = undefined;
        w?.(m);
        break;
      }
    }
  });
}

// ------------------------------------------------------------------ main side

interface PooledWorker {
  w: Worker;
  jobs: Map<number, (m: JobMessage) => void>;
  ready: Promise<void>;
}

/**
 * Up to `size` threads, kept for the next layer and pull: starting one costs ~0.15 s of CPU (Node bootstraps and
 * strips the TypeScript of layer.ts and what it imports), so gantryd pays it once. A new layer goes to the
 * thread with the fewest layers in hand.
 */
class UnpackPool {
  private workers: PooledWorker[] = [];
  private nextId = 1;
  size = 1;

  private spawn(): PooledWorker {
    const w = new Worker(new URL(import.meta.url));
    let readyNow = () => {};
    const pw: PooledWorker = { w, jobs: new Map(), ready: new Promise<void>((r) => (readyNow = r)) };
    const fail = (message: string) => {
      this.workers = this.workers.filter((x) => x !== pw);
      readyNow();
      for (const [id, h] of pw.jobs) h({ type: 'error', id, name: 'Error', message });
      pw.jobs.clear();
    };
    w.on('message', (m: FromWorker) => {
      if (m.type === 'ready') readyNow();
      else pw.jobs.get(m.id)?.(m);
    });
    w.on('error', (e) => fail(`layer unpack thread failed: ${e.message}`));
    w.on('exit', (code) => fail(`layer unpack thread exited (code ${code})`));
    // a kept thread must not hold the process open: unref once it is up (after the listeners, which ref it)
    void pw.ready.then(() => w.unref());
    this.workers.push(pw);
    return pw;
  }

  pick(): PooledWorker {
    if (this.workers.length < this.size) return this.spawn();
    return this.workers.reduce((a, b) => (b.jobs.size < a.jobs.size ? b : a));
  }

  id(): number {
    return this.nextId++;
  }

  /** Starts threads up to `size` and resolves when every one is ready for a layer. */
  async warm(): Promise<void> {
    while (this.workers.length < this.size) this.spawn();
    await Promise.all(this.workers.map((x) => x.ready));
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
  const pw = pool.pick();
  const id = pool.id();
  let inflight = 0;
  let wake: (() => void) | undefined;
  let settled = false;
  const outcome = new Promise<ApplyResult>((resolve, reject) => {
    pw.jobs.set(id, (m) => {
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
            (dirs) => pw.w.postMessage({ type: 'lowers', id, dirs } satisfies ToWorker),
            (e: Error) => pw.w.postMessage({ type: 'lowers', id, error: e.message } satisfies ToWorker),
          );
          break;
        case 'done':
          settled = true;
          resolve(m.result);
          break;
        case 'error':
          settled = true;
          reject(new WorkerUnpackError(m.name, m.message));
          break;
      }
      if (settled) {
        wake?.();
        wake = undefined;
      }
    });
  });
  outcome.catch(() => {});
  try {
    pw.w.postMessage({ type: 'start', id, root: opts.root, compression, whiteoutTemplate: opts.whiteoutTemplate } satisfies ToWorker);
    try {
      for await (const chunk of input) {
        if (settled) break; // the worker failed early: stop reading
        inflight += chunk.length;
        pw.w.postMessage({ type: 'data', id, chunk } satisfies ToWorker);
        if (inflight >= MAX_INFLIGHT) await new Promise<void>((r) => (wake = r));
      }
      if (!settled) pw.w.postMessage({ type: 'end', id } satisfies ToWorker);
    } catch (e) {
      if (!settled) pw.w.postMessage({ type: 'abort', id, message: (e as Error).message } satisfies ToWorker);
      await outcome.catch(() => {});
      throw e;
    }
    return await outcome;
  } finally {
    pw.jobs.delete(id);
  }
}
