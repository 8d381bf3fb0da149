// Unit tests of the network allocation (pure, over an in-memory store): subnets, node addresses,
// VIPs, dynamic ports, task addresses, exhaustion messages, and the per-node network state.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PublishMode } from '../../proto/gen/gantry/v1/objects.ts';
import { fixtures } from '../store/fixtures.ts';
import { MemoryStore } from '../store/memory.ts';
import type { Write } from '../store/types.ts';
import { carveSubnet, formatCidr, parseCidr, pickAddress, usableRange } from './ipam.ts';
import { networkStateFor } from './network-state.ts';
import { networkWrites } from './network-tick.ts';

describe('ipam', () => {
  test('ipam: carving skips used subnets and says when the pool is full', () => {
    const pool = parseCidr('10.0.0.0/22')!;
    const used = [parseCidr('10.0.0.0/24')!, parseCidr('10.0.2.0/23')!];
    assert.equal(formatCidr(carveSubnet(pool, 24, used)!), '10.0.1.0/24');
    assert.equal(carveSubnet(pool, 24, [...used, parseCidr('10.0.1.0/24')!]), undefined);
  });
  test('ipam: usable addresses leave out network, gateway and broadcast', () => {
    const c = parseCidr('10.99.0.0/29')!;
    assert.equal(usableRange(c).size, 5);
    const used = new Set<number>();
    const got: number[] = [];
    for (let i = 0; i < 6; i++) {
      const ip = pickAddress(c, used);
      if (ip === undefined) break;
      used.add(ip);
      got.push(ip & 255);
    }
    assert.deepEqual(got, [2, 3, 4, 5, 6]);
  });
  test('ipam: a CIDR with host bits is refused unless loose', () => {
    assert.equal(parseCidr('10.0.0.5/24'), undefined);
    assert.equal(formatCidr(parseCidr('10.0.0.5/24', true)!), '10.0.0.0/24');
    assert.equal(parseCidr('300.0.0.0/8'), undefined);
  });
});

async function apply(store: MemoryStore, writes: Write[]): Promise<void> {
  const r = await store.batch(writes);
  assert.deepEqual(r.conflicts, []);
}

describe('network allocation', () => {
  test('network allocation: system networks, node subnets, VIPs, dynamic ports and task addresses; a full network names itself and its size', async () => {
    const store = new MemoryStore();
    const n1 = fixtures.node({ id: 'node1' });
    await fixtures.seed(store, { nodes: [n1] });
    await apply(store, networkWrites(store.view(), [], true, 0).writes);
    const nets = store.view().list('networks');
    assert.deepEqual(nets.map((n) => n.spec?.name).sort(), ['bridge', 'ingress']);
    const bridge = nets.find((n) => n.spec?.name === 'bridge')!;
    assert.equal(bridge.status?.nodeAddrs.node1, '172.16.0.0/24');
    const ingress = nets.find((n) => n.spec?.ingress)!;
    assert.match(ingress.status?.nodeAddrs.node1 ?? '', /^10\.0\.0\.2\/16$/);

    await apply(store, [{ op: 'create', kind: 'networks', object: { id: 'tinyid', spec: { name: 'tiny', driver: 'overlay', subnet: '10.99.0.0/29', attachable: false, labels: {}, ingress: false } } }]);
    const svc = fixtures.service({ id: 's1', name: 'web', replicas: 6 });
    svc.spec!.task!.networks = [{ target: 'tiny', aliases: [] }];
    svc.spec!.endpoint = { mode: 0, ports: [{ name: '', protocol: 'tcp', targetPort: 80, publishedPort: 0, publishMode: PublishMode.PUBLISH_MODE_INGRESS }] };
    await fixtures.seed(store, { services: [svc] });
    await apply(store, networkWrites(store.view(), [], true, 0).writes);
    const s = store.view().get('services', 's1')!;
    assert.equal(s.endpoint?.ports[0].publishedPort, 30000);
    assert.deepEqual(s.endpoint?.virtualIps, [{ networkId: 'tinyid', addr: '10.99.0.2/29' }]);

    const tasks = Array.from({ length: 6 }, (_, i) => fixtures.task({ id: `t${i}`, service: s, slot: i + 1, state: 'new' }));
    await fixtures.seed(store, { tasks });
    const r = networkWrites(store.view(), store.view().list('tasks'), false, 0);
    assert.equal(r.tasks.length, 4, 'four addresses left after the VIP');
    for (const t of r.tasks) assert.equal(t.networks.length, 2, 'tiny + ingress');
    const held = r.writes.filter((w) => w.kind === 'tasks');
    assert.equal(held.length, 2);
    for (const w of held) {
      if (w.op === 'delete' || w.kind !== 'tasks') continue;
      assert.match(w.object.status?.message ?? '', /network "tiny" has no free address in 10\.99\.0\.0\/29 \(5 addresses, all in use\)/);
    }
  });

  test('network allocation: the network state lists ready tasks only, and remote peers with their host addresses', async () => {
    const store = new MemoryStore();
    const n1 = fixtures.node({ id: 'node1' });
    const n2 = fixtures.node({ id: 'node2' });
    n1.status!.addr = '192.0.2.1';
    n2.status!.addr = '192.0.2.2';
    await fixtures.seed(store, { nodes: [n1, n2] });
    await apply(store, [{ op: 'create', kind: 'networks', object: { id: 'front', spec: { name: 'front', driver: 'overlay', subnet: '', attachable: false, labels: {}, ingress: false } } }]);
    await apply(store, networkWrites(store.view(), [], true, 0).writes);
    const svc = fixtures.service({ id: 's1', name: 'web', replicas: 2 });
    svc.spec!.task!.networks = [{ target: 'front', aliases: [] }];
    await fixtures.seed(store, { services: [svc] });
    await apply(store, networkWrites(store.view(), [], true, 0).writes);
    const s = store.view().get('services', 's1')!;
    const fresh = [fixtures.task({ id: 'a', service: s, slot: 1, state: 'new' }), fixtures.task({ id: 'b', service: s, slot: 2, state: 'new' })];
    const r = networkWrites(store.view(), fresh, false, 0);
    const placed = [
      { ...r.tasks[0], nodeId: 'node1', status: { ...r.tasks[0].status!, state: fixtures.taskState('running') } },
      { ...r.tasks[1], nodeId: 'node2', status: { ...r.tasks[1].status!, state: fixtures.taskState('starting') } },
    ];
    await fixtures.seed(store, { tasks: placed });
    const st = networkStateFor(store.view(), 'node1');
    const web = st.services.find((x) => x.name === 'web')!;
    assert.deepEqual(web.tasks.map((t) => t.taskId), ['a'], 'only the running task is an endpoint');
    const front = st.networks.find((n) => n.name === 'front')!;
    assert.ok(front.vni >= 4096);
    assert.deepEqual(front.peers.map((p) => p.nodeAddr).sort(), ['192.0.2.1', '192.0.2.2']);
    assert.deepEqual(st.localTasks, ['a']);
  });
});
