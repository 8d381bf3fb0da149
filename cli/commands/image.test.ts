// Image CLI printing: progress lines, the progress view on a pipe vs a terminal, and `images` rows.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { imageRows, ProgressView } from './image.ts';

const D = `sha256:${'ab'.repeat(32)}`;
const p = (status: string, current = 0, total = 0, message = '') => ({ id: D, status, current, total, message });

test('image cli: progress lines read like docker pull', () => {
  assert.equal(ProgressView.line(p('downloading', 512, 1024), false), `abababababab: Downloading [${'='.repeat(19)}>${' '.repeat(20)}] 512B/1KiB`);
  assert.equal(ProgressView.line(p('done'), false), 'abababababab: Pull complete');
  assert.equal(ProgressView.line(p('done'), true), 'abababababab: Pushed');
  assert.equal(ProgressView.line(p('exists'), true), 'abababababab: Layer already exists');
  assert.equal(ProgressView.line(p('mounted', 0, 0, 'from team/app'), true), 'abababababab: Mounted from team/app');
  assert.equal(ProgressView.line(p('retrying', 0, 0, 'socket hang up'), false), 'abababababab: Retrying: socket hang up');
});

test('image cli: on a pipe one line per status change, on a terminal redrawn in place', () => {
  let out = '';
  const sink = new Writable({
    write(c, _e, cb) {
      out += String(c);
      cb();
    },
  });
  const pipe = new ProgressView(sink, false);
  for (const ev of [p('waiting'), p('downloading', 1, 10), p('downloading', 5, 10), p('done', 10, 10)]) pipe.update(ev);
  assert.equal(out.split('\n').filter(Boolean).length, 3);
  assert.ok(!out.includes('\x1b['));
  assert.ok(pipe.transferred);
  out = '';
  const tty = new ProgressView(sink, true);
  tty.update(p('waiting'));
  tty.update(p('exists'));
  assert.ok(out.includes('\x1b[1A'));
  assert.equal(tty.transferred, false);
});

test('image cli: images rows split repository and tag, one row per tag', () => {
  const rows = imageRows(
    [{ id: D, repoTags: ['bb:1', '127.0.0.1:5000/x/bb:2'], repoDigests: [`127.0.0.1:5000/x/bb@${D}`], size: 2048, created: '2026-01-01T00:00:00Z', platform: 'linux/amd64', manifestDigest: D, layers: 1, inUseBy: [] }],
    { digests: true, noTrunc: false, now: Date.parse('2026-01-01T00:00:05Z') },
  );
  assert.deepEqual(rows, [
    ['bb', '1', '<none>', 'abababababab', '5 seconds ago', '2KiB'],
    ['127.0.0.1:5000/x/bb', '2', D, 'abababababab', '5 seconds ago', '2KiB'],
  ]);
});
