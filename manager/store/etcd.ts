// EtcdStore: the Store on etcd. Reads come from an in-memory copy fed by one watch (the informer); each
// commit is one etcd transaction comparing versions; batches split to fit etcd's limits; leases; leadership.
import * as grpc from '@grpc/grpc-js';
import { EtcdRpc, type TxnResponse } from './etcd-rpc.ts';
import { Informer } from './etcd-informer.ts';
import { LeaseKeeper } from './etcd-lease.ts';
import { EtcdLeadership } from './etcd-leadership.ts';
import {
  buildTxn,
  chunk,
  conflictsFrom,
  currentKvs,
  type Encoded,
  encodeWrite,
  landed,
  MAX_TXN_OPS,
} from './etcd-txn.ts';
import { assertDistinctKeys, MemoryStore, writeId } from './memory.ts';
import {
  type CommitResult,
  type Conflict,
  type Leadership,
  type ReadView,
  type Store,
  type StoreEvent,
  StoreUnavailableError,
  type Write,
} from './types.ts';

/** Transactions of one batch in flight at once. */
const BATCH_PARALLEL = 4;

export interface EtcdStoreOptions {
  endpoints: string[];
  /** Mutual TLS with etcd (manager/store/etcd-rpc.ts). */
  tls?: import('./etcd-rpc.ts').RpcOptions['tls'];
  /** Key prefix of every object (default "/gantry/v1/"). */
  prefix?: string;
  /** This manager's node id (logged; the election value is the candidate id). */
  managerId: string;
  /** TTL of this process's lease (default 3000; etcd rounds up to whole seconds, at least 2). */
  leaseTtlMs?: number;
  /** Deadline of one etcd call (default 2000). */
  callTimeoutMs?: number;
  /** Retry transient failures this long before throwing StoreUnavailableError (default 5000). */
  unavailableAfterMs?: number;
  log?: (msg: string) => void;
  /** ms since the epoch for meta.createdAt/updatedAt (default Date.now). */
  now?: () => number;
}

export class EtcdStore implements Store {
  readonly endpoints: string[];
  readonly prefix: string;
  readonly managerId: string;
  private rpc: EtcdRpc;
  private mem: MemoryStore;
  private informer: Informer;
  private lease: LeaseKeeper;
  private leaderships = new Map<string, EtcdLeadership>();
  private log: (m: string) => void;
  private now: () => number;
  private closed = false;

  private constructor(o: EtcdStoreOptions) {
    this.endpoints = o.endpoints;
    this.prefix = o.prefix ?? '/gantry/v1/';
    if (!this.prefix.endsWith('/')) this.prefix += '/';
    this.managerId = o.managerId;
    this.log = o.log ?? (() => {});
    this.now = o.now ?? Date.now;
    this.rpc = new EtcdRpc(o.endpoints, { callTimeoutMs: o.callTimeoutMs, unavailableAfterMs: o.unavailableAfterMs, tls: o.tls });
    this.mem = new MemoryStore({ now: this.now, log: this.log });
    this.informer = new Informer(this.rpc, this.prefix, this.mem, this.log);
    this.lease = new LeaseKeeper(this.rpc, o.leaseTtlMs ?? 3000, this.log);
  }

  /** Connects, takes a lease, reads the whole state and starts the watch. Throws StoreUnavailableError if etcd does not answer. */
  static async open(opts: EtcdStoreOptions): Promise<EtcdStore> {
    const s = new EtcdStore(opts);
    try {
      await s.lease.start();
      await s.informer.start();
    } catch (err) {
      await s.close().catch(() => {});
      throw err;
    }
    s.log(`store: open on ${s.endpoints.join(',')} prefix ${s.prefix} at revision ${s.mem.revision} for manager ${s.managerId}`);
    return s;
  }

  /** The revision the in-memory copy has applied. */
  get revision(): number {
    return this.mem.revision;
  }

  /** This process's lease id (decimal), '0' while it has none. */
  get leaseId(): string {
    return this.lease.id;
  }

  view(): ReadView {
    return this.mem.view();
  }

  subscribe(listener: (events: StoreEvent[], revision: number) => void): () => void {
    return this.mem.subscribe(listener);
  }

  /** Called when our lease is lost (keys written with `lease: true` are gone; write them again). */
  onLeaseLost(listener: () => void): () => void {
    return this.lease.onLost(() => listener());
  }

  /** Called with false when the watch is lost and true when it is back (the view is stale in between). */
  onWatchHealth(listener: (up: boolean) => void): () => void {
    return this.informer.onHealth(listener);
  }

  async commit(writes: Write[]): Promise<CommitResult> {
    this.assertOpen();
    assertDistinctKeys(writes);
    if (writes.length === 0) return { ok: true, revision: this.mem.revision };
    if (writes.length > MAX_TXN_OPS) {
      throw new Error(`store: a commit of ${writes.length} writes exceeds etcd's ${MAX_TXN_OPS} per transaction; use batch()`);
    }
    const now = this.now();
    const es = writes.map((w) => encodeWrite(this.prefix, w, now));
    const r = await this.txn(es);
    if (r.ok) return { ok: true, revision: r.revision };
    return { ok: false, conflict: r.conflicts[0] };
  }

