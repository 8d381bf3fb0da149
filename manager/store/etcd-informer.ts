// The informer: one range read of the prefix at revision R into the MemoryStore, then ONE watch from R+1
// applying events revision by revision; on compaction or a lost watch it resumes, or re-lists and emits the diff.
//
//   open ──list(prefix)@R──► mem.replaceAll(R) ──watch(prefix, from R)──► events > R ──► mem.applyChanges(rev)
//                                   ▲                      │ stream error: resume from mem.revision (backoff)
//                                   └──── compacted ◄──────┘ (the revision we need is gone: list again)
import * as grpc from '@grpc/grpc-js';
import { decode, setMeta } from './codec.ts';
import { type EtcdRpc, type KeyValue, prefixEnd, type WatchEvent, type WatchResponse } from './etcd-rpc.ts';
import { parseKey } from './etcd-txn.ts';
import type { Change, MemoryStore } from './memory.ts';
import type { Kind, StoredObject } from './types.ts';

/** GANTRY_TRACE=store logs every watch response. */
const TRACE = (process.env.GANTRY_TRACE ?? '').split(',').includes('store');

export interface ElectionEntry {
  createRevision: number;
  value: string;
  lease: string;
}

export class Informer {
  private rpc: EtcdRpc;
  private prefix: string;
  private mem: MemoryStore;
  private log: (m: string) => void;
  private stream: ReturnType<EtcdRpc['watchStream']> | undefined;
  private closed = false;
  private backoff = 100;
  private retryTimer: NodeJS.Timeout | undefined;
  private watching = false;
  private suspended: Promise<void> | undefined;
  /** Election keys (`<prefix>election/...`) by key; kept beside the objects. */
  readonly elections = new Map<string, ElectionEntry>();
  private electionListeners = new Set<() => void>();
  private healthListeners = new Set<(up: boolean) => void>();

  constructor(rpc: EtcdRpc, prefix: string, mem: MemoryStore, log: (m: string) => void) {
    this.rpc = rpc;
    this.prefix = prefix;
    this.mem = mem;
    this.log = log;
  }

  onElectionChange(l: () => void): () => void {
    this.electionListeners.add(l);
    return () => this.electionListeners.delete(l);
  }

  /** True while the watch stream is established. */
  get up(): boolean {
    return this.watching;
  }

  async start(): Promise<void> {
    await this.list();
    this.watch();
  }

  /** For tests: drops the watch and does not resume it until the returned function is called. */
  suspend(): () => void {
    let resume!: () => void;
    this.suspended = new Promise<void>((r) => (resume = r));
    this.restart(false);
    return () => {
      this.suspended = undefined;
      resume();
    };
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const s = this.stream;
    this.stream = undefined;
    if (s) {
      s.on('error', () => {});
      s.cancel();
    }
  }

  /** Reads the whole prefix at one revision (paged) and replaces the in-memory copy with it. */
  private async list(): Promise<void> {
    const key = Buffer.from(this.prefix);
    const end = prefixEnd(key);
    const kvs: KeyValue[] = [];
    let from = key;
    let revision = 0;
    for (;;) {
      const res = await this.rpc.range({ key: from, range_end: end, limit: 2000, revision });
      revision = Number(res.header.revision);
      kvs.push(...res.kvs);
      if (!res.more || res.kvs.length === 0) break;
      from = Buffer.concat([res.kvs[res.kvs.length - 1].key, Buffer.from([0])]);
    }
    const objects: Array<{ kind: Kind; object: StoredObject; version: number }> = [];
    this.elections.clear();
    for (const kv of kvs) {
      const p = parseKey(this.prefix, kv.key);
      if (!p) continue;
      if ('election' in p) {
        this.elections.set(p.election, { createRevision: Number(kv.create_revision), value: kv.value.toString(), lease: kv.lease });
        continue;
      }
      const object = this.decode(p.kind, kv);
      if (object) objects.push({ kind: p.kind, object, version: Number(kv.mod_revision) });
    }
    const events = this.mem.replaceAll(objects, Math.max(revision, this.mem.revision));
    this.log(`store: listed ${kvs.length} keys at revision ${revision} (${events.length} changes)`);
    this.emitElections();
  }

  private decode(kind: Kind, kv: KeyValue): StoredObject | undefined {
    try {
      const object = decode(kind, kv.value);
      const meta = (object as { meta?: { createdAt: number; updatedAt: number } }).meta;
      setMeta(kind, object, { version: Number(kv.mod_revision), createdAt: meta?.createdAt ?? 0, updatedAt: meta?.updatedAt ?? 0 });
      return object;
    } catch (err) {
      this.log(`store: cannot decode ${kv.key.toString()} (skipped): ${(err as Error).message}`);
      return undefined;
    }
  }

