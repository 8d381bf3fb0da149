// Unpacked layers, one directory per chain id (snapshots/<hex>/fs), shared by every image and container
// that has that layer stack; filled in snapshots/tmp-* and renamed into place when complete.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { hexOf } from './oci.ts';

export class Snapshots {
  readonly root: string;
  /** A char 0/0 device hard-linked into layers as overlay whiteouts. */
  readonly whiteoutTemplate: string;

  private constructor(root: string) {
    this.root = root;
    this.whiteoutTemplate = path.join(root, '.whiteout');
  }

  static async open(root: string): Promise<Snapshots> {
    const s = new Snapshots(root);
    await fsp.mkdir(root, { recursive: true });
    // leftovers of unpacks cut off by a crash are never complete: drop them
    for (const n of await fsp.readdir(root)) {
      if (n.startsWith('tmp-')) await fsp.rm(path.join(root, n), { recursive: true, force: true });
    }
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(s.whiteoutTemplate);
    } catch {}
    if (!st?.isCharacterDevice() || st.rdev !== 0) {
      fs.rmSync(s.whiteoutTemplate, { force: true });
      const r = spawnSync('mknod', ['-m', '000', s.whiteoutTemplate, 'c', '0', '0'], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`cannot create whiteout device ${s.whiteoutTemplate}: ${r.stderr || r.error?.message} (needs root / CAP_MKNOD)`);
    }
    return s;
  }

  dir(chainId: string): string {
    return path.join(this.root, hexOf(chainId), 'fs');
  }

  has(chainId: string): boolean {
    return fs.existsSync(this.dir(chainId));
  }

  /** A fresh temp dir to unpack into; returns its fs dir. */
  async prepare(chainId: string): Promise<string> {
    const tmp = path.join(this.root, `tmp-${hexOf(chainId).slice(0, 16)}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
    await fsp.mkdir(path.join(tmp, 'fs'), { recursive: true });
    return path.join(tmp, 'fs');
  }

  /** Moves a filled temp dir into place (if another unpack won the race, the temp dir is discarded). */
  async commit(tmpFs: string, chainId: string): Promise<void> {
    const tmp = path.dirname(tmpFs);
    const final = path.join(this.root, hexOf(chainId));
    try {
      await fsp.rename(tmp, final);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
      await this.discard(tmpFs);
    }
  }

  async discard(tmpFs: string): Promise<void> {
    await fsp.rm(path.dirname(tmpFs), { recursive: true, force: true });
  }

  async list(): Promise<string[]> {
    return (await fsp.readdir(this.root)).filter((n) => /^[a-f0-9]{64}$/.test(n)).map((n) => `sha256:${n}`);
  }

  async remove(chainId: string): Promise<void> {
    // rename first so a crash mid-delete never leaves a partial snapshot under its real name
    const final = path.join(this.root, hexOf(chainId));
    const tmp = path.join(this.root, `tmp-rm-${hexOf(chainId).slice(0, 16)}-${Math.random().toString(36).slice(2, 8)}`);
    try {
      await fsp.rename(final, tmp);
    } catch {
      return;
    }
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}
