// Measures the store on a throwaway etcd: commit latency, commit-to-other-manager's-view latency,
// batch throughput, and MemoryStore apply cost at 10k tasks. Run: node_modules/.bin/node manager/store/bench.ts
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EtcdStore } from './etcd.ts';
import { startEtcdMember } from './etcd-member.ts';
import { fixtures } from './fixtures.ts';
import { MemoryStore } from './memory.ts';
import type { Write } from './types.ts';

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))];
const fmt = (xs: number[]) => `p50 ${pct(xs, 50).toFixed(2)} ms, p99 ${pct(xs, 99).toFixed(2)} ms (n=${xs.length})`;

const dir = await mkdtemp(join(tmpdir(), 'gantry-store-bench-'));
const member = await startEtcdMember({ dataDir: dir, name: 'bench', host: '127.0.0.1' });
try {
  const a = await EtcdStore.open({ endpoints: [member.clientUrl], managerId: 'a' });
  const b = await EtcdStore.open({ endpoints: [member.clientUrl], managerId: 'b' });
  const commit: number[] = [];
  const visible: number[] = [];
  for (let i = 0; i < 200; i++) {
    const n = fixtures.node();
    const t0 = performance.now();
    const r = await a.commit([{ op: 'create', kind: 'nodes', object: n }]);
    commit.push(performance.now() - t0);
    if (!r.ok) throw new Error('conflict');
    await b.waitFor(r.revision);
    visible.push(performance.now() - t0);
  }
  console.log(`commit (1 create, etcd fsync):      ${fmt(commit)}`);
  console.log(`commit → other store's view:        ${fmt(visible)}`);
  const svc = fixtures.service({ replicas: 5000 });
  for (const count of [1000, 5000]) {
    const tasks = Array.from({ length: count }, (_, i) => fixtures.task({ service: svc, slot: i + 1 }));
    let t0 = performance.now();
    const r = await a.batch(tasks.map((object): Write => ({ op: 'create', kind: 'tasks', object })));
    const ms = performance.now() - t0;
    await b.waitFor(r.revision);
    console.log(`batch ${count} task creates:         ${ms.toFixed(0)} ms (${(count / (ms / 1000)).toFixed(0)} writes/s), in other view after ${(performance.now() - t0).toFixed(0)} ms`);
    await a.waitFor(r.revision);
    const updates = tasks.map((t): Write => {
      const cur = structuredClone(a.view().get('tasks', t.id)!);
      cur.status!.state = 512;
      return { op: 'update', kind: 'tasks', object: cur };
    });
    t0 = performance.now();
    const u = await a.batch(updates);
    console.log(`batch ${count} task updates:         ${(performance.now() - t0).toFixed(0)} ms, ${u.conflicts.length} conflicts`);
    await a.batch(tasks.map((t): Write => ({ op: 'delete', kind: 'tasks', id: t.id })));
  }
  await a.close();
  await b.close();
} finally {
  await member.stop();
  await rm(dir, { recursive: true, force: true });
}

// MemoryStore alone: 10k tasks, a view taken between every commit (worst case for copy-on-write).
const m = new MemoryStore();
const svc = fixtures.service({ replicas: 10_000 });
await m.batch(Array.from({ length: 10_000 }, (_, i): Write => ({ op: 'create', kind: 'tasks', object: fixtures.task({ service: svc, slot: i + 1 }) })));
const ids = m.view().list('tasks').map((t) => t.id);
const t0 = performance.now();
for (let i = 0; i < 1000; i++) {
  const v = m.view();
  const t = structuredClone(v.get('tasks', ids[i])!);
  t.status!.state = 512;
  await m.commit([{ op: 'update', kind: 'tasks', object: t }]);
}
console.log(`MemoryStore, 10k tasks, view+commit: ${((performance.now() - t0) / 1000).toFixed(3)} ms per commit`);
