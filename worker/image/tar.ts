// A streaming tar reader (ustar, pax extended/global headers, GNU longname/longlink, base-256 numbers)
// as a synchronous push parser, and a small tar writer (ustar + pax for long names and big numbers).

export type TarEntryType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface TarHeader {
  name: string;
  type: TarEntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch, fractional with pax. */
  mtime: number;
  linkname: string;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
  /** From pax SCHILY.xattr.* / LIBARCHIVE.xattr.* records. */
  xattrs: Map<string, Buffer>;
}

export interface TarHandler {
  entry(h: TarHeader): void;
  data(chunk: Buffer): void;
  entryEnd(): void;
}

export class TarFormatError extends Error {
  override name = 'TarFormatError';
}

const BLOCK = 512;

function cstr(b: Buffer, off: number, len: number): string {
  const end = b.indexOf(0, off);
  return b.toString('utf8', off, end >= 0 && end < off + len ? end : off + len);
}

function num(b: Buffer, off: number, len: number, field: string): number {
  if (b[off] & 0x80) {
    // base-256 (GNU): big-endian two's complement, first byte's high bit is the marker
    let v = b[off] & 0x40 ? -1 : 0;
    v = v * 256 + (b[off] & 0x7f) - (b[off] & 0x40 ? 0x80 : 0);
    for (let i = 1; i < len; i++) v = v * 256 + b[off + i];
    if (!Number.isSafeInteger(v)) throw new TarFormatError(`tar header field ${field} out of range`);
    return v;
  }
  const s = b.toString('latin1', off, off + len).replace(/[\0 ]+$/g, '').replace(/^[\0 ]+/, '');
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new TarFormatError(`tar header field ${field} is not octal: ${JSON.stringify(s)}`);
  return Number.parseInt(s, 8);
}

function checksumOk(b: Buffer): boolean {
  const stored = num(b, 148, 8, 'chksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 32 : b[i];
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  return stored === unsigned || stored === signed;
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (b[i] !== 0) return false;
  return true;
}

function parsePax(data: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < data.length) {
    const sp = data.indexOf(0x20, pos);
    if (sp < 0) throw new TarFormatError('malformed pax record (no length)');
    const len = Number.parseInt(data.toString('latin1', pos, sp), 10);
    if (!Number.isFinite(len) || len <= 0 || pos + len > data.length) throw new TarFormatError('malformed pax record length');
    const rec = data.subarray(sp + 1, pos + len - 1); // without trailing \n
    const eq = rec.indexOf(0x3d);
    if (eq < 0) throw new TarFormatError('malformed pax record (no =)');
    out.set(rec.toString('utf8', 0, eq), Buffer.from(rec.subarray(eq + 1)));
    pos += len;
  }
  return out;
}

const typeMap: Record<string, TarEntryType> = {
  '0': 'file', '\0': 'file', '7': 'file', '1': 'hardlink', '2': 'symlink', '3': 'char', '4': 'block', '5': 'dir', '6': 'fifo',
};

type State =
  | { kind: 'header' }
  | { kind: 'body'; remaining: number; pad: number }
  | { kind: 'meta'; typeflag: string; remaining: number; pad: number; parts: Buffer[] }
  | { kind: 'pad'; remaining: number }
  | { kind: 'end' };

/**
 * Push parser: feed chunks with write(), call end() at EOF. Calls handler.entry, then handler.data for
 * the body (possibly several times), then handler.entryEnd. Throws TarFormatError on malformed input.
 */
export class TarParser {
  private handler: TarHandler;
  private state: State = { kind: 'header' };
  private hdrBuf = Buffer.alloc(BLOCK);
  private hdrFill = 0;
  private pax: Map<string, Buffer> | undefined;
  private globalPax = new Map<string, Buffer>();
  private longName: string | undefined;
  private longLink: string | undefined;
  private zeroBlocks = 0;
  /** Bytes consumed from the archive so far. */
  offset = 0;

  constructor(handler: TarHandler) {
    this.handler = handler;
  }

