// `gantry node ...` and `gantry init|join|leave|join-token|info` against the real control API and a
// stand-in Local service on the same unix socket: printed output and exit codes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { LocalService, type LocalServer } from '../../proto/gen/gantry/v1/local.ts';
import { startTestServer, type TestServer } from '../../manager/controlapi/test-server.ts';
import { fixtures } from '../../manager/store/fixtures.ts';
import { MemoryStore } from '../../manager/store/memory.ts';
import { runCli } from '../test-cli.ts';

describe('cli node and cluster', () => {
  let s: TestServer;
  const m1 = fixtures.node({ hostname: 'm1', role: 'manager', addr: '10.0.0.1:4242' });
  const w1 = fixtures.node({ hostname: 'w1' });
  const w2 = fixtures.node({ hostname: 'w2', state: 'down' });
  const calls: string[] = [];
  before(async () => {
    const store = new MemoryStore();
    m1.managerStatus!.addr = '10.0.0.1:4242';
    const cluster = fixtures.cluster({ id: 'c1' });
    cluster.joinTokens = { worker: 'GNTRY-1-workersecret-w', manager: 'GNTRY-1-managersecret-m' };
    await fixtures.seed(store, { nodes: [m1, w1, w2], clusters: [cluster] });
    const localImpl: LocalServer = {
      init: (call, cb) => {
        calls.push(`init ${call.request.advertiseAddr} ${call.request.listenAddr}`);
        cb(null, { nodeId: m1.id, clusterId: 'c1', workerJoinCommand: 'gantry join --token GNTRY-1-workersecret-w 10.0.0.1:4242' });
      },
      join: (call, cb) => {
        calls.push(`join ${call.request.token} ${call.request.remoteAddr}`);
        if (call.request.token === 'bad') cb({ code: grpc.status.PERMISSION_DENIED, details: 'the join token is not valid for this cluster' } as grpc.ServiceError, null);
        else cb(null, { nodeId: w1.id, clusterId: 'c1', workerJoinCommand: '' });
      },
      leave: (call, cb) => {
        calls.push(`leave ${call.request.force}`);
        cb(null, {});
      },
      info: (_call, cb) =>
        cb(null, { nodeId: m1.id, role: 1, clusterId: 'c1', state: 'active', managers: ['10.0.0.1:4242'], dataDir: '/var/lib/gantry', runtime: 'native', isLeader: true, hostname: 'm1', sessionManager: '10.0.0.1:4242' }),
    };
    s = await startTestServer({
      store,
      extra: (server) => server.addService(LocalService, localImpl),
      leadership: { isLeader: () => true, onChange: () => () => {}, leader: async () => m1.id, resign: async () => {} },
    });
  });
  after(() => s.close());
  const cli = (...argv: string[]) => runCli(s.target, argv);

  test('cli node: ls marks this node with * and shows status, availability, manager status', async () => {
    const r = await cli('node', 'ls');
    assert.equal(r.code, 0, r.err);
    const lines = r.out.trimEnd().split('\n');
    assert.match(lines[0], /^ID +HOSTNAME +STATUS +AVAILABILITY +MANAGER STATUS +ENGINE VERSION$/);
    assert.match(lines[1], new RegExp(`^${m1.id} \\* +m1 +Ready +Active +Leader +gantry-test$`));
    assert.match(lines[2], new RegExp(`^${w1.id} +w1 +Ready +Active +gantry-test$`));
    assert.match(lines[3], new RegExp(`^${w2.id} +w2 +Down +Active +gantry-test$`));
    assert.equal(JSON.parse((await cli('node', 'ls', '--format', 'json')).out).length, 3);
  });

  test('cli node: update availability and labels, inspect shows them', async () => {
    const r = await cli('node', 'update', '--availability', 'drain', '--label-add', 'zone=a', '--label-add', 'ssd', 'w1');
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, 'w1\n');
    const n = s.store.view().get('nodes', w1.id)!;
    assert.equal(n.spec!.availability, 2);
    assert.deepEqual(n.spec!.labels, { zone: 'a', ssd: '' });
    const p = await cli('node', 'inspect', '--pretty', 'w1');
    assert.match(p.out, / Availability:\t\tDrain\n/);
    assert.match(p.out, /Labels:\n - zone=a\n - ssd=\n/);
    const rm = await cli('node', 'update', '--label-rm', 'nope', 'w1');
    assert.equal(rm.code, 1);
    assert.equal(rm.err, 'Error: node "w1" has no label "nope"\n');
    assert.equal((await cli('node', 'update', '--availability', 'sleep', 'w1')).code, 2);
    assert.equal((await cli('node', 'update', 'w1')).code, 2);
    assert.equal(JSON.parse((await cli('node', 'inspect', 'self')).out)[0].id, m1.id);
  });

  test('cli node: rm refuses a ready node without --force and exits 1 with the reason', async () => {
    const r = await cli('node', 'rm', 'w1');
    assert.equal(r.code, 1);
    assert.equal(r.err, 'Error: node "w1" is ready: drain it and stop its gantryd first, or use --force\n');
    const down = await cli('node', 'rm', 'w2');
    assert.equal(down.code, 0, down.err);
    assert.equal(s.store.view().get('nodes', w2.id), undefined);
    const missing = await cli('node', 'rm', 'nope');
    assert.equal(missing.code, 1);
    assert.equal(missing.err, 'Error: node "nope" not found\n');
  });

  test('cli node: promote stores the desired role and warns of an even manager count; demoting the last manager fails', async () => {
    const p = await cli('node', 'promote', 'w1');
    assert.equal(p.code, 0, p.err);
    assert.equal(p.out, 'Node w1 promoted to a manager in the cluster.\n');
    assert.equal(p.err, 'warning: the cluster will have 2 managers: an even number tolerates no more failures than 1; add or remove one\n');
    assert.equal(s.store.view().get('nodes', w1.id)!.spec!.desiredRole, 1);
    const back = await cli('node', 'demote', 'w1');
    assert.equal(back.code, 0, back.err);
    const last = await cli('node', 'demote', 'm1');
    assert.equal(last.code, 1);
    assert.equal(last.err, 'Error: node "m1" is the last manager: promote another node first (gantry node promote NODE)\n');
  });

  test('cli cluster: join-token prints the command with the manager address; -q the token; --rotate replaces it', async () => {
    const r = await cli('join-token', 'worker');
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, 'To add a worker to this cluster, run the following command:\n\n    gantry join --token GNTRY-1-workersecret-w 10.0.0.1:4242\n\n');
    assert.equal((await cli('join-token', '-q', 'manager')).out, 'GNTRY-1-managersecret-m\n');
    const rot = await cli('join-token', '--rotate', '-q', 'worker');
    assert.equal(rot.code, 0);
    assert.match(rot.out, /^GNTRY-1-.+-w\n$/);
    assert.notEqual(rot.out, 'GNTRY-1-workersecret-w\n');
    assert.equal(s.store.view().cluster()!.joinTokens!.manager, 'GNTRY-1-managersecret-m');
    assert.equal((await cli('join-token', 'admin')).code, 2);
  });

  test('cli cluster: init, join, leave and info go to the local daemon', async () => {
    const i = await cli('init', '--advertise-addr', '10.0.0.1');
    assert.equal(i.code, 0, i.err);
    assert.equal(
      i.out,
      `Cluster initialized: current node (${m1.id}) is now a manager.\n\nTo add a worker to this cluster, run the following command:\n\n    gantry join --token GNTRY-1-workersecret-w 10.0.0.1:4242\n\nTo add a manager to this cluster, run 'gantry join-token manager' and follow the instructions.\n`,
    );
    const j = await cli('join', '--token', 'GNTRY-1-x-w', '10.0.0.1:4242');
    assert.equal(j.out, 'This node joined a cluster as a worker.\n');
    const bad = await cli('join', '--token', 'bad', '10.0.0.1:4242');
    assert.equal(bad.code, 1);
    assert.equal(bad.err, 'Error: the join token is not valid for this cluster\n');
    assert.equal((await cli('join', '10.0.0.1:4242')).code, 2);
    assert.equal((await cli('leave', '--force')).out, 'Node left the cluster.\n');
    assert.deepEqual(calls, ['init 10.0.0.1 ', 'join GNTRY-1-x-w 10.0.0.1:4242', 'join bad 10.0.0.1:4242', 'leave true']);
    const info = await cli('info');
    assert.equal(info.code, 0, info.err);
    assert.match(info.out, /Role: {10}manager \(leader\)\n/);
    assert.match(info.out, /Session on: {4}10\.0\.0\.1:4242\n/);
    assert.match(info.out, /Nodes: {9}\d \(\d ready, 1 manager\)\n/);
  });
});
