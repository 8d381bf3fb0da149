// decideUpdate, table-driven on hand-built states: which slots are replaced next for each order and
// parallelism, pause / rollback / continue on failures, delay and monitor waits, resume, force.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Service, type Task, UpdateFailureAction, UpdateOrder, UpdateState } from '../../proto/gen/gantry/v1/objects.ts';
import { fixtures as f, type TaskStateName } from '../store/fixtures.ts';
import { decideUpdate, type UpdateAction } from './decide.ts';
import { stateName } from './testing.ts';

const NOW = 1_000_000;
const nodes = new Map([['n1', f.node({ id: 'n1', hostname: 'node-1' })]]);

function svc(o: { replicas?: number; parallelism?: number; order?: 'start-first'; action?: 'continue' | 'rollback'; ratio?: number; delayMs?: number; monitorMs?: number; state?: UpdateState; startedAt?: number; message?: string } = {}): Service {
  const cfg = {
    parallelism: o.parallelism ?? 1,
    delayMs: o.delayMs ?? 0,
    failureAction: o.action === 'continue' ? UpdateFailureAction.UPDATE_FAILURE_ACTION_CONTINUE : o.action === 'rollback' ? UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK : UpdateFailureAction.UPDATE_FAILURE_ACTION_PAUSE,
    monitorMs: o.monitorMs ?? 0,
    maxFailureRatio: o.ratio ?? 0,
    order: o.order ? UpdateOrder.UPDATE_ORDER_START_FIRST : UpdateOrder.UPDATE_ORDER_STOP_FIRST,
  };
  const old = f.service({ id: 's', name: 'web', replicas: o.replicas ?? 4, image: 'app:1' });
  const s = f.service({ id: 's', name: 'web', replicas: o.replicas ?? 4, image: 'app:2', specVersion: 2, spec: { update: cfg, rollback: cfg } });
  s.previousSpec = old.spec;
  s.updateStatus = { state: o.state ?? UpdateState.UPDATE_STATE_UPDATING, startedAt: o.startedAt ?? NOW - 10_000, completedAt: 0, message: o.message ?? 'update started' };
  return s;
}

/** 'old' = app:1 running; 'new' = app:2 running (up since NOW-1000); 'new:starting', 'new:failed', 'old:stopping', 'new:ready'. */
function tasks(s: Service, layout: string[]): Task[] {
  const out: Task[] = [];
  layout.forEach((cell, i) => {
    for (const part of cell.split('+')) {
      const [which, how] = part.split(':');
      const isNew = which === 'new';
      const state: TaskStateName = how === 'starting' ? 'starting' : how === 'failed' ? 'failed' : how === 'ready' ? 'ready' : 'running';
      const desired: TaskStateName = how === 'stopping' ? 'shutdown' : how === 'ready' ? 'ready' : how === 'failed' ? 'running' : 'running';
      const t = f.task({ id: `${which}${i + 1}${how ?? ''}`, service: s, slot: i + 1, nodeId: 'n1', state, desiredState: desired, timestamp: NOW - 1000, err: how === 'failed' ? 'task: non-zero exit (1)' : '' });
      if (!isNew) {
        t.specVersion = 1;
        t.spec = s.previousSpec!.task;
      }
      t.meta = { version: 1, createdAt: isNew ? NOW - 5000 : NOW - 100_000, updatedAt: 0 };
      out.push(t);
    }
  });
  return out;
}

const brief = (as: UpdateAction[]) =>
  as.map((a) => {
    switch (a.kind) {
      case 'replace': return `replace ${a.slot} ${a.order}`;
      case 'stage': return `stage ${a.slot}`;
      case 'promote': return `promote ${a.task.slot}`;
      case 'stop': return `stop ${a.task.id}`;
      case 'status': return `status ${stateName(a.status.state)}: ${a.status.message}`;
      case 'rollback': return `rollback: ${a.status.message}`;
      default: return 'unknown';
    }
  });

const decide = (s: Service, layout: string[], now = NOW) => decideUpdate({ service: s, tasks: tasks(s, layout), node: (id) => nodes.get(id), now, prepareAhead: true });

