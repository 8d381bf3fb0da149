// gantry-exec's start protocol as gantryd speaks it: one byte to a waiting init, nothing otherwise.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startThroughFifo } from './exec-fifo.ts';

test('exec fifo: releases a waiting init with one byte and removes the fifo; refuses when nothing waits', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'gantry-exec-fifo-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'c1'));
  const fifo = join(root, 'c1', 'exec.fifo');
  assert.equal(startThroughFifo(root, 'c1'), false, 'no fifo: not created by gantry-exec, or started');
  execFileSync('mkfifo', ['-m', '0600', fifo]);
  assert.equal(startThroughFifo(root, 'c1'), false, 'a fifo nobody holds: the init is gone');
  assert.ok(existsSync(fifo), 'left for `gantry-exec start` to explain');
  const init = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK); // as init holds it
  try {
    assert.equal(startThroughFifo(root, 'c1'), true);
    const buf = Buffer.alloc(4);
    assert.equal(readSync(init, buf, 0, 4, null), 1);
    assert.equal(buf.toString('utf8', 0, 1), '0');
    assert.ok(!existsSync(fifo), 'the fifo is gone: gantry-exec now reports the container running');
  } finally {
    closeSync(init);
  }
});
