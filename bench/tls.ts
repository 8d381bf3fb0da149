// The cost of mutual TLS on the dispatcher, plain TCP vs TLS 1.3 with client certificates, in the
// same run: sessions a manager accepts per second (each a new connection: handshake + Register +
// SessionInfo) and task status updates per second it absorbs into the store (in-memory store,
// real gRPC on 127.0.0.1, the real Dispatcher and authorization guard). Plain = the node-secret
// authentication gantry had before certificates.
//   node_modules/.bin/node bench/tls.ts [--nodes 200] [--tasks 20] [--rounds 3]
import * as grpc from '@grpc/grpc-js';
import { DispatcherClient, DispatcherService, type ManagerMessage, type WorkerMessage } from '../proto/gen/gantry/v1/dispatcher.ts';
import { TaskState } from '../proto/gen/gantry/v1/objects.ts';
import { guard } from '../manager/ca/authz.ts';
import { createRootCa, issue, newKeyAndCsr } from '../manager/ca/pki.ts';
import { ClusterServerCredentials, clientCredentials, TLS_CHANNEL_OPTIONS } from '../manager/ca/tls.ts';
import { Dispatcher } from '../manager/dispatcher/dispatcher.ts';
import { hashSecret } from '../manager/dispatcher/tokens.ts';
import { fixtures } from '../manager/store/fixtures.ts';
import { MemoryStore } from '../manager/store/memory.ts';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const NODES = arg('nodes', 200);
const TASKS = arg('tasks', 20);
const ROUNDS = arg('rounds', 3);
const STATES = [TaskState.TASK_STATE_ACCEPTED, TaskState.TASK_STATE_PREPARING, TaskState.TASK_STATE_READY, TaskState.TASK_STATE_STARTING, TaskState.TASK_STATE_RUNNING];

interface Creds {
  caPem: string;
  certPem: string;
  keyPem: string;
}

async function round(mode: 'plain' | 'tls', nodeCreds: Map<string, Creds>, server: Creds): Promise<{ sessionsPerSec: number; updatesPerSec: number }> {
  const store = new MemoryStore();
  const cluster = fixtures.cluster({ heartbeatPeriodMs: 5000, nodeDownGraceMs: 60_000 });
  const nodes = [...nodeCreds.keys()].map((id) => ({ ...fixtures.node({ id, state: 'unknown' }), secretHash: hashSecret('s') }));
  const tasks = nodes.flatMap((n) => Array.from({ length: TASKS }, (_, i) => fixtures.task({ id: `${n.id}-t${i}`, nodeId: n.id, state: 'assigned', slot: i + 1 })));
  await fixtures.seed(store, { clusters: [cluster], nodes, tasks });
  const ca = mode === 'tls' ? { issueNode: async () => '', rootsPem: () => server.caPem, clusterKey: () => Buffer.alloc(32) } : undefined;
  const dispatcher = new Dispatcher({ store, clock: { now: () => Date.now() }, managerId: 'm1', managerAddr: 'x', ca });
  const srv = new grpc.Server({ 'grpc.max_concurrent_streams': 100_000 });
  const impl = dispatcher.service() as unknown as grpc.UntypedServiceImplementation;
  const authz = { view: () => store.view(), now: Date.now };
  srv.addService(DispatcherService, mode === 'tls' ? guard(impl, { join: 'anyone', session: 'node', promote: 'node', renewCertificate: 'node' }, authz) : impl);
  const creds = mode === 'tls' ? new ClusterServerCredentials(server) : grpc.ServerCredentials.createInsecure();
  const port = await new Promise<number>((res, rej) => srv.bindAsync('127.0.0.1:0', creds, (e, p) => (e ? rej(e) : res(p))));
  const addr = `127.0.0.1:${port}`;

  const clients: DispatcherClient[] = [];
  const calls: grpc.ClientDuplexStream<WorkerMessage, ManagerMessage>[] = [];
  const t0 = performance.now();
  await Promise.all(
    [...nodeCreds].map(([id, c]) => {
      const client =
        mode === 'tls'
          ? new DispatcherClient(addr, clientCredentials(c), { ...TLS_CHANNEL_OPTIONS, 'grpc.use_local_subchannel_pool': 1 })
          : new DispatcherClient(addr, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
      clients.push(client);
      const call = client.session();
      calls.push(call);
      return new Promise<void>((resolve, reject) => {
        call.on('data', (m: ManagerMessage) => {
          if (m.msg?.$case === 'session') resolve();
        });
        call.on('error', (e) => reject(e));
        call.write({ msg: { $case: 'register', value: { nodeId: id, nodeSecret: 's', description: undefined, addr: '127.0.0.1' } } });
      });
    }),
  );
  const sessionsPerSec = nodeCreds.size / ((performance.now() - t0) / 1000);

  const total = nodes.length * TASKS * STATES.length;
  const t1 = performance.now();
  for (const state of STATES) {
    nodes.forEach((n, i) => {
      const updates = Array.from({ length: TASKS }, (_, k) => ({ taskId: `${n.id}-t${k}`, status: { timestamp: Date.now(), state, message: '', err: '', ports: [], health: '' } }));
      calls[i].write({ msg: { $case: 'statuses', value: { updates } } });
    });
  }
  for (;;) {
    const done = store.view().list('tasks').every((t) => t.status?.state === TaskState.TASK_STATE_RUNNING);
    if (done) break;
    await new Promise((r) => setTimeout(r, 2));
  }
  const updatesPerSec = total / ((performance.now() - t1) / 1000);

  for (const c of calls) c.cancel();
  for (const c of clients) c.close();
  await dispatcher.stop();
  srv.forceShutdown();
  return { sessionsPerSec, updatesPerSec };
}

const now = Date.now();
const root = await createRootCa('bench', now);
const mk = async (id: string, role: 'manager' | 'worker'): Promise<Creds> => {
  const k = await newKeyAndCsr();
  return { caPem: root.certPem, keyPem: k.keyPem, certPem: await issue(root, k.csrPem, { id, role, clusterId: '' }, now, 3600_000) };
};
const server = await mk('m1', 'manager');
const nodeCreds = new Map<string, Creds>();
for (let i = 0; i < NODES; i++) nodeCreds.set(`node${i}`, await mk(`node${i}`, 'worker'));

const results: Record<string, { sessionsPerSec: number; updatesPerSec: number }[]> = { plain: [], tls: [] };
for (let r = 0; r < ROUNDS; r++) {
  for (const mode of ['plain', 'tls'] as const) results[mode].push(await round(mode, nodeCreds, server));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const line = (mode: string) => {
  const s = median(results[mode].map((x) => x.sessionsPerSec));
  const u = median(results[mode].map((x) => x.updatesPerSec));
  return { s, u };
};
const p = line('plain');
const t = line('tls');
console.log(`dispatcher, ${NODES} nodes x ${TASKS} tasks x ${STATES.length} states, median of ${ROUNDS} rounds (127.0.0.1, in-memory store)`);
console.log(`                       plain TCP     mutual TLS 1.3   TLS/plain`);
console.log(`sessions accepted/s   ${p.s.toFixed(0).padStart(10)}   ${t.s.toFixed(0).padStart(14)}   ${(t.s / p.s).toFixed(2).padStart(9)}`);
console.log(`status updates/s      ${p.u.toFixed(0).padStart(10)}   ${t.u.toFixed(0).padStart(14)}   ${(t.u / p.u).toFixed(2).padStart(9)}`);
process.exit(0);
