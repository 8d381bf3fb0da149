// A small etcd v3 gRPC client: one grpc-js channel to the endpoints, typed unary calls with a deadline and
// retry on transient errors, and raw watch / lease-keepalive streams. Only manager/store uses it.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { StoreUnavailableError } from './types.ts';

// ----- the wire shapes we use (proto-loader with keepCase, longs as strings, enums as strings) -----

export type Long = string | number;
export interface KeyValue {
  key: Buffer;
  create_revision: string;
  mod_revision: string;
  version: string;
  value: Buffer;
  lease: string;
}
export interface ResponseHeader {
  cluster_id: string;
  member_id: string;
  revision: string;
  raft_term: string;
}
export interface RangeRequest {
  key: Buffer;
  range_end?: Buffer;
  limit?: Long;
  revision?: Long;
  sort_order?: 'None' | 'Ascend' | 'Descend';
  sort_target?: 'Key' | 'Version' | 'Create' | 'Mod' | 'Value';
  serializable?: boolean;
  keys_only?: boolean;
  count_only?: boolean;
}
export interface RangeResponse {
  header: ResponseHeader;
  kvs: KeyValue[];
  more: boolean;
  count: string;
}
export interface Compare {
  result: 'Equal' | 'Greater' | 'Less' | 'NotEqual';
  target: 'Version' | 'Create' | 'Mod' | 'Value' | 'Lease';
  key: Buffer;
  version?: Long;
  create_revision?: Long;
  mod_revision?: Long;
  value?: Buffer;
}
export type RequestOp =
  | { request_range: RangeRequest }
  | { request_put: { key: Buffer; value: Buffer; lease?: Long } }
  | { request_delete_range: { key: Buffer; range_end?: Buffer } };
export interface ResponseOp {
  response: 'response_range' | 'response_put' | 'response_delete_range' | 'response_txn';
  response_range?: RangeResponse;
  response_put?: { header: ResponseHeader };
  response_delete_range?: { header: ResponseHeader; deleted: string };
}
export interface TxnRequest {
  compare: Compare[];
  success: RequestOp[];
  failure: RequestOp[];
}
export interface TxnResponse {
  header: ResponseHeader;
  succeeded: boolean;
  responses: ResponseOp[];
}
export interface WatchEvent {
  type: 'Put' | 'Delete';
  kv: KeyValue;
  prev_kv?: KeyValue | null;
}
export interface WatchResponse {
  header: ResponseHeader;
  watch_id: string;
  created: boolean;
  canceled: boolean;
  compact_revision: string;
  cancel_reason: string;
  events: WatchEvent[];
}
export interface Member {
  ID: string;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
}