  private watch(): void {
    if (this.closed) return;
    const md = new grpc.Metadata();
    md.set('hasleader', 'true'); // etcd cancels the watch if its member loses the cluster leader
    const s = this.rpc.client('Watch').watch(md) as ReturnType<EtcdRpc['watchStream']>;
    this.stream = s;
    const key = Buffer.from(this.prefix);
    // Start AT the last applied revision, not after it, and skip what we have: etcd keeps the
    // compaction revision's puts but drops its tombstones, so a watch starting exactly at the
    // compaction revision could miss a delete; one revision earlier it gets "compacted" instead.
    const start = Math.max(1, this.mem.revision);
    s.write({ create_request: { key, range_end: prefixEnd(key), start_revision: start, progress_notify: true } });
    let relisting = false;
    s.on('data', (res: WatchResponse) => {
      if (TRACE) this.log(`store: watch response ${JSON.stringify({ ...res, events: res.events.length })}`);
      if (this.stream !== s || relisting) return;
      if (Number(res.compact_revision) > 0) {
        relisting = true;
        this.log(`store: watch from revision ${start} compacted (etcd kept from ${res.compact_revision}); listing again`);
        this.restart(true);
        return;
      }
      if (res.created && !res.canceled) {
        // Not a progress mark: the watcher may still be catching up from `start`.
        this.watching = true;
        this.backoff = 100;
        this.emitHealth(true);
        return;
      }
      if (res.canceled) {
        this.log(`store: etcd cancelled our watch (${res.cancel_reason || 'no reason given'}); resuming`);
        this.restart(false);
        return;
      }
      this.applyEvents(res.events, Number(res.header.revision));
    });
    s.on('error', (err: Error) => {
      if (this.stream !== s || this.closed) return;
      if ((err as { code?: number }).code !== grpc.status.CANCELLED) this.log(`store: watch lost (${err.message}); resuming from revision ${this.mem.revision + 1}`);
      this.restart(false);
    });
    s.on('end', () => {
      if (this.stream !== s || this.closed) return;
      this.restart(false);
    });
  }

  private restart(relist: boolean): void {
    const old = this.stream;
    this.stream = undefined;
    if (old) {
      old.on('error', () => {});
      old.cancel();
    }
    if (this.watching) {
      this.watching = false;
      this.emitHealth(false);
    }
    if (this.closed || this.retryTimer) return;
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, 2000);
    this.retryTimer = setTimeout(
      async () => {
        this.retryTimer = undefined;
        if (this.suspended) await this.suspended;
        if (this.closed) return;
        try {
          if (relist) await this.list();
          this.watch();
        } catch (err) {
          this.log(`store: listing failed (${(err as Error).message}); retrying`);
          this.restart(relist);
        }
      },
      relist ? 0 : delay,
    );
  }

  /** Applies one watch response: events grouped by revision, in order; a response without events is progress. */
  private applyEvents(events: WatchEvent[], headerRevision: number): void {
    let electionsChanged = false;
    let i = 0;
    while (i < events.length) {
      const rev = Number(events[i].kv.mod_revision);
      if (rev <= this.mem.revision) {
        // Already applied (the watch starts at our last revision, see watch()).
        while (i < events.length && Number(events[i].kv.mod_revision) === rev) i++;
        continue;
      }
      const changes: Change[] = [];
      for (; i < events.length && Number(events[i].kv.mod_revision) === rev; i++) {
        const ev = events[i];
        const p = parseKey(this.prefix, ev.kv.key);
        if (!p) continue;
        if ('election' in p) {
          electionsChanged = true;
          if (ev.type === 'Delete') this.elections.delete(p.election);
          else this.elections.set(p.election, { createRevision: Number(ev.kv.create_revision), value: ev.kv.value.toString(), lease: ev.kv.lease });
          continue;
        }
        if (ev.type === 'Delete') {
          changes.push({ kind: p.kind, op: 'delete', id: p.id });
        } else {
          const object = this.decode(p.kind, ev.kv);
          if (object) changes.push({ kind: p.kind, op: 'put', object, version: rev });
        }
      }
      this.mem.applyChanges(changes, rev);
    }
    // A response without events is a progress notification; etcd sends those (progress_notify) only
    // to watchers that have caught up, so the header revision is safe to adopt.
    if (events.length === 0 && headerRevision > this.mem.revision) this.mem.applyChanges([], headerRevision);
    if (electionsChanged) this.emitElections();
  }

  onHealth(l: (up: boolean) => void): () => void {
    this.healthListeners.add(l);
    return () => this.healthListeners.delete(l);
  }

  private emitHealth(up: boolean): void {
    for (const l of [...this.healthListeners]) l(up);
  }

  private emitElections(): void {
    for (const l of [...this.electionListeners]) {
      try {
        l();
      } catch (err) {
        this.log(`store: election listener threw: ${(err as Error).message}`);
      }
    }
  }
}