  async batch(writes: Write[]): Promise<{ revision: number; conflicts: Conflict[] }> {
    this.assertOpen();
    const now = this.now();
    const conflicts: Conflict[] = [];
    let revision = this.mem.revision;
    const parts = chunk(writes.map((w) => encodeWrite(this.prefix, w, now)));
    // Up to BATCH_PARALLEL transactions in flight (etcd commits them in one fsync more often than
    // not); a part that touches a key of an earlier part in the same wave waits for the next wave.
    for (let i = 0; i < parts.length; ) {
      const wave = [parts[i]];
      const keys = new Set(parts[i].map((e) => e.key.toString('latin1')));
      for (i++; i < parts.length && wave.length < BATCH_PARALLEL; i++) {
        if (parts[i].some((e) => keys.has(e.key.toString('latin1')))) break;
        for (const e of parts[i]) keys.add(e.key.toString('latin1'));
        wave.push(parts[i]);
      }
      for (const r of await Promise.all(wave.map((p) => this.applyPart(p)))) {
        revision = Math.max(revision, r.revision);
        conflicts.push(...r.conflicts);
      }
    }
    return { revision, conflicts };
  }

  /** One part of a batch: conflicting writes are dropped (reported) and the rest retried until it applies. */
  private async applyPart(part: Encoded[]): Promise<{ revision: number; conflicts: Conflict[] }> {
    const conflicts: Conflict[] = [];
    let pending = part;
    while (pending.length > 0) {
      const r = await this.txn(pending);
      if (r.ok) return { revision: r.revision, conflicts };
      conflicts.push(...r.conflicts);
      const bad = new Set(r.conflicts.map((c) => `${c.kind}/${c.id}`));
      pending = pending.filter((e) => !bad.has(`${e.write.kind}/${writeId(e.write)}`));
    }
    return { revision: 0, conflicts };
  }

  /**
   * Resolves once the in-memory copy has applied `revision` (one returned by a commit or batch on
   * this prefix: those always come back through the watch). Throws StoreUnavailableError if the
   * watch does not get there within unavailableAfterMs.
   *
   * (etcd 3.4 answers a watch progress request with the current revision even while events before
   * it are still on their way, so we cannot use one to pass revisions that have no event of ours.)
   */
  async waitFor(revision: number): Promise<void> {
    if (this.mem.revision >= revision) return;
    const limit = this.rpc.unavailableAfterMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.mem.waitFor(revision),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new StoreUnavailableError(
                  `store's watch has not reached revision ${revision} after ${limit / 1000}s (at ${this.mem.revision}; etcd at ${this.endpoints.join(', ')}): is the etcd member running? see gantryd's log`,
                ),
              ),
            limit,
          );
        }),
      ]);
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  /** Campaigns for leadership under `candidateId` (usually this manager's node id) until resign() or close(). */
  leadership(candidateId: string = this.managerId): Leadership {
    this.assertOpen();
    // One campaign per candidate id: asking again (e.g. to show isLeader) returns the same one
    // rather than queueing another candidate that nobody acts for.
    const existing = this.leaderships.get(candidateId);
    if (existing) return existing;
    const l = new EtcdLeadership({ rpc: this.rpc, prefix: this.prefix, lease: this.lease, informer: this.informer, log: this.log }, candidateId, () => {
      if (this.leaderships.get(candidateId) === l) this.leaderships.delete(candidateId);
    });
    this.leaderships.set(candidateId, l);
    return l;
  }

  /**
   * Resigns, revokes our lease (our leased keys vanish now rather than after the TTL) and stops the watch.
   * `{ revoke: false }` leaves the lease to expire, as if this process had died.
   */
  async close(opts: { revoke?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const revoke = opts.revoke ?? true;
    if (revoke) await Promise.all([...this.leaderships.values()].map((l) => l.resign().catch(() => {})));
    await this.lease.close(revoke);
    this.informer.close();
    this.rpc.close();
    this.mem.rejectWaiters(new StoreUnavailableError('store closed'));
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreUnavailableError('store is closed');
  }

  /** One transaction for these writes: applied, or the writes that conflict (read back atomically). */
  private async txn(es: Encoded[]): Promise<{ ok: true; revision: number } | { ok: false; conflicts: Conflict[] }> {
    const needsLease = es.some((e) => e.write.op !== 'delete' && e.write.lease);
    let leaseId = needsLease ? await this.lease.ensure() : '0';
    let retried = false;
    let res: TxnResponse;
    for (let attempt = 0; ; attempt++) {
      try {
        res = await this.rpc.txn(buildTxn(es, leaseId), () => {
          retried = true;
        });
        break;
      } catch (err) {
        if (needsLease && attempt === 0 && (err as { code?: number }).code === grpc.status.NOT_FOUND) {
          // "requested lease not found": our lease expired on the server; take a new one.
          leaseId = await this.lease.replace(leaseId);
          continue;
        }
        if (err instanceof StoreUnavailableError) throw err;
        throw new Error(`store: etcd refused a transaction of ${es.length} writes (first ${es[0].key.toString()}): ${(err as Error).message}`, {
          cause: err,
        });
      }
    }
    if (res.succeeded) return { ok: true, revision: Number(res.header.revision) };
    const kvs = currentKvs(res.responses);
    // A retry after a timeout may find our own earlier attempt already applied.
    if (retried && es.every((e, i) => landed(e, kvs[i]))) {
      const revs = kvs.map((kv) => Number(kv?.mod_revision ?? 0));
      return { ok: true, revision: Math.max(...revs) || Number(res.header.revision) };
    }
    const conflicts = conflictsFrom(es, kvs);
    if (conflicts.length === 0) {
      // Cannot happen unless etcd and our rules disagree; say so rather than loop.
      const w = es[0].write;
      return { ok: false, conflicts: [{ kind: w.kind, id: writeId(w), reason: 'version' }] };
    }
    return { ok: false, conflicts };
  }
}
