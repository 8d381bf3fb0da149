// Throughput of the pure scheduler: 10,000 PENDING tasks on 1,000 nodes in one schedule() call, in
// a few shapes (plain spread, constraints + reservations, zone preference, many small services).
// Run: node_modules/.bin/node manager/scheduler/bench.ts [tasks] [nodes]
import type { Task } from '../../proto/gen/gantry/v1/objects.ts';
import { fixtures as f } from '../store/fixtures.ts';
import { schedule } from './schedule.ts';

const TASKS = Number(process.argv[2] ?? 10_000);
const NODES = Number(process.argv[3] ?? 1_000);

const nodes = Array.from({ length: NODES }, (_, i) =>
  f.node({ id: `node-${i}`, labels: { zone: `z${i % 5}`, tier: i % 2 ? 'web' : 'db' }, cpus: 64, memory: '256GiB' }),
);

function pending(services: ReturnType<typeof f.service>[], total: number): Task[] {
  const per = Math.ceil(total / services.length);
  const out: Task[] = [];
  for (const s of services) for (let i = 1; i <= per && out.length < total; i++) out.push(f.task({ id: `${s.id}-${i}`, service: s, slot: i, state: 'pending' }));
  return out;
}

const shapes: Array<[string, () => Task[]]> = [
  ['one service, spread only', () => pending([f.service({ id: 'plain' })], TASKS)],
  [
    'one service, constraint + cpu/memory reservations',
    () => pending([f.service({ id: 'res', constraints: ['node.labels.tier==web'], reserveCpus: 0.1, reserveMemory: '64MiB' })], TASKS),
  ],
  ['one service, spread=node.labels.zone', () => pending([f.service({ id: 'zone', spread: ['node.labels.zone'] })], TASKS)],
  ['100 services of 100 tasks', () => pending(Array.from({ length: 100 }, (_, i) => f.service({ id: `s${i}` })), TASKS)],
];

for (const [name, make] of shapes) {
  const tasks = make();
  schedule({ nodes, tasks }); // warm-up
  const runs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = process.hrtime.bigint();
    const actions = schedule({ nodes, tasks });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (actions.filter((a) => a.kind === 'assign').length !== tasks.length) throw new Error(`${name}: not all placed`);
    runs.push(ms);
  }
  runs.sort((a, b) => a - b);
  const median = runs[2];
  console.log(`${name.padEnd(52)} ${tasks.length} tasks / ${NODES} nodes: median ${median.toFixed(1)} ms = ${Math.round((tasks.length / median) * 1000).toLocaleString('en')} tasks/s`);
}
