// Tests of the node-health decision: grace from lastHeartbeat or first sighting without a session,
// never before the leader started, the messages, and the wake time.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fixtures as f, type NodeOptions } from '../store/fixtures.ts';
import { checkNodeHealth, MESSAGE_DISCONNECTED, MESSAGE_HEARTBEAT } from './node-health.ts';

const T0 = 1_000_000;

function run(o: { node: NodeOptions & { lastHeartbeat?: number }; session?: boolean; now: number; startedAt?: number; firstSeen?: number; grace?: number }) {
  const n = f.node(o.node);
  n.status!.lastHeartbeat = o.node.lastHeartbeat ?? 0;
  return checkNodeHealth({
    nodes: [n],
    hasSession: () => o.session ?? false,
    cluster: f.cluster({ nodeDownGraceMs: o.grace ?? 3000 }),
    now: o.now,
    startedAt: o.startedAt ?? 0,
    firstSeenWithout: new Map(o.firstSeen === undefined ? [] : [[n.id, o.firstSeen]]),
  });
}

describe('nodehealth', () => {
  it('nodehealth: a node with a session is healthy', () => {
    const r = run({ node: { state: 'ready' }, session: true, now: T0 });
    assert.deepEqual(r.actions, []);
    assert.equal(r.wakeAt, undefined);
    assert.equal(r.firstSeenWithout.size, 0);
  });

  it('nodehealth: disconnected within grace waits, and says when to look again', () => {
    const r = run({ node: { state: 'disconnected', lastHeartbeat: T0 - 1000 }, now: T0 });
    assert.deepEqual(r.actions, []);
    assert.equal(r.wakeAt, T0 + 2000);
  });

  it('nodehealth: disconnected past grace is DOWN with "node disconnected"', () => {
    const r = run({ node: { state: 'disconnected', lastHeartbeat: T0 - 3000 }, now: T0 });
    assert.deepEqual(
      r.actions.map((a) => [a.kind, a.message, a.lastHeartbeat]),
      [['down', MESSAGE_DISCONNECTED, T0 - 3000]],
    );
  });

  it('nodehealth: READY without a session counts from when we first saw it so', () => {
    const first = run({ node: { state: 'ready' }, now: T0 });
    assert.deepEqual(first.actions, []);
    assert.equal(first.firstSeenWithout.size, 1);
    assert.equal(first.wakeAt, T0 + 3000);
    const later = run({ node: { state: 'ready' }, now: T0 + 3000, firstSeen: T0 });
    assert.deepEqual(
      later.actions.map((a) => [a.message, a.lastHeartbeat]),
      [[MESSAGE_HEARTBEAT, T0]],
    );
  });

  it('nodehealth: a new leader gives nodes that lost their session before it took over twice the grace (they are re-registering elsewhere)', () => {
    const r = run({ node: { state: 'disconnected', lastHeartbeat: T0 - 60_000 }, now: T0 + 1000, startedAt: T0 });
    assert.deepEqual(r.actions, []);
    assert.equal(r.wakeAt, T0 + 6000);
    const later = run({ node: { state: 'disconnected', lastHeartbeat: T0 + 500 }, now: T0 + 1000, startedAt: T0 });
    assert.equal(later.wakeAt, T0 + 3500, 'a session lost under this leader gets the normal grace');
  });

  it('nodehealth: the cluster grace applies; 0 means the default 3 s', () => {
    assert.equal(run({ node: { state: 'disconnected', lastHeartbeat: T0 }, now: T0, grace: 500 }).wakeAt, T0 + 500);
    assert.equal(run({ node: { state: 'disconnected', lastHeartbeat: T0 }, now: T0, grace: 0 }).wakeAt, T0 + 3000);
  });

  it('nodehealth: a node already DOWN is left alone', () => {
    const r = run({ node: { state: 'down' }, now: T0 + 99_999 });
    assert.deepEqual(r.actions, []);
    assert.equal(r.firstSeenWithout.size, 0);
  });
});
