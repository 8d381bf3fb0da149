// The worker's persisted memory of its tasks: one JSON file per task (task, last reported status,
// container id), written atomically (tmp + rename) so a restarted gantryd knows what it had.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Task, TaskStatus } from '../../proto/gen/gantry/v1/objects.ts';

export interface TaskRecord {
  task: Task;
  status: TaskStatus;
  /** The runtime's container id ("" before one was created) and which runtime made it. */
  containerId: string;
  runtime: string;
}

/** Narrow interface the task manager uses; FileTaskRecords persists, MemoryTaskRecords does not. */
export interface TaskRecords {
  load(): Promise<TaskRecord[]>;
  put(rec: TaskRecord): Promise<void>;
  delete(taskId: string): Promise<void>;
  /** Releases what the store holds open (after the last write). */
  close?(): Promise<void>;
}

const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

export class FileTaskRecords implements TaskRecords {
  private readonly dir: string;
  /** Writes per task are chained so the last put wins. */
  private readonly chains = new Map<string, Promise<void>>();

  constructor(dir: string) {
    this.dir = dir;
  }

  private path(taskId: string): string {
    if (!SAFE_ID.test(taskId)) throw new Error(`task id "${taskId}" cannot name a state file`);
    return join(this.dir, `${taskId}.json`);
  }

  async load(): Promise<TaskRecord[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return [];
    }
    const out: TaskRecord[] = [];
    for (const n of names) {
      if (!n.endsWith('.json')) continue;
      try {
        const rec = JSON.parse(await readFile(join(this.dir, n), 'utf8')) as TaskRecord;
        if (rec?.task?.id && rec.status) out.push(rec);
      } catch {
        /* a torn or foreign file: ignore (writes are atomic, so only foreign files land here) */
      }
    }
    return out;
  }

  put(rec: TaskRecord): Promise<void> {
    return this.chain(rec.task.id, async () => {
      await mkdir(this.dir, { recursive: true });
      const target = this.path(rec.task.id);
      const tmp = `${target}.${randomBytes(4).toString('hex')}.tmp`;
      // No fsync: a gantryd crash keeps the page cache; a power loss also ends the containers, and a
      // torn file is skipped by load(). fsync per transition cost ~2 ms × 5 per task.
      await writeFile(tmp, JSON.stringify(rec), { mode: 0o600 });
      await rename(tmp, target);
    });
  }

  delete(taskId: string): Promise<void> {
    return this.chain(taskId, () => rm(this.path(taskId), { force: true }));
  }

  private chain(taskId: string, fn: () => Promise<void>): Promise<void> {
    const prev = this.chains.get(taskId) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(fn);
    this.chains.set(taskId, next);
    next.finally(() => {
      if (this.chains.get(taskId) === next) this.chains.delete(taskId);
    }).catch(() => {});
    return next;
  }
}

/** Keeps references, not copies (cloning was most of a simulated node's cost): records are immutable. */
export class MemoryTaskRecords implements TaskRecords {
  private readonly recs = new Map<string, TaskRecord>();
  async load(): Promise<TaskRecord[]> {
    return [...this.recs.values()];
  }
  async put(rec: TaskRecord): Promise<void> {
    this.recs.set(rec.task.id, rec);
  }
  async delete(taskId: string): Promise<void> {
    this.recs.delete(taskId);
  }
}
