// Test helpers: the control service on a real grpc-js server over a temp unix socket (over a
// MemoryStore), a real generated ControlClient, and a promise wrapper. Used by server and CLI tests.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ControlClient, ControlService } from '../../proto/gen/gantry/v1/control.ts';
import { MemoryStore } from '../store/memory.ts';
import type { LogBroker } from './logs.ts';
import { type ControlDeps, controlService } from './server.ts';

export interface TestServer {
  store: MemoryStore;
  /** grpc target ("unix:///tmp/.../control.sock") */
  target: string;
  client: ControlClient;
  /** what the server logged */
  logs: string[];
  close(): Promise<void>;
}

export const noLogs: LogBroker = { async subscribe() {} };

export async function startTestServer(
  opts: Partial<Omit<ControlDeps, 'store'>> & { store?: MemoryStore; extra?: (server: grpc.Server) => void } = {},
): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'gantry-controlapi-'));
  const target = `unix://${join(dir, 'control.sock')}`;
  const store = opts.store ?? new MemoryStore();
  const logs: string[] = [];
  const server = new grpc.Server();
  server.addService(
    ControlService,
    controlService({ clock: { now: () => Date.now() }, logs: noLogs, log: (m) => logs.push(m), ...opts, store }),
  );
  opts.extra?.(server);
  try {
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(target, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const client = new ControlClient(target, grpc.credentials.createInsecure());
  return {
    store,
    target,
    client,
    logs,
    async close() {
      client.close();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      server.forceShutdown();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Promise form of a unary ControlClient call (pass client.method.bind(client)); rejects with the ServiceError. */
export function call<Req, Res>(
  fn: (
    req: Req,
    metadata: grpc.Metadata,
    options: Partial<grpc.CallOptions>,
    cb: (err: grpc.ServiceError | null, res: Res) => void,
  ) => grpc.ClientUnaryCall,
  req: Req,
): Promise<Res> {
  return new Promise((resolve, reject) =>
    fn(req, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res))),
  );
}
