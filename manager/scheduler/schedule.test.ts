// Tests of the scheduler's pure parts: every filter's check and explain, the combined explanation,
// spread and preference evenness, resource accounting, max replicas, global validation, batches.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Node, PublishMode, type Task } from '../../proto/gen/gantry/v1/objects.ts';
import { fixtures as f, type NodeOptions, type ServiceOptions } from '../store/fixtures.ts';
import {
  constraintFilter,
  cpuFilter,
  downFilter,
  drainFilter,
  explainFailures,
  type Filter,
  hostPortFilter,
  maxReplicasFilter,
  memoryFilter,
  pauseFilter,
  pipelineFor,
  platformFilter,
  readyFilter,
} from './filters.ts';
import { buildNodeInfos, emptyInfo } from './nodeinfo.ts';
import { ASSIGNED_MESSAGE, applySchedule, type SchedulerAction, schedule } from './schedule.ts';
import { formatBytes, formatCpus } from './units.ts';

function pending(service: ReturnType<typeof f.service>, n: number, first = 1): Task[] {
  return Array.from({ length: n }, (_, i) => f.task({ id: `${service.id}-${first + i}`, service, slot: first + i, state: 'pending' }));
}

function nodesOf(...opts: NodeOptions[]): Node[] {
  return opts.map((o) => f.node(o));
}

function placements(actions: SchedulerAction[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const a of actions) if (a.kind === 'assign') m.set(a.nodeId, (m.get(a.nodeId) ?? 0) + 1);
  return m;
}

