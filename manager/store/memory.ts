// MemoryStore: the cluster state in memory with its indexes, revision counter, ordered listeners and
// version-checked writes. It is the test double for controller loops AND the informer's copy inside EtcdStore.
import { copy, createdAtOf, idOf, setMeta, versionOf } from './codec.ts';
import { Gen, keyOf, Tables, View } from './memory-tables.ts';
import {
  type CommitResult,
  type Conflict,
  KINDS,
  type Kind,
  type ReadView,
  type Store,
  type StoredObject,
  type StoreEvent,
  StoreUnavailableError,
  type Write,
} from './types.ts';

/** One change as the informer (or a local commit) applies it; `version` is the key's mod_revision. */
export type Change =
  | { kind: Kind; op: 'put'; object: StoredObject; version: number }
  | { kind: Kind; op: 'delete'; id: string };

export type Listener = (events: StoreEvent[], revision: number) => void;

/** The key a write touches, for duplicate detection and conflicts. */
export function writeId(w: Write): string {
  return w.op === 'delete' ? w.id : idOf(w.kind, w.object);
}

/** Checks one write against what is stored (`stored` = the key's current version, if it exists). */
export function checkWrite(w: Write, stored: number | undefined): Conflict | undefined {
  const id = writeId(w);
  switch (w.op) {
    case 'create':
      return stored === undefined ? undefined : { kind: w.kind, id, reason: 'exists' };
    case 'update': {
      if (stored === undefined) return { kind: w.kind, id, reason: 'missing' };
      const v = versionOf(w.kind, w.object);
      return v === undefined || v === stored ? undefined : { kind: w.kind, id, reason: 'version' };
    }
    case 'delete':
      if (stored === undefined) return { kind: w.kind, id, reason: 'missing' };
      return w.version === undefined || w.version === stored ? undefined : { kind: w.kind, id, reason: 'version' };
    default: {
      const never: never = w;
      throw new Error(`unknown write ${JSON.stringify(never)}`);
    }
  }
}

/** Throws when two writes of one commit touch the same key (etcd refuses such a transaction too). */
export function assertDistinctKeys(writes: Write[]): void {
  const seen = new Set<string>();
  for (const w of writes) {
    const k = keyOf(w.kind, writeId(w));
    if (seen.has(k)) throw new Error(`store: two writes to ${k} in one transaction; merge them into one write`);
    seen.add(k);
  }
}

/** etcd's --max-txn-ops default: the most writes one commit may carry. */
export const MAX_COMMIT_WRITES = 128;

export interface MemoryStoreOptions {
  /** ms since the epoch, for meta.createdAt/updatedAt (default Date.now). */
  now?: () => number;
  /** Where listener exceptions are reported (default console.error). */
  log?: (msg: string) => void;
}

export class MemoryStore implements Store {
  private t = new Tables();
  /** The generation views were last taken at; weak, so an unobserved store keeps no undo log. */
  private gen: WeakRef<Gen> | undefined;
  private rev = 0;
  private listeners = new Set<Listener>();
  private queue: Array<[StoreEvent[], number]> = [];
  private delivering = false;
  private waiters: Array<{ revision: number; resolve: () => void; reject: (e: Error) => void }> = [];
  private leased = new Set<string>();
  private unavailable: Error | undefined;
  private now: () => number;
  private log: (msg: string) => void;

  constructor(opts: MemoryStoreOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.log = opts.log ?? ((m) => console.error(m));
  }

  get revision(): number {
    return this.rev;
  }

  view(): ReadView {
    let g = this.gen?.deref();
    if (!g || g.undo.size > 0) {
      const fresh = new Gen();
      if (g) g.next = fresh;
      this.gen = new WeakRef(fresh);
      g = fresh;
    }
    return new View(this.t, g, this.rev);
  }

  subscribe(listener: Listener): () => void {
    // Wrap, so one function subscribed twice is called twice and unsubscribes independently.
    const entry: Listener = (e, r) => listener(e, r);
    this.listeners.add(entry);
    return () => {
      this.listeners.delete(entry);
    };
  }

  async commit(writes: Write[]): Promise<CommitResult> {
    this.throwIfUnavailable();
    assertDistinctKeys(writes);
    // etcd's limit (--max-txn-ops): refused here too, so a test double never hides it.
    if (writes.length > MAX_COMMIT_WRITES) {
      throw new Error(`store: a commit of ${writes.length} writes exceeds etcd's ${MAX_COMMIT_WRITES} per transaction; use batch()`);
    }
    for (const w of writes) {
      const conflict = checkWrite(w, this.t.version(w.kind, writeId(w)));
      if (conflict) return { ok: false, conflict };
    }
    const revision = this.rev + 1;
    this.applyChanges(this.toChanges(writes, revision), revision);
    return { ok: true, revision };
  }

  async batch(writes: Write[]): Promise<{ revision: number; conflicts: Conflict[] }> {
    this.throwIfUnavailable();
    const revision = this.rev + 1;
    const conflicts: Conflict[] = [];
    const staged = new Map<string, number | undefined>();
    const accepted: Write[] = [];
    for (const w of writes) {
      const k = keyOf(w.kind, writeId(w));
      const stored = staged.has(k) ? staged.get(k) : this.t.version(w.kind, writeId(w));
      const conflict = checkWrite(w, stored);
      if (conflict) {
        conflicts.push(conflict);
        continue;
      }
      if (staged.has(k)) {
        // A second write to a key within one batch lands in a later etcd transaction; here we
        // simply apply what we have so far first, so it sees the first write's version.
        this.applyChanges(this.toChanges(accepted.splice(0), this.rev + 1), this.rev + 1);
        staged.clear();
        const again = checkWrite(w, this.t.version(w.kind, writeId(w)));
        if (again) {
          conflicts.push(again);
          continue;
        }
      }
      staged.set(k, w.op === 'delete' ? undefined : this.rev + 1);
      accepted.push(w);
    }
    if (accepted.length > 0) this.applyChanges(this.toChanges(accepted, this.rev + 1), this.rev + 1);
    return { revision: Math.max(this.rev, revision - 1), conflicts };
  }

