// A live session's key and its node's READY survive a lost lease: the key is written again even
// while the manager's view still shows the old one, and a node judged DOWN meanwhile registers again.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { DispatcherService } from '../../proto/gen/gantry/v1/dispatcher.ts';
import { NodeState, type Task, type TaskStatus } from '../../proto/gen/gantry/v1/objects.ts';
import { Agent, type AgentTasks } from '../../worker/agent/agent.ts';
import { fixtures } from '../store/fixtures.ts';
import { MemoryStore } from '../store/memory.ts';
import type { ReadView, Store } from '../store/types.ts';
import { until as pollUntil } from '../../deploy/lab/lab-cluster.ts';
import { Dispatcher } from './dispatcher.ts';
import { hashSecret } from './tokens.ts';

const noTasks: AgentTasks = {
  assign(_tasks: Task[]) {},
  statuses: () => new Map<string, TaskStatus>(),
  async *logs() {},
};

/** The lab's poll loop, at a unit test's pace. */
const until = (check: () => true | string) => pollUntil(check, 10_000, 10);

/**
 * A MemoryStore whose view can be frozen: the manager's copy behind etcd, as when its watch was
 * cut together with its lease. Commits still check against the real state (etcd's answer).
 */
class LaggingStore {
  readonly real = new MemoryStore();
  frozen: ReadView | undefined;
  view = (): ReadView => this.frozen ?? this.real.view();
  subscribe: Store['subscribe'] = (l) => this.real.subscribe(l);
  commit: Store['commit'] = (w) => this.real.commit(w);
  batch: Store['batch'] = (w) => this.real.batch(w);
  waitFor: Store['waitFor'] = (r) => this.real.waitFor(r);
}

async function harness(t: import('node:test').TestContext, store: Store, seedInto: MemoryStore) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-session-key-'));
  const node = { ...fixtures.node({ id: 'w1', state: 'unknown' }), secretHash: hashSecret('s') };
  await fixtures.seed(seedInto, { clusters: [fixtures.cluster({ heartbeatPeriodMs: 100, nodeDownGraceMs: 400 })], nodes: [node] });
  const logs: string[] = [];
  const dispatcher = new Dispatcher({ store, clock: { now: () => Date.now() }, managerId: 'm1', managerAddr: 'x', log: (m) => logs.push(m) });
  const server = new grpc.Server();
  server.addService(DispatcherService, dispatcher.service());
  const addr = `unix://${dir}/d.sock`;
  await new Promise<void>((res, rej) => server.bindAsync(addr, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
  const agent = new Agent({ nodeId: 'w1', nodeSecret: 's', managers: [addr], addr: '127.0.0.1', description: () => node.description!, tasks: noTasks });
  t.after(async () => {
    await agent.stop();
    await dispatcher.stop();
    server.forceShutdown();
    await rm(dir, { recursive: true, force: true });
  });
  agent.start();
  await until(() => seedInto.view().get('sessions', 'w1') !== undefined || 'no session yet');
  return { dispatcher, agent, logs };
}

test('session key: after a lost lease the key is written again although the view still shows the old one', async (t) => {
  const store = new LaggingStore();
  const h = await harness(t, store, store.real);
  const id = store.real.view().get('sessions', 'w1')?.sessionId;
  store.frozen = store.real.view(); // the watch is behind: the view keeps the key the lease took
  store.real.expireLease();
  assert.equal(store.real.view().get('sessions', 'w1'), undefined, 'the key went with the lease');
  await h.dispatcher.reclaimSessions();
  assert.equal(store.real.view().get('sessions', 'w1')?.sessionId, id, `the live session's key is back; log: ${h.logs.join(' | ')}`);
});

test('session key: a key deleted while its session lives is written again without a lease-lost notice', async (t) => {
  const store = new MemoryStore();
  const h = await harness(t, store, store);
  const id = store.view().get('sessions', 'w1')?.sessionId;
  store.expireLease();
  await until(() => store.view().get('sessions', 'w1')?.sessionId === id || `key not back; log: ${h.logs.join(' | ')}`);
  assert.equal(h.agent.connected(), true);
});

test('session key: a node judged DOWN while its session is open registers again and is READY', async (t) => {
  const store = new MemoryStore();
  const h = await harness(t, store, store);
  const first = store.view().get('sessions', 'w1')?.sessionId;
  // what the leader's node health writes when it did not see the session key for a grace period
  const n = store.view().get('nodes', 'w1')!;
  const res = await store.commit([{ op: 'update', kind: 'nodes', object: { ...n, status: { ...n.status!, state: NodeState.NODE_STATE_DOWN, message: 'heartbeat failure' } } }]);
  assert.equal(res.ok, true);
  await until(() => {
    const s = store.view().get('sessions', 'w1');
    const st = store.view().get('nodes', 'w1')?.status?.state;
    return (s !== undefined && s.sessionId !== first && st === NodeState.NODE_STATE_READY) || `session ${s?.sessionId} (first ${first}), node state ${st}; log: ${h.logs.join(' | ')}`;
  });
  assert.ok(h.logs.some((l) => /was marked down \(heartbeat failure\) while its session was open/.test(l)), h.logs.join(' | '));
});
