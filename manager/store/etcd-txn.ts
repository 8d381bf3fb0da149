// Pure translation of store writes into etcd transactions: key layout, compares (create_revision == 0,
// mod_revision == version), puts/deletes, splitting a batch to fit etcd's limits, and reading conflicts back.
import { createdAtOf, encode, setMeta } from './codec.ts';
import type { Compare, KeyValue, RequestOp, ResponseOp, TxnRequest } from './etcd-rpc.ts';
import { checkWrite, writeId } from './memory.ts';
import { KINDS, type Conflict, type Kind, type Write } from './types.ts';

/** etcd's defaults: --max-txn-ops 128, --max-request-bytes 1.5 MiB (we keep a margin). */
export const MAX_TXN_OPS = 128;
export const MAX_TXN_BYTES = 1024 * 1024;

export type ParsedKey = { kind: Kind; id: string } | { election: string } | undefined;

export function objectKey(prefix: string, kind: Kind, id: string): Buffer {
  return Buffer.from(`${prefix}${kind}/${id}`);
}

export function electionPrefix(prefix: string): string {
  return `${prefix}election/`;
}

/** `<prefix><kind>/<id>` → {kind, id}; `<prefix>election/<x>` → {election: key}; anything else undefined. */
export function parseKey(prefix: string, key: Buffer): ParsedKey {
  const s = key.toString();
  if (!s.startsWith(prefix)) return undefined;
  const rest = s.slice(prefix.length);
  const slash = rest.indexOf('/');
  if (slash < 0) return undefined;
  const kind = rest.slice(0, slash);
  if (kind === 'election') return { election: s };
  if (!(KINDS as readonly string[]).includes(kind)) return undefined;
  return { kind: kind as Kind, id: rest.slice(slash + 1) };
}

/** A write with its key and encoded value, ready for a transaction. */
export interface Encoded {
  write: Write;
  key: Buffer;
  value?: Buffer;
}

/** Encodes the object with meta.createdAt/updatedAt set (version comes back as mod_revision). */
export function encodeWrite(prefix: string, w: Write, now: number): Encoded {
  const key = objectKey(prefix, w.kind, writeId(w));
  if (w.op === 'delete') return { write: w, key };
  // A shallow copy with new meta is enough: encoding reads, never writes, the caller's object.
  const object = { ...w.object } as typeof w.object;
  const createdAt = w.op === 'create' ? now : createdAtOf(w.kind, w.object) || now;
  setMeta(w.kind, object, { version: 0, createdAt, updatedAt: now });
  return { write: w, key, value: Buffer.from(encode(w.kind, object)) };
}

export function compareFor(e: Encoded): Compare {
  const w = e.write;
  if (w.op === 'create') return { result: 'Equal', target: 'Create', key: e.key, create_revision: 0 };
  const version = w.op === 'update' ? (w.kind === 'sessions' ? undefined : ((w.object as { meta?: { version: number } }).meta?.version ?? 0)) : w.version;
  // No version to compare (sessions, unversioned deletes): the key must exist.
  if (version === undefined) return { result: 'Greater', target: 'Version', key: e.key, version: 0 };
  return { result: 'Equal', target: 'Mod', key: e.key, mod_revision: version };
}

export function opFor(e: Encoded, leaseId: string): RequestOp {
  if (e.write.op === 'delete') return { request_delete_range: { key: e.key } };
  return { request_put: { key: e.key, value: e.value!, lease: e.write.lease ? leaseId : 0 } };
}

/** One transaction for these writes; on failure it reads every key back so we can say which conflicted. */
export function buildTxn(es: Encoded[], leaseId: string): TxnRequest {
  return {
    compare: es.map(compareFor),
    success: es.map((e) => opFor(e, leaseId)),
    failure: es.map((e) => ({ request_range: { key: e.key } })),
  };
}

export function sizeOf(e: Encoded): number {
  return 3 * e.key.length + (e.value?.length ?? 0) + 64;
}

/**
 * Splits writes into transactions within etcd's limits, in order; a second write to a key starts a
 * new transaction (etcd refuses duplicate keys in one).
 */
export function chunk(es: Encoded[], maxOps = MAX_TXN_OPS, maxBytes = MAX_TXN_BYTES): Encoded[][] {
  const out: Encoded[][] = [];
  let cur: Encoded[] = [];
  let bytes = 0;
  let keys = new Set<string>();
  for (const e of es) {
    const size = sizeOf(e);
    const k = e.key.toString('latin1');
    if (cur.length > 0 && (cur.length >= maxOps || bytes + size > maxBytes || keys.has(k))) {
      out.push(cur);
      cur = [];
      bytes = 0;
      keys = new Set();
    }
    cur.push(e);
    bytes += size;
    keys.add(k);
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** The current kv of each key, from a failed transaction's failure branch (one range per write). */
export function currentKvs(responses: ResponseOp[]): Array<KeyValue | undefined> {
  return responses.map((r) => r.response_range?.kvs?.[0]);
}

/** Which writes conflict with what is stored now (in order). */
export function conflictsFrom(es: Encoded[], kvs: Array<KeyValue | undefined>): Conflict[] {
  const out: Conflict[] = [];
  es.forEach((e, i) => {
    const kv = kvs[i];
    const c = checkWrite(e.write, kv ? Number(kv.mod_revision) : undefined);
    if (c) out.push(c);
  });
  return out;
}

/** After an ambiguous failure (timeout) and a retry: does the store already hold exactly what we wrote? */
export function landed(e: Encoded, kv: KeyValue | undefined): boolean {
  if (e.write.op === 'delete') return kv === undefined;
  return kv !== undefined && Buffer.compare(kv.value, e.value!) === 0;
}
