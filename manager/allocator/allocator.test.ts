// Tests of the allocator's decision: NEW → PENDING, and the seam where network/port steps may hold a
// task at NEW with a reason (written only when it changes).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fixtures as f } from '../store/fixtures.ts';
import { allocate, applyAllocation, PENDING_MESSAGE } from './allocator.ts';

describe('allocator', () => {
  it('allocator: NEW tasks desired to run become PENDING with the message', () => {
    const t = f.task({ id: 'a', state: 'new' });
    const actions = allocate([t, f.task({ id: 'b', state: 'pending' }), f.task({ id: 'c', state: 'new', desiredState: 'shutdown' })]);
    assert.deepEqual(
      actions.map((a) => `${a.kind} ${a.task.id}`),
      ['pending a'],
    );
    const w = applyAllocation(actions[0], 42);
    assert.equal(w.status?.state, f.taskState('pending'));
    assert.equal(w.status?.message, PENDING_MESSAGE);
    assert.equal(w.status?.timestamp, 42);
  });

  it('allocator: a step that cannot allocate holds the task at NEW with its reason, once', () => {
    const step = () => 'network "front" has no free address in 10.0.1.0/24';
    const t = f.task({ id: 'a', state: 'new' });
    const [a] = allocate([t], [step]);
    assert.equal(a.kind, 'blocked');
    const w = applyAllocation(a, 1);
    assert.equal(w.status?.state, f.taskState('new'));
    assert.equal(w.status?.message, 'network "front" has no free address in 10.0.1.0/24');
    assert.deepEqual(allocate([w], [step]), []);
  });
});
