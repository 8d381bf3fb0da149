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

/**
 * 'old' = app:1 running; 'new' = app:2 running (up since NOW-1000); 'new:starting', 'new:failed',
 * 'old:stopping', 'new:ready'; 'new:unhealthy-yet' = running, health still "starting" since NOW-1000.
 */
function tasks(s: Service, layout: string[]): Task[] {
  const out: Task[] = [];
  layout.forEach((cell, i) => {
    for (const part of cell.split('+')) {
      const [which, how] = part.split(':');
      const isNew = which === 'new';
      const state: TaskStateName = how === 'starting' ? 'starting' : how === 'failed' ? 'failed' : how === 'ready' ? 'ready' : 'running';
      const desired: TaskStateName = how === 'stopping' ? 'shutdown' : how === 'ready' ? 'ready' : how === 'failed' ? 'running' : 'running';
      const t = f.task({ id: `${which}${i + 1}${how ?? ''}`, service: s, slot: i + 1, nodeId: 'n1', state, desiredState: desired, timestamp: NOW - 1000, err: how === 'failed' ? 'task: non-zero exit (1)' : '' });
      if (how === 'unhealthy-yet') t.status!.health = 'starting';
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
      case 'replace': return `replace ${a.nodeId ?? a.slot} ${a.order}`;
      case 'stage': return `stage ${a.nodeId ?? a.slot}`;
      case 'promote': return `promote ${a.task.slot || a.task.nodeId}`;
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
    { name: 'start-first p=1 (3 slots prepared ahead)', s: svc({ order: 'start-first' }), layout: ['old', 'old', 'old', 'old'], want: ['replace 1 start-first', 'stage 2', 'stage 3', 'stage 4'] },
    { name: 'start-first: the old task is stopped once the new is up, and the next slot starts', s: svc({ order: 'start-first' }), layout: ['old+new', 'old', 'old', 'old'], want: ['stop old1', 'replace 2 start-first', 'stage 3', 'stage 4'] },
    { name: 'stop-first: the READY replacement is promoted once the old one stopped', s: svc(), layout: ['new:ready', 'old', 'old', 'old'], want: [] },
    { name: 'stop-first: a staged slot\'s turn stops its old task (the prepared one starts once it stopped)', s: svc(), layout: ['new', 'old+new:ready', 'old', 'old'], want: ['stop old2', 'stage 3'] },
    { name: 'start-first: a staged slot\'s turn starts the prepared task', s: svc({ order: 'start-first' }), layout: ['new', 'old+new:ready', 'old', 'old'], want: ['promote 2', 'stage 3', 'stage 4'] },
    { name: 'staging stays within parallelism', s: svc(), layout: ['new:starting', 'old+new:ready', 'old', 'old'], want: [] },
    { name: 'all slots up on the new spec, monitor 0: completed', s: svc(), layout: ['new', 'new', 'new', 'new'], want: ['status completed: update completed'] },
    { name: 'a failure with action pause pauses and names the task', s: svc(), layout: ['new:failed', 'old', 'old', 'old'], want: ['status paused: update paused: task web.1 on node-1 failed: exit 1 after 4s'] },
    { name: 'a failure with action rollback rolls back', s: svc({ action: 'rollback' }), layout: ['new:failed', 'old', 'old', 'old'], want: ['rollback: update rolled back: task web.1 on node-1 failed: exit 1 after 4s'] },
    { name: 'a failure during a rollback pauses the rollback', s: svc({ action: 'rollback', state: UpdateState.UPDATE_STATE_ROLLBACK_STARTED }), layout: ['new:failed', 'old', 'old', 'old'], want: ['status rollback_paused: rollback paused: task web.1 on node-1 failed: exit 1 after 4s'] },
    { name: 'continue goes on past a failed slot', s: svc({ action: 'continue' }), layout: ['new:failed', 'old', 'old', 'old'], want: ['replace 2 stop-first', 'stage 3'] },
    { name: 'a failure within the ratio (1/4 ≤ 0.25) does not pause', s: svc({ ratio: 0.25, order: 'start-first' }), layout: ['old+new:failed', 'old', 'old', 'old'], want: ['replace 2 start-first', 'stage 3', 'stage 4'] },
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

  it('decideUpdate: prepareDepth keeps that many slots prepared ahead, whatever the parallelism', () => {
    const s = svc({ order: 'start-first' });
    const d = (layout: string[]) => brief(decideUpdate({ service: s, tasks: tasks(s, layout), node: (id) => nodes.get(id), now: NOW, prepareAhead: true, prepareDepth: 2 }).actions);
    assert.deepEqual(d(['old', 'old', 'old', 'old']), ['replace 1 start-first', 'stage 2', 'stage 3']);
    assert.deepEqual(d(['old+new', 'old+new:ready', 'old+new:ready', 'old']), ['stop old1', 'promote 2', 'stage 4']);
  });

  it('decideUpdate: prepareAhead false prepares no slot ahead', () => {
    const s = svc();
    assert.deepEqual(brief(decideUpdate({ service: s, tasks: tasks(s, ['old', 'old', 'old', 'old']), node: (id) => nodes.get(id), now: NOW, prepareAhead: false }).actions), ['replace 1 stop-first']);
  });

  it('decideUpdate: by default stop-first prepares ahead with parallelism 1 only; start-first always', () => {
    const d = (s: Service) => brief(decideUpdate({ service: s, tasks: tasks(s, ['old', 'old', 'old', 'old', 'old']), node: (id) => nodes.get(id), now: NOW }).actions);
    assert.deepEqual(d(svc({ replicas: 5 })), ['replace 1 stop-first', 'stage 2']);
    assert.deepEqual(d(svc({ replicas: 5, parallelism: 2 })), ['replace 1 stop-first', 'replace 2 stop-first']);
    assert.deepEqual(d(svc({ replicas: 5, parallelism: 2, order: 'start-first' })), ['replace 1 start-first', 'replace 2 start-first', 'stage 3', 'stage 4', 'stage 5']);
  });

  it('decideUpdate: slots need not be 1..replicas (a scale-down keeps the best-placed ones)', () => {
    const s = svc();
    const ts = tasks(s, ['old', 'old', 'old', 'old', 'old']).filter((t) => t.slot !== 2);
    assert.deepEqual(brief(decideUpdate({ service: s, tasks: ts, node: (id) => nodes.get(id), now: NOW }).actions), ['replace 1 stop-first', 'stage 3']);
    const done = tasks(s, ['new', 'new', 'new', 'new', 'new']).filter((t) => t.slot !== 2);
    assert.deepEqual(brief(decideUpdate({ service: s, tasks: done, node: (id) => nodes.get(id), now: NOW }).actions), ['status completed: update completed']);
  });
});

describe('decideUpdate: health still "starting" when the monitor period ends', () => {
  const hc = (s: Service) => {
    s.spec!.task!.container!.healthcheck = { test: ['CMD-SHELL', 'false'], intervalMs: 300, timeoutMs: 0, retries: 2, startPeriodMs: 3_600_000 };
    return s;
  };
  const cases: { name: string; s: Service; layout: string[]; want: string[] }[] = [
    { name: 'within the monitor period the slot is still busy', s: hc(svc({ monitorMs: 5000 })), layout: ['new:unhealthy-yet', 'old', 'old', 'old'], want: [] },
    {
      name: 'past the monitor period it is a failure (pause names the check)',
      s: hc(svc({ monitorMs: 500 })),
      layout: ['new:unhealthy-yet', 'old', 'old', 'old'],
      want: ['status paused: update paused: task web.1 on node-1 failed: not healthy within the update monitor period (health check "false" still starting) after 5s'],
    },
    {
      name: 'past the monitor period, failure action rollback rolls back',
      s: hc(svc({ monitorMs: 500, action: 'rollback', order: 'start-first' })),
      layout: ['old+new:unhealthy-yet', 'old', 'old', 'old'],
      want: ['rollback: update rolled back: task web.1 on node-1 failed: not healthy within the update monitor period (health check "false" still starting) after 5s'],
    },
    { name: 'past the monitor period, within the failure ratio, start-first goes on', s: hc(svc({ monitorMs: 500, ratio: 0.25, order: 'start-first' })), layout: ['old+new:unhealthy-yet', 'old', 'old', 'old'], want: ['replace 2 start-first', 'stage 3', 'stage 4'] },
    { name: 'monitor 0: no deadline, the update waits for the check (as Swarm)', s: hc(svc({ monitorMs: 0 })), layout: ['new:unhealthy-yet', 'old', 'old', 'old'], want: [] },
  ];
  for (const c of cases) {
    it(`decideUpdate: ${c.name}`, () => {
      assert.deepEqual(brief(decide(c.s, c.layout).actions), c.want);
    });
  }

  it('decideUpdate: asks to be woken when a starting task\'s monitor period ends', () => {
    assert.equal(decide(hc(svc({ monitorMs: 5000 })), ['new:unhealthy-yet', 'old', 'old', 'old']).wakeAt, NOW - 1000 + 5000);
    assert.equal(decide(hc(svc({ monitorMs: 0 })), ['new:unhealthy-yet', 'old', 'old', 'old']).wakeAt, undefined);
  });

  it('decideUpdate: a task whose spec has a health check but that reported no health yet is not up', () => {
    const s = hc(svc());
    const ts = tasks(s, ['new', 'old', 'old', 'old']);
    ts[0].status!.health = '';
    assert.deepEqual(brief(decideUpdate({ service: s, tasks: ts, node: (id) => nodes.get(id), now: NOW }).actions), []);
    ts[0].status!.health = 'healthy';
    assert.deepEqual(brief(decideUpdate({ service: s, tasks: ts, node: (id) => nodes.get(id), now: NOW, prepareAhead: false }).actions), ['replace 2 stop-first']);
  });
});

describe('decideUpdate: global services (one slot per node)', () => {
  const gnodes = new Map(['n1', 'n2', 'n3', 'n4'].map((id, i) => [id, f.node({ id, hostname: `node-${i + 1}` })]));
  const gsvc = (o: Parameters<typeof svc>[0] = {}) => {
    const s = svc(o);
    s.spec!.mode = { $case: 'global', value: {} };
    s.previousSpec!.mode = { $case: 'global', value: {} };
    return s;
  };
  /** The layout's cell i is node n(i+1); tasks have no slot. */
  const gtasks = (s: Service, layout: string[]) => tasks(s, layout).map((t) => ({ ...t, nodeId: `n${t.slot}`, slot: 0 }));
  const gdecide = (s: Service, layout: string[], o: { nodes?: string[]; prepareAhead?: boolean; extra?: Task[] } = {}) =>
    decideUpdate({
      service: s,
      tasks: [...gtasks(s, layout), ...(o.extra ?? [])],
      node: (id) => gnodes.get(id),
      nodes: (o.nodes ?? ['n1', 'n2', 'n3', 'n4'].slice(0, layout.length)).map((id) => gnodes.get(id)!),
      now: NOW,
      prepareAhead: o.prepareAhead ?? false,
    });
  const cases: { name: string; s: Service; layout: string[]; nodes?: string[]; prepareAhead?: boolean; want: string[] }[] = [
    { name: 'stop-first p=1 replaces the task of one node', s: gsvc(), layout: ['old', 'old', 'old'], want: ['replace n1 stop-first'] },
    { name: 'stop-first p=2 replaces two nodes\' tasks', s: gsvc({ parallelism: 2 }), layout: ['old', 'old', 'old'], want: ['replace n1 stop-first', 'replace n2 stop-first'] },
    { name: 'parallelism 0: every node at once', s: gsvc({ parallelism: 0 }), layout: ['old', 'old', 'old'], want: ['replace n1 stop-first', 'replace n2 stop-first', 'replace n3 stop-first'] },
    { name: 'stop-first p=1 waits while a node\'s new task is starting', s: gsvc(), layout: ['new:starting', 'old', 'old'], want: [] },
    { name: 'stop-first p=1: an eligible node without a task counts as down', s: gsvc(), layout: ['new', 'old', 'old'], nodes: ['n1', 'n2', 'n3', 'n4'], want: [] },
    { name: 'start-first p=1: a new task beside the old one on the first node', s: gsvc({ order: 'start-first' }), layout: ['old', 'old', 'old'], want: ['replace n1 start-first'] },
    { name: 'start-first: the old task is stopped once the new one is up, and the next node starts', s: gsvc({ order: 'start-first' }), layout: ['old+new', 'old', 'old'], want: ['stop old1', 'replace n2 start-first'] },
    { name: 'start-first prepared ahead: the next node\'s task is staged', s: gsvc({ order: 'start-first' }), layout: ['old', 'old', 'old'], prepareAhead: true, want: ['replace n1 start-first', 'stage n2', 'stage n3'] },
    { name: 'start-first: a staged node\'s turn starts the prepared task', s: gsvc({ order: 'start-first' }), layout: ['new', 'old+new:ready', 'old'], want: ['promote n2'] },
    { name: 'every node runs an up new task, monitor 0: completed', s: gsvc(), layout: ['new', 'new', 'new'], want: ['status completed: update completed'] },
    { name: 'monitor: not completed before it passed', s: gsvc({ monitorMs: 5000 }), layout: ['new', 'new', 'new'], want: [] },
    { name: 'delay: the next node waits after the last came up', s: gsvc({ delayMs: 5000 }), layout: ['new', 'old', 'old'], want: [] },
    { name: 'a failure with action pause pauses and names the task and node', s: gsvc(), layout: ['new:failed', 'old', 'old', 'old'], want: ['status paused: update paused: task web.n1 on node-1 failed: exit 1 after 4s'] },
    { name: 'a failure with action rollback rolls back', s: gsvc({ action: 'rollback' }), layout: ['new:failed', 'old', 'old', 'old'], want: ['rollback: update rolled back: task web.n1 on node-1 failed: exit 1 after 4s'] },
    { name: 'the failure ratio counts nodes (1 of 4 ≤ 0.25)', s: gsvc({ ratio: 0.25, order: 'start-first' }), layout: ['old+new:failed', 'old', 'old', 'old'], want: ['replace n2 start-first'] },
    { name: 'continue goes on past a failed node', s: gsvc({ action: 'continue' }), layout: ['new:failed', 'old', 'old'], want: ['replace n2 stop-first'] },
    { name: 'during a rollback a failure pauses the rollback', s: gsvc({ action: 'rollback', state: UpdateState.UPDATE_STATE_ROLLBACK_STARTED }), layout: ['new:failed', 'old', 'old'], want: ['status rollback_paused: rollback paused: task web.n1 on node-1 failed: exit 1 after 4s'] },
    { name: 'paused: nothing new starts', s: gsvc({ state: UpdateState.UPDATE_STATE_PAUSED }), layout: ['new', 'old', 'old'], want: [] },
    { name: 'no update status and dirty tasks: an update starts', s: (() => { const s = gsvc(); s.updateStatus = undefined; return s; })(), layout: ['old', 'old'], want: ['status updating: update started'] },
  ];
  for (const c of cases) {
    it(`decideUpdate (global): ${c.name}`, () => {
      assert.deepEqual(brief(gdecide(c.s, c.layout, { nodes: c.nodes, prepareAhead: c.prepareAhead }).actions), c.want);
    });
  }

  it('decideUpdate (global): the replacement is made on the old task\'s node, with no slot number', () => {
    const [a] = gdecide(gsvc(), ['old', 'old']).actions;
    assert.ok(a.kind === 'replace');
    assert.equal(a.nodeId, 'n1');
    assert.equal(a.slot, 0);
  });

  it('decideUpdate (global): stop-first, the READY task is promoted once the old one on its node stopped', () => {
    const s = gsvc();
    const stopped = f.task({ id: 'gone', service: s, nodeId: 'n1', state: 'shutdown', desiredState: 'shutdown' });
    stopped.specVersion = 1;
    stopped.spec = s.previousSpec!.task;
    stopped.meta = { version: 1, createdAt: NOW - 100_000, updatedAt: 0 };
    assert.deepEqual(brief(gdecide(s, ['new:ready', 'old'], { extra: [stopped] }).actions), ['promote n1']);
    const stopping = { ...stopped, status: { ...stopped.status!, state: gtasks(s, ['old'])[0].status!.state } };
    assert.deepEqual(brief(gdecide(s, ['new:ready', 'old'], { extra: [stopping] }).actions), []);
  });
});
