// Where the CLI connects: GANTRY_HOST forms, including a list of managers to fail over between.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { grpcTarget } from './connection.ts';

test('connection: GANTRY_HOST picks the default socket, a unix path, one manager or a failover list', () => {
  assert.equal(grpcTarget({}), 'unix:///run/gantry/gantry.sock');
  assert.equal(grpcTarget({ GANTRY_HOST: 'unix:///tmp/g.sock' }), 'unix:///tmp/g.sock');
  assert.equal(grpcTarget({ GANTRY_HOST: 'tcp://10.0.0.1:4242' }), '10.0.0.1:4242');
  assert.equal(grpcTarget({ GANTRY_HOST: '10.0.0.1:4242, tcp://10.0.0.2:4242' }), 'ipv4:10.0.0.1:4242,10.0.0.2:4242');
});

test('connection: an UNAVAILABLE answered by gantryd keeps its own message; one that never reached it says where it looked', async () => {
  const grpc = await import('@grpc/grpc-js');
  const { callError } = await import('./connection.ts');
  const md = new grpc.Metadata();
  md.set('gantry-error-origin', 'controlapi');
  const server = Object.assign(new Error('x'), { code: grpc.status.UNAVAILABLE, details: 'the cluster store (etcd) is unavailable: no quorum', metadata: md });
  assert.equal(callError(server, 'unix:///s').message, 'the cluster store (etcd) is unavailable: no quorum');
  const net = Object.assign(new Error('x'), { code: grpc.status.UNAVAILABLE, details: 'connect ENOENT', metadata: new grpc.Metadata() });
  assert.match(callError(net, 'unix:///s').message, /cannot reach gantryd at unix:\/\/\/s: connect ENOENT/);
});
