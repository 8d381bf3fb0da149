// Unit tests of the pure choices in layer.ts: how many unpack threads, and which layers go to them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assignUnpackThreads, unpackWorkerCount, WORKER_MIN_BYTES } from './layer.ts';

const MB = 1 << 20;

test('unpack threads: one fewer than the CPUs, at most 3; GANTRY_UNPACK_WORKERS overrides, 0 turns them off', () => {
  assert.equal(unpackWorkerCount(undefined, 1), 0);
  assert.equal(unpackWorkerCount(undefined, 2), 1);
  assert.equal(unpackWorkerCount(undefined, 64), 3);
  assert.equal(unpackWorkerCount('', 4), 3);
  assert.equal(unpackWorkerCount('0', 8), 0);
  assert.equal(unpackWorkerCount('2', 2), 2);
  assert.equal(unpackWorkerCount('lots', 2), 1);
});

test('unpack threads: the largest layers go to the worker until both threads carry about the same', () => {
  // the benchmark image's layers (compressed MB)
  const sizes = [12, 46, 17, 23, 4, 0.1].map((x) => Math.round(x * MB));
  const w = assignUnpackThreads(sizes, 1);
  assert.deepEqual(w, [false, true, true, false, false, false]);
  const total = sizes.reduce((a, b) => a + b, 0);
  const onWorker = sizes.filter((_, i) => w[i]).reduce((a, b) => a + b, 0);
  const here = total * 0.25 + total - onWorker;
  assert.ok(Math.abs(here - onWorker) < 12 * MB, `main ${here / MB} MB vs worker ${onWorker / MB} MB`);
});

test('unpack threads: none without workers; layers under WORKER_MIN_BYTES always stay on this thread', () => {
  assert.deepEqual(assignUnpackThreads([50 * MB, 40 * MB], 0), [false, false]);
  assert.deepEqual(assignUnpackThreads([WORKER_MIN_BYTES - 1, 1000, 5], 2), [false, false, false]);
  assert.deepEqual(assignUnpackThreads([WORKER_MIN_BYTES, 10 * MB], 2), [true, true]);
});
