// The local unary socket end to end: gantryd's server (cli/daemon/unary-socket.ts) with the real
// generated service definitions, the CLI's Connection.call over it, and the fall-back to gRPC.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { ControlService, type GetServiceRequest, type ListNodesResponse } from '../proto/gen/gantry/v1/control.ts';
import { CallError, dial } from './connection.ts';
import { serveUnarySocket, unaryMethods } from './daemon/unary-socket.ts';
import { decodeRequest, decodeResponse, encodeRequest, encodeResponse, FrameReader, MAX_FRAME, unarySocketPath } from './unary-wire.ts';

test('unary wire: frames cut from any chunking, several per chunk; an oversized length is refused', () => {
  const a = encodeRequest({ id: 7, path: '/gantry.v1.Control/ListNodes', body: Buffer.from([1, 2, 3]) });
  const b = encodeResponse({ id: 7, status: 5, body: Buffer.from('no such service') });
  const stream = Buffer.concat([a, b, a]);
  for (const size of [1, 3, 10, stream.length]) {
    const r = new FrameReader();
    const frames: Buffer[] = [];
    for (let i = 0; i < stream.length; i += size) frames.push(...r.push(stream.subarray(i, i + size)));
    assert.equal(frames.length, 3, `chunks of ${size}`);
    assert.deepEqual(decodeRequest(frames[0]), { id: 7, path: '/gantry.v1.Control/ListNodes', body: Buffer.from([1, 2, 3]) });
    assert.deepEqual(decodeResponse(frames[1]), { id: 7, status: 5, body: Buffer.from('no such service') });
  }
  const huge = Buffer.alloc(4);
  huge.writeUInt32BE(MAX_FRAME + 1);
  assert.throws(() => new FrameReader().push(huge), /over the .*-byte limit/);
  assert.throws(() => decodeRequest(Buffer.alloc(3)), /too short/);
});

test('unary socket: calls answered with the handlers of the gRPC socket, errors with their status, overlapping calls matched by id', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gantry-unary-'));
  const sock = path.join(dir, 'gantry.sock');
  let release!: () => void;
  const slow = new Promise<void>((r) => (release = r));
  let cancelled = 0;
  const impl: grpc.UntypedServiceImplementation = {
    listNodes: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<ListNodesResponse>) =>
      cb(null, { nodes: [{ id: 'n1', role: 1, secretHash: '' }] }),
    getService: (call: grpc.ServerUnaryCall<GetServiceRequest, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      if (call.request.ref === 'slow') {
        call.on('cancelled', () => cancelled++);
        void slow.then(() => cb({ code: grpc.status.NOT_FOUND, details: 'slow answered last' }));
        return;
      }
      cb({ code: grpc.status.NOT_FOUND, details: `service "${call.request.ref}" not found` });
    },
  };
  const server = await serveUnarySocket(unarySocketPath(sock), unaryMethods([[ControlService, impl]]), () => {});
  t.after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const conn = dial(`unix://${sock}`);
  t.after(() => conn.close());

  const res = await conn.call(ControlService.listNodes, {});
  assert.deepEqual(res.nodes.map((n) => n.id), ['n1']);
  const first = conn.call(ControlService.getService, { ref: 'slow' }).catch((e: CallError) => e);
  const second = await conn.call(ControlService.getService, { ref: 'web' }).catch((e: CallError) => e);
  assert.ok(second instanceof CallError);
  assert.equal(second.code, grpc.status.NOT_FOUND);
  assert.equal(second.message, 'service "web" not found');
  release();
  const late = await first;
  assert.ok(late instanceof CallError && /slow answered last/.test(late.message));
  // a method the server does not have (an older gantryd) is named in the error
  const missing = await conn.call(ControlService.listServices, {}).catch((e: CallError) => e);
  assert.ok(missing instanceof CallError && missing.code === grpc.status.UNIMPLEMENTED && /ListServices/.test(missing.message), String(missing));
  assert.equal(cancelled, 0);

  // the socket file goes with the server
  await server.close();
  assert.equal(existsSync(unarySocketPath(sock)), false);

  // gantryd restarted: the next call of the same connection connects again
  const again = await serveUnarySocket(unarySocketPath(sock), unaryMethods([[ControlService, impl]]), () => {});
  t.after(() => again.close());
  assert.deepEqual((await conn.call(ControlService.listNodes, {})).nodes.map((n) => n.id), ['n1']);
});

test('unary socket: a call in flight when the client goes is cancelled for its handler', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gantry-unary-'));
  const sock = path.join(dir, 'gantry.sock');
  let cancelled!: () => void;
  const wasCancelled = new Promise<void>((r) => (cancelled = r));
  const impl: grpc.UntypedServiceImplementation = {
    getService: (call: grpc.ServerUnaryCall<GetServiceRequest, unknown>) => call.on('cancelled', () => cancelled()),
  };
  const server = await serveUnarySocket(unarySocketPath(sock), unaryMethods([[ControlService, impl]]), () => {});
  t.after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const conn = dial(`unix://${sock}`);
  const pending = conn.call(ControlService.getService, { ref: 'x' }).catch((e: Error) => e);
  await new Promise((r) => setTimeout(r, 50));
  conn.close();
  await wasCancelled;
  assert.ok((await pending) instanceof Error);
});

test('unary socket: a stale socket file (no gantryd) falls back to gRPC, which says what is wrong', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gantry-unary-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sock = path.join(dir, 'gantry.sock');
  writeFileSync(unarySocketPath(sock), ''); // not a socket: connecting fails
  const conn = dial(`unix://${sock}`);
  t.after(() => conn.close());
  const err = await conn.call(ControlService.listNodes, {}, 5_000).catch((e: CallError) => e);
  assert.ok(err instanceof CallError);
  assert.match(err.message, /cannot reach gantryd at unix:\/\/.*gantry\.sock.*Is gantryd running\?/);
});
