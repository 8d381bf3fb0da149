// Tests of the shared controller loop: events are all offered, ticks are debounced and coalesced,
// conflicts re-tick, wakeAt timers fire on the clock, stop() silences everything.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ControllerLoop, silentLog, type TickResult } from './controller.ts';
import { ManualClock } from './fake-clock.ts';
import { fixtures as f } from './store/fixtures.ts';
import { MemoryStore } from './store/memory.ts';

function setup(result: () => TickResult = () => ({})) {
  const clock = new ManualClock();
  const store = new MemoryStore({ now: () => clock.now() });
  const seen: string[] = [];
  let ticks = 0;
  const loop = new ControllerLoop(
    { store, clock, log: silentLog, debounceMs: 20 },
    {
      name: 'test',
      interested: (e) => {
        if (e.kind !== 'nodes') return false;
        seen.push(e.op === 'put' ? e.object.id : e.id);
        return true;
      },
      tick: async () => {
        ticks++;
        return result();
      },
    },
  );
  return { clock, store, loop, seen, ticks: () => ticks };
}

describe('controller loop', () => {
  it('loop: every event of a change set is offered to the hook', async () => {
    const s = setup();
    s.loop.start();
    await f.seed(s.store, { nodes: [f.node({ id: 'a' }), f.node({ id: 'b' }), f.node({ id: 'c' })] });
    assert.deepEqual(s.seen, ['a', 'b', 'c']);
    s.loop.stop();
  });

  it('loop: a burst of events becomes one tick after the debounce', async () => {
    const s = setup();
    s.loop.start();
    await s.clock.advance(20);
    assert.equal(s.ticks(), 1, 'the first tick after start');
    await f.seed(s.store, { nodes: [f.node({ id: 'a' })] });
    await f.seed(s.store, { nodes: [f.node({ id: 'b' })] });
    await s.clock.advance(19);
    assert.equal(s.ticks(), 1);
    await s.clock.advance(1);
    assert.equal(s.ticks(), 2);
    await s.clock.advance(100);
    assert.equal(s.ticks(), 2, 'uninteresting time passing does nothing');
    s.loop.stop();
  });

  it('loop: again=true ticks again; wakeAt ticks at that time', async () => {
    let n = 0;
    const s = setup(() => (++n === 1 ? { again: true } : n === 2 ? { wakeAt: s.clock.now() + 500 } : {}));
    s.loop.start();
    await s.clock.advance(40);
    assert.equal(s.ticks(), 2);
    await s.clock.advance(480);
    assert.equal(s.ticks(), 2);
    await s.clock.advance(40);
    assert.equal(s.ticks(), 3);
    s.loop.stop();
  });

  it('loop: stop() cancels timers and ignores later events', async () => {
    const s = setup(() => ({ wakeAt: s.clock.now() + 100 }));
    s.loop.start();
    await s.clock.advance(20);
    s.loop.stop();
    await f.seed(s.store, { nodes: [f.node({ id: 'a' })] });
    await s.clock.advance(1000);
    assert.equal(s.ticks(), 1);
    assert.equal(s.clock.pending, 0);
  });

  it('loop: a tick that throws is logged and retried later, not spun', async () => {
    let n = 0;
    const clock = new ManualClock();
    const store = new MemoryStore({ now: () => clock.now() });
    const errors: string[] = [];
    const loop = new ControllerLoop(
      { store, clock, log: { ...silentLog, error: (m: string) => errors.push(m) } },
      {
        name: 'boom',
        interested: () => false,
        tick: async () => {
          n++;
          throw new Error('store unavailable');
        },
      },
    );
    loop.start();
    await clock.advance(100);
    assert.equal(n, 1);
    assert.match(errors[0], /boom: tick failed: Error: store unavailable/);
    await clock.advance(500);
    assert.equal(n, 2);
    loop.stop();
  });
});
