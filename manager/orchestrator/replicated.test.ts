// Table-driven tests of reconcileReplicated: scale up/down, restart conditions, attempts within a
// window, delays and promotion, node down/drain/pause/gone, dead slots.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Node, Service, Task } from '../../proto/gen/gantry/v1/objects.ts';
import { fixtures as f, type ServiceOptions, type TaskOptions } from '../store/fixtures.ts';
import type { OrchestratorAction } from './actions.ts';
import { reconcileReplicated } from './replicated.ts';
import { type RestartRecord, slotKey } from './restart.ts';

const NOW = 1_000_000;

function summary(a: OrchestratorAction): string {
  switch (a.kind) {
    case 'create':
      return `create slot ${a.slot}${a.delayUntil ? ` delay ${a.delayUntil - NOW}` : ''}${a.restart ? ' restart' : ''}`;
    case 'replace':
      return `replace ${a.task.id} (${a.cause})${a.delayUntil ? ` delay ${a.delayUntil - NOW}` : ''}`;
    case 'shutdown':
      return `shutdown ${a.task.id}: ${a.reason}`;
    case 'promote':
      return `promote ${a.task.id}`;
    case 'finish':
      return `finish ${a.task.id}`;
  }
}

interface Case {
  name: string;
  service: ServiceOptions;
  nodes?: Array<Parameters<typeof f.node>[0]>;
  tasks: Array<TaskOptions & { created?: number }>;
  history?: Record<number, Array<Partial<RestartRecord>>>;
  want: string[];
  wantWake?: number;
}

function build(c: Case): { service: Service; tasks: Task[]; nodes: Map<string, Node> } {
  const service = f.service({ id: 'svc', ...c.service });
  const nodes = new Map((c.nodes ?? [{ id: 'n1' }, { id: 'n2' }, { id: 'n3' }]).map((o) => [o!.id!, f.node(o)]));
  const tasks = c.tasks.map((o) => {
    const t = f.task({ service, ...o });
    t.meta!.createdAt = o.created ?? 0;
    return t;
  });
  return { service, tasks, nodes };
}

function run(c: Case) {
  const { service, tasks, nodes } = build(c);
  const history = new Map<string, RestartRecord[]>();
  for (const [slot, recs] of Object.entries(c.history ?? {})) {
    history.set(
      slotKey('svc', Number(slot)),
      recs.map((r) => ({ at: 0, specVersion: 1, taskId: 'x', delayUntil: 0, ...r })),
    );
  }
  return reconcileReplicated({ service, tasks, node: (id) => nodes.get(id), history, now: NOW });
}

const running = (slot: number, nodeId: string, id = `t${slot}`, more: TaskOptions & { created?: number } = {}) => ({
  id,
  slot,
  nodeId,
  state: 'running' as const,
  ...more,
});

