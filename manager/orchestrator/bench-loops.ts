// End-to-end throughput of the leader's loops on a MemoryStore: one service of N replicas on M
// nodes, from service create to every task ASSIGNED, timed on the wall clock (fake time advances
// in 10 ms steps, i.e. debounces cost no wall time). Run: node_modules/.bin/node manager/orchestrator/bench-loops.ts [replicas] [nodes]
import { TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import { fixtures as f } from '../store/fixtures.ts';
import { Harness } from './harness.ts';

const REPLICAS = Number(process.argv[2] ?? 10_000);
const NODES = Number(process.argv[3] ?? 1_000);

const h = new Harness();
const nodes = Array.from({ length: NODES }, (_, i) => f.node({ id: `node-${i}` }));
await f.seed(h.store, { clusters: [f.cluster()], nodes, sessions: nodes.map((n) => f.session({ nodeId: n.id })) });
h.start();
await h.run(50);
const t0 = process.hrtime.bigint();
const fake0 = h.clock.now();
await f.seed(h.store, { services: [f.service({ id: 's', replicas: REPLICAS })] });
let steps = 0;
for (;;) {
  await h.run(10);
  steps++;
  const ts = h.tasks('s');
  if (ts.length === REPLICAS && ts.every((t) => t.status?.state === TaskState.TASK_STATE_ASSIGNED)) break;
  if (steps > 1000) {
    const byState = new Map<number, number>();
    for (const t of ts) byState.set(t.status?.state ?? 0, (byState.get(t.status?.state ?? 0) ?? 0) + 1);
    throw new Error(`did not converge: tasks by state ${JSON.stringify([...byState])}`);
  }
}
const ms = Number(process.hrtime.bigint() - t0) / 1e6;
console.log(
  `${REPLICAS} replicas on ${NODES} nodes: all ASSIGNED after ${h.clock.now() - fake0} ms of fake time (debounces), ${ms.toFixed(0)} ms wall = ${Math.round((REPLICAS / ms) * 1000).toLocaleString('en')} tasks/s`,
);
h.stop();
