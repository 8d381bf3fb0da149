// MemoryStore: the cluster state in memory with its indexes, revision counter, ordered listeners and
// version-checked writes. It is the test double for controller loops AND the informer's copy inside EtcdStore.
import type { Service, Task } from '../../proto/gen/gantry/v1/objects.ts';
import { copy, createdAtOf, idOf, setMeta, versionOf } from './codec.ts';
import {
  type CommitResult,
  type Conflict,
  KINDS,
  type Kind,
  type Objects,
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

type Maps = { [K in Kind]: Map<string, Objects[K]> };

/**
 * The tables behind one revision. Views keep a reference to the Tables they were taken from; the
 * store forks (copy-on-write, map by map) before mutating tables a view has seen, so a view stays a
 * true snapshot while writes that nobody observed in between cost nothing extra.
 */
class Tables {
  objects: Maps;
  versions: Map<string, number>;
  tasksByService: Map<string, Map<string, Task>>;
  tasksByNode: Map<string, Map<string, Task>>;
  serviceByName: Map<string, Service>;
  private owned = new Set<object>();

  constructor(from?: Tables) {
    if (from) {
      this.objects = { ...from.objects };
      this.versions = from.versions;
      this.tasksByService = from.tasksByService;
      this.tasksByNode = from.tasksByNode;
      this.serviceByName = from.serviceByName;
      return;
    }
    this.objects = { nodes: new Map(), services: new Map(), tasks: new Map(), clusters: new Map(), sessions: new Map() };
    this.versions = new Map();
    this.tasksByService = new Map();
    this.tasksByNode = new Map();
    this.serviceByName = new Map();
    for (const k of KINDS) this.owned.add(this.objects[k]);
    for (const m of [this.versions, this.tasksByService, this.tasksByNode, this.serviceByName]) this.owned.add(m);
  }

  private own<M extends Map<unknown, unknown>>(m: M): M {
    if (this.owned.has(m)) return m;
    const c = new Map(m) as M;
    this.owned.add(c);
    return c;
  }

  put<K extends Kind>(kind: K, id: string, object: Objects[K], version: number): Objects[K] | undefined {
    const map = (this.objects[kind] = this.own(this.objects[kind]) as Maps[K]);
    const previous = map.get(id);
    map.set(id, object);
    this.versions = this.own(this.versions);
    this.versions.set(`${kind}/${id}`, version);
    this.unindex(kind, id, previous);
    this.index(kind, id, object);
    return previous;
  }

  delete<K extends Kind>(kind: K, id: string): Objects[K] | undefined {
    const map = (this.objects[kind] = this.own(this.objects[kind]) as Maps[K]);
    const previous = map.get(id);
    if (!previous) return undefined;
    map.delete(id);
    this.versions = this.own(this.versions);
    this.versions.delete(`${kind}/${id}`);
    this.unindex(kind, id, previous);
    return previous;
  }

  private index(kind: Kind, id: string, object: StoredObject): void {
    if (kind === 'tasks') {
      const t = object as Task;
      this.tasksByService = this.addTo(this.tasksByService, t.serviceId, id, t);
      this.tasksByNode = this.addTo(this.tasksByNode, t.nodeId, id, t);
    } else if (kind === 'services') {
      const s = object as Service;
      const name = s.spec?.name;
      if (name) {
        this.serviceByName = this.own(this.serviceByName);
        this.serviceByName.set(name, s);
      }
    }
  }

  private unindex(kind: Kind, id: string, previous: StoredObject | undefined): void {
    if (!previous) return;
    if (kind === 'tasks') {
      const t = previous as Task;
      this.tasksByService = this.removeFrom(this.tasksByService, t.serviceId, id);
      this.tasksByNode = this.removeFrom(this.tasksByNode, t.nodeId, id);
    } else if (kind === 'services') {
      const name = (previous as Service).spec?.name;
      if (name && this.serviceByName.get(name)?.id === id) {
        this.serviceByName = this.own(this.serviceByName);
        this.serviceByName.delete(name);
        // Another service may carry the same name (the control API prevents it, the store does not).
        for (const other of this.objects.services.values()) {
          if (other.id !== id && other.spec?.name === name) this.serviceByName.set(name, other);
        }
      }
    }
  }

  private addTo(index: Map<string, Map<string, Task>>, key: string, id: string, t: Task) {
    if (!key) return index;
    index = this.own(index);
    const inner = this.own(index.get(key) ?? new Map<string, Task>());
    inner.set(id, t);
    index.set(key, inner);
    return index;
  }

  private removeFrom(index: Map<string, Map<string, Task>>, key: string, id: string) {
    const existing = key ? index.get(key) : undefined;
    if (!existing?.has(id)) return index;
    index = this.own(index);
    const inner = this.own(existing);
    inner.delete(id);
    if (inner.size === 0) index.delete(key);
    else index.set(key, inner);
    return index;
  }
}

class View implements ReadView {
  readonly revision: number;
  private t: Tables;
  constructor(t: Tables, revision: number) {
    this.t = t;
    this.revision = revision;
  }
  get<K extends Kind>(kind: K, id: string): Objects[K] | undefined {
    return this.t.objects[kind].get(id) as Objects[K] | undefined;
  }
  list<K extends Kind>(kind: K): Objects[K][] {
    return [...this.t.objects[kind].values()] as Objects[K][];
  }
  tasksByService(serviceId: string): Task[] {
    return [...(this.t.tasksByService.get(serviceId)?.values() ?? [])];
  }
  tasksByNode(nodeId: string): Task[] {
    return [...(this.t.tasksByNode.get(nodeId)?.values() ?? [])];
  }
  serviceByName(name: string): Service | undefined {
    return this.t.serviceByName.get(name);
  }
  cluster() {
    for (const c of this.t.objects.clusters.values()) return c;
    return undefined;
  }
  version(kind: Kind, id: string): number | undefined {
    return this.t.versions.get(`${kind}/${id}`);
  }
}

function keyOf(kind: Kind, id: string): string {
  return `${kind}/${id}`;
}

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

export interface MemoryStoreOptions {
  /** ms since the epoch, for meta.createdAt/updatedAt (default Date.now). */
  now?: () => number;
  /** Where listener exceptions are reported (default console.error). */
  log?: (msg: string) => void;
}

export class MemoryStore implements Store {
  private t = new Tables();
  private shared = false;
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
    this.shared = true;
    return new View(this.t, this.rev);
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
    for (const w of writes) {
      const conflict = checkWrite(w, this.t.versions.get(keyOf(w.kind, writeId(w))));
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
      const stored = staged.has(k) ? staged.get(k) : this.t.versions.get(k);
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
        const again = checkWrite(w, this.t.versions.get(k));
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
    if (this.shared) {
      this.t = new Tables(this.t);
      this.shared = false;
    }
    const events: StoreEvent[] = [];
    for (const c of changes) {
      if (c.op === 'put') {
        const id = idOf(c.kind, c.object);
        const previous = this.t.put(c.kind, id, c.object, c.version);
        events.push({ kind: c.kind, op: 'put', object: c.object, previous } as StoreEvent);
      } else {
        const previous = this.t.delete(c.kind, c.id);
        this.leased.delete(keyOf(c.kind, c.id));
        if (previous) events.push({ kind: c.kind, op: 'delete', id: c.id, previous } as StoreEvent);
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
      const k = keyOf(o.kind, idOf(o.kind, o.object));
      fresh.add(k);
      if (this.t.versions.get(k) !== o.version) changes.push({ kind: o.kind, op: 'put', object: o.object, version: o.version });
    }
    for (const k of this.t.versions.keys()) {
      if (fresh.has(k)) continue;
      const i = k.indexOf('/');
      changes.push({ kind: k.slice(0, i) as Kind, op: 'delete', id: k.slice(i + 1) });
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
      const stored = this.t.objects[w.kind].get(id);
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
