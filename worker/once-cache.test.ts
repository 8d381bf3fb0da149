import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OnceCache } from './once-cache.ts';

test('once cache: concurrent callers share one make; a failure is tried again; oldest out past max', async () => {
  const c = new OnceCache<number>(2);
  let made = 0;
  const make = async () => ++made;
  const [a, b] = await Promise.all([c.get('x', make), c.get('x', make)]);
  assert.deepEqual([a, b, made], [1, 1, 1]);
  await assert.rejects(c.get('bad', () => Promise.reject(new Error('no'))), /no/);
  assert.equal(await c.get('bad', make), 2, 'the failure was not kept');
  await c.get('y', make); // 'x' is the oldest of x, bad, y: out
  assert.equal(await c.get('x', make), 4);
});
