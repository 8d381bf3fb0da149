import assert from 'node:assert/strict';
import { test } from 'node:test';
import { newClusterKey, seal, unseal } from './seal.ts';

test('seal: round trip, and the sealed bytes do not contain the plain text', () => {
  const k = newClusterKey();
  const plain = Buffer.from('hunter2-very-secret');
  const s = seal(k, plain, 'secret/x');
  assert.ok(!s.includes(plain));
  assert.deepEqual(unseal(k, s, 'secret/x'), plain);
});

test('seal: another key or another context is refused', () => {
  const k = newClusterKey();
  const s = seal(k, Buffer.from('v'), 'a');
  assert.throws(() => unseal(newClusterKey(), s, 'a'), /cannot unseal/);
  assert.throws(() => unseal(k, s, 'b'), /cannot unseal/);
});
