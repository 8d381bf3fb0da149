// A keyed, append-only JSON-lines journal: one file of `{"put": VALUE}` and `{"del": KEY}` lines
// (the key is read from the value), appended in batches, replayed at load, and compacted (tmp +
// rename) at load and when the dead lines pile up. For state that changes per container, where a
// file rewritten per change would cost a new inode, or a rename-over, each time.
import { type FileHandle, mkdir, open, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

type Line<V> = { put: V } | { del: string };

/**
 * Writes are queued and flushed together (one append per batch); put()/delete() resolve when their
 * line is in the file. A torn last line (crash mid-append) is skipped at load. No fsync: a gantryd
 * crash keeps the page cache, and a power loss ends the containers too.
 */
export class Journal<V> {
  private readonly file: string;
  private readonly keyOf: (v: V) => string | undefined;
  private readonly live = new Map<string, V>();
  private lines = 0;
  private queue: { line: string; done: () => void; fail: (e: unknown) => void }[] = [];
  private flushing: Promise<void> | undefined;
  private loaded = false;
  /** Kept open between batches; reopened after a compaction or an error. */
  private handle: FileHandle | undefined;

  /** keyOf: the value's key; a line whose value has none is skipped at load. */
  constructor(file: string, keyOf: (v: V) => string | undefined) {
    this.file = file;
    this.keyOf = keyOf;
  }

  /** Replays the file (none yet: empty), compacts it, and gives the live values by key. */
  async load(): Promise<ReadonlyMap<string, V>> {
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
      let l: Line<V>;
      try {
        l = JSON.parse(raw) as Line<V>;
      } catch {
        continue; // torn tail
      }
      this.lines++;
      const key = 'put' in l && l.put ? this.keyOf(l.put) : undefined;
      if (key) this.live.set(key, (l as { put: V }).put);
      else if ('del' in l) this.live.delete(l.del);
    }
    this.loaded = true;
    await this.compact();
    return this.live;
  }

  /** The live values by key (what load gave, with the puts and deletes since). */
  get values(): ReadonlyMap<string, V> {
    return this.live;
  }

  put(v: V): Promise<void> {
    const key = this.keyOf(v);
    if (!key) return Promise.reject(new Error(`journal ${this.file}: a value without a key`));
    this.live.set(key, v);
    return this.enqueue(JSON.stringify({ put: v }));
  }

  delete(key: string): Promise<void> {
    this.live.delete(key);
    return this.enqueue(JSON.stringify({ del: key }));
  }

  /** Waits for queued writes, then closes the file. */
  async close(): Promise<void> {
    await this.flushing;
    await this.closeHandle();
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
      await mkdir(dirname(this.file), { recursive: true });
      this.handle = await open(this.file, 'a', 0o600);
    }
    return this.handle;
  }

  private async closeHandle(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    await h?.close().catch(() => {});
  }

  /** Rewrites the journal as one put per live value. */
  private async compact(): Promise<void> {
    await mkdir(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp`;
    const body = [...this.live.values()].map((v) => `${JSON.stringify({ put: v })}\n`).join('');
    await writeFile(tmp, body, { mode: 0o600 });
    await rename(tmp, this.file);
    await this.closeHandle(); // it appends to the file just replaced
    this.lines = this.live.size;
  }
}
