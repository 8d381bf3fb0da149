// The small files of a container's state dir (meta.json, config.json, the bound /etc files): made
// with synchronous calls when the dir is on a tmpfs, through libuv's thread pool otherwise.
//
// On a tmpfs each call takes microseconds; sending it to the thread pool costs gantryd's event
// loop more than that (a promise, a wake-up of a pool thread, its completion), and a converge
// makes ~10 of these files per container. On a disk file system a new inode can cost ~0.5 ms of
// kernel time (ext4 here), which must not block the event loop, so there the pool is worth it.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';

/** statfs(2) f_type of a tmpfs and of a ramfs (linux/magic.h). */
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

/** Whether calls on a file system of this type are cheap enough to make on the event loop. */
export function syncIsCheap(fsType: number): boolean {
  return fsType === TMPFS_MAGIC || fsType === RAMFS_MAGIC;
}

/** The file operations StateFiles needs, as promises either way. */
interface Ops {
  mkdir(path: string, mode: number): Promise<void>;
  writeFile(path: string, data: string, mode: number): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  readFile(path: string): Promise<string>;
  /** Overwrites an existing file from offset 0 and truncates it to data's length; throws when it is missing. */
  overwrite(path: string, data: Buffer): Promise<void>;
  rmTree(path: string): Promise<void>;
}

const syncOps: Ops = {
  mkdir: async (path, mode) => void fs.mkdirSync(path, { recursive: true, mode }),
  writeFile: async (path, data, mode) => fs.writeFileSync(path, data, { mode }),
  rename: async (from, to) => fs.renameSync(from, to),
  readFile: async (path) => fs.readFileSync(path, 'utf8'),
  overwrite: async (path, data) => {
    const fd = fs.openSync(path, 'r+');
    try {
      fs.writeSync(fd, data, 0, data.length, 0);
      fs.ftruncateSync(fd, data.length);
    } finally {
      fs.closeSync(fd);
    }
  },
  rmTree: async (path) => fs.rmSync(path, { recursive: true, force: true }),
};

const poolOps: Ops = {
  mkdir: async (path, mode) => void (await fsp.mkdir(path, { recursive: true, mode })),
  writeFile: (path, data, mode) => fsp.writeFile(path, data, { mode }),
  rename: fsp.rename,
  readFile: (path) => fsp.readFile(path, 'utf8'),
  overwrite: async (path, data) => {
    const fh = await fsp.open(path, 'r+');
    try {
      await fh.write(data, 0, data.length, 0);
      await fh.truncate(data.length);
    } finally {
      await fh.close();
    }
  },
  rmTree: (path) => fsp.rm(path, { recursive: true, force: true }),
};

export class StateFiles {
  private readonly ops: Ops;

  /** Files under dir (made here when missing); `sync` forces the choice (tests), else the file system decides. */
  constructor(dir: string, sync?: boolean) {
    fs.mkdirSync(dir, { recursive: true });
    this.ops = (sync ?? syncIsCheap(fs.statfsSync(dir).type)) ? syncOps : poolOps;
  }

  get synchronous(): boolean {
    return this.ops === syncOps;
  }

  mkdir(path: string, mode = 0o755): Promise<void> {
    return this.ops.mkdir(path, mode);
  }

  write(path: string, data: string, mode = 0o644): Promise<void> {
    return this.ops.writeFile(path, data, mode);
  }

  /** tmp file + rename: a reader sees the old content or the new, never half. */
  async writeAtomic(path: string, data: string): Promise<void> {
    await this.ops.writeFile(`${path}.tmp`, data, 0o644);
    await this.ops.rename(`${path}.tmp`, path);
  }

  /**
   * Rewrites an existing small file where it is (no new inode: allocating one is costly on a busy
   * ext4); written with one write(2), so only a power loss could tear it. A missing file is made
   * as writeAtomic does.
   */
  async rewriteInPlace(path: string, data: string): Promise<void> {
    try {
      await this.ops.overwrite(path, Buffer.from(data));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      await this.writeAtomic(path, data);
    }
  }

  /** The parsed file; undefined when it is missing or not JSON. */
  async readJson<T>(path: string): Promise<T | undefined> {
    try {
      return JSON.parse(await this.ops.readFile(path)) as T;
    } catch {
      return undefined;
    }
  }

  rmTree(path: string): Promise<void> {
    return this.ops.rmTree(path);
  }
}
