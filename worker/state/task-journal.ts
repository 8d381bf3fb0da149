// The worker's task records as one append-only journal (<dir>/tasks.jsonl): puts and deletes are
// appended in batches, replayed at load, and compacted (tmp + rename) when the dead lines pile up.
import { type FileHandle, mkdir, open, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TaskRecord, TaskRecords } from './task-records.ts';

type Line = { put: TaskRecord } | { del: string };

/**
 * Writes are queued and flushed together (one append per batch); put()/delete() resolve when their
 * line is in the file. A torn last line (crash mid-append) is skipped at load. No fsync: a gantryd
 * crash keeps the page cache, and a power loss ends the containers too.
 */
export class JournalTaskRecords implements TaskRecords {
  private readonly dir: string;
  private readonly file: string;
  private live = new Map<string, TaskRecord>();
  private lines = 0;
  private queue: { line: string; done: () => void; fail: (e: unknown) => void }[] = [];
  private flushing: Promise<void> | undefined;
  private loaded = false;
  /** Kept open between batches (a converge appends several times per task); reopened after a compaction or an error. */
  private handle: FileHandle | undefined;

  constructor(dir: string) {
    this.dir = dir;
    this.file = join(dir, 'tasks.jsonl');
  }

  async load(): Promise<TaskRecord[]> {
    let text = '';
    try {
      text = await readFile(this.file, 'utf8');
    } catch {
      /* no journal yet */
    }
    this.live.clear();
    this.lines = 0;
    for (const raw of text.split('\n')) {
      if (!raw) continue;
      let l: Line;
      try {
        l = JSON.parse(raw) as Line;
      } catch {
        continue; // torn tail
      }
      this.lines++;
      if ('put' in l && l.put?.task?.id) this.live.set(l.put.task.id, l.put);
      else if ('del' in l) this.live.delete(l.del);
    }
    this.loaded = true;
    await this.compact();
    return [...this.live.values()];
  }

  put(rec: TaskRecord): Promise<void> {
    this.live.set(rec.task.id, rec);
    return this.enqueue(JSON.stringify({ put: rec }));
  }

  delete(taskId: string): Promise<void> {
    this.live.delete(taskId);
    return this.enqueue(JSON.stringify({ del: taskId }));
  }

  private enqueue(line: string): Promise<void> {
    return new Promise((done, fail) => {
      this.queue.push({ line, done, fail });
      if (!this.flushing) this.flushing = this.flush();
    });
  }

  private async flush(): Promise<void> {
    await Promise.resolve(); // let the current tick's writes join the batch
    while (this.queue.length) {
      const batch = this.queue;
      this.queue = [];
      try {
        await (await this.appender()).write(batch.map((b) => `${b.line}\n`).join(''));
        this.lines += batch.length;
        for (const b of batch) b.done();
      } catch (e) {
        await this.closeHandle();
        for (const b of batch) b.fail(e);
      }
      if (this.loaded && this.lines > 1000 && this.lines > 4 * this.live.size) await this.compact().catch(() => {});
    }
    this.flushing = undefined;
  }

  private async appender(): Promise<FileHandle> {
    if (!this.handle) {
      await mkdir(this.dir, { recursive: true });
      this.handle = await open(this.file, 'a', 0o600);
    }
    return this.handle;
  }

  private async closeHandle(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    await h?.close().catch(() => {});
  }

  /** Waits for queued writes, then closes the file. */
  async close(): Promise<void> {
    await this.flushing;
    await this.closeHandle();
  }

  /** Rewrites the journal as one put per live record. */
  private async compact(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const tmp = `${this.file}.tmp`;
    const body = [...this.live.values()].map((r) => `${JSON.stringify({ put: r })}\n`).join('');
    await writeFile(tmp, body, { mode: 0o600 });
    await rename(tmp, this.file);
    await this.closeHandle(); // it appends to the file just replaced
    this.lines = this.live.size;
  }
}
