// Table-driven tests of reconcileGlobal: one task per eligible node across node changes (join,
// pause, drain, down, removed, labels), restarts on the same node, constraints.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UpdateState } from '../../proto/gen/gantry/v1/objects.ts';
import { fixtures as f, type NodeOptions, type ServiceOptions, type TaskOptions } from '../store/fixtures.ts';
import type { OrchestratorAction } from './actions.ts';
import { reconcileGlobal } from './global.ts';

const NOW = 1_000_000;

function summary(a: OrchestratorAction): string {
  switch (a.kind) {
    case 'create':
      return `create on ${a.nodeId}${a.delayUntil ? ` delay ${a.delayUntil - NOW}` : ''}`;
    case 'replace':
      return `replace ${a.task.id} on ${a.nodeId}${a.delayUntil ? ` delay ${a.delayUntil - NOW}` : ''}`;
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
  service?: ServiceOptions;
  nodes: NodeOptions[];
  tasks?: TaskOptions[];
  want: string[];
  /** The service is in a rolling update (UPDATING). */
  updating?: boolean;
}

const on = (nodeId: string, more: TaskOptions = {}): TaskOptions => ({ id: `t-${nodeId}`, nodeId, state: 'running', ...more });

const cases: Case[] = [
  { name: 'one task per ready node', nodes: [{ id: 'a' }, { id: 'b' }], want: ['create on a', 'create on b'] },
  { name: 'a node in state unknown (new leader) still gets one', nodes: [{ id: 'a', state: 'unknown' }], want: ['create on a'] },
  { name: 'a new node joins: only it gets a task', nodes: [{ id: 'a' }, { id: 'b' }], tasks: [on('a')], want: ['create on b'] },
  { name: 'a paused node keeps its task and gets none new', nodes: [{ id: 'a', availability: 'pause' }, { id: 'b', availability: 'pause' }], tasks: [on('a')], want: [] },
  { name: 'a drained node: its task is shut down', nodes: [{ id: 'a', availability: 'drain' }], tasks: [on('a')], want: ['shutdown t-a: node is drained'] },
  { name: 'a down node: its task is shut down, not replaced', nodes: [{ id: 'a', state: 'down' }], tasks: [on('a')], want: ['shutdown t-a: node is down'] },
  { name: 'a disconnected node keeps its task until it is down', nodes: [{ id: 'a', state: 'disconnected' }], tasks: [on('a')], want: [] },
  { name: 'a removed node: its task is shut down', nodes: [], tasks: [on('gone')], want: ['shutdown t-gone: node was removed'] },
  {
    name: 'constraints: only matching nodes',
    service: { mode: 'global', constraints: ['node.labels.gpu==yes'] },
    nodes: [{ id: 'a', labels: { gpu: 'yes' } }, { id: 'b' }],
    want: ['create on a'],
  },
  {
    name: 'constraints: a node that no longer matches loses its task',
    service: { mode: 'global', constraints: ['node.labels.gpu==yes'] },
    nodes: [{ id: 'a' }],
    tasks: [on('a')],
    want: ['shutdown t-a: node no longer matches the placement constraints'],
  },
  {
    name: 'restart: a failed task is replaced on the same node after the delay',
    service: { mode: 'global', restart: { delayMs: 2000 } },
    nodes: [{ id: 'a' }],
    tasks: [on('a', { state: 'failed' })],
    want: ['replace t-a on a delay 2000'],
  },
  {
    name: 'restart: a rejected task is not replaced before the delay since it failed (no reject loop)',
    service: { mode: 'global', restart: { delayMs: 2000 } },
    nodes: [{ id: 'a' }],
    tasks: [on('a', { state: 'rejected', timestamp: NOW - 500 })],
    want: [],
  },
  {
    name: 'restart: a rejected task is replaced once the delay since it failed has passed',
    service: { mode: 'global', restart: { delayMs: 2000 } },
    nodes: [{ id: 'a' }],
    tasks: [on('a', { state: 'rejected', timestamp: NOW - 2000 })],
    want: ['replace t-a on a'],
  },
  {
    name: 'restart: condition none leaves the node without a task',
    service: { mode: 'global', restart: { condition: 'none' } },
    nodes: [{ id: 'a' }],
    tasks: [on('a', { state: 'complete' })],
    want: ['shutdown t-a: task exited; not restarted: restart condition is none'],
  },
  {
    name: 'restart: a dead node-instance stays dead',
    service: { mode: 'global', restart: { condition: 'none' } },
    nodes: [{ id: 'a' }],
    tasks: [on('a', { state: 'complete', desiredState: 'shutdown' })],
    want: [],
  },
  {
    name: 'node back from down: a new task (the old one was shut down)',
    nodes: [{ id: 'a' }],
    tasks: [on('a', { state: 'running', desiredState: 'shutdown' })],
    want: ['create on a'],
  },
  {
    name: 'two runnable tasks on one node: the extra one goes',
    nodes: [{ id: 'a' }],
    tasks: [on('a', { id: 'x', state: 'running' }), on('a', { id: 'y', state: 'pending' })],
    want: ['shutdown y: another task of this service runs on the node'],
  },
  {
    name: 'rolling update, stop-first: the new READY task is not promoted while the old one on its node still runs',
    service: { mode: 'global', specVersion: 2 },
    updating: true,
    nodes: [{ id: 'a' }],
    tasks: [on('a', { id: 'old', specVersion: 1, state: 'running', desiredState: 'shutdown' }), on('a', { id: 'new', state: 'ready', desiredState: 'ready' })],
    want: [],
  },
  {
    name: 'no update under way: a replacement is promoted even if an old task never reported its stop',
    service: { mode: 'global', specVersion: 2 },
    nodes: [{ id: 'a' }],
    tasks: [on('a', { id: 'old', specVersion: 1, state: 'running', desiredState: 'shutdown' }), on('a', { id: 'new', state: 'ready', desiredState: 'ready' })],
    want: ['promote new'],
  },
  {
    name: 'rolling update, stop-first: once the old task stopped, the READY one is promoted',
    service: { mode: 'global', specVersion: 2 },
    nodes: [{ id: 'a' }],
    tasks: [on('a', { id: 'old', specVersion: 1, state: 'shutdown', desiredState: 'shutdown' }), on('a', { id: 'new', state: 'ready', desiredState: 'ready' })],
    want: ['promote new'],
  },
  {
    name: 'rolling update, start-first: a new task beside the old one of another version is left to the updater',
    service: { mode: 'global', specVersion: 2 },
    nodes: [{ id: 'a' }],
    tasks: [on('a', { id: 'old', specVersion: 1, state: 'running' }), on('a', { id: 'new', state: 'running' })],
    want: [],
  },
];

describe('orchestrator/global', () => {
  for (const c of cases) {
    it(`global: ${c.name}`, () => {
      const service = f.service({ id: 'g', mode: 'global', restart: { delayMs: 0 }, ...c.service });
      if (c.updating) service.updateStatus = { state: UpdateState.UPDATE_STATE_UPDATING, startedAt: 0, completedAt: 0, message: '' };
      const nodes = c.nodes.map((o) => f.node(o));
      const tasks = (c.tasks ?? []).map((o) => f.task({ service, ...o }));
      const r = reconcileGlobal({ service, tasks, nodes, history: new Map(), now: NOW });
      assert.deepEqual(r.actions.map(summary), c.want);
    });
  }
});
