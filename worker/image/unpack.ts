// Applies one layer tar to an empty snapshot directory in overlayfs form (OCI layer rules): whiteouts become
// char 0/0 devices, opaque dirs get trusted.overlay.opaque=y; nothing is ever written outside the directory.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TarHandler, TarHeader } from './tar.ts';

export class UnsafeEntryError extends Error {
  override name = 'UnsafeEntryError';
}

export interface UnpackOptions {
  /** The snapshot's fs directory being filled; must be empty at the start. */
  root: string;
  /**
   * Parent layers' fs directories, TOPMOST FIRST, awaited only at finish(): hard links to files of lower layers
   * are copied from them and implied parent directories take their attributes, so layers can unpack in parallel.
   */
  lowers: () => Promise<string[]>;
  /** A char 0/0 device on the same filesystem, hard-linked to make whiteouts without a mknod per entry. */
  whiteoutTemplate: string;
}

const WH = '.wh.';
const OPAQUE = '.wh..wh..opq';
const IS_ROOT = process.getuid?.() === 0;
const UMASK = readUmask();

function readUmask(): number {
  try {
    const m = /^Umask:\s*([0-7]+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m ? Number.parseInt(m[1], 8) : 0o022;
  } catch {
    return 0o022;
  }
}

/** "a/./b/" → "a/b"; refuses absolute paths, "..", NUL. The root entry ("./") is "". */
export function cleanEntryName(name: string, what = 'entry'): string {
  if (name.includes('\0')) throw new UnsafeEntryError(`layer ${what} ${JSON.stringify(name)}: name contains NUL`);
  if (name.startsWith('/')) throw new UnsafeEntryError(`layer ${what} ${JSON.stringify(name)}: absolute path refused`);
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new UnsafeEntryError(`layer ${what} ${JSON.stringify(name)}: path with ".." refused (would escape the layer)`);
  return parts.join('/');
}

interface DirTimes {
  abs: string;
  mtime: number;
}
interface Special {
  rel: string;
  kind: 'c' | 'b' | 'p';
  major: number;
  minor: number;
  h: TarHeader;
}

export class LayerUnpacker implements TarHandler {
  private opts: UnpackOptions;
  private knownDirs = new Set<string>(['']);
  private fd = -1;
  private current: TarHeader | undefined;
  private dirTimes: DirTimes[] = [];
  private specials = new Map<string, Special>();
  private xattrs: Array<{ rel: string; key: string; value: Buffer }> = [];
  private pendingLinks = new Map<string, { h: TarHeader; targetRel: string }>();
  private impliedDirs: string[] = [];
  entries = 0;
  bytes = 0;

  constructor(opts: UnpackOptions) {
    this.opts = opts;
  }

  entry(h: TarHeader): void {
    this.entries++;
    const rel = cleanEntryName(h.name);
    this.current = h;
    const base = rel.slice(rel.lastIndexOf('/') + 1);
    if (base.startsWith(WH)) {
      this.whiteout(h, rel, base);
      return;
    }
    if (rel === '') {
      if (h.type === 'dir') this.applyDirMeta(this.opts.root, h);
      return;
    }
    this.ensureParent(h, rel);
    this.specials.delete(rel);
    this.pendingLinks.delete(rel);
    const abs = path.join(this.opts.root, rel);
    switch (h.type) {
      case 'dir': {
        this.forgetDirsUnder(rel);
        try {
          fs.mkdirSync(abs, h.mode & 0o777);
        } catch (e) {
          if (code(e) !== 'EEXIST') throw this.fail(h, e);
          if (!fs.lstatSync(abs).isDirectory()) {
            this.remove(rel);
            fs.mkdirSync(abs, h.mode & 0o777);
          }
        }
        this.knownDirs.add(rel);
        this.applyDirMeta(abs, h);
        break;
      }
      case 'file': {
        this.forgetDirsUnder(rel);
        const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
        try {
          this.fd = fs.openSync(abs, flags, h.mode & 0o777);
        } catch (e) {
          if (code(e) !== 'EEXIST') throw this.fail(h, e);
          this.remove(rel);
          this.fd = fs.openSync(abs, flags, h.mode & 0o777);
        }
        break;
      }
      case 'symlink': {
        this.forgetDirsUnder(rel);
        this.retryAfterRemove(rel, () => fs.symlinkSync(h.linkname, abs));
        this.owner(abs, h, true);
        fs.lutimesSync(abs, h.mtime, h.mtime);
        break;
      }
      case 'hardlink':
        this.forgetDirsUnder(rel);
        this.hardlink(h, rel, abs);
        break;
      case 'char':
      case 'block':
      case 'fifo': {
        this.forgetDirsUnder(rel);
        if (h.type === 'char' && h.devmajor === 0 && h.devminor === 0) {
          // already an overlay whiteout
          this.retryAfterRemove(rel, () => fs.linkSync(this.opts.whiteoutTemplate, abs));
          break;
        }
        if (fs.existsSync(abs)) this.remove(rel);
        this.specials.set(rel, { rel, kind: h.type === 'char' ? 'c' : h.type === 'block' ? 'b' : 'p', major: h.devmajor, minor: h.devminor, h });
        break;
      }
      default: {
        const never: never = h.type;
        throw new UnsafeEntryError(`layer entry ${JSON.stringify(h.name)}: unsupported type ${never}`);
      }
    }
    if (h.type !== 'char' && h.type !== 'block' && h.type !== 'fifo') {
      for (const [key, value] of h.xattrs) this.xattrs.push({ rel, key, value });
    }
  }

  data(chunk: Buffer): void {
    if (this.fd < 0) return;
    let off = 0;
    while (off < chunk.length) off += fs.writeSync(this.fd, chunk, off, chunk.length - off);
    this.bytes += chunk.length;
  }

  entryEnd(): void {
    const h = this.current;
    if (this.fd >= 0 && h) {
      const fd = this.fd;
      this.fd = -1;
      try {
        if (IS_ROOT && (h.uid !== 0 || h.gid !== 0)) fs.fchownSync(fd, h.uid, h.gid);
        if ((h.mode & 0o7000) !== 0 || (h.mode & UMASK) !== 0 || (h.uid !== 0 || h.gid !== 0)) fs.fchmodSync(fd, h.mode);
        fs.futimesSync(fd, h.mtime, h.mtime);
      } finally {
        fs.closeSync(fd);
      }
    }
    this.current = undefined;
  }

  /** Closes a half-written file after a failure. */
  abort(): void {
    if (this.fd >= 0) {
      try {
        fs.closeSync(this.fd);
      } catch {}
      this.fd = -1;
    }
  }

  /** Deferred work: device nodes and fifos, xattrs (after chown, which clears capabilities), directory mtimes. */
  async finish(): Promise<void> {
    if (this.pendingLinks.size > 0 || this.impliedDirs.length > 0) {
      const lowers = await this.opts.lowers();
      for (const [rel, { h, targetRel }] of this.pendingLinks) {
        this.current = h;
        const parent = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
        if (!this.stillSafe(parent)) throw new UnsafeEntryError(`layer entry ${JSON.stringify(h.name)}: parent directory was replaced (refused)`);
        this.linkFromLower(lowers, rel, h, targetRel);
      }
      for (const dir of this.impliedDirs) {
        const abs = path.join(this.opts.root, dir);
        if (!this.stillSafe(dir) || !fs.lstatSync(abs).isDirectory()) continue;
        for (const lower of lowers) {
          const ls = safeLstat(lower, dir);
          if (ls.kind !== 'found' || !ls.stat.isDirectory()) continue;
          if (IS_ROOT && (ls.stat.uid !== 0 || ls.stat.gid !== 0)) fs.lchownSync(abs, ls.stat.uid, ls.stat.gid);
          fs.chmodSync(abs, ls.stat.mode & 0o7777);
          this.dirTimes.unshift({ abs, mtime: ls.stat.mtimeMs / 1000 });
          break;
        }
      }
    }
    for (const [rel, sp] of this.specials) {
      const parent = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
      if (!this.stillSafe(parent)) throw new UnsafeEntryError(`layer entry ${JSON.stringify(sp.h.name)}: parent directory was replaced (refused)`);
    }
    if (this.specials.size > 0) {
      const args: string[] = [];
      for (const s of this.specials.values()) {
        args.push(s.rel, s.kind, s.kind === 'p' ? '' : String(s.major), s.kind === 'p' ? '' : String(s.minor));
      }
      await run('sh', ['-c', 'while [ $# -gt 0 ]; do if [ "$2" = p ]; then mknod -- "$1" p; else mknod -- "$1" "$2" "$3" "$4"; fi || exit 1; shift 4; done', 'sh', ...args], this.opts.root);
      for (const s of this.specials.values()) {
        const abs = path.join(this.opts.root, s.rel);
        this.owner(abs, s.h, true);
        fs.chmodSync(abs, s.h.mode);
        fs.utimesSync(abs, s.h.mtime, s.h.mtime);
        for (const [key, value] of s.h.xattrs) this.xattrs.push({ rel: s.rel, key, value });
      }
    }
    this.xattrs = this.xattrs.filter((x) => this.stillSafe(x.rel));
    if (this.xattrs.length > 0) await setXattrs(this.opts.root, this.xattrs);
    for (let i = this.dirTimes.length - 1; i >= 0; i--) {
      const d = this.dirTimes[i];
      const rel = path.relative(this.opts.root, d.abs);
      if (rel.startsWith('..') || !this.stillSafe(rel) || !fs.lstatSync(d.abs).isDirectory()) continue;
      fs.utimesSync(d.abs, d.mtime, d.mtime);
    }
  }

  private whiteout(h: TarHeader, rel: string, base: string): void {
    const dirRel = rel.slice(0, Math.max(0, rel.length - base.length - 1));
    if (dirRel) this.ensureParent(h, `${dirRel}/x`);
    if (dirRel && !this.knownDirs.has(dirRel)) this.ensureDir(h, dirRel);
    if (base === OPAQUE) {
      this.xattrs.push({ rel: dirRel || '.', key: 'trusted.overlay.opaque', value: Buffer.from('y') });
      return;
    }
    if (base.startsWith(`${WH}${WH}`)) return; // aufs metadata (.wh..wh.plnk etc.): not content
    const name = base.slice(WH.length);
    if (name === '' || name === '.' || name === '..') throw new UnsafeEntryError(`layer entry ${JSON.stringify(h.name)}: bad whiteout name`);
    const targetRel = dirRel ? `${dirRel}/${name}` : name;
    this.forgetDirsUnder(targetRel);
    this.specials.delete(targetRel);
    const abs = path.join(this.opts.root, targetRel);
    this.retryAfterRemove(targetRel, () => fs.linkSync(this.opts.whiteoutTemplate, abs));
  }

  private hardlink(h: TarHeader, rel: string, abs: string): void {
    const targetRel = cleanEntryName(h.linkname, `entry ${JSON.stringify(h.name)} hard link target`);
    if (targetRel === '') throw new UnsafeEntryError(`layer entry ${JSON.stringify(h.name)}: hard link to the layer root refused`);
    if (targetRel === rel) return;
    const here = safeLstat(this.opts.root, targetRel);
    if (here.kind === 'escape') {
      throw new UnsafeEntryError(`layer entry ${JSON.stringify(h.name)}: hard link target ${JSON.stringify(h.linkname)} goes through symlink ${JSON.stringify(here.via)} (refused)`);
    }
    if (here.kind === 'found') {
      if (here.stat.isDirectory()) throw new UnsafeEntryError(`layer entry ${JSON.stringify(h.name)}: hard link to directory ${JSON.stringify(h.linkname)} refused`);
      this.retryAfterRemove(rel, () => fs.linkSync(path.join(this.opts.root, targetRel), abs));
      return;
    }
    this.pendingLinks.set(rel, { h, targetRel });
  }

  private linkFromLower(lowers: string[], rel: string, h: TarHeader, targetRel: string): void {
    const abs = path.join(this.opts.root, rel);
    for (const lower of lowers) {
      const st = safeLstat(lower, targetRel);
      if (st.kind !== 'found') continue;
      if (st.stat.isDirectory()) throw new UnsafeEntryError(`layer entry ${JSON.stringify(h.name)}: hard link to directory ${JSON.stringify(h.linkname)} refused`);
      // The target lives in a lower layer: overlay cannot link across layers, so this layer gets a copy.
      const src = path.join(lower, targetRel);
      if (st.stat.isSymbolicLink()) this.retryAfterRemove(rel, () => fs.symlinkSync(fs.readlinkSync(src), abs));
      else this.retryAfterRemove(rel, () => fs.copyFileSync(src, abs));
      if (IS_ROOT) fs.lchownSync(abs, st.stat.uid, st.stat.gid);
      if (!st.stat.isSymbolicLink()) fs.chmodSync(abs, st.stat.mode & 0o7777);
      return;
    }
    throw new UnsafeEntryError(`layer entry ${JSON.stringify(h.name)}: hard link target ${JSON.stringify(h.linkname)} not found in this layer or below`);
  }

  /** Makes sure every parent of rel is a real directory inside root (creating missing ones), never a symlink. */
  private ensureParent(h: TarHeader, rel: string): void {
    let idx = rel.indexOf('/');
    while (idx >= 0) {
      const dir = rel.slice(0, idx);
      if (!this.knownDirs.has(dir)) this.ensureDir(h, dir);
      idx = rel.indexOf('/', idx + 1);
    }
  }

  private ensureDir(h: TarHeader, dir: string): void {
    const abs = path.join(this.opts.root, dir);
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(abs);
    } catch (e) {
      if (code(e) !== 'ENOENT') throw this.fail(h, e);
    }
    if (st?.isSymbolicLink()) {
      const target = fs.readlinkSync(abs);
      const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(dir), target));
      const outside = target.startsWith('/') || resolved === '..' || resolved.startsWith('../');
      throw new UnsafeEntryError(
        `layer entry ${JSON.stringify(h.name)}: path goes through symlink ${JSON.stringify(dir)} -> ${JSON.stringify(target)}${outside ? ' pointing outside the layer' : ''} (refused)`,
      );
    }
    if (st && !st.isDirectory()) {
      throw new UnsafeEntryError(`layer entry ${JSON.stringify(h.name)}: parent ${JSON.stringify(dir)} is not a directory`);
    }
    if (!st) {
      // An implied parent: at finish() it takes the attributes it has below, so the overlay does not change them.
      fs.mkdirSync(abs, 0o755);
      this.impliedDirs.push(dir);
    }
    this.knownDirs.add(dir);
  }

  private applyDirMeta(abs: string, h: TarHeader): void {
    if (IS_ROOT && (h.uid !== 0 || h.gid !== 0)) fs.chownSync(abs, h.uid, h.gid);
    fs.chmodSync(abs, h.mode);
    this.dirTimes.push({ abs, mtime: h.mtime });
  }

  private owner(abs: string, h: TarHeader, noFollow: boolean): void {
    if (!IS_ROOT || (h.uid === 0 && h.gid === 0)) return;
    if (noFollow) fs.lchownSync(abs, h.uid, h.gid);
    else fs.chownSync(abs, h.uid, h.gid);
  }

  private retryAfterRemove(rel: string, op: () => void): void {
    try {
      op();
    } catch (e) {
      if (code(e) !== 'EEXIST') throw this.fail(this.current, e);
      this.remove(rel);
      op();
    }
  }

  private remove(rel: string): void {
    this.forgetDirsUnder(rel);
    fs.rmSync(path.join(this.opts.root, rel), { recursive: true, force: true });
  }

  /**
   * `rel` is being replaced: forget it as a directory and drop deferred work at or under it, so finish() never
   * acts through what may now be a symlink.
   */
  private forgetDirsUnder(rel: string): void {
    if (!this.knownDirs.has(rel)) return;
    const prefix = `${rel}/`;
    const under = (p: string) => p === rel || p.startsWith(prefix);
    for (const d of this.knownDirs) if (under(d)) this.knownDirs.delete(d);
    this.xattrs = this.xattrs.filter((x) => !under(x.rel));
    const absRel = path.join(this.opts.root, rel);
    this.dirTimes = this.dirTimes.filter((d) => d.abs !== absRel && !d.abs.startsWith(`${absRel}/`));
    for (const k of [...this.specials.keys()]) if (under(k)) this.specials.delete(k);
    for (const k of [...this.pendingLinks.keys()]) if (under(k)) this.pendingLinks.delete(k);
    this.impliedDirs = this.impliedDirs.filter((d) => !under(d));
  }

  /** finish() double-checks every deferred path: still inside root with no symlink on the way. */
  private stillSafe(rel: string): boolean {
    if (rel === '' || rel === '.') return true;
    const r = safeLstat(this.opts.root, rel);
    return r.kind === 'found';
  }

  private fail(h: TarHeader | undefined, e: unknown): Error {
    const msg = e instanceof Error ? e.message : String(e);
    return new Error(`layer entry ${JSON.stringify(h?.name ?? '?')}: ${msg}`, { cause: e });
  }
}

