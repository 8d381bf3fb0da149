// Table-driven tests of the job orchestrators: completions and concurrency, failures restarted in
// their slot, completed tasks finished (desired COMPLETE), re-runs, global jobs per node.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fixtures as f, type NodeOptions, type ServiceOptions, type TaskOptions } from '../store/fixtures.ts';
import type { OrchestratorAction } from './actions.ts';
import { reconcileGlobalJob, reconcileReplicatedJob } from './jobs.ts';
import { slotKey } from './restart.ts';

const NOW = 1_000_000;

function summary(a: OrchestratorAction): string {
  switch (a.kind) {
    case 'create':
      return `create ${a.nodeId ? `on ${a.nodeId}` : `slot ${a.slot}`}${a.restart ? ' restart' : ''}`;
    case 'replace':
      return `replace ${a.task.id}`;
    case 'shutdown':
      return `shutdown ${a.task.id}: ${a.reason}`;
    case 'promote':
      return `promote ${a.task.id}`;
    case 'finish':
      return `finish ${a.task.id}`;
  }
}

function job(o: { max: number; total: number; iteration?: number } & ServiceOptions) {
  const s = f.service({ id: 'j', mode: 'replicated-job', restart: { condition: 'on-failure', delayMs: 0 }, ...o });
  s.spec!.mode = { $case: 'replicatedJob', value: { maxConcurrent: o.max, totalCompletions: o.total } };
  s.jobIteration = o.iteration ?? 0;
  return s;
}

interface Case {
  name: string;
  service: ReturnType<typeof job>;
  tasks: TaskOptions[];
  /** restart times already made for slot 1 */
  restarts?: number[];
  want: string[];
}

const t = (id: string, slot: number, state: TaskOptions['state'], more: TaskOptions = {}): TaskOptions => ({ id, slot, nodeId: 'n1', state, ...more });

const replicated: Case[] = [
  { name: 'starts maxConcurrent tasks', service: job({ max: 2, total: 5 }), tasks: [], want: ['create slot 1', 'create slot 2'] },
  { name: 'never more than the total', service: job({ max: 10, total: 3 }), tasks: [], want: ['create slot 1', 'create slot 2', 'create slot 3'] },
  {
    name: 'a completed task is finished and the next completion starts',
    service: job({ max: 2, total: 5 }),
    tasks: [t('a', 1, 'complete'), t('b', 2, 'running')],
    want: ['finish a', 'create slot 3'],
  },
  {
    name: 'all completions done: nothing more',
    service: job({ max: 2, total: 2 }),
    tasks: [t('a', 1, 'complete', { desiredState: 'complete' }), t('b', 2, 'complete', { desiredState: 'complete' })],
    want: [],
  },
  { name: 'a failed task is restarted in its slot (on-failure)', service: job({ max: 1, total: 1 }), tasks: [t('a', 1, 'failed')], want: ['replace a'] },
  {
    name: 'an emptied slot whose task failed is restarted in place',
    service: job({ max: 1, total: 1, restart: { condition: 'on-failure', maxAttempts: 1, delayMs: 0 } }),
    tasks: [t('a', 1, 'failed', { desiredState: 'shutdown', timestamp: NOW })],
    want: ['create slot 1 restart'],
  },
  {
    name: 'max attempts exhausted: the slot counts as failed, no new slot',
    service: job({ max: 2, total: 2, restart: { condition: 'on-failure', maxAttempts: 1, delayMs: 0 } }),
    tasks: [t('a', 1, 'failed', { desiredState: 'shutdown', timestamp: NOW }), t('b', 2, 'running')],
    restarts: [NOW - 10],
    want: [],
  },
  {
    name: 'a re-run (new iteration) shuts down the old run and starts again',
    service: job({ max: 1, total: 1, iteration: 1 }),
    tasks: [t('a', 1, 'running', { specVersion: 1 })],
    want: ['shutdown a: the job was run again', 'create slot 1'],
  },
];

describe('orchestrator/jobs', () => {
  for (const c of replicated) {
    it(`replicated-job: ${c.name}`, () => {
      const nodes = new Map([['n1', f.node({ id: 'n1' })]]);
      const tasks = c.tasks.map((o) => f.task({ service: c.service, ...o }));
      const history = new Map([[slotKey('j', 1), (c.restarts ?? []).map((at) => ({ at, specVersion: 1, taskId: 'r', delayUntil: at }))]]);
      const r = reconcileReplicatedJob({ service: c.service, tasks, node: (id) => nodes.get(id), history, now: NOW });
      assert.deepEqual(r.actions.map(summary), c.want);
    });
  }

  const global: Array<{ name: string; nodes: NodeOptions[]; tasks: TaskOptions[]; want: string[] }> = [
    { name: 'one task per eligible node', nodes: [{ id: 'a' }, { id: 'b', availability: 'drain' }], tasks: [], want: ['create on a'] },
    { name: 'done on a node: finished, never again', nodes: [{ id: 'a' }], tasks: [{ id: 'x', nodeId: 'a', state: 'complete' }], want: ['finish x'] },
    { name: 'a failed task is restarted on its node', nodes: [{ id: 'a' }], tasks: [{ id: 'x', nodeId: 'a', state: 'failed' }], want: ['replace x'] },
    { name: 'a node that joins later gets the job', nodes: [{ id: 'a' }, { id: 'b' }], tasks: [{ id: 'x', nodeId: 'a', state: 'complete', desiredState: 'complete' }], want: ['create on b'] },
    { name: 'a task on a down node is shut down', nodes: [{ id: 'a', state: 'down' }], tasks: [{ id: 'x', nodeId: 'a', state: 'running' }], want: ['shutdown x: node is down'] },
  ];
  for (const c of global) {
    it(`global-job: ${c.name}`, () => {
      const service = f.service({ id: 'gj', mode: 'global-job', restart: { condition: 'on-failure', delayMs: 0 } });
      const tasks = c.tasks.map((o) => f.task({ service, ...o }));
      const r = reconcileGlobalJob({ service, tasks, nodes: c.nodes.map((o) => f.node(o)), history: new Map(), now: NOW });
      assert.deepEqual(r.actions.map(summary), c.want);
    });
  }
});
