// The live tables behind MemoryStore (objects, versions, indexes: tasks by service and node, service by name)
// and snapshot views: a view reads the live tables through an undo log of what changed since it was taken.
//
//   view() ──► Gen g (weakly held by the store; strongly by its views)     apply: g.undo[key] ??= value before
//   later view() after changes ──► new Gen g2, g.next = g2                 read at g: first undo hit along g→g2→…, else live
//
// view() is O(1), a change costs O(1) more, a fresh view reads at map speed; only views that outlive
// changes pay for the overlay. Generations nobody holds are garbage-collected with their undo logs.
import type { Service, Task } from '../../proto/gen/gantry/v1/objects.ts';
import type { Kind, Objects, ReadView, StoredObject } from './types.ts';

export type Entry = { object: StoredObject; version: number };

type Maps = { [K in Kind]: Map<string, Entry> };

export function keyOf(kind: Kind, id: string): string {
  return `${kind}/${id}`;
}

export class Tables {
  readonly objects: Maps = { nodes: new Map(), services: new Map(), tasks: new Map(), clusters: new Map(), sessions: new Map(), networks: new Map(), secrets: new Map(), configs: new Map() };
  readonly tasksByService = new Map<string, Map<string, Task>>();
  readonly tasksByNode = new Map<string, Map<string, Task>>();
  readonly serviceByName = new Map<string, Service>();

  entry(kind: Kind, id: string): Entry | undefined {
    return this.objects[kind].get(id);
  }

  version(kind: Kind, id: string): number | undefined {
    return this.objects[kind].get(id)?.version;
  }

  put(kind: Kind, id: string, object: StoredObject, version: number): Entry | undefined {
    const previous = this.objects[kind].get(id);
    this.objects[kind].set(id, { object, version });
    this.unindex(kind, id, previous?.object);
    this.index(kind, id, object);
    return previous;
  }

  delete(kind: Kind, id: string): Entry | undefined {
    const previous = this.objects[kind].get(id);
    if (!previous) return undefined;
    this.objects[kind].delete(id);
    this.unindex(kind, id, previous.object);
    return previous;
  }

  private index(kind: Kind, id: string, object: StoredObject): void {
    if (kind === 'tasks') {
      const t = object as Task;
      addTo(this.tasksByService, t.serviceId, id, t);
      addTo(this.tasksByNode, t.nodeId, id, t);
    } else if (kind === 'services') {
      const name = (object as Service).spec?.name;
      if (name) this.serviceByName.set(name, object as Service);
    }
  }

  private unindex(kind: Kind, id: string, previous: StoredObject | undefined): void {
    if (!previous) return;
    if (kind === 'tasks') {
      const t = previous as Task;
      removeFrom(this.tasksByService, t.serviceId, id);
      removeFrom(this.tasksByNode, t.nodeId, id);
    } else if (kind === 'services') {
      const name = (previous as Service).spec?.name;
      if (name && this.serviceByName.get(name)?.id === id) {
        this.serviceByName.delete(name);
        // Another service may carry the same name (the control API prevents it, the store does not).
        for (const other of this.objects.services.values()) {
          const s = other.object as Service;
          if (s.id !== id && s.spec?.name === name) this.serviceByName.set(name, s);
        }
      }
    }
  }
}

function addTo(index: Map<string, Map<string, Task>>, key: string, id: string, t: Task): void {
  if (!key) return;
  let inner = index.get(key);
  if (!inner) index.set(key, (inner = new Map()));
  inner.set(id, t);
}

function removeFrom(index: Map<string, Map<string, Task>>, key: string, id: string): void {
  const inner = key ? index.get(key) : undefined;
  if (!inner) return;
  inner.delete(id);
  if (inner.size === 0) index.delete(key);
}

/** A point in time: the values (null = absent) keys had before the changes applied after it. */
export class Gen {
  readonly undo = new Map<string, Entry | null>();
  next: Gen | undefined;
}

export class View implements ReadView {
  readonly revision: number;
  private t: Tables;
  private gen: Gen;

  constructor(t: Tables, gen: Gen, revision: number) {
    this.t = t;
    this.gen = gen;
    this.revision = revision;
  }

  /** Nothing changed since this view was taken: read the live tables directly. */
  private fresh(): boolean {
    return this.gen.undo.size === 0 && this.gen.next === undefined;
  }

  private at(kind: Kind, id: string): Entry | undefined {
    if (!this.fresh()) {
      const k = keyOf(kind, id);
      for (let g: Gen | undefined = this.gen; g; g = g.next) {
        if (g.undo.has(k)) return g.undo.get(k) ?? undefined;
      }
    }
    return this.t.entry(kind, id);
  }

  /** Keys of `kind` changed since this view, with their values as of this view (first hit along the chain). */
  private overlay(kind: Kind): Map<string, Entry | null> {
    const out = new Map<string, Entry | null>();
    const pfx = `${kind}/`;
    for (let g: Gen | undefined = this.gen; g; g = g.next) {
      for (const [k, e] of g.undo) if (k.startsWith(pfx) && !out.has(k)) out.set(k, e);
    }
    return out;
  }

  get<K extends Kind>(kind: K, id: string): Objects[K] | undefined {
    return this.at(kind, id)?.object as Objects[K] | undefined;
  }

  version(kind: Kind, id: string): number | undefined {
    return this.at(kind, id)?.version;
  }

  list<K extends Kind>(kind: K): Objects[K][] {
    const live = this.t.objects[kind];
    if (this.fresh()) return Array.from(live.values(), (e) => e.object as Objects[K]);
    const over = this.overlay(kind);
    const out: Objects[K][] = [];
    for (const [id, e] of live) if (!over.has(keyOf(kind, id))) out.push(e.object as Objects[K]);
    for (const e of over.values()) if (e) out.push(e.object as Objects[K]);
    return out;
  }

  private tasksBy(index: Map<string, Map<string, Task>>, field: 'serviceId' | 'nodeId', key: string): Task[] {
    const live = index.get(key);
    if (this.fresh()) return live ? [...live.values()] : [];
    const over = this.overlay('tasks');
    const out: Task[] = [];
    if (live) for (const [id, t] of live) if (!over.has(keyOf('tasks', id))) out.push(t);
    for (const e of over.values()) if (e && (e.object as Task)[field] === key) out.push(e.object as Task);
    return out;
  }

  tasksByService(serviceId: string): Task[] {
    return this.tasksBy(this.t.tasksByService, 'serviceId', serviceId);
  }

  tasksByNode(nodeId: string): Task[] {
    return this.tasksBy(this.t.tasksByNode, 'nodeId', nodeId);
  }

  serviceByName(name: string): Service | undefined {
    const live = this.t.serviceByName.get(name);
    if (this.fresh()) return live;
    const over = this.overlay('services');
    for (const e of over.values()) if (e && (e.object as Service).spec?.name === name) return e.object as Service;
    return live && !over.has(keyOf('services', live.id)) ? live : undefined;
  }

  cluster() {
    return this.list('clusters')[0];
  }
}
