// Unit tests of the worker's pure network decisions: host rules, container VIP rules, overlay
// peers and DNS answers from a NetworkState.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { NetworkState } from '../../proto/gen/gantry/v1/network.ts';
import { PublishMode } from '../../proto/gen/gantry/v1/objects.ts';
import { containerRules, hostRules, type LocalContainer, overlayPlan, resolveName } from './plan.ts';

const state: NetworkState = {
  nodeId: 'n1',
  nodeAddr: '192.0.2.1',
  networks: [
    { id: 'br', name: 'bridge', driver: 'bridge', subnet: '172.16.0.0/12', vni: 0, ingress: false, nodeAddr: '172.16.3.0/24', peers: [] },
    { id: 'ing', name: 'ingress', driver: 'overlay', subnet: '10.0.0.0/16', vni: 4096, ingress: true, nodeAddr: '10.0.0.2/16', peers: [{ ip: '10.0.0.2', nodeAddr: '192.0.2.1' }, { ip: '10.0.0.3', nodeAddr: '192.0.2.2' }] },
    { id: 'front', name: 'front', driver: 'overlay', subnet: '10.1.0.0/24', vni: 4097, ingress: false, nodeAddr: '', peers: [{ ip: '10.1.0.3', nodeAddr: '192.0.2.2' }, { ip: '10.1.0.4', nodeAddr: '192.0.2.1' }] },
  ],
  services: [
    {
      id: 's1', name: 'web', mode: 0, vips: { front: '10.1.0.2' },
      tasks: [{ taskId: 't1', nodeId: 'n2', addrs: { front: '10.1.0.3', ing: '10.0.0.5' } }, { taskId: 't2', nodeId: 'n1', addrs: { front: '10.1.0.4', ing: '10.0.0.6' } }],
      ports: [{ name: '', protocol: 'tcp', targetPort: 80, publishedPort: 8080, publishMode: PublishMode.PUBLISH_MODE_INGRESS }],
    },
    { id: 's2', name: 'rr', mode: 1, vips: {}, tasks: [{ taskId: 't3', nodeId: 'n2', addrs: { front: '10.1.0.9' } }], ports: [] },
  ],
  localTasks: ['t2', 'c1'],
};
const client: LocalContainer = { taskId: 'c1', serviceId: 's9', ns: 'x', bridgeIp: '172.16.3.2', attachments: [{ networkId: 'front', ip: '10.1.0.7', prefix: 24 }] };

test('worker/network plan: an ingress port spreads over every ready task with the statistic match, and egress is masqueraded', () => {
  const r = hostRules(state, []);
  const chainRules = r.natRules.filter((l) => l.startsWith('-A GANTRY-S-'));
  assert.equal(chainRules.length, 2);
  assert.match(chainRules[0], /-p tcp -m statistic --mode random --probability 0\.50000000 -j DNAT --to-destination 10\.0\.0\.5:80/);
  assert.match(chainRules[1], /-p tcp -j DNAT --to-destination 10\.0\.0\.6:80$/);
  assert.ok(r.natRules.includes('-A GANTRY-POSTROUTING -s 172.16.3.0/24 ! -o gantry0 -j MASQUERADE'));
});

test('worker/network plan: a container gets VIP rules only for services on its networks', () => {
  const text = containerRules(state, client, 'ing');
  assert.match(text, /-A GANTRY-VIP -d 10\.1\.0\.2\/32 -j GANTRY-V-/);
  assert.doesNotMatch(text, /10\.0\.0\.5/, 'no ingress addresses in VIP rules');
  assert.equal(containerRules(state, { ...client, attachments: [] }, 'ing').includes('GANTRY-V-'), false);
});

test('worker/network plan: overlay peers leave out this host, and DNS answers VIP, tasks. and dnsrr', () => {
  const plans = overlayPlan(state, [client]);
  const front = plans.find((p) => p.network.id === 'front')!;
  assert.deepEqual(front.peers, [{ ip: '10.1.0.3', mac: '02:42:0a:01:00:03', nodeAddr: '192.0.2.2' }]);
  assert.ok(plans.some((p) => p.network.ingress), 'the ingress overlay is on every host');
  assert.deepEqual(resolveName(state, [client], '172.16.3.2', 'web'), { kind: 'a', ips: ['10.1.0.2'] });
  assert.deepEqual(resolveName(state, [client], '172.16.3.2', 'tasks.web'), { kind: 'a', ips: ['10.1.0.3', '10.1.0.4'] });
  assert.deepEqual(resolveName(state, [client], '172.16.3.2', 'rr'), { kind: 'a', ips: ['10.1.0.9'] });
  assert.deepEqual(resolveName(state, [client], '172.16.3.2', 'example.org'), { kind: 'forward' });
  assert.deepEqual(resolveName(state, [client], '172.16.3.99', 'web'), { kind: 'forward' }, 'unknown source: not ours to answer');
});