describe('scheduler filters', () => {
  const t = f.task({ state: 'pending' });
  const spec = (o: ServiceOptions) => f.taskSpec(o);
  const checks: Array<{ name: string; filter: Filter; node: NodeOptions; ok: boolean; explain1: string; explain2: string; busy?: Task[] }> = [
    { name: 'down rejects a DOWN node', filter: downFilter, node: { state: 'down' }, ok: false, explain1: '1 node is down', explain2: '2 nodes are down' },
    { name: 'down accepts a READY node', filter: downFilter, node: {}, ok: true, explain1: '1 node is down', explain2: '2 nodes are down' },
    {
      name: 'ready rejects a disconnected node',
      filter: readyFilter,
      node: { state: 'disconnected' },
      ok: false,
      explain1: '1 node is not ready (disconnected or not yet reporting)',
      explain2: '2 nodes are not ready (disconnected or not yet reporting)',
    },
    { name: 'ready accepts a READY node', filter: readyFilter, node: {}, ok: true, explain1: '1 node is not ready (disconnected or not yet reporting)', explain2: '2 nodes are not ready (disconnected or not yet reporting)' },
    { name: 'drain rejects a draining node', filter: drainFilter, node: { availability: 'drain' }, ok: false, explain1: '1 node is draining', explain2: '2 nodes are draining' },
    { name: 'pause rejects a paused node', filter: pauseFilter, node: { availability: 'pause' }, ok: false, explain1: '1 node is paused', explain2: '2 nodes are paused' },
    { name: 'pause accepts an active node', filter: pauseFilter, node: {}, ok: true, explain1: '1 node is paused', explain2: '2 nodes are paused' },
    {
      name: 'constraint == on a label',
      filter: constraintFilter('node.labels.zone==a'),
      node: { labels: { zone: 'b' } },
      ok: false,
      explain1: '1 node does not match node.labels.zone==a',
      explain2: '2 nodes do not match node.labels.zone==a',
    },
    { name: 'constraint == holds', filter: constraintFilter('node.labels.zone==a'), node: { labels: { zone: 'a' } }, ok: true, explain1: '1 node does not match node.labels.zone==a', explain2: '2 nodes do not match node.labels.zone==a' },
    { name: 'constraint != holds when the label is absent', filter: constraintFilter('node.labels.zone!=a'), node: {}, ok: true, explain1: '1 node does not match node.labels.zone!=a', explain2: '2 nodes do not match node.labels.zone!=a' },
    { name: 'constraint on role', filter: constraintFilter('node.role==manager'), node: { role: 'worker' }, ok: false, explain1: '1 node does not match node.role==manager', explain2: '2 nodes do not match node.role==manager' },
    { name: 'constraint on hostname', filter: constraintFilter('node.hostname==h1'), node: { hostname: 'h1' }, ok: true, explain1: '1 node does not match node.hostname==h1', explain2: '2 nodes do not match node.hostname==h1' },
    { name: 'constraint on node.id', filter: constraintFilter('node.id!=abc'), node: { id: 'abc' }, ok: false, explain1: '1 node does not match node.id!=abc', explain2: '2 nodes do not match node.id!=abc' },
    { name: 'constraint on engine labels', filter: constraintFilter('engine.labels.gpu==yes'), node: { engineLabels: { gpu: 'yes' } }, ok: true, explain1: '1 node does not match engine.labels.gpu==yes', explain2: '2 nodes do not match engine.labels.gpu==yes' },
    { name: 'constraint on os', filter: constraintFilter('node.platform.os==windows'), node: {}, ok: false, explain1: '1 node does not match node.platform.os==windows', explain2: '2 nodes do not match node.platform.os==windows' },
    { name: 'constraint on arch', filter: constraintFilter('node.platform.arch==x86_64'), node: {}, ok: true, explain1: '1 node does not match node.platform.arch==x86_64', explain2: '2 nodes do not match node.platform.arch==x86_64' },
    {
      name: 'a malformed constraint matches no node',
      filter: constraintFilter('zone=a'),
      node: {},
      ok: false,
      explain1: '1 node does not match "zone=a" (not a valid constraint)',
      explain2: '2 nodes do not match "zone=a" (not a valid constraint)',
    },
    {
      name: 'platform: arm64 only',
      filter: platformFilter({ ...spec({}), placement: { constraints: [], preferences: [], maxReplicas: 0, platforms: [{ os: 'linux', architecture: 'arm64' }] } })!,
      node: {},
      ok: false,
      explain1: '1 node does not run linux/arm64',
      explain2: '2 nodes do not run linux/arm64',
    },
    {
      name: 'platform: amd64 matches x86_64',
      filter: platformFilter({ ...spec({}), placement: { constraints: [], preferences: [], maxReplicas: 0, platforms: [{ os: 'linux', architecture: 'amd64' }] } })!,
      node: {},
      ok: true,
      explain1: '1 node does not run linux/amd64',
      explain2: '2 nodes do not run linux/amd64',
    },
    { name: 'memory: too little', filter: memoryFilter(spec({ reserveMemory: '512MiB' }))!, node: { memory: '256MiB' }, ok: false, explain1: '1 node lacks 512MiB memory', explain2: '2 nodes lack 512MiB memory' },
    { name: 'memory: enough', filter: memoryFilter(spec({ reserveMemory: '512MiB' }))!, node: { memory: '512MiB' }, ok: true, explain1: '1 node lacks 512MiB memory', explain2: '2 nodes lack 512MiB memory' },
    {
      name: 'memory: reservations of live tasks count',
      filter: memoryFilter(spec({ reserveMemory: '1GiB' }))!,
      node: { id: 'm', memory: '2GiB' },
      busy: [f.task({ nodeId: 'm', state: 'running', spec: spec({ reserveMemory: '1.5GiB' }) })],
      ok: false,
      explain1: '1 node lacks 1GiB memory',
      explain2: '2 nodes lack 1GiB memory',
    },
    {
      name: 'memory: stopped tasks hold nothing',
      filter: memoryFilter(spec({ reserveMemory: '1GiB' }))!,
      node: { id: 'm', memory: '2GiB' },
      busy: [f.task({ nodeId: 'm', state: 'failed', spec: spec({ reserveMemory: '1.5GiB' }) })],
      ok: true,
      explain1: '1 node lacks 1GiB memory',
      explain2: '2 nodes lack 1GiB memory',
    },
    {
      name: 'memory: a task asked to shut down but still running still holds',
      filter: memoryFilter(spec({ reserveMemory: '1GiB' }))!,
      node: { id: 'm', memory: '2GiB' },
      busy: [f.task({ nodeId: 'm', state: 'running', desiredState: 'shutdown', spec: spec({ reserveMemory: '1.5GiB' }) })],
      ok: false,
      explain1: '1 node lacks 1GiB memory',
      explain2: '2 nodes lack 1GiB memory',
    },
    { name: 'cpu: too few', filter: cpuFilter(spec({ reserveCpus: 1.5 }))!, node: { cpus: 1 }, ok: false, explain1: '1 node lacks 1.5 CPUs', explain2: '2 nodes lack 1.5 CPUs' },
    { name: 'cpu: one CPU reads singular', filter: cpuFilter(spec({ reserveCpus: 1 }))!, node: { cpus: 2 }, ok: true, explain1: '1 node lacks 1 CPU', explain2: '2 nodes lack 1 CPU' },
    {
      name: 'max replicas: reached',
      filter: maxReplicasFilter(spec({ maxReplicasPerNode: 1 }))!,
      node: { id: 'r' },
      busy: [f.task({ nodeId: 'r', serviceId: t.serviceId, state: 'running' })],
      ok: false,
      explain1: '1 node already runs 1 task of this service (max 1 per node)',
      explain2: '2 nodes already run 1 task of this service (max 1 per node)',
    },
    {
      name: 'max replicas: other services do not count',
      filter: maxReplicasFilter(spec({ maxReplicasPerNode: 2 }))!,
      node: { id: 'r' },
      busy: [f.task({ nodeId: 'r', serviceId: 'other', state: 'running' }), f.task({ nodeId: 'r', serviceId: t.serviceId, state: 'running' })],
      ok: true,
      explain1: '1 node already runs 2 tasks of this service (max 2 per node)',
      explain2: '2 nodes already run 2 tasks of this service (max 2 per node)',
    },
  ];
  for (const c of checks) {
    it(`filters: ${c.name}`, () => {
      const n = f.node(c.node);
      const info = buildNodeInfos([n], c.busy ?? []).get(n.id) ?? emptyInfo(n);
      assert.equal(c.filter.check(n, t, info), c.ok);
      assert.equal(c.filter.explain(1), c.explain1);
      assert.equal(c.filter.explain(2), c.explain2);
    });
  }

  it('filters: the pipeline holds only the filters a spec needs, in order', () => {
    assert.deepEqual(
      pipelineFor(f.taskSpec({})).map((x) => x.name),
      ['down', 'ready', 'drain', 'pause'],
    );
    assert.deepEqual(
      pipelineFor(f.taskSpec({ constraints: ['node.labels.a==1', 'node.role==worker'], reserveMemory: '1GiB', reserveCpus: 1, maxReplicasPerNode: 2 })).map((x) => x.name),
      ['down', 'ready', 'drain', 'pause', 'constraint node.labels.a==1', 'constraint node.role==worker', 'memory', 'cpu', 'max-replicas'],
    );
  });

  it('units: sizes and CPUs read as a user writes them', () => {
    assert.equal(formatBytes(512 * 1024 ** 2), '512MiB');
    assert.equal(formatBytes(1.5 * 1024 ** 3), '1.5GiB');
    assert.equal(formatBytes(1000), '1000B');
    assert.equal(formatCpus(500_000_000), '0.5 CPUs');
    assert.equal(formatCpus(2e9), '2 CPUs');
  });
});