  waitFor(revision: number): Promise<void> {
    if (this.rev >= revision) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiters.push({ revision, resolve, reject });
    });
  }

  // ----- test helpers (the in-memory double) -----

  /** Drops every key written with `lease: true`, as etcd does when this manager's lease expires. */
  expireLease(): number {
    const changes: Change[] = [];
    for (const k of this.leased) {
      const i = k.indexOf('/');
      changes.push({ kind: k.slice(0, i) as Kind, op: 'delete', id: k.slice(i + 1) });
    }
    this.leased.clear();
    if (changes.length > 0) this.applyChanges(changes, this.rev + 1);
    return this.rev;
  }

  /** Until setAvailable(), commit and batch throw this error (simulates etcd being unreachable). */
  setUnavailable(err: Error = new StoreUnavailableError('store unavailable (test)')): void {
    this.unavailable = err;
  }

  setAvailable(): void {
    this.unavailable = undefined;
  }

  // ----- the informer's side -----

  /**
   * Applies one change set (one etcd revision, or one local commit) and notifies listeners.
   * Objects are stored as given: the caller passes fresh objects nobody else holds.
   */
  applyChanges(changes: Change[], revision: number): StoreEvent[] {
    const undo = this.gen?.deref()?.undo;
    const events: StoreEvent[] = [];
    for (const c of changes) {
      const id = c.op === 'put' ? idOf(c.kind, c.object) : c.id;
      if (undo) {
        const k = keyOf(c.kind, id);
        if (!undo.has(k)) undo.set(k, this.t.entry(c.kind, id) ?? null);
      }
      if (c.op === 'put') {
        const previous = this.t.put(c.kind, id, c.object, c.version)?.object;
        events.push({ kind: c.kind, op: 'put', object: c.object, previous } as StoreEvent);
      } else {
        const previous = this.t.delete(c.kind, id)?.object;
        this.leased.delete(keyOf(c.kind, id));
        if (previous) events.push({ kind: c.kind, op: 'delete', id, previous } as StoreEvent);
      }
    }
    if (revision > this.rev) this.rev = revision;
    this.deliver(events, this.rev);
    return events;
  }

  /**
   * Replaces the whole state with a fresh listing taken at `revision` (after a lost watch) and
   * emits only the differences, as one change set.
   */
  replaceAll(objects: Array<{ kind: Kind; object: StoredObject; version: number }>, revision: number): StoreEvent[] {
    const fresh = new Set<string>();
    const changes: Change[] = [];
    for (const o of objects) {
      const id = idOf(o.kind, o.object);
      fresh.add(keyOf(o.kind, id));
      if (this.t.version(o.kind, id) !== o.version) changes.push({ kind: o.kind, op: 'put', object: o.object, version: o.version });
    }
    for (const kind of KINDS) {
      for (const id of this.t.objects[kind].keys()) {
        if (!fresh.has(keyOf(kind, id))) changes.push({ kind, op: 'delete', id });
      }
    }
    return this.applyChanges(changes, revision);
  }

  /** Fails every pending waitFor (the store is closing). */
  rejectWaiters(err: Error): void {
    const ws = this.waiters.splice(0);
    for (const w of ws) w.reject(err);
  }

  private toChanges(writes: Write[], revision: number): Change[] {
    const now = this.now();
    return writes.map((w): Change => {
      if (w.op === 'delete') return { kind: w.kind, op: 'delete', id: w.id };
      const object = copy(w.kind, w.object);
      const id = idOf(w.kind, object);
      const stored = this.t.entry(w.kind, id)?.object;
      const createdAt = w.op === 'create' ? now : (stored ? createdAtOf(w.kind, stored) : 0) || now;
      setMeta(w.kind, object, { version: revision, createdAt, updatedAt: now });
      if (w.lease) this.leased.add(keyOf(w.kind, id));
      else this.leased.delete(keyOf(w.kind, id));
      return { kind: w.kind, op: 'put', object, version: revision };
    });
  }

  private throwIfUnavailable(): void {
    if (this.unavailable) throw this.unavailable;
  }

  private deliver(events: StoreEvent[], revision: number): void {
    const ready = this.waiters.filter((w) => w.revision <= revision);
    if (ready.length > 0) this.waiters = this.waiters.filter((w) => w.revision > revision);
    if (events.length > 0) this.queue.push([events, revision]);
    if (!this.delivering) {
      this.delivering = true;
      try {
        while (this.queue.length > 0) {
          const [evs, rev] = this.queue.shift()!;
          for (const l of [...this.listeners]) {
            try {
              l(evs, rev);
            } catch (err) {
              this.log(`store: a subscriber threw at revision ${rev}: ${(err as Error)?.stack ?? err}`);
            }
          }
        }
      } finally {
        this.delivering = false;
      }
    }
    for (const w of ready) w.resolve();
  }
}