  write(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      const st = this.state;
      switch (st.kind) {
        case 'end':
          return; // trailing data after end-of-archive is ignored, as GNU tar does
        case 'header': {
          const n = Math.min(BLOCK - this.hdrFill, chunk.length - pos);
          chunk.copy(this.hdrBuf, this.hdrFill, pos, pos + n);
          this.hdrFill += n;
          pos += n;
          this.offset += n;
          if (this.hdrFill === BLOCK) {
            this.hdrFill = 0;
            this.onHeader(this.hdrBuf);
          }
          break;
        }
        case 'body': {
          const n = Math.min(st.remaining, chunk.length - pos);
          if (n > 0) this.handler.data(chunk.subarray(pos, pos + n));
          st.remaining -= n;
          pos += n;
          this.offset += n;
          if (st.remaining === 0) {
            this.handler.entryEnd();
            this.state = st.pad > 0 ? { kind: 'pad', remaining: st.pad } : { kind: 'header' };
          }
          break;
        }
        case 'meta': {
          const n = Math.min(st.remaining, chunk.length - pos);
          st.parts.push(Buffer.from(chunk.subarray(pos, pos + n)));
          st.remaining -= n;
          pos += n;
          this.offset += n;
          if (st.remaining === 0) {
            this.onMeta(st.typeflag, Buffer.concat(st.parts));
            this.state = st.pad > 0 ? { kind: 'pad', remaining: st.pad } : { kind: 'header' };
          }
          break;
        }
        case 'pad': {
          const n = Math.min(st.remaining, chunk.length - pos);
          st.remaining -= n;
          pos += n;
          this.offset += n;
          if (st.remaining === 0) this.state = { kind: 'header' };
          break;
        }
      }
    }
  }

  /** At EOF: an archive cut off inside an entry is an error; a missing end-of-archive marker is tolerated. */
  end(): void {
    const st = this.state;
    if (st.kind === 'body' || st.kind === 'meta' || (st.kind === 'header' && this.hdrFill > 0)) {
      throw new TarFormatError(`tar archive truncated at byte ${this.offset}`);
    }
  }

  get finished(): boolean {
    return this.state.kind === 'end';
  }

  private onHeader(b: Buffer): void {
    if (isZero(b)) {
      this.zeroBlocks++;
      if (this.zeroBlocks >= 2) this.state = { kind: 'end' };
      return;
    }
    if (this.zeroBlocks > 0) this.zeroBlocks = 0;
    if (!checksumOk(b)) throw new TarFormatError(`tar header checksum mismatch at byte ${this.offset - BLOCK}`);
    const typeflag = String.fromCharCode(b[156]);
    const size = num(b, 124, 12, 'size');
    if (size < 0) throw new TarFormatError('negative size in tar header');
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
      if (size > 64 << 20) throw new TarFormatError(`tar metadata entry too large (${size} bytes)`);
      if (size === 0) {
        this.onMeta(typeflag, Buffer.alloc(0));
        return;
      }
      this.state = { kind: 'meta', typeflag, remaining: size, pad, parts: [] };
      return;
    }
    const type = typeMap[typeflag];
    if (!type) throw new TarFormatError(`unsupported tar entry type '${typeflag}' for "${cstr(b, 0, 100)}"`);
    const magic = b.toString('latin1', 257, 263);
    let name = cstr(b, 0, 100);
    if (magic === 'ustar\0') {
      const prefix = cstr(b, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    const h: TarHeader = {
      name,
      type,
      mode: num(b, 100, 8, 'mode') & 0o7777,
      uid: num(b, 108, 8, 'uid'),
      gid: num(b, 116, 8, 'gid'),
      size,
      mtime: num(b, 136, 12, 'mtime'),
      linkname: cstr(b, 157, 100),
      uname: cstr(b, 265, 32),
      gname: cstr(b, 297, 32),
      devmajor: type === 'char' || type === 'block' ? num(b, 329, 8, 'devmajor') : 0,
      devminor: type === 'char' || type === 'block' ? num(b, 337, 8, 'devminor') : 0,
      xattrs: new Map(),
    };
    if (this.longName !== undefined) h.name = this.longName;
    if (this.longLink !== undefined) h.linkname = this.longLink;
    this.longName = this.longLink = undefined;
    const pax = this.pax ? new Map([...this.globalPax, ...this.pax]) : this.globalPax;
    this.pax = undefined;
    for (const [k, v] of pax) {
      switch (k) {
        case 'path': h.name = v.toString('utf8'); break;
        case 'linkpath': h.linkname = v.toString('utf8'); break;
        case 'size': h.size = paxInt(k, v); break;
        case 'uid': h.uid = paxInt(k, v); break;
        case 'gid': h.gid = paxInt(k, v); break;
        case 'uname': h.uname = v.toString('utf8'); break;
        case 'gname': h.gname = v.toString('utf8'); break;
        case 'mtime': h.mtime = Number.parseFloat(v.toString('latin1')); break;
        default:
          if (k.startsWith('SCHILY.xattr.')) h.xattrs.set(k.slice('SCHILY.xattr.'.length), v);
          else if (k.startsWith('LIBARCHIVE.xattr.')) {
            h.xattrs.set(decodeURIComponent(k.slice('LIBARCHIVE.xattr.'.length)), Buffer.from(v.toString('latin1'), 'base64'));
          }
      }
    }
    // Some writers put a size on hardlinks/dirs; the bytes still occupy the archive and are skipped.
    const bodyBytes = type === 'file' ? h.size : size;
    const bodyPad = (BLOCK - (bodyBytes % BLOCK)) % BLOCK;
    this.handler.entry(h);
    if (bodyBytes === 0) {
      this.handler.entryEnd();
      return;
    }
    if (type === 'file') {
      this.state = { kind: 'body', remaining: bodyBytes, pad: bodyPad };
    } else {
      this.handler.entryEnd();
      this.state = { kind: 'pad', remaining: bodyBytes + bodyPad };
    }
  }

  private onMeta(typeflag: string, data: Buffer): void {
    switch (typeflag) {
      case 'x': this.pax = parsePax(data); break;
      case 'g': for (const [k, v] of parsePax(data)) this.globalPax.set(k, v); break;
      case 'L': this.longName = cstr(data, 0, data.length); break;
      case 'K': this.longLink = cstr(data, 0, data.length); break;
    }
  }
}