describe('scheduler explanations', () => {
  it('explain: counts each node once, against the first filter that rejects it, most common first', () => {
    const svc = f.service({ id: 's', replicas: 1, constraints: ['node.labels.zone==a'], reserveMemory: '512MiB' });
    const nodes = nodesOf(
      { id: 'n1', labels: { zone: 'a' }, memory: '256MiB' },
      { id: 'n2', labels: { zone: 'b' } },
      { id: 'n3' },
      { id: 'n4', labels: { zone: 'a' }, availability: 'drain' },
    );
    const actions = schedule({ nodes, tasks: pending(svc, 1) });
    assert.equal(actions.length, 1);
    assert.equal(actions[0].kind, 'explain');
    assert.equal(
      (actions[0] as { reason: string }).reason,
      'no suitable node (2 nodes do not match node.labels.zone==a; 1 node is draining; 1 node lacks 512MiB memory)',
    );
  });

  it('explain: an empty cluster says so', () => {
    const svc = f.service({ id: 's' });
    const actions = schedule({ nodes: [], tasks: pending(svc, 1) });
    assert.deepEqual(
      actions.map((a) => (a.kind === 'explain' ? a.reason : a.kind)),
      ['no suitable node (the cluster has no nodes)'],
    );
  });

  it('explain: the text is written to message and err, and not written again when unchanged', () => {
    const svc = f.service({ id: 's', constraints: ['node.labels.zone==a'] });
    const nodes = nodesOf({ id: 'n1' });
    const [a] = schedule({ nodes, tasks: pending(svc, 1) });
    const written = applySchedule(a, 5);
    assert.equal(written.status?.message, 'no suitable node (1 node does not match node.labels.zone==a)');
    assert.equal(written.status?.err, written.status?.message);
    assert.equal(written.status?.state, f.taskState('pending'));
    assert.deepEqual(schedule({ nodes, tasks: [written] }), []);
  });

  it('explain: tasks left over when capacity runs out in a batch get the reason', () => {
    const svc = f.service({ id: 's', replicas: 3, reserveMemory: '1GiB' });
    const nodes = nodesOf({ id: 'n1', memory: '2GiB' });
    const actions = schedule({ nodes, tasks: pending(svc, 3) });
    assert.deepEqual(
      actions.map((a) => (a.kind === 'assign' ? `assign ${a.nodeId}` : a.reason)),
      ['assign n1', 'assign n1', 'no suitable node (1 node lacks 1GiB memory)'],
    );
  });
});

