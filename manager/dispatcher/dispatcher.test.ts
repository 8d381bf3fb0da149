// Dispatcher ⇄ agent over a real gRPC server on a unix socket, with the in-memory store:
// join with tokens, registration, assignments (full then incremental), forward-only statuses,
// disconnect handling and logs. Pure parts (assignments, status merge) are tested table-first.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { DispatcherClient, DispatcherService, type JoinResponse } from '../../proto/gen/gantry/v1/dispatcher.ts';
import { NodeState, type Task, type TaskStatus, TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import { Agent, type AgentTasks } from '../../worker/agent/agent.ts';
import { MemoryStore } from '../store/memory.ts';
import { fixtures } from '../store/fixtures.ts';
import type { StoreEvent } from '../store/types.ts';
import { assignmentChanges } from './assignments.ts';
import { Dispatcher } from './dispatcher.ts';
import { mergeStatus } from './status.ts';
import { hashSecret } from './tokens.ts';

const S = TaskState;

function status(state: TaskState, message = ''): TaskStatus {
  return { timestamp: Date.now(), state, message, err: '', ports: [], health: '' };
}

describe('dispatcher: assignments', () => {
  const nodeId = 'n1';
  const assigned = fixtures.task({ id: 't1', nodeId, state: 'assigned' });
  test('assignments: a task assigned to the node is sent; pending or elsewhere is not', () => {
    const events: StoreEvent[] = [
      { kind: 'tasks', op: 'put', object: assigned },
      { kind: 'tasks', op: 'put', object: fixtures.task({ id: 't2', state: 'pending' }) },
      { kind: 'tasks', op: 'put', object: fixtures.task({ id: 't3', nodeId: 'n2', state: 'assigned' }) },
    ];
    assert.deepEqual(assignmentChanges(events, nodeId).tasks.map((t) => t.id), ['t1']);
  });
  test('assignments: a status-only change is not echoed back to the worker', () => {
    const running = { ...assigned, status: status(S.TASK_STATE_RUNNING) };
    const d = assignmentChanges([{ kind: 'tasks', op: 'put', object: running, previous: assigned }], nodeId);
    assert.deepEqual(d, { tasks: [], removed: [] });
  });
  test('assignments: a desired-state change is sent, a deletion is a removal', () => {
    const stop = { ...assigned, desiredState: S.TASK_STATE_SHUTDOWN };
    assert.deepEqual(assignmentChanges([{ kind: 'tasks', op: 'put', object: stop, previous: assigned }], nodeId).tasks.map((t) => t.id), ['t1']);
    assert.deepEqual(assignmentChanges([{ kind: 'tasks', op: 'delete', id: 't1', previous: assigned }], nodeId).removed, ['t1']);
  });
});

describe('dispatcher: status merge', () => {
  const t = fixtures.task({ id: 't', nodeId: 'n1', state: 'running' });
  const cases: [string, Task | undefined, string, TaskStatus, string | true][] = [
    ['a later state applies', t, 'n1', status(S.TASK_STATE_FAILED, 'exit 1'), true],
    ['an earlier state is stale', t, 'n1', status(S.TASK_STATE_PREPARING), 'stale'],
    ['another node may not report it', t, 'n2', status(S.TASK_STATE_FAILED), 'other-node'],
    ['an unknown task is ignored', undefined, 'n1', status(S.TASK_STATE_RUNNING), 'unknown-task'],
  ];
  for (const [name, stored, node, st, want] of cases) {
    test(`status: ${name}`, () => {
      const d = mergeStatus(stored, node, st);
      assert.equal(d.apply ? true : d.reason, want);
    });
  }
});

class FakeTasks implements AgentTasks {
  known = new Map<string, Task>();
  calls: { full: boolean; ids: string[]; removed: string[] }[] = [];
  reported = new Map<string, TaskStatus>();
  assign(tasks: Task[], full: boolean, removed: string[]): void {
    if (full) this.known.clear();
    for (const t of tasks) this.known.set(t.id, t);
    for (const id of removed) this.known.delete(id);
    this.calls.push({ full, ids: tasks.map((t) => t.id), removed });
  }
  statuses(): Map<string, TaskStatus> {
    return this.reported;
  }
  async *logs(taskId: string) {
    yield { stream: 'stdout' as const, timeMs: 1, data: Buffer.from(`hello from ${taskId}\n`) };
  }
}

async function until(check: () => true | string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last: true | string = 'not checked';
  while (Date.now() < end) {
    last = check();
    if (last === true) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out: ${last}`);
}

async function harness(t: import('node:test').TestContext) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-dispatcher-'));
  const store = new MemoryStore();
  const cluster = fixtures.cluster({ heartbeatPeriodMs: 100, nodeDownGraceMs: 400 });
  const node = { ...fixtures.node({ id: 'worker1', state: 'unknown' }), secretHash: hashSecret('s3cret') };
  await fixtures.seed(store, { clusters: [cluster], nodes: [node] });
  const dispatcher = new Dispatcher({ store, clock: { now: () => Date.now() }, managerId: 'm1', managerAddr: 'x' });
  const server = new grpc.Server();
  server.addService(DispatcherService, dispatcher.service());
  const addr = `unix://${dir}/d.sock`;
  await new Promise<void>((res, rej) => server.bindAsync(addr, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
  const agents: Agent[] = [];
  const agent = (secret = 's3cret', tasks = new FakeTasks()) => {
    const a = new Agent({
      nodeId: 'worker1',
      nodeSecret: secret,
      managers: [addr],
      addr: '127.0.0.1',
      description: () => node.description!,
      tasks,
    });
    agents.push(a);
    return { a, tasks };
  };
  t.after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await dispatcher.stop();
    server.forceShutdown();
    await rm(dir, { recursive: true, force: true });
  });
  return { store, cluster, addr, dispatcher, agent };
}

describe('dispatcher: sessions over gRPC', () => {
  test('session: registering marks the node ready, holds a session key, and sends the full set then changes', async (t) => {
    const h = await harness(t);
    const pre = fixtures.task({ id: 'pre', nodeId: 'worker1', state: 'assigned' });
    await fixtures.seed(h.store, { tasks: [pre] });
    const { a, tasks } = h.agent();
    a.start();
    await until(() => tasks.calls.length > 0 || 'no assignment yet');
    assert.deepEqual(tasks.calls[0], { full: true, ids: ['pre'], removed: [] });
    assert.equal(h.store.view().get('nodes', 'worker1')?.status?.state, NodeState.NODE_STATE_READY);
    assert.equal(h.store.view().get('sessions', 'worker1')?.managerId, 'm1');

    const added = fixtures.task({ id: 'added', nodeId: 'worker1', state: 'assigned' });
    await fixtures.seed(h.store, { tasks: [added] });
    await until(() => tasks.known.has('added') || `known: ${[...tasks.known.keys()]}`);
    assert.equal(tasks.calls.at(-1)?.full, false);
  });

  test('session: statuses move tasks forward only; stale reports are ignored', async (t) => {
    const h = await harness(t);
    await fixtures.seed(h.store, { tasks: [fixtures.task({ id: 'x', nodeId: 'worker1', state: 'assigned' })] });
    const { a } = h.agent();
    a.start();
    await until(() => a.connected() || 'not connected');
    a.reportStatus('x', status(S.TASK_STATE_RUNNING, 'started'));
    await until(() => h.store.view().get('tasks', 'x')?.status?.state === S.TASK_STATE_RUNNING || 'not running yet');
    a.reportStatus('x', status(S.TASK_STATE_PREPARING, 'late replay'));
    a.reportStatus('y-unknown', status(S.TASK_STATE_RUNNING));
    a.reportStatus('x', status(S.TASK_STATE_FAILED, 'exit 1'));
    await until(() => h.store.view().get('tasks', 'x')?.status?.state === S.TASK_STATE_FAILED || 'not failed yet');
    assert.equal(h.store.view().get('tasks', 'x')?.status?.message, 'exit 1');
  });

  test('session: after the store lost its lease, the live sessions write their keys again', async (t) => {
    const h = await harness(t);
    const { a } = h.agent();
    a.start();
    await until(() => h.store.view().get('sessions', 'worker1') !== undefined || 'no session');
    const id = h.store.view().get('sessions', 'worker1')!.sessionId;
    h.store.expireLease();
    assert.equal(h.store.view().get('sessions', 'worker1'), undefined, 'the key went with the lease');
    await h.dispatcher.reclaimSessions();
    assert.equal(h.store.view().get('sessions', 'worker1')?.sessionId, id);
  });

  test('session: a wrong node secret is refused and the node stays as it was', async (t) => {
    const h = await harness(t);
    const { a } = h.agent('wrong');
    a.start();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(a.connected(), false);
    assert.equal(h.store.view().get('nodes', 'worker1')?.status?.state, NodeState.NODE_STATE_UNKNOWN);
    assert.equal(h.store.view().get('sessions', 'worker1'), undefined);
  });

  test('session: when the worker goes away the session key goes and the node is disconnected', async (t) => {
    const h = await harness(t);
    const { a } = h.agent();
    a.start();
    await until(() => h.store.view().get('sessions', 'worker1') !== undefined || 'no session');
    await a.stop();
    await until(() => h.store.view().get('sessions', 'worker1') === undefined || 'session still there');
    await until(() => h.store.view().get('nodes', 'worker1')?.status?.state === NodeState.NODE_STATE_DISCONNECTED || 'not disconnected');
  });

  test('session: logs of a task come back from the worker that runs it; an absent node says so', async (t) => {
    const h = await harness(t);
    const here = fixtures.task({ id: 'here', nodeId: 'worker1', state: 'running', serviceName: 'web', slot: 1 });
    const away = fixtures.task({ id: 'away', nodeId: 'ghost', state: 'running', serviceName: 'web', slot: 2 });
    const { a } = h.agent();
    a.start();
    await until(() => a.connected() || 'not connected');
    const got: string[] = [];
    await h.dispatcher.subscribe([here, away], { follow: false, tail: -1, sinceMs: 0 }, (m) => got.push(m.error || `${m.taskId}: ${Buffer.from(m.data).toString().trim()}`), new AbortController().signal);
    assert.deepEqual(got.sort(), ['here: hello from here', 'node ghost is not connected to this manager: its logs are unavailable']);
  });

  test('join: the worker token admits a host; a wrong token is refused with what to do', async (t) => {
    const h = await harness(t);
    const client = new DispatcherClient(h.addr, grpc.credentials.createInsecure());
    t.after(() => client.close());
    const join = (token: string) =>
      new Promise<JoinResponse>((res, rej) => client.join({ token, description: undefined, advertiseAddr: '10.0.0.9', etcdPeerUrl: '', managerAddr: '', etcdMemberName: '', csr: Buffer.alloc(0) }, (e, r) => (e ? rej(e) : res(r))));
    const ok = await join(h.cluster.joinTokens!.worker);
    assert.equal(h.store.view().get('nodes', ok.nodeId)?.secretHash, hashSecret(ok.nodeSecret));
    await assert.rejects(join('GNTRY-1-bogus-w'), (e: grpc.ServiceError) => {
      assert.equal(e.code, grpc.status.PERMISSION_DENIED);
      assert.match(e.details, /join token is not valid.*gantry join-token worker/);
      return true;
    });
  });
});

describe('dispatcher: slow registration', () => {
  test('session: a registration slower than the grace does not end the session before the first heartbeat', async (t) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-dispatcher-'));
    const store = new MemoryStore();
    const cluster = fixtures.cluster({ heartbeatPeriodMs: 100, nodeDownGraceMs: 300 });
    const node = { ...fixtures.node({ id: 'slow', state: 'unknown' }), secretHash: hashSecret('s') };
    await fixtures.seed(store, { clusters: [cluster], nodes: [node] });
    // every commit takes longer than the grace, as when etcd is changing members
    const commit = store.commit.bind(store);
    store.commit = async (w) => {
      await new Promise((r) => setTimeout(r, 250));
      return commit(w);
    };
    const dispatcher = new Dispatcher({ store, clock: { now: () => Date.now() }, managerId: 'm1', managerAddr: 'x' });
    const server = new grpc.Server();
    server.addService(DispatcherService, dispatcher.service());
    const addr = `unix://${dir}/d.sock`;
    await new Promise<void>((res, rej) => server.bindAsync(addr, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
    const a = new Agent({ nodeId: 'slow', nodeSecret: 's', managers: [addr], addr: '127.0.0.1', description: () => node.description!, tasks: new FakeTasks() });
    t.after(async () => {
      await a.stop();
      await dispatcher.stop();
      server.forceShutdown();
      await rm(dir, { recursive: true, force: true });
    });
    let drops = 0;
    a.start();
    await until(() => a.connected() || 'not connected');
    const end = Date.now() + 1000;
    while (Date.now() < end) {
      if (!a.connected()) drops++;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(drops, 0, 'the session stayed up');
  });
});

describe('agent: a manager that never answers Register', () => {
  test('session: the agent gives up on a manager that accepts the stream but never answers Register, and registers with the next', async (t) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-dispatcher-'));
    const store = new MemoryStore();
    const node = { ...fixtures.node({ id: 'n1', state: 'unknown' }), secretHash: hashSecret('s') };
    await fixtures.seed(store, { clusters: [fixtures.cluster({})], nodes: [node] });
    const dispatcher = new Dispatcher({ store, clock: { now: () => Date.now() }, managerId: 'm1', managerAddr: 'x' });
    // the silent one: takes the stream, reads, never writes (as a manager whose role stopped under it)
    const silent = new grpc.Server();
    const held: grpc.ServerDuplexStream<unknown, unknown>[] = [];
    silent.addService(DispatcherService, { ...dispatcher.service(), session: (call: grpc.ServerDuplexStream<unknown, unknown>) => void held.push(call) });
    const real = new grpc.Server();
    real.addService(DispatcherService, dispatcher.service());
    const silentAddr = `unix://${dir}/silent.sock`;
    const realAddr = `unix://${dir}/real.sock`;
    for (const [s, a] of [[silent, silentAddr], [real, realAddr]] as const) {
      await new Promise<void>((res, rej) => s.bindAsync(a, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
    }
    const logs: string[] = [];
    const a = new Agent({
      nodeId: 'n1', nodeSecret: 's', managers: [silentAddr, realAddr], addr: '127.0.0.1', description: () => node.description!, tasks: new FakeTasks(),
      registerTimeoutMs: 300, log: (m) => logs.push(m),
    });
    t.after(async () => {
      await a.stop();
      await dispatcher.stop();
      silent.forceShutdown();
      real.forceShutdown();
      await rm(dir, { recursive: true, force: true });
    });
    a.start();
    await until(() => a.connected() || `not connected: ${logs.join(' | ')}`);
    assert.equal(held.length, 1, 'it tried the silent manager first');
    assert.ok(logs.some((l) => /no answer to Register within/.test(l)), logs.join(' | '));
  });
});
