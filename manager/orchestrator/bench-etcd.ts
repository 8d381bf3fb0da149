// End-to-end throughput of the leader's loops on a real etcd (a throwaway member in a temp dir):
// one service of N replicas on M nodes, from service create to every task ASSIGNED, wall clock.
// Run: node_modules/.bin/node manager/orchestrator/bench-etcd.ts [replicas] [nodes]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import { Allocator } from '../allocator/allocator-loop.ts';
import { silentLog, systemClock } from '../controller.ts';
import { NodeHealth } from '../nodehealth/node-health-loop.ts';
import { TaskReaper } from '../reaper/reaper-loop.ts';
import { Scheduler } from '../scheduler/scheduler-loop.ts';
import { EtcdStore } from '../store/etcd.ts';
import { startEtcdMember } from '../store/etcd-member.ts';
import { fixtures as f } from '../store/fixtures.ts';
import { GlobalOrchestrator } from './global-loop.ts';
import { ReplicatedOrchestrator } from './replicated-loop.ts';

const REPLICAS = Number(process.argv[2] ?? 10_000);
const NODES = Number(process.argv[3] ?? 1_000);

const dataDir = await mkdtemp(join(tmpdir(), 'gantry-bench-etcd-'));
const member = await startEtcdMember({ dataDir, name: 'bench', host: '127.0.0.1' });
const store = await EtcdStore.open({ endpoints: [member.clientUrl], managerId: 'bench' });
try {
  const nodes = Array.from({ length: NODES }, (_, i) => f.node({ id: `node-${i}` }));
  await f.seed(store, { clusters: [f.cluster()], nodes, sessions: nodes.map((n) => f.session({ nodeId: n.id })) });
  const deps = { store, clock: systemClock, log: { ...silentLog, error: (m: string) => console.error(m.split('\n')[0]), warn: (m: string) => console.error(m) } };
  const loops = [new NodeHealth(deps), new ReplicatedOrchestrator(deps), new GlobalOrchestrator(deps), new TaskReaper(deps), new Allocator(deps), new Scheduler(deps)];
  for (const l of loops) l.start();
  await new Promise((r) => setTimeout(r, 200));
  const t0 = performance.now();
  await f.seed(store, { services: [f.service({ id: 's', replicas: REPLICAS })] });
  for (;;) {
    const ts = store.view().tasksByService('s');
    if (ts.length === REPLICAS && ts.every((t) => t.status?.state === TaskState.TASK_STATE_ASSIGNED)) break;
    if (ts.length > REPLICAS || performance.now() - t0 > 120_000) throw new Error(`not converged: ${ts.length} tasks`);
    await new Promise((r) => setTimeout(r, 5));
  }
  const ms = performance.now() - t0;
  console.log(`etcd: ${REPLICAS} replicas on ${NODES} nodes: all ASSIGNED in ${ms.toFixed(0)} ms = ${Math.round((REPLICAS / ms) * 1000).toLocaleString('en')} tasks/s`);
  await Promise.all(loops.map((l) => l.stop()));
} finally {
  await store.close().catch(() => {});
  await member.stop().catch(() => {});
  await rm(dataDir, { recursive: true, force: true });
}
