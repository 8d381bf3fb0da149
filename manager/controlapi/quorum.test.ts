// Quorum rules for taking a manager out: refuse when the rest could not form a majority, warn on even counts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fixtures as f } from '../store/fixtures.ts';
import { checkManagerLeaves } from './quorum.ts';

const m = (id: string, state: 'ready' | 'down' = 'ready') => f.node({ id, hostname: id, role: 'manager', state });

test('quorum: demoting one of three ready managers is fine but leaves an even count', () => {
  const nodes = [m('a'), m('b'), m('c')];
  const r = checkManagerLeaves(nodes, nodes[0]);
  assert.deepEqual(r, { ok: true, warning: 'the cluster will have 2 managers: an even number tolerates no more failures than 1; add or remove one' });
});

test('quorum: demoting a ready manager when another is down would leave no quorum', () => {
  const nodes = [m('a'), m('b'), m('c', 'down')];
  const r = checkManagerLeaves(nodes, nodes[0]);
  assert.equal(r.ok, false);
  assert.equal(!r.ok && r.message, 'taking "a" out of the managers would leave 2 managers of which 1 is reachable, fewer than the 2 a quorum needs: bring the unreachable managers back first, or use --force');
});

test('quorum: demoting the manager that is down keeps the quorum of the others', () => {
  const nodes = [m('a'), m('b'), m('c', 'down')];
  assert.equal(checkManagerLeaves(nodes, nodes[2]).ok, true);
});

test('quorum: workers do not vote', () => {
  const nodes = [m('a'), m('b'), m('c'), f.node({ id: 'w', state: 'down' })];
  assert.equal(checkManagerLeaves(nodes, nodes[1]).ok, true);
});