function paxInt(k: string, v: Buffer): number {
  const s = v.toString('latin1');
  if (!/^[0-9]+$/.test(s)) throw new TarFormatError(`pax ${k} is not a number: ${JSON.stringify(s)}`);
  return Number.parseInt(s, 10);
}

// ---------------------------------------------------------------- writer

export interface TarWriteEntry {
  name: string;
  type: TarEntryType;
  size?: number;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  linkname?: string;
  uname?: string;
  gname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: Map<string, Buffer>;
}

const typeFlag: Record<TarEntryType, string> = {
  file: '0', hardlink: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6',
};

function writeOctal(b: Buffer, off: number, len: number, v: number): boolean {
  const s = Math.trunc(v).toString(8);
  if (s.length > len - 1 || v < 0) return false;
  b.write(s.padStart(len - 1, '0'), off, 'latin1');
  b[off + len - 1] = 0;
  return true;
}

function paxRecord(k: string, v: Buffer | string): Buffer {
  const body = Buffer.concat([Buffer.from(` ${k}=`), Buffer.isBuffer(v) ? v : Buffer.from(v), Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

function rawHeader(name: string, flag: string, e: TarWriteEntry, size: number, pax: Buffer[]): Buffer {
  const b = Buffer.alloc(BLOCK);
  const nameBuf = Buffer.from(name);
  if (nameBuf.length > 100) {
    pax.push(paxRecord('path', name));
    nameBuf.subarray(0, 100).copy(b, 0);
  } else nameBuf.copy(b, 0);
  writeOctal(b, 100, 8, (e.mode ?? (e.type === 'dir' ? 0o755 : 0o644)) & 0o7777);
  if (!writeOctal(b, 108, 8, e.uid ?? 0)) pax.push(paxRecord('uid', String(e.uid)));
  if (!writeOctal(b, 116, 8, e.gid ?? 0)) pax.push(paxRecord('gid', String(e.gid)));
  if (!writeOctal(b, 124, 12, size)) {
    pax.push(paxRecord('size', String(size)));
    writeOctal(b, 124, 12, 0);
  }
  const mtime = e.mtime ?? 0;
  writeOctal(b, 136, 12, Math.max(0, Math.floor(mtime)));
  if (!Number.isInteger(mtime)) pax.push(paxRecord('mtime', mtime.toFixed(9).replace(/0+$/, '')));
  b.write(flag, 156, 'latin1');
  const link = Buffer.from(e.linkname ?? '');
  if (link.length > 100) pax.push(paxRecord('linkpath', e.linkname as string));
  else link.copy(b, 157);
  b.write('ustar\x0000', 257, 'latin1');
  b.write((e.uname ?? '').slice(0, 31), 265, 'utf8');
  b.write((e.gname ?? '').slice(0, 31), 297, 'utf8');
  writeOctal(b, 329, 8, e.devmajor ?? 0);
  writeOctal(b, 337, 8, e.devminor ?? 0);
  if (e.xattrs) for (const [k, v] of e.xattrs) pax.push(paxRecord(`SCHILY.xattr.${k}`, v));
  return b;
}

function finishChecksum(b: Buffer): Buffer {
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i];
  b.write(sum.toString(8).padStart(6, '0'), 148, 'latin1');
  b[154] = 0;
  b[155] = 0x20;
  return b;
}

/** The header block(s) for an entry (a pax header first when a field does not fit ustar). */
export function tarHeader(e: TarWriteEntry): Buffer {
  const size = e.type === 'file' ? (e.size ?? 0) : 0;
  const pax: Buffer[] = [];
  const main = rawHeader(e.name, typeFlag[e.type], e, size, pax);
  finishChecksum(main);
  if (pax.length === 0) return main;
  const paxData = Buffer.concat(pax);
  const ph = rawHeader(`PaxHeaders/${e.name}`.slice(0, 99), 'x', { name: '', type: 'file', mode: 0o644 }, paxData.length, []);
  finishChecksum(ph);
  return Buffer.concat([ph, paxData, tarPadding(paxData.length), main]);
}

export function tarPadding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

export const TAR_END = Buffer.alloc(BLOCK * 2);