const cases: Case[] = [
  { name: 'scale up: a new service gets slots 1..N', service: { replicas: 3 }, tasks: [], want: ['create slot 1', 'create slot 2', 'create slot 3'] },
  { name: 'scale up: fills the missing slots only', service: { replicas: 3 }, tasks: [running(2, 'n1')], want: ['create slot 1', 'create slot 3'] },
  { name: 'steady: N healthy tasks, nothing to do', service: { replicas: 2 }, tasks: [running(1, 'n1'), running(2, 'n2')], want: [] },
  {
    name: 'scale down: prefers tasks not yet running',
    service: { replicas: 2 },
    tasks: [running(1, 'n1'), running(2, 'n2'), { id: 't3', slot: 3, state: 'pending' }],
    want: ['shutdown t3: scale down'],
  },
  {
    name: 'scale down: prefers the node running the most tasks of the service',
    service: { replicas: 2 },
    tasks: [running(1, 'n1'), running(2, 'n2'), running(3, 'n2')],
    want: ['shutdown t3: scale down'],
  },
  {
    name: 'scale down: evens out nodes, highest slot on ties',
    service: { replicas: 2 },
    tasks: [running(1, 'n1'), running(2, 'n1'), running(3, 'n2'), running(4, 'n2')],
    want: ['shutdown t4: scale down', 'shutdown t2: scale down'],
  },
  {
    name: 'scale down: a task that needs replacing goes first, without a replacement',
    service: { replicas: 1 },
    tasks: [running(1, 'n1'), running(2, 'n2', 't2', { state: 'failed' })],
    want: ['shutdown t2: scale down'],
  },
  {
    name: 'scale down to zero',
    service: { replicas: 0 },
    tasks: [running(1, 'n1'), running(2, 'n2')],
    want: ['shutdown t2: scale down', 'shutdown t1: scale down'],
  },
  {
    name: 'restart: a failed task is replaced after the delay (condition any)',
    service: { replicas: 1, restart: { delayMs: 5000 } },
    tasks: [running(1, 'n1', 't1', { state: 'failed' })],
    want: ['replace t1 (exited) delay 5000'],
  },
  {
    name: 'restart: a rejected task (never ran) is not replaced before the delay since it failed: no reject loop',
    service: { replicas: 1, restart: { delayMs: 5000 } },
    tasks: [running(1, 'n1', 't1', { state: 'rejected', timestamp: NOW - 1000 })],
    want: [],
    wantWake: NOW + 4000,
  },
  {
    name: 'restart: a rejected task is replaced, ready to run, once the delay since it failed has passed',
    service: { replicas: 1, restart: { delayMs: 5000 } },
    tasks: [running(1, 'n1', 't1', { state: 'rejected', timestamp: NOW - 5000 })],
    want: ['replace t1 (exited)'],
  },
  {
    name: 'restart: zero delay creates the replacement RUNNING at once',
    service: { replicas: 1, restart: { delayMs: 0 } },
    tasks: [running(1, 'n1', 't1', { state: 'complete' })],
    want: ['replace t1 (exited)'],
  },
  {
    name: 'restart: on-failure does not restart a task that exited 0',
    service: { replicas: 1, restart: { condition: 'on-failure' } },
    tasks: [running(1, 'n1', 't1', { state: 'complete' })],
    want: ['shutdown t1: task exited; not restarted: task completed and restart condition is on-failure'],
  },
  {
    name: 'restart: on-failure restarts a failed task',
    service: { replicas: 1, restart: { condition: 'on-failure' } },
    tasks: [running(1, 'n1', 't1', { state: 'failed' })],
    want: ['replace t1 (exited)'],
  },
  {
    name: 'restart: on-failure restarts a rejected task',
    service: { replicas: 1, restart: { condition: 'on-failure' } },
    tasks: [running(1, 'n1', 't1', { state: 'rejected' })],
    want: ['replace t1 (exited)'],
  },
  {
    name: 'restart: condition none never restarts',
    service: { replicas: 1, restart: { condition: 'none' } },
    tasks: [running(1, 'n1', 't1', { state: 'failed' })],
    want: ['shutdown t1: task exited; not restarted: restart condition is none'],
  },
  {
    name: 'restart: max attempts reached within the window',
    service: { replicas: 1, restart: { maxAttempts: 2, windowMs: 10_000 } },
    tasks: [running(1, 'n1', 't1', { state: 'failed', timestamp: NOW })],
    history: { 1: [{ at: NOW - 9_000 }, { at: NOW - 1_000 }] },
    want: ['shutdown t1: task exited; not restarted: restarted 2 times, max attempts is 2'],
  },
  {
    name: 'restart: attempts older than the window do not count',
    service: { replicas: 1, restart: { maxAttempts: 2, windowMs: 10_000 } },
    tasks: [running(1, 'n1', 't1', { state: 'failed', timestamp: NOW })],
    history: { 1: [{ at: NOW - 11_000 }, { at: NOW - 1_000 }] },
    want: ['replace t1 (exited)'],
  },
  {
    name: 'restart: attempts of an older spec version do not count',
    service: { replicas: 1, restart: { maxAttempts: 1 }, specVersion: 2 },
    tasks: [running(1, 'n1', 't1', { state: 'failed', timestamp: NOW })],
    history: { 1: [{ at: NOW - 1_000, specVersion: 1 }] },
    want: ['replace t1 (exited)'],
  },
  {
    name: 'restart: window 0 counts every attempt',
    service: { replicas: 1, restart: { maxAttempts: 1 } },
    tasks: [running(1, 'n1', 't1', { state: 'failed', timestamp: NOW })],
    history: { 1: [{ at: 5 }] },
    want: ['shutdown t1: task exited; not restarted: restarted 1 times, max attempts is 1'],
  },
  {
    name: 'node down: replaced at once, no delay',
    service: { replicas: 1, restart: { delayMs: 5000 } },
    nodes: [{ id: 'n1', state: 'down' }, { id: 'n2' }],
    tasks: [running(1, 'n1')],
    want: ['replace t1 (node-down)'],
  },
  {
    name: 'node drained: replaced at once',
    service: { replicas: 1, restart: { delayMs: 5000 } },
    nodes: [{ id: 'n1', availability: 'drain' }, { id: 'n2' }],
    tasks: [running(1, 'n1')],
    want: ['replace t1 (node-drained)'],
  },
  {
    name: 'node paused: tasks keep running',
    service: { replicas: 1 },
    nodes: [{ id: 'n1', availability: 'pause' }],
    tasks: [running(1, 'n1')],
    want: [],
  },
  {
    name: 'node disconnected: not replaced before node health says DOWN',
    service: { replicas: 1 },
    nodes: [{ id: 'n1', state: 'disconnected' }],
    tasks: [running(1, 'n1')],
    want: [],
  },
  {
    name: 'node removed: replaced at once',
    service: { replicas: 1 },
    nodes: [{ id: 'n2' }],
    tasks: [running(1, 'n1')],
    want: ['replace t1 (node-gone)'],
  },
  {
    name: 'node no longer matches the constraints (label removed): replaced at once',
    service: { replicas: 1, constraints: ['node.labels.zone==a'], restart: { delayMs: 5000 } },
    nodes: [{ id: 'n1' }, { id: 'n2', labels: { zone: 'a' } }],
    tasks: [running(1, 'n1')],
    want: ['replace t1 (node-mismatch)'],
  },
  {
    name: 'node still matches the constraints: kept',
    service: { replicas: 1, constraints: ['node.labels.zone==a'] },
    nodes: [{ id: 'n1', labels: { zone: 'a' } }],
    tasks: [running(1, 'n1')],
    want: [],
  },
  {
    name: 'node down with condition none: shut down, not replaced',
    service: { replicas: 1, restart: { condition: 'none' } },
    nodes: [{ id: 'n1', state: 'down' }],
    tasks: [running(1, 'n1')],
    want: ['shutdown t1: node is down; not restarted: restart condition is none'],
  },
  {
    name: 'dead slot: a finished none-task is not started again and counts as a replica',
    service: { replicas: 2, restart: { condition: 'none' } },
    tasks: [running(1, 'n1'), running(2, 'n2', 't2', { state: 'complete', desiredState: 'shutdown' })],
    want: [],
  },
  {
    name: 'dead slot: refilled once the spec version changes',
    service: { replicas: 2, restart: { condition: 'none' }, specVersion: 2 },
    tasks: [running(1, 'n1', 't1', { specVersion: 2 }), running(2, 'n2', 't2', { state: 'complete', desiredState: 'shutdown', specVersion: 1 })],
    want: ['create slot 2'],
  },
  {
    name: 'empty slot after a failure (replacement not yet written): recreated with the delay',
    service: { replicas: 1, restart: { delayMs: 3000 } },
    tasks: [running(1, 'n1', 't1', { state: 'failed', desiredState: 'shutdown' })],
    want: ['create slot 1 delay 3000 restart'],
  },
  {
    name: 'scaled-down slot is refilled plainly on scale up',
    service: { replicas: 2, restart: { condition: 'none' } },
    tasks: [running(1, 'n1'), running(2, 'n2', 't2', { state: 'shutdown', desiredState: 'shutdown' })],
    want: ['create slot 2'],
  },
  {
    name: 'history: old tasks in a slot do not hide the runnable one',
    service: { replicas: 1 },
    tasks: [
      running(1, 'n1', 'old1', { state: 'failed', desiredState: 'shutdown', created: 1 }),
      running(1, 'n1', 'old2', { state: 'failed', desiredState: 'shutdown', created: 2 }),
      running(1, 'n2', 'cur', { created: 3 }),
    ],
    want: [],
  },
  {
    name: 'duplicate runnable tasks in one slot: the healthy one stays',
    service: { replicas: 1 },
    tasks: [running(1, 'n1', 'a', { state: 'failed' }), running(1, 'n2', 'b')],
    want: ['shutdown a: another task runs in this slot'],
  },
  {
    name: 'start-first update: a task of the new spec version beside the old one is left to the updater',
    service: { replicas: 1, specVersion: 2 },
    tasks: [running(1, 'n1', 'old', { specVersion: 1 }), running(1, 'n2', 'new', { specVersion: 2, state: 'starting' })],
    want: [],
  },
  {
    name: 'delay: a READY replacement is promoted when its delay has passed',
    service: { replicas: 1, restart: { delayMs: 5000 } },
    tasks: [running(1, 'n1', 'new', { desiredState: 'ready', state: 'assigned' })],
    history: { 1: [{ taskId: 'new', at: NOW - 5000, delayUntil: NOW }] },
    want: ['promote new'],
  },
  {
    name: 'stop-first update: a READY task is not promoted while the old task of its slot still runs (the updater promotes it once it stopped)',
    service: { replicas: 1, specVersion: 2 },
    tasks: [
      running(1, 'n1', 'old', { specVersion: 1, desiredState: 'shutdown' }),
      running(1, 'n2', 'new', { specVersion: 2, desiredState: 'ready', state: 'ready' }),
    ],
    want: [],
  },
  {
    name: 'delay: a READY replacement waits, and the loop is told when to wake',
    service: { replicas: 1, restart: { delayMs: 5000 } },
    tasks: [running(1, 'n1', 'new', { desiredState: 'ready', state: 'assigned' })],
    history: { 1: [{ taskId: 'new', at: NOW - 1000, delayUntil: NOW + 4000 }] },
    want: [],
    wantWake: NOW + 4000,
  },
  {
    name: 'delay: without history (new leader) it counts from when the replaced task stopped',
    service: { replicas: 1, restart: { delayMs: 5000 } },
    tasks: [
      running(1, 'n1', 'old', { state: 'failed', desiredState: 'shutdown', timestamp: NOW - 2000, created: 1 }),
      running(1, 'n1', 'new', { desiredState: 'ready', state: 'assigned', created: 2 }),
    ],
    want: [],
    wantWake: NOW + 3000,
  },
  {
    name: 'delay: a READY replacement whose node went down is replaced again at once',
    service: { replicas: 1, restart: { delayMs: 5000 } },
    nodes: [{ id: 'n1', state: 'down' }],
    tasks: [running(1, 'n1', 'new', { desiredState: 'ready', state: 'assigned' })],
    want: ['replace new (node-down)'],
  },
];

describe('orchestrator/replicated', () => {
  for (const c of cases) {
    it(`replicated: ${c.name}`, () => {
      const r = run(c);
      assert.deepEqual(r.actions.map(summary), c.want);
      assert.equal(r.wakeAt, c.wantWake);
    });
  }
});
