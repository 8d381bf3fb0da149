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

test('unpack threads: every layer worth a message goes to a worker; the rest, or all without workers, stay here', () => {
  const sizes = [12, 46, 17, 23, 1, 0.1].map((x) => Math.round(x * MB));
  assert.deepEqual(assignUnpackThreads(sizes, 1), ['worker', 'worker', 'worker', 'worker', 'here', 'here']);
  assert.deepEqual(assignUnpackThreads(sizes, 0), ['here', 'here', 'here', 'here', 'here', 'here']);
  assert.deepEqual(assignUnpackThreads([WORKER_MIN_BYTES - 1, WORKER_MIN_BYTES], 2), ['here', 'worker']);
});
