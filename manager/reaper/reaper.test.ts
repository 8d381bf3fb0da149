// Table-driven tests of the task reaper's decision: history limits per slot and per global node,
// tasks of deleted services (REMOVE, then delete once stopped).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fixtures as f, type NodeOptions, type TaskOptions } from '../store/fixtures.ts';
import { type ReaperAction, reap } from './reaper.ts';

interface Case {
  name: string;
  nodes?: NodeOptions[];
  services?: string[];
  tasks: Array<TaskOptions & { created: number }>;
  retention?: number;
  want: string[];
}

const old = (id: string, created: number, more: TaskOptions = {}) => ({
  id,
  created,
  serviceId: 's',
  slot: 1,
  nodeId: 'n1',
  state: 'failed' as const,
  desiredState: 'shutdown' as const,
  ...more,
});
const cur = (id: string, created: number, more: TaskOptions = {}) => ({ id, created, serviceId: 's', slot: 1, nodeId: 'n1', state: 'running' as const, ...more });

function summary(a: ReaperAction): string {
  return a.kind === 'remove' ? `remove ${a.task.id}` : `delete ${a.task.id} (${a.why})`;
}

const cases: Case[] = [
  { name: 'history: within the limit nothing goes', tasks: [old('a', 1), old('b', 2), cur('c', 3)], retention: 3, want: [] },
  { name: 'history: the oldest stopped tasks go first', tasks: [old('a', 1), old('b', 2), old('c', 3), cur('d', 4)], retention: 2, want: ['delete a (history)', 'delete b (history)'] },
  { name: 'history: 0 means the default of 5', tasks: [1, 2, 3, 4, 5, 6, 7].map((i) => old(`t${i}`, i)), retention: 0, want: ['delete t1 (history)', 'delete t2 (history)'] },
  { name: 'history: negative keeps everything', tasks: [1, 2, 3, 4, 5, 6, 7].map((i) => old(`t${i}`, i)), retention: -1, want: [] },
  {
    name: 'history: a task asked to stop but still running is kept',
    tasks: [old('a', 1, { state: 'running' }), old('b', 2), cur('c', 3)],
    retention: 1,
    want: ['delete b (history)'],
  },
  {
    name: 'history: a task on a down node counts as stopped',
    nodes: [{ id: 'n1', state: 'down' }, { id: 'n2' }],
    tasks: [old('a', 1, { state: 'running' }), cur('b', 2, { nodeId: 'n2' })],
    retention: 1,
    want: ['delete a (history)'],
  },
  { name: 'history: slots are counted separately', tasks: [old('a', 1), cur('b', 2), old('c', 1, { slot: 2 }), cur('d', 2, { slot: 2 })], retention: 2, want: [] },
  {
    name: 'history: global tasks are counted per node',
    tasks: [old('a', 1, { slot: 0 }), cur('b', 2, { slot: 0 }), old('c', 1, { slot: 0, nodeId: 'n2' }), cur('d', 2, { slot: 0, nodeId: 'n2' })],
    nodes: [{ id: 'n1' }, { id: 'n2' }],
    retention: 1,
    want: ['delete a (history)', 'delete c (history)'],
  },
  {
    name: 'deleted service: running tasks are marked REMOVE, stopped ones deleted',
    services: [],
    tasks: [cur('a', 1), old('b', 1, { slot: 2 }), cur('c', 1, { slot: 3, nodeId: '', state: 'pending' })],
    want: ['remove a', 'delete b (removed)', 'delete c (removed)'],
  },
  { name: 'REMOVE-desired task is deleted once it stopped', tasks: [cur('a', 1, { desiredState: 'remove', state: 'shutdown' })], want: ['delete a (removed)'] },
  { name: 'REMOVE-desired task still running waits', tasks: [cur('a', 1, { desiredState: 'remove' })], want: [] },
  { name: 'REMOVE-desired task on a removed node is deleted', nodes: [], tasks: [cur('a', 1, { desiredState: 'remove' })], want: ['delete a (removed)'] },
];

describe('reaper', () => {
  for (const c of cases) {
    it(`reaper: ${c.name}`, () => {
      const nodes = new Map((c.nodes ?? [{ id: 'n1' }, { id: 'n2' }]).map((o) => [o.id!, f.node(o)]));
      const services = new Set(c.services ?? ['s']);
      const tasks = c.tasks.map((o) => {
        const t = f.task(o);
        t.meta!.createdAt = o.created;
        return t;
      });
      const actions = reap({ tasks, serviceExists: (id) => services.has(id), node: (id) => nodes.get(id), retention: c.retention ?? 5 });
      assert.deepEqual(actions.map(summary), c.want);
    });
  }
});