describe('scheduler placement', () => {
  it('assign: writes ASSIGNED with the node and the message', () => {
    const svc = f.service({ id: 's' });
    const [a] = schedule({ nodes: nodesOf({ id: 'n1' }), tasks: pending(svc, 1) });
    const t = applySchedule(a, 7);
    assert.equal(t.nodeId, 'n1');
    assert.equal(t.status?.state, f.taskState('assigned'));
    assert.equal(t.status?.message, ASSIGNED_MESSAGE);
    assert.equal(t.status?.err, '');
    assert.equal(t.status?.timestamp, 7);
  });

  it('spread: replicas go to distinct nodes first', () => {
    const svc = f.service({ id: 's', replicas: 3 });
    const m = placements(schedule({ nodes: nodesOf({ id: 'a' }, { id: 'b' }, { id: 'c' }), tasks: pending(svc, 3) }));
    assert.deepEqual([...m.entries()].sort(), [
      ['a', 1],
      ['b', 1],
      ['c', 1],
    ]);
  });

  it('spread: fewest tasks of this service first, then fewest tasks overall', () => {
    const svc = f.service({ id: 's', replicas: 2 });
    const other = f.service({ id: 'o' });
    const busy = [
      f.task({ service: svc, nodeId: 'a', slot: 9, state: 'running' }),
      f.task({ service: other, nodeId: 'b', slot: 1, state: 'running' }),
      f.task({ service: other, nodeId: 'b', slot: 2, state: 'running' }),
      f.task({ service: other, nodeId: 'c', slot: 3, state: 'running' }),
    ];
    const actions = schedule({ nodes: nodesOf({ id: 'a' }, { id: 'b' }, { id: 'c' }), tasks: [...busy, ...pending(svc, 2)] });
    // a already runs one task of s; b (2 tasks) and c (1 task) run none: c first (fewer tasks
    // overall); then b, which still has no task of s while a and c have one each.
    assert.deepEqual(
      actions.map((a) => (a.kind === 'assign' ? a.nodeId : a.reason)),
      ['c', 'b'],
    );
  });

  it('spread: tasks on paused, drained or down nodes do not attract or block placements', () => {
    const svc = f.service({ id: 's', replicas: 2 });
    const nodes = nodesOf({ id: 'a', availability: 'pause' }, { id: 'b', state: 'down' }, { id: 'c' });
    const m = placements(schedule({ nodes, tasks: pending(svc, 2) }));
    assert.deepEqual([...m.entries()], [['c', 2]]);
  });

  it('resources: reservations accumulate within a batch', () => {
    const svc = f.service({ id: 's', replicas: 4, reserveCpus: 1 });
    const m = placements(schedule({ nodes: nodesOf({ id: 'a', cpus: 3 }, { id: 'b', cpus: 1 }), tasks: pending(svc, 4) }));
    assert.deepEqual([...m.entries()].sort(), [
      ['a', 3],
      ['b', 1],
    ]);
  });

  it('max replicas: at most N per node, the rest explained', () => {
    const svc = f.service({ id: 's', replicas: 5, maxReplicasPerNode: 2 });
    const actions = schedule({ nodes: nodesOf({ id: 'a' }, { id: 'b' }), tasks: pending(svc, 5) });
    assert.deepEqual([...placements(actions).entries()].sort(), [
      ['a', 2],
      ['b', 2],
    ]);
    assert.deepEqual(
      actions.filter((a) => a.kind === 'explain').map((a) => (a as { reason: string }).reason),
      ['no suitable node (2 nodes already run 2 tasks of this service (max 2 per node))'],
    );
  });

  it('preferences: spread evenly over label values, then over nodes within a value', () => {
    const svc = f.service({ id: 's', replicas: 12, spread: ['node.labels.zone'] });
    // zone a has 1 node, zone b has 3, zone c has 2: each zone gets 4 tasks.
    const nodes = nodesOf(
      { id: 'a1', labels: { zone: 'a' } },
      { id: 'b1', labels: { zone: 'b' } },
      { id: 'b2', labels: { zone: 'b' } },
      { id: 'b3', labels: { zone: 'b' } },
      { id: 'c1', labels: { zone: 'c' } },
      { id: 'c2', labels: { zone: 'c' } },
    );
    const m = placements(schedule({ nodes, tasks: pending(svc, 12) }));
    const zone = (id: string) => id[0];
    const perZone = new Map<string, number>();
    for (const [id, n] of m) perZone.set(zone(id), (perZone.get(zone(id)) ?? 0) + n);
    assert.deepEqual([...perZone.entries()].sort(), [
      ['a', 4],
      ['b', 4],
      ['c', 4],
    ]);
    assert.deepEqual([m.get('c1'), m.get('c2')], [2, 2]);
    assert.ok(Math.max(m.get('b1')!, m.get('b2')!, m.get('b3')!) - Math.min(m.get('b1')!, m.get('b2')!, m.get('b3')!) <= 1);
  });

  it('preferences: existing tasks count, so new ones even out the zones', () => {
    const svc = f.service({ id: 's', replicas: 4, spread: ['node.labels.zone'] });
    const nodes = nodesOf({ id: 'a1', labels: { zone: 'a' } }, { id: 'b1', labels: { zone: 'b' } });
    const busy = [1, 2, 3].map((slot) => f.task({ service: svc, slot, nodeId: 'a1', state: 'running' }));
    const actions = schedule({ nodes, tasks: [...busy, ...pending(svc, 3, 4)] });
    assert.deepEqual([...placements(actions).entries()], [['b1', 3]]);
  });

  it('preferences: nodes without the label form their own group; a full zone gives way', () => {
    const svc = f.service({ id: 's', replicas: 6, spread: ['node.labels.zone'], reserveCpus: 1 });
    const nodes = nodesOf({ id: 'a1', labels: { zone: 'a' }, cpus: 1 }, { id: 'b1', labels: { zone: 'b' }, cpus: 8 }, { id: 'x1', cpus: 8 });
    const m = placements(schedule({ nodes, tasks: pending(svc, 6) }));
    // a1 fits one task; the other five split 3/2 between zone b and the unlabelled group ("" sorts first).
    assert.deepEqual([...m.entries()].sort(), [
      ['a1', 1],
      ['b1', 2],
      ['x1', 3],
    ]);
  });

  it('global: a preset node is validated, not chosen', () => {
    const svc = f.service({ id: 'g', mode: 'global', reserveMemory: '1GiB' });
    const ok = f.task({ id: 'g1', service: svc, nodeId: 'a', state: 'pending' });
    const small = f.task({ id: 'g2', service: svc, nodeId: 'b', state: 'pending' });
    const gone = f.task({ id: 'g3', service: svc, nodeId: 'zz', state: 'pending' });
    const actions = schedule({ nodes: nodesOf({ id: 'a' }, { id: 'b', memory: '512MiB' }), tasks: [ok, small, gone] });
    assert.deepEqual(
      actions.map((a) => `${a.task.id} ${a.kind === 'assign' ? a.nodeId : a.reason}`),
      ['g1 a', 'g2 no suitable node (1 node lacks 1GiB memory)', 'g3 no suitable node (node zz is not in the cluster)'],
    );
  });

  it('faulty nodes: a node where the service failed 5 times in 5 minutes is tried last', () => {
    const svc = f.service({ id: 's', replicas: 2 });
    const now = 10_000_000;
    const failures = (ago: number) =>
      [1, 2, 3, 4, 5].map((i) => f.task({ service: svc, slot: 10 + i, nodeId: 'a', state: 'failed', desiredState: 'shutdown', timestamp: now - ago }));
    const nodes = nodesOf({ id: 'a' }, { id: 'b' });
    // Recent failures: both new tasks avoid a while b has room (b is chosen even with a task of s on it).
    let actions = schedule({ nodes, tasks: [...failures(60_000), ...pending(svc, 2)], now });
    assert.deepEqual(actions.map((x) => (x.kind === 'assign' ? x.nodeId : x.reason)), ['b', 'b']);
    // Old failures do not count.
    actions = schedule({ nodes, tasks: [...failures(6 * 60_000), ...pending(svc, 2)], now });
    assert.deepEqual(actions.map((x) => (x.kind === 'assign' ? x.nodeId : x.reason)).sort(), ['a', 'b']);
    // A faulty node is still used when it is the only one.
    actions = schedule({ nodes: nodesOf({ id: 'a' }), tasks: [...failures(60_000), ...pending(svc, 1)], now });
    assert.deepEqual(actions.map((x) => (x.kind === 'assign' ? x.nodeId : x.reason)), ['a']);
  });

  it('host ports: one task per node per host-mode port; the rest explained; stopped tasks free it', () => {
    const svc = f.service({ id: 's', replicas: 3 });
    const endpoint = {
      spec: { mode: 0 as const, ports: [{ name: '', protocol: 'tcp', targetPort: 80, publishedPort: 8080, publishMode: PublishMode.PUBLISH_MODE_HOST }] },
      ports: [],
      virtualIps: [],
    };
    const withPort = (t: Task) => ({ ...t, endpoint });
    const nodes = nodesOf({ id: 'a' }, { id: 'b' });
    const actions = schedule({ nodes, tasks: pending(svc, 3).map(withPort) });
    assert.deepEqual(
      actions.map((a) => (a.kind === 'assign' ? a.nodeId : a.reason)),
      ['a', 'b', 'no suitable node (2 nodes already use host port 8080/tcp)'],
    );
    const stopped = withPort(f.task({ service: svc, slot: 9, nodeId: 'a', state: 'failed' }));
    const live = withPort(f.task({ service: svc, slot: 8, nodeId: 'b', state: 'running' }));
    assert.deepEqual(
      schedule({ nodes, tasks: [stopped, live, ...pending(svc, 1).map(withPort)] }).map((a) => (a.kind === 'assign' ? a.nodeId : a.reason)),
      ['a'],
    );
    // Ingress-mode ports do not hold the host port.
    const ingress = { ...endpoint, spec: { ...endpoint.spec, ports: [{ ...endpoint.spec.ports[0], publishMode: PublishMode.PUBLISH_MODE_INGRESS }] } };
    assert.equal(schedule({ nodes, tasks: pending(svc, 3).map((t) => ({ ...t, endpoint: ingress })) }).filter((a) => a.kind === 'assign').length, 3);
  });

  it('filters: host ports explain with port/protocol', () => {
    assert.equal(hostPortFilter(['tcp/8080'])!.explain(1), '1 node already uses host port 8080/tcp');
    assert.equal(hostPortFilter(['tcp/8080', 'udp/53'])!.explain(2), '2 nodes already use host ports 8080/tcp, 53/udp');
    assert.equal(hostPortFilter([]), undefined);
  });

  it('batch: 1000 tasks on 100 nodes, 10 each, in one call', () => {
    const svc = f.service({ id: 's', replicas: 1000, reserveMemory: '64MiB' });
    const nodes = Array.from({ length: 100 }, (_, i) => f.node({ id: `n${String(i).padStart(3, '0')}` }));
    const actions = schedule({ nodes, tasks: pending(svc, 1000) });
    assert.equal(actions.length, 1000);
    const m = placements(actions);
    assert.equal(m.size, 100);
    for (const n of m.values()) assert.equal(n, 10);
  });

  it('batch: several services in one call are each spread', () => {
    const a = f.service({ id: 'a', replicas: 4 });
    const b = f.service({ id: 'b', replicas: 4 });
    const nodes = nodesOf({ id: 'n1' }, { id: 'n2' }, { id: 'n3' }, { id: 'n4' });
    const actions = schedule({ nodes, tasks: [...pending(a, 4), ...pending(b, 4)] });
    const per = new Map<string, Set<string>>();
    for (const x of actions) if (x.kind === 'assign') per.set(x.task.serviceId, (per.get(x.task.serviceId) ?? new Set()).add(x.nodeId));
    assert.equal(per.get('a')?.size, 4);
    assert.equal(per.get('b')?.size, 4);
    assert.deepEqual([...placements(actions).values()], [2, 2, 2, 2]);
  });

  it('explainFailures: no counts at all means no nodes', () => {
    assert.equal(explainFailures([downFilter], [0]), 'no suitable node (the cluster has no nodes)');
  });
});
