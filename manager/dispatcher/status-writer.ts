// Batches worker-reported task statuses from every session into few store transactions
// (group commit: at once when idle, together after the write in flight), applying only forward moves. A write that lost a version race is re-decided
// against the fresh view on the next flush, so nothing reported is lost or written backwards.
import type { TaskStatus } from '../../proto/gen/gantry/v1/objects.ts';
import type { Store, Write } from '../store/types.ts';
import { mergeStatus } from './status.ts';

interface Pending {
  nodeId: string;
  status: TaskStatus;
}

export class StatusWriter {
  private readonly store: Store;
  private readonly log: (m: string) => void;
  private pending = new Map<string, Pending>();
  private scheduled = false;
  /** After a failed write: the next one waits 500 ms. */
  private backoff = false;
  private flushing: Promise<void> | undefined;
  private stopped = false;

  constructor(store: Store, opts: { log?: (m: string) => void } = {}) {
    this.store = store;
    this.log = opts.log ?? (() => {});
  }

  enqueue(nodeId: string, taskId: string, status: TaskStatus): void {
    const prev = this.pending.get(taskId);
    // keep the furthest state reported since the last flush; among equals, the latest
    if (!prev || status.state >= prev.status.state) this.pending.set(taskId, { nodeId, status });
    this.schedule();
  }

  /**
   * Group commit: with no write in flight, the reports of this turn of the event loop go out at
   * once (a rolling update waits on each RUNNING: the fixed 20 ms delay this had was paid at every
   * slot); while one is in flight, what arrives meanwhile goes out together right after it.
   */
  private schedule(): void {
    if (this.scheduled || this.stopped || this.backoff) return;
    this.scheduled = true;
    const go = () => {
      this.scheduled = false;
      if (this.pending.size > 0 && !this.stopped) void this.flush();
    };
    if (this.flushing) void this.flushing.finally(go);
    else setImmediate(go);
  }

  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    this.flushing = this.flushOnce().finally(() => {
      this.flushing = undefined;
    });
    await this.flushing;
  }

  private async flushOnce(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    const view = this.store.view();
    const writes: Write[] = [];
    for (const [taskId, p] of batch) {
      const d = mergeStatus(view.get('tasks', taskId), p.nodeId, p.status);
      if (d.apply) writes.push({ op: 'update', kind: 'tasks', object: d.task });
    }
    if (writes.length === 0) return;
    try {
      const res = await this.store.batch(writes);
      if (res.conflicts.length > 0) {
        await this.store.waitFor(res.revision);
        for (const c of res.conflicts) {
          const p = batch.get(c.id);
          if (p && c.reason === 'version') this.enqueue(p.nodeId, c.id, p.status);
        }
      }
    } catch (err) {
      this.log(`status write failed, will retry: ${(err as Error).message}`);
      for (const [taskId, p] of batch) if (!this.pending.has(taskId)) this.pending.set(taskId, p);
      this.backoff = true;
      setTimeout(() => {
        this.backoff = false;
        this.schedule();
      }, 500).unref();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.flushing;
  }
}
