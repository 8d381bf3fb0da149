// The local unary socket: the unary methods of the local gRPC socket's services, served over plain
// length-prefixed frames (cli/unary-wire.ts), so that a short CLI command does not load http2 and
// grpc-js. Same handlers, same messages, same permissions (root-only) as the gRPC socket.
import { EventEmitter } from 'node:events';
import { chmod, unlink } from 'node:fs/promises';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { decodeRequest, encodeResponse, FrameReader } from '../unary-wire.ts';

type UnaryHandler = (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => void;

interface Method {
  deserialize(b: Buffer): unknown;
  serialize(v: unknown): Buffer;
  handle: UnaryHandler;
}

/** The unary methods of `services`, by gRPC path ("/gantry.v1.Control/ListNodes"). */
export function unaryMethods(services: Array<[grpc.ServiceDefinition, grpc.UntypedServiceImplementation]>): Map<string, Method> {
  const methods = new Map<string, Method>();
  for (const [definition, impl] of services) {
    for (const [name, def] of Object.entries(definition)) {
      const handle = impl[name] as UnaryHandler | undefined;
      if (def.requestStream || def.responseStream || !handle) continue;
      methods.set(def.path, { deserialize: def.requestDeserialize, serialize: def.responseSerialize, handle });
    }
  }
  return methods;
}

/** What a unary handler reads of its call: the request, and that it was not cancelled. */
function unaryCall(path: string, request: unknown): grpc.ServerUnaryCall<unknown, unknown> & EventEmitter {
  return Object.assign(new EventEmitter(), {
    request,
    metadata: new grpc.Metadata(),
    cancelled: false,
    getPeer: () => 'unix:local',
    getDeadline: () => Infinity,
    getPath: () => path,
    getHost: () => 'localhost',
    sendMetadata: () => {},
  }) as unknown as grpc.ServerUnaryCall<unknown, unknown> & EventEmitter;
}

function serve(socket: net.Socket, methods: Map<string, Method>, log: (m: string) => void): void {
  const reader = new FrameReader();
  const inFlight = new Set<grpc.ServerUnaryCall<unknown, unknown> & EventEmitter>();
  const answer = (id: number, status: number, body: Buffer) => {
    if (!socket.destroyed) socket.write(encodeResponse({ id, status, body }));
  };
  socket.on('data', (chunk: Buffer) => {
    let frames: Buffer[];
    try {
      frames = reader.push(chunk);
    } catch (err) {
      log(`unary socket: ${(err as Error).message}; closing the connection`);
      socket.destroy();
      return;
    }
    for (const payload of frames) {
      let id = 0;
      try {
        const req = decodeRequest(payload);
        id = req.id;
        const m = methods.get(req.path);
        if (!m) {
          answer(id, grpc.status.UNIMPLEMENTED, Buffer.from(`gantryd has no unary method ${req.path} (is it older than this CLI?)`));
          continue;
        }
        const call = unaryCall(req.path, m.deserialize(req.body));
        inFlight.add(call);
        m.handle(call, (err, value) => {
          inFlight.delete(call);
          if (err) {
            const e = err as Partial<grpc.ServiceError>;
            answer(id, e.code || grpc.status.UNKNOWN, Buffer.from(e.details || e.message || String(err)));
          } else answer(id, 0, m.serialize(value));
        });
      } catch (err) {
        answer(id, grpc.status.INTERNAL, Buffer.from(`unary socket: ${(err as Error).message}`));
      }
    }
  });
  socket.on('close', () => {
    for (const call of inFlight) {
      (call as { cancelled: boolean }).cancelled = true;
      call.emit('cancelled');
    }
    inFlight.clear();
  });
  socket.on('error', () => {}); // a client gone mid-answer: 'close' follows
}

export interface UnarySocket {
  /** Stops accepting, drops open connections (their calls see "cancelled") and removes the socket file. */
  close(): Promise<void>;
}

/** Listens on `path` (replacing a stale socket), root-only like the gRPC socket. */
export async function serveUnarySocket(path: string, methods: Map<string, Method>, log: (m: string) => void): Promise<UnarySocket> {
  await unlink(path).catch(() => {});
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    serve(socket, methods, log);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  await chmod(path, 0o600);
  return {
    async close() {
      server.close();
      for (const s of sockets) s.destroy();
      await unlink(path).catch(() => {});
    },
  };
}
