import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FirstOfKind } from './first-of-kind.ts';

test('first of kind: the first job runs alone, those that came meanwhile start when it ends, later ones at once', async () => {
  const f = new FirstOfKind();
  const log: string[] = [];
  const job = async (name: string, kind: string, ms: number) => {
    const ended = await f.turn(kind);
    log.push(`start ${name}`);
    await new Promise((r) => setTimeout(r, ms));
    log.push(`end ${name}`);
    ended();
  };
  await Promise.all([job('a1', 'a', 30), job('a2', 'a', 1), job('b1', 'b', 1)]);
  assert.deepEqual(log.slice(0, 2), ['start a1', 'start b1'], 'another kind does not wait');
  assert.ok(log.indexOf('start a2') > log.indexOf('end a1'), 'a2 waited for a1');
  log.length = 0;
  await job('a3', 'a', 1);
  assert.deepEqual(log, ['start a3', 'end a3']);
});