type Lookup = { kind: 'found'; stat: fs.Stats } | { kind: 'missing' } | { kind: 'escape'; via: string };

/** lstat of base/rel that refuses to pass through a symlink in any parent component. */
function safeLstat(base: string, rel: string): Lookup {
  const parts = rel.split('/');
  let cur = base;
  for (let i = 0; i < parts.length; i++) {
    cur = path.join(cur, parts[i]);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(cur);
    } catch (e) {
      if (code(e) === 'ENOENT' || code(e) === 'ENOTDIR') return { kind: 'missing' };
      throw e;
    }
    if (i === parts.length - 1) return { kind: 'found', stat: st };
    if (st.isSymbolicLink()) return { kind: 'escape', via: parts.slice(0, i + 1).join('/') };
    if (!st.isDirectory()) return { kind: 'missing' };
  }
  return { kind: 'missing' };
}

function code(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

/** Escapes a path for getfattr/setfattr dump format: backslash and non-printables as \ooo. */
function escapeDumpPath(p: string): string {
  const b = Buffer.from(p);
  let out = '';
  for (const c of b) out += c <= 0x20 || c >= 0x7f || c === 0x5c || c === 0x3d ? `\\${c.toString(8).padStart(3, '0')}` : String.fromCharCode(c);
  return out;
}

/** Sets many xattrs with one setfattr process (Node has no setxattr); paths are relative to root. */
export async function setXattrs(root: string, list: Array<{ rel: string; key: string; value: Buffer }>): Promise<void> {
  const byPath = new Map<string, string[]>();
  for (const x of list) {
    const lines = byPath.get(x.rel) ?? [];
    lines.push(`${x.key}=0s${x.value.toString('base64')}`);
    byPath.set(x.rel, lines);
  }
  let dump = '';
  for (const [rel, lines] of byPath) dump += `# file: ${escapeDumpPath(rel)}\n${lines.join('\n')}\n\n`;
  const tmp = path.join(os.tmpdir(), `gantry-xattr-${process.pid}-${Math.random().toString(36).slice(2)}`);
  fs.writeFileSync(tmp, dump);
  try {
    await run('setfattr', ['-h', `--restore=${tmp}`], root);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

export function run(cmd: string, args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => {
      err += d;
    });
    p.on('error', (e) => reject(new Error(`${cmd}: ${e.message}${e.message.includes('ENOENT') ? ` (install ${cmd === 'setfattr' ? 'the attr package' : cmd})` : ''}`)));
    p.on('close', (c) => (c === 0 ? resolve() : reject(new Error(`${cmd} failed in ${cwd}: ${err.trim() || `exit ${c}`}`))));
  });
}