const require = createRequire(import.meta.url);
const protoPath = join(dirname(require.resolve('etcd3/package.json')), 'proto', 'rpc.proto');
const pkgDef = protoLoader.loadSync(protoPath, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
// biome-ignore lint/suspicious/noExplicitAny: generated at runtime by proto-loader
const etcdpb = (grpc.loadPackageDefinition(pkgDef) as any).etcdserverpb;

/** 'http://127.0.0.1:2379' → '127.0.0.1:2379' */
export function hostPort(endpoint: string): string {
  return endpoint.replace(/^[a-z]+:\/\//, '').replace(/\/$/, '');
}

/** etcd's "range_end" for a prefix: the prefix with its last byte incremented. */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** Errors worth retrying: the server or the connection is (perhaps briefly) not there. */
export function isTransient(err: unknown): boolean {
  const code = (err as { code?: number })?.code;
  return code === grpc.status.UNAVAILABLE || code === grpc.status.DEADLINE_EXCEEDED;
}

export interface RpcOptions {
  /** Deadline of one attempt (default 2000 ms). */
  callTimeoutMs?: number;
  /** Give up retrying after this long and throw StoreUnavailableError (default 5000 ms). */
  unavailableAfterMs?: number;
  /**
   * Mutual TLS with etcd (certificates from the cluster CA); plain when absent. A function is
   * asked again after a transient failure: a renewed or re-rooted certificate is what the next
   * connection presents (an etcd member restarted under a new root refuses the old one).
   */
  tls?: EtcdTls | (() => EtcdTls);
}

/** PEM material a manager presents to etcd and the roots it trusts etcd's certificate by. */
export interface EtcdTls {
  caPem: string;
  certPem: string;
  keyPem: string;
}

function credentials(tls: EtcdTls | undefined): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  // the chain is checked against the cluster roots; one channel spans several members' IPs, so the
  // name is not checked here (etcd members check each other's IP SANs)
  return grpc.credentials.createSsl(Buffer.from(tls.caPem), Buffer.from(tls.keyPem), Buffer.from(tls.certPem), { checkServerIdentity: () => undefined });
}

type Service = 'KV' | 'Watch' | 'Lease' | 'Cluster' | 'Maintenance';

export class EtcdRpc {
  readonly endpoints: string[];
  readonly callTimeoutMs: number;
  readonly unavailableAfterMs: number;
  private channel: grpc.Channel;
  private creds: grpc.ChannelCredentials;
  private readonly target: string;
  private readonly tlsSource: (() => EtcdTls) | undefined;
  private tlsInUse: EtcdTls | undefined;
  // biome-ignore lint/suspicious/noExplicitAny: proto-loader clients are untyped
  private clients = new Map<Service, any>();
  private closed = false;

  constructor(endpoints: string[], opts: RpcOptions = {}) {
    if (endpoints.length === 0) throw new Error('etcd: no endpoints given');
    this.endpoints = endpoints;
    this.callTimeoutMs = opts.callTimeoutMs ?? 2000;
    this.unavailableAfterMs = opts.unavailableAfterMs ?? 5000;
    const addrs = endpoints.map(hostPort);
    // Several IPv4 endpoints: one channel that fails over between them (pick_first).
    const target = addrs.every((a) => /^\d+\.\d+\.\d+\.\d+:\d+$/.test(a)) ? `ipv4:${addrs.join(',')}` : addrs[0];
    this.target = target;
    const tls = opts.tls;
    this.tlsSource = typeof tls === 'function' ? tls : tls ? () => tls : undefined;
    this.tlsInUse = this.tlsSource?.();
    this.creds = credentials(this.tlsInUse);
    this.channel = this.newChannel();
  }

  private newChannel(): grpc.Channel {
    return new grpc.Channel(this.target, this.creds, {
      // TLS: a server name that is not an IP (the name itself is not checked: see credentials())
      ...(this.tlsInUse ? { 'grpc.ssl_target_name_override': 'etcd' } : {}),
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
      'grpc.min_reconnect_backoff_ms': 100,
      'grpc.keepalive_time_ms': 5000,
      'grpc.keepalive_timeout_ms': 2000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
    });
  }

  /**
   * When the channel is not connected and this host's certificate changed since it was made, a
   * new channel presents the new one (streams on the old one end and are reopened by their
   * owners). Checked before every call and stream: a member restarted under a new root refuses
   * the old certificate; a connected channel is left alone (etcd does not re-check it).
   */
  refreshTls(): void {
    if (!this.tlsSource || this.closed) return;
    if (this.channel.getConnectivityState(false) === grpc.connectivityState.READY) return;
    const now = this.tlsSource();
    const was = this.tlsInUse;
    if (was && now.certPem === was.certPem && now.keyPem === was.keyPem && now.caPem === was.caPem) return;
    const old = { channel: this.channel, clients: [...this.clients.values()] };
    this.tlsInUse = now;
    this.creds = credentials(now);
    this.channel = this.newChannel();
    this.clients.clear();
    for (const c of old.clients) c.close();
    old.channel.close();
  }

  // biome-ignore lint/suspicious/noExplicitAny: proto-loader clients are untyped
  client(service: Service): any {
    this.refreshTls();
    let c = this.clients.get(service);
    if (!c) {
      c = new etcdpb[service](this.endpoints[0], this.creds, { channelOverride: this.channel });
      this.clients.set(service, c);
    }
    return c;
  }

  /** One attempt with a deadline. */
  once<T>(service: Service, method: string, req: object, timeoutMs = this.callTimeoutMs): Promise<T> {
    if (this.closed) return Promise.reject(new StoreUnavailableError('etcd client is closed'));
    return new Promise((resolve, reject) => {
      this.client(service)[method](req, { deadline: Date.now() + timeoutMs }, (err: Error | null, res: T) =>
        err ? reject(err) : resolve(res),
      );
    });
  }

  /**
   * Calls with a deadline per attempt and retries transient failures with backoff; after
   * unavailableAfterMs throws StoreUnavailableError saying what to check.
   * `onRetry` lets a caller adapt the request after an ambiguous failure.
   */
  async call<T>(service: Service, method: string, req: object, onRetry?: () => void): Promise<T> {
    const start = Date.now();
    let delay = 50;
    for (;;) {
      try {
        return await this.once<T>(service, method, req);
      } catch (err) {
        if (!isTransient(err) || this.closed) throw this.closed ? new StoreUnavailableError('etcd client is closed') : err;
        const elapsed = Date.now() - start;
        if (elapsed >= this.unavailableAfterMs) throw this.unavailable(err, elapsed);
        onRetry?.();
        await new Promise((r) => setTimeout(r, Math.min(delay, Math.max(0, this.unavailableAfterMs - elapsed))));
        delay = Math.min(delay * 2, 1000);
      }
    }
  }

  unavailable(err: unknown, elapsedMs: number): StoreUnavailableError {
    const where = this.endpoints.length === 1 ? `etcd at ${this.endpoints[0]}` : `etcd at ${this.endpoints.join(', ')}`;
    const e = new StoreUnavailableError(
      `${where} unreachable for ${(elapsedMs / 1000).toFixed(0)}s (${(err as Error)?.message ?? err}): is the etcd member running? see gantryd's log`,
    );
    e.cause = err;
    return e;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
    this.channel.close();
  }

  // ----- typed helpers -----

  range(req: RangeRequest): Promise<RangeResponse> {
    return this.call('KV', 'range', req);
  }

  txn(req: TxnRequest, onRetry?: () => void): Promise<TxnResponse> {
    return this.call('KV', 'txn', req, onRetry);
  }

  leaseGrant(ttlSeconds: number, onRetry?: () => void): Promise<{ ID: string; TTL: string; error: string }> {
    return this.call('Lease', 'leaseGrant', { TTL: ttlSeconds, ID: 0 }, onRetry);
  }

  leaseRevoke(id: string): Promise<unknown> {
    return this.once('Lease', 'leaseRevoke', { ID: id });
  }

  memberList(): Promise<{ header: ResponseHeader; members: Member[] }> {
    return this.call('Cluster', 'memberList', {});
  }

  memberAdd(peerURLs: string[], isLearner = false): Promise<{ member: Member; members: Member[] }> {
    return this.call('Cluster', 'memberAdd', { peerURLs, isLearner });
  }

  memberRemove(id: string): Promise<{ members: Member[] }> {
    return this.call('Cluster', 'memberRemove', { ID: id });
  }

  /** A raw bidirectional watch stream (write WatchRequests, read WatchResponses). */
  watchStream(): grpc.ClientDuplexStream<object, WatchResponse> {
    return this.client('Watch').watch();
  }

  /** A raw bidirectional lease keepalive stream. */
  keepAliveStream(): grpc.ClientDuplexStream<{ ID: string }, { ID: string; TTL: string }> {
    return this.client('Lease').leaseKeepAlive();
  }
}