describe('decideUpdate', () => {
  const cases: { name: string; s: Service; layout: string[]; want: string[] }[] = [
    { name: 'stop-first p=1 starts with the lowest slot', s: svc(), layout: ['old', 'old', 'old', 'old'], want: ['replace 1 stop-first', 'stage 2'] },
    { name: 'stop-first p=2 replaces two', s: svc({ parallelism: 2 }), layout: ['old', 'old', 'old', 'old'], want: ['replace 1 stop-first', 'replace 2 stop-first', 'stage 3', 'stage 4'] },
    { name: 'parallelism 0 replaces all at once', s: svc({ parallelism: 0 }), layout: ['old', 'old', 'old', 'old'], want: ['replace 1 stop-first', 'replace 2 stop-first', 'replace 3 stop-first', 'replace 4 stop-first'] },
    { name: 'stop-first p=1 waits while a slot is busy', s: svc(), layout: ['new:starting', 'old', 'old', 'old'], want: [] },
    { name: 'stop-first p=1 waits while any slot is down, even for another reason', s: svc(), layout: ['new', 'old:stopping', 'old', 'old'], want: ['stage 3'] },
    { name: 'a slot on the old spec that is down is replaced first', s: svc(), layout: ['old', 'old', 'old:starting', 'old'], want: ['replace 3 stop-first', 'stage 1'] },
    { name: 'start-first p=1', s: svc({ order: 'start-first' }), layout: ['old', 'old', 'old', 'old'], want: ['replace 1 start-first', 'stage 2'] },
    { name: 'start-first: the old task is stopped once the new is up, and the next slot starts', s: svc({ order: 'start-first' }), layout: ['old+new', 'old', 'old', 'old'], want: ['stop old1', 'replace 2 start-first', 'stage 3'] },
    { name: 'stop-first: the READY replacement is promoted once the old one stopped', s: svc(), layout: ['new:ready', 'old', 'old', 'old'], want: [] },
    { name: 'stop-first: a staged slot\'s turn stops its old task (the prepared one starts once it stopped)', s: svc(), layout: ['new', 'old+new:ready', 'old', 'old'], want: ['stop old2', 'stage 3'] },
    { name: 'start-first: a staged slot\'s turn starts the prepared task', s: svc({ order: 'start-first' }), layout: ['new', 'old+new:ready', 'old', 'old'], want: ['promote 2', 'stage 3'] },
    { name: 'staging stays within parallelism', s: svc(), layout: ['new:starting', 'old+new:ready', 'old', 'old'], want: [] },
    { name: 'all slots up on the new spec, monitor 0: completed', s: svc(), layout: ['new', 'new', 'new', 'new'], want: ['status completed: update completed'] },
    { name: 'a failure with action pause pauses and names the task', s: svc(), layout: ['new:failed', 'old', 'old', 'old'], want: ['status paused: update paused: task web.1 on node-1 failed: exit 1 after 4s'] },
    { name: 'a failure with action rollback rolls back', s: svc({ action: 'rollback' }), layout: ['new:failed', 'old', 'old', 'old'], want: ['rollback: update rolled back: task web.1 on node-1 failed: exit 1 after 4s'] },
    { name: 'a failure during a rollback pauses the rollback', s: svc({ action: 'rollback', state: UpdateState.UPDATE_STATE_ROLLBACK_STARTED }), layout: ['new:failed', 'old', 'old', 'old'], want: ['status rollback_paused: rollback paused: task web.1 on node-1 failed: exit 1 after 4s'] },
    { name: 'continue goes on past a failed slot', s: svc({ action: 'continue' }), layout: ['new:failed', 'old', 'old', 'old'], want: ['replace 2 stop-first', 'stage 3'] },
    { name: 'a failure within the ratio (1/4 ≤ 0.25) does not pause', s: svc({ ratio: 0.25, order: 'start-first' }), layout: ['old+new:failed', 'old', 'old', 'old'], want: ['replace 2 start-first', 'stage 3'] },
    { name: 'a failure from before the update (re)started does not count', s: svc({ startedAt: NOW - 500 }), layout: ['new:failed', 'old', 'old', 'old'], want: [] },
    { name: 'paused: nothing new starts', s: svc({ state: UpdateState.UPDATE_STATE_PAUSED }), layout: ['new', 'old', 'old', 'old'], want: [] },
    { name: 'paused: a slot in flight is still finished', s: svc({ state: UpdateState.UPDATE_STATE_PAUSED, order: 'start-first' }), layout: ['old+new', 'old', 'old', 'old'], want: ['stop old1'] },
    { name: 'delay: the next slot waits after the last came up', s: svc({ delayMs: 5000 }), layout: ['new', 'old', 'old', 'old'], want: [] },
    { name: 'delay passed: the next slot starts', s: svc({ delayMs: 500 }), layout: ['new', 'old', 'old', 'old'], want: ['replace 2 stop-first', 'stage 3'] },
    { name: 'monitor: not completed before it passed since the last slot came up', s: svc({ monitorMs: 5000 }), layout: ['new', 'new', 'new', 'new'], want: [] },
    { name: 'no update status and dirty tasks: an update starts', s: (() => { const s = svc(); s.updateStatus = undefined; return s; })(), layout: ['old', 'old', 'old', 'old'], want: ['status updating: update started'] },
  ];
  for (const c of cases) {
    it(`decideUpdate: ${c.name}`, () => {
      assert.deepEqual(brief(decide(c.s, c.layout).actions), c.want);
    });
  }

  it('decideUpdate: the delay and the monitor window ask to be woken when they end', () => {
    assert.equal(decide(svc({ delayMs: 5000 }), ['new', 'old', 'old', 'old']).wakeAt, NOW - 1000 + 5000);
    assert.equal(decide(svc({ monitorMs: 5000 }), ['new', 'new', 'new', 'new']).wakeAt, NOW - 1000 + 5000);
  });

  it('decideUpdate: a READY replacement whose old task has stopped is promoted', () => {
    const s = svc();
    const ts = tasks(s, ['new:ready', 'old', 'old', 'old']);
    const stopped = f.task({ id: 'gone', service: s, slot: 1, nodeId: 'n1', state: 'shutdown', desiredState: 'shutdown' });
    stopped.specVersion = 1;
    stopped.spec = s.previousSpec!.task;
    stopped.meta = { version: 1, createdAt: NOW - 100_000, updatedAt: 0 };
    assert.deepEqual(brief(decideUpdate({ service: s, tasks: [...ts, stopped], node: (id) => nodes.get(id), now: NOW }).actions), ['promote 1']);
  });

  it('decideUpdate: --force (forceUpdate bumped) makes every task dirty', () => {
    const s = svc({ replicas: 2 });
    const same = tasks(s, ['new', 'new']).map((t) => ({ ...t, specVersion: 1 }));
    s.spec!.task = { ...s.spec!.task!, forceUpdate: 1 };
    assert.deepEqual(brief(decideUpdate({ service: s, tasks: same, node: (id) => nodes.get(id), now: NOW, prepareAhead: true }).actions), ['replace 1 stop-first', 'stage 2']);
  });

  it('decideUpdate: without prepareAhead no slot is prepared ahead', () => {
    const s = svc();
    assert.deepEqual(brief(decideUpdate({ service: s, tasks: tasks(s, ['old', 'old', 'old', 'old']), node: (id) => nodes.get(id), now: NOW }).actions), ['replace 1 stop-first']);
  });

  it('decideUpdate: slots need not be 1..replicas (a scale-down keeps the best-placed ones)', () => {
    const s = svc();
    const ts = tasks(s, ['old', 'old', 'old', 'old', 'old']).filter((t) => t.slot !== 2);
    assert.deepEqual(brief(decideUpdate({ service: s, tasks: ts, node: (id) => nodes.get(id), now: NOW }).actions), ['replace 1 stop-first']);
    const done = tasks(s, ['new', 'new', 'new', 'new', 'new']).filter((t) => t.slot !== 2);
    assert.deepEqual(brief(decideUpdate({ service: s, tasks: done, node: (id) => nodes.get(id), now: NOW }).actions), ['status completed: update completed']);
  });
});
