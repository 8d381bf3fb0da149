// How the CLI reaches gantryd: GANTRY_HOST (unix:///path or host:port) or the default socket.
// Unary calls go over the local unary socket beside a unix socket when gantryd serves one
// (cli/unary-wire.ts: no http2, no grpc-js), else over gRPC; streams always over gRPC, one grpc-js
// channel shared by every service client.
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { clientCredentials, TLS_CHANNEL_OPTIONS } from '../manager/ca/tls-client.ts';
import { UnaryClient, UnaryUnavailable } from './unary-client.ts';
import { unarySocketPath } from './unary-wire.ts';

export const DEFAULT_SOCKET = '/run/gantry/gantry.sock';

type ClientCtor<T> = new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ClientOptions) => T;

/** A unary method of a generated service definition (ControlService.listNodes, ...). */
export interface UnaryMethod<Req, Res> {
  path: string;
  requestSerialize(value: Req): Buffer;
  responseDeserialize(bytes: Buffer): Res;
}

export interface Connection {
  target: string;
  /** One client per generated service class, all on the same channel. */
  client<T extends grpc.Client>(ctor: ClientCtor<T>): T;
  /** One unary call with a deadline: its response, or a CallError. */
  call<Req, Res>(method: UnaryMethod<Req, Res>, req: Req, timeoutMs?: number): Promise<Res>;
  close(): void;
}

/**
 * GANTRY_HOST: unix:///path, or one or more managers as [tcp://]IP:PORT separated by commas.
 * Several managers become one channel that moves to the next when one stops answering.
 */
export function grpcTarget(env: NodeJS.ProcessEnv): string {
  const host = env.GANTRY_HOST?.trim();
  if (!host) return `unix://${DEFAULT_SOCKET}`;
  if (host.startsWith('unix://')) return host;
  const addrs = host
    .split(',')
    .map((a) => a.trim().replace(/^tcp:\/\//, ''))
    .filter(Boolean);
  if (addrs.length > 1 && addrs.every((a) => /^\d+\.\d+\.\d+\.\d+:\d+$/.test(a))) return `ipv4:${addrs.join(',')}`;
  return addrs[0] ?? host;
}

/** Where an operator's TLS files are (ca.pem, cert.pem, key.pem from `gantry cluster client-cert`). */
export function tlsDir(env: NodeJS.ProcessEnv): string {
  return env.GANTRY_TLS_DIR?.trim() || path.join(os.homedir(), '.gantry', 'tls');
}

/**
 * A TCP target speaks mutual TLS only: the CLI presents an operator (or manager) certificate and
 * accepts only a manager of the same CA. The unix socket needs none (it is root-only).
 */
function credentialsFor(target: string, env: NodeJS.ProcessEnv): { credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions } {
  if (target.startsWith('unix:')) return { credentials: grpc.credentials.createInsecure(), options: {} };
  const dir = tlsDir(env);
  const files = ['ca.pem', 'cert.pem', 'key.pem'].map((f) => path.join(dir, f));
  if (!files.every((f) => existsSync(f))) {
    throw new CallError(
      `${target} is reached over mutual TLS and ${dir} holds no certificate: run \`gantry cluster client-cert --out ${dir}\` on a manager (or set GANTRY_TLS_DIR)`,
      grpc.status.UNAUTHENTICATED,
    );
  }
  const [caPem, certPem, keyPem] = files.map((f) => readFileSync(f, 'utf8'));
  return { credentials: clientCredentials({ caPem, certPem, keyPem }), options: TLS_CHANNEL_OPTIONS };
}

export function dial(target: string, env: NodeJS.ProcessEnv = process.env): Connection {
  const clients = new Map<unknown, grpc.Client>();
  let channel: grpc.Channel | undefined;
  let tls: ReturnType<typeof credentialsFor> | undefined;
  const options: grpc.ClientOptions = {
    'grpc.max_receive_message_length': 64 << 20,
    'grpc.max_send_message_length': 64 << 20,
  };
  // the unary socket beside a unix target, while it answers (null: it did not, use gRPC)
  const unaryPath = target.startsWith('unix://') ? unarySocketPath(target.slice('unix://'.length)) : undefined;
  let quick: UnaryClient | null | undefined;
  const viaGrpc = <Req, Res>(method: UnaryMethod<Req, Res>, req: Req, timeoutMs: number): Promise<Res> =>
    new Promise((resolve, reject) => {
      const c = conn.client(grpc.Client);
      c.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
        err ? reject(callError(err, target)) : resolve(res as Res),
      );
    });
  const conn: Connection = {
    target,
    async call<Req, Res>(method: UnaryMethod<Req, Res>, req: Req, timeoutMs = 30_000): Promise<Res> {
      if (quick?.failed) quick = undefined; // its connection was lost (gantryd restarted): connect again
      if (unaryPath && quick !== null && (quick || existsSync(unaryPath))) {
        quick ??= new UnaryClient(unaryPath);
        const r = await quick.call(method.path, method.requestSerialize(req), timeoutMs).catch((err: Error & { code?: number }) => {
          if (err instanceof UnaryUnavailable) return undefined;
          throw new CallError(err.message, err.code ?? grpc.status.UNAVAILABLE);
        });
        if (r) {
          if (r.status !== 0) throw new CallError(r.body.toString(), r.status);
          return method.responseDeserialize(r.body);
        }
        quick = null; // nothing listens there (a stale socket file): gRPC says what is wrong
      }
      return viaGrpc(method, req, timeoutMs);
    },
    client<T extends grpc.Client>(ctor: ClientCtor<T>): T {
      let c = clients.get(ctor) as T | undefined;
      if (!c) {
        tls ??= credentialsFor(target, env);
        if (!channel) {
          c = new ctor(target, tls.credentials, { ...options, ...tls.options });
          channel = c.getChannel() as grpc.Channel;
        } else {
          c = new ctor(target, tls.credentials, { ...options, ...tls.options, channelOverride: channel });
        }
        clients.set(ctor, c);
      }
      return c;
    },
    close() {
      if (quick) quick.close();
      for (const c of clients.values()) c.close();
      channel?.close();
    },
  };
  return conn;
}

/** A gRPC failure as the user should read it: the server's message, plus where to look when unreachable. */
export class CallError extends Error {
  override name = 'CallError';
  readonly code: grpc.status;
  constructor(message: string, code: grpc.status) {
    super(message);
    this.code = code;
  }
}

export function callError(err: grpc.ServiceError, target: string): CallError {
  // gantryd marks the errors it answers itself; only a call that never reached it means "unreachable"
  const fromServer = (err.metadata?.get('gantry-error-origin') ?? []).length > 0;
  if (err.code === grpc.status.UNAVAILABLE && !fromServer) {
    return new CallError(
      `cannot reach gantryd at ${target}: ${err.details || err.message}. Is gantryd running? (set GANTRY_HOST to point elsewhere)`,
      err.code,
    );
  }
  return new CallError(err.details || err.message, err.code);
}

type UnaryFn<Req, Res> = (
  req: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  cb: (err: grpc.ServiceError | null, res: Res) => void,
) => grpc.ClientUnaryCall;

/** Calls a unary method with a deadline and returns its response or throws a CallError. */
export function unary<Req, Res>(conn: Connection, fn: UnaryFn<Req, Res>, req: Req, timeoutMs = 30_000): Promise<Res> {
  return new Promise((resolve, reject) => {
    fn(req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
      if (err) reject(callError(err, conn.target));
      else resolve(res);
    });
  });
}
