// Batches worker-reported task statuses from every session into few store transactions
// (every flushMs), applying only forward moves. A write that lost a version race is re-decided
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
  private readonly flushMs: number;
  private readonly log: (m: string) => void;
  private pending = new Map<string, Pending>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private stopped = false;

  constructor(store: Store, opts: { flushMs?: number; log?: (m: string) => void } = {}) {
    this.store = store;
    this.flushMs = opts.flushMs ?? 20;
    this.log = opts.log ?? (() => {});
  }

  enqueue(nodeId: string, taskId: string, status: TaskStatus): void {
    const prev = this.pending.get(taskId);
    // keep the furthest state reported since the last flush; among equals, the latest
    if (!prev || status.state >= prev.status.state) this.pending.set(taskId, { nodeId, status });
    this.schedule();
  }

  private schedule(): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.flushMs);
  }

  async flush(): Promise<void> {
    if (this.flushing) {
      await this.flushing;
      if (this.pending.size === 0) return;
    }
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
      if (!this.stopped) setTimeout(() => this.schedule(), 500);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.flushing;
  }
}
