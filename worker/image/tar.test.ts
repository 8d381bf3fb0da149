// Tar reader: ustar, pax and GNU long names, base-256 sizes, arbitrary chunking, truncation and bad checksums.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { TAR_END, type TarHeader, TarParser, tarHeader, tarPadding } from './tar.ts';

interface Got {
  h: TarHeader;
  data: Buffer;
}

function parse(buf: Buffer, chunk = buf.length): Got[] {
  const out: Got[] = [];
  let cur: Got | undefined;
  const p = new TarParser({
    entry: (h) => {
      cur = { h, data: Buffer.alloc(0) };
    },
    data: (c) => {
      if (cur) cur.data = Buffer.concat([cur.data, c]);
    },
    entryEnd: () => {
      if (cur) out.push(cur);
      cur = undefined;
    },
  });
  for (let i = 0; i < buf.length; i += chunk) p.write(buf.subarray(i, i + chunk));
  p.end();
  return out;
}

function archive(): Buffer {
  const long = `${'d'.repeat(120)}/${'f'.repeat(150)}`;
  const data = Buffer.from('hello world\n');
  return Buffer.concat([
    tarHeader({ name: 'dir/', type: 'dir', mode: 0o750, uid: 1000, gid: 1001, mtime: 1_600_000_000 }),
    tarHeader({ name: 'dir/file', type: 'file', size: data.length, mode: 0o4755, mtime: 1_600_000_001.5 }),
    data,
    tarPadding(data.length),
    tarHeader({ name: long, type: 'symlink', linkname: 'x'.repeat(200) }),
    tarHeader({ name: 'dir/cap', type: 'file', size: 0, xattrs: new Map([['security.capability', Buffer.from([1, 2, 0, 255])]]) }),
    tarHeader({ name: 'big-ids', type: 'file', size: 0, uid: 3_000_000, gid: 4_000_000 }),
    TAR_END,
  ]);
}

test('tar: reads ustar + pax written entries in any chunking', () => {
  const buf = archive();
  for (const chunk of [buf.length, 512, 511, 7, 1]) {
    const got = parse(buf, chunk);
    assert.equal(got.length, 5, `chunk ${chunk}`);
    assert.equal(got[0].h.name, 'dir/');
    assert.equal(got[0].h.type, 'dir');
    assert.equal(got[0].h.mode, 0o750);
    assert.equal(got[0].h.uid, 1000);
    assert.equal(got[1].data.toString(), 'hello world\n');
    assert.equal(got[1].h.mode, 0o4755);
    assert.equal(got[1].h.mtime, 1_600_000_001.5);
    assert.equal(got[2].h.name.length, 271);
    assert.equal(got[2].h.linkname, 'x'.repeat(200));
    assert.deepEqual([...got[3].h.xattrs.get('security.capability') ?? []], [1, 2, 0, 255]);
    assert.equal(got[4].h.uid, 3_000_000);
  }
});

test('tar: reads what GNU tar writes (gnu longname, base-256) and pax from GNU tar', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tar-test-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const src = path.join(dir, 'src');
  const deep = path.join(src, 'a'.repeat(90), 'b'.repeat(90));
  fs.mkdirSync(deep, { recursive: true });
  fs.writeFileSync(path.join(deep, 'c'.repeat(100)), 'x'.repeat(70_000));
  fs.linkSync(path.join(deep, 'c'.repeat(100)), path.join(src, 'hard'));
  fs.symlinkSync('/etc/passwd', path.join(src, 'sym'));
  for (const format of ['gnu', 'posix', 'ustar']) {
    if (format === 'ustar') continue; // name too long for ustar by design
    const out = execFileSync('tar', ['--format', format, '-C', src, '-cf', '-', '.'], { maxBuffer: 1 << 26 });
    const got = parse(out, 1000);
    const file = got.find((g) => g.h.name.endsWith('c'.repeat(100)));
    assert.ok(file, format);
    assert.equal(file.data.length, 70_000);
    const hard = got.find((g) => g.h.name === './hard');
    assert.ok(hard, format);
    // GNU tar stores the second name as the hard link
    assert.ok(hard.h.type === 'hardlink' || hard.h.type === 'file', format);
    assert.equal(got.find((g) => g.h.name === './sym')?.h.linkname, '/etc/passwd');
  }
});

test('tar: a truncated archive and a corrupt header are errors, not short reads', () => {
  const buf = archive();
  assert.throws(() => parse(buf.subarray(0, 512 + 512 + 5)), /truncated/);
  const bad = Buffer.from(buf);
  bad[3] ^= 0xff;
  assert.throws(() => parse(bad), /checksum/);
});
