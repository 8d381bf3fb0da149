// The content-addressed blob store: blobs/sha256/<hex>, written through ingest/<hex> (temp file) and renamed
// into place only after size and digest are verified, so nothing half-written ever looks complete.
import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { DIGEST_RE, hexOf } from './oci.ts';

export class DigestMismatchError extends Error {
  override name = 'DigestMismatchError';
}

export class ContentStore {
  readonly root: string;
  /** fdatasync every blob before it is renamed into place ('fsync'), or leave that to the store's deferred sync. */
  durability: 'fsync' | 'deferred' = 'fsync';
  private ingesting = new Map<string, Promise<unknown>>();

  constructor(root: string) {
    this.root = root;
  }

  static async open(root: string): Promise<ContentStore> {
    await fsp.mkdir(path.join(root, 'blobs', 'sha256'), { recursive: true });
    await fsp.mkdir(path.join(root, 'ingest'), { recursive: true });
    return new ContentStore(root);
  }

  path(digest: string): string {
    return path.join(this.root, 'blobs', 'sha256', hexOf(digest));
  }

  /** Size of a complete blob, or undefined. */
  async stat(digest: string): Promise<number | undefined> {
    try {
      return (await fsp.stat(this.path(digest))).size;
    } catch {
      return undefined;
    }
  }

  async read(digest: string): Promise<Buffer> {
    return fsp.readFile(this.path(digest));
  }

  async readJson<T>(digest: string): Promise<T> {
    return JSON.parse((await this.read(digest)).toString('utf8')) as T;
  }

  /** Stores a small blob held in memory, checking it against `expected` when given. */
  async put(data: Buffer, expected?: string): Promise<string> {
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    if (expected && expected !== digest) throw new DigestMismatchError(`content digest ${digest} does not match ${expected}`);
    if ((await this.stat(digest)) === data.length) return digest;
    const tmp = path.join(this.root, 'ingest', `put-${process.pid}-${Math.random().toString(36).slice(2)}`);
    await fsp.writeFile(tmp, data);
    await fsp.rename(tmp, this.path(digest));
    return digest;
  }

  /**
   * Opens a writer for a blob. With a known digest the temp file is ingest/<hex> and its bytes are kept
   * for a later resume; `resume` gives how many bytes are already there (already hashed).
   */
  async writer(expected?: string): Promise<BlobWriter> {
    const name = expected ? hexOf(expected) : `anon-${process.pid}-${Math.random().toString(36).slice(2)}`;
    const tmp = path.join(this.root, 'ingest', name);
    return BlobWriter.open(this, tmp, expected);
  }

  /** Serializes work on one digest inside this process (two pulls sharing a layer download it once). */
  async exclusive<T>(key: string, fn: () => Promise<T>): Promise<T> {
    for (;;) {
      const cur = this.ingesting.get(key);
      if (!cur) break;
      await cur.catch(() => {});
    }
    const p = fn();
    this.ingesting.set(key, p);
    try {
      return await p;
    } finally {
      if (this.ingesting.get(key) === p) this.ingesting.delete(key);
    }
  }

  async list(): Promise<string[]> {
    const names = await fsp.readdir(path.join(this.root, 'blobs', 'sha256'));
    return names.map((n) => `sha256:${n}`).filter((d) => DIGEST_RE.test(d));
  }

  async remove(digest: string): Promise<void> {
    await fsp.rm(this.path(digest), { force: true });
  }

  /** Drops every partial ingest (used by prune). */
  async clearIngest(): Promise<void> {
    for (const n of await fsp.readdir(path.join(this.root, 'ingest'))) {
      if (!this.ingesting.has(`sha256:${n}`)) await fsp.rm(path.join(this.root, 'ingest', n), { force: true });
    }
  }
}

export class BlobWriter {
  readonly tmp: string;
  readonly expected: string | undefined;
  private store: ContentStore;
  private fd: number;
  private hash: Hash;
  /** Bytes in the temp file (including ones kept from an earlier, interrupted attempt). */
  offset: number;

  private constructor(store: ContentStore, tmp: string, expected: string | undefined, fd: number, hash: Hash, offset: number) {
    this.store = store;
    this.tmp = tmp;
    this.expected = expected;
    this.fd = fd;
    this.hash = hash;
    this.offset = offset;
  }

  static async open(store: ContentStore, tmp: string, expected: string | undefined): Promise<BlobWriter> {
    const hash = createHash('sha256');
    let offset = 0;
    if (expected) {
      // Resume: re-hash what an earlier attempt left.
      try {
        const rs = fs.createReadStream(tmp);
        for await (const c of rs) {
          hash.update(c as Buffer);
          offset += (c as Buffer).length;
        }
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
    const fd = fs.openSync(tmp, offset > 0 ? 'a' : 'w');
    return new BlobWriter(store, tmp, expected, fd, hash, offset);
  }

  /** Starts over (the server ignored a range request). */
  restart(): void {
    fs.ftruncateSync(this.fd, 0);
    this.hash = createHash('sha256');
    this.offset = 0;
  }

  write(chunk: Buffer): void {
    this.hash.update(chunk);
    let off = 0;
    while (off < chunk.length) off += fs.writeSync(this.fd, chunk, off, chunk.length - off, null);
    this.offset += chunk.length;
  }

  /** Verifies size and digest, flushes and renames into place. On mismatch the temp file is deleted. */
  async commit(size?: number): Promise<string> {
    const digest = `sha256:${this.hash.digest('hex')}`;
    const fd = this.fd;
    this.fd = -1;
    try {
      if ((size !== undefined && size >= 0 && this.offset !== size) || (this.expected && digest !== this.expected)) {
        fs.closeSync(fd);
        fs.rmSync(this.tmp, { force: true });
        const what = size !== undefined && this.offset !== size ? `${this.offset} bytes, expected ${size}` : `digest ${digest}`;
        throw new DigestMismatchError(`blob ${this.expected ?? digest}: got ${what}; discarded`);
      }
      if (this.store.durability === 'fsync') await new Promise<void>((res, rej) => fs.fdatasync(fd, (e) => (e ? rej(e) : res())));
      fs.closeSync(fd);
    } catch (e) {
      if (e instanceof DigestMismatchError) throw e;
      fs.rmSync(this.tmp, { force: true });
      throw e;
    }
    await fsp.rename(this.tmp, this.store.path(digest));
    return digest;
  }

  /** Closes; keeps the temp file for a resume when `keep`, else deletes it. */
  abort(keep: boolean): void {
    if (this.fd >= 0) {
      try {
        fs.closeSync(this.fd);
      } catch {}
      this.fd = -1;
    }
    if (!keep || !this.expected) fs.rmSync(this.tmp, { force: true });
  }
}
