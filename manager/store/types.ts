// The store's contract: an in-memory copy of the cluster state fed by one etcd watch (an informer),
// and all-or-nothing writes that compare versions. Controllers, the control API and the dispatcher
// use only this; manager/store is the only code that imports the etcd client.
import type { Network } from '../../proto/gen/gantry/v1/network.ts';
import type { Cluster, Config, Node, Secret, Service, Session, Task } from '../../proto/gen/gantry/v1/objects.ts';

export interface Objects {
  nodes: Node;
  services: Service;
  tasks: Task;
  clusters: Cluster;
  sessions: Session;
  networks: Network;
  secrets: Secret;
  configs: Config;
}
export type Kind = keyof Objects;
export const KINDS: readonly Kind[] = ['clusters', 'nodes', 'services', 'tasks', 'sessions', 'networks', 'secrets', 'configs'];

/** Every stored object has an id (sessions: the node id) and meta (version = etcd mod_revision). */
export type StoredObject = Objects[Kind];

export type StoreEvent = {
  [K in Kind]:
    | { kind: K; op: 'put'; object: Objects[K]; previous?: Objects[K] }
    | { kind: K; op: 'delete'; id: string; previous: Objects[K] };
}[Kind];

/** A read-only snapshot. Objects returned must not be mutated (copy before changing). */
export interface ReadView {
  /** The etcd revision this view reflects. */
  readonly revision: number;
  get<K extends Kind>(kind: K, id: string): Objects[K] | undefined;
  list<K extends Kind>(kind: K): Objects[K][];
  tasksByService(serviceId: string): Task[];
  tasksByNode(nodeId: string): Task[];
  serviceByName(name: string): Service | undefined;
  cluster(): Cluster | undefined;
  /** The key's version (etcd mod_revision); the only way to read a session's version (sessions have no meta). */
  version(kind: Kind, id: string): number | undefined;
}

/**
 * create: fails if the id exists. update: fails unless the stored meta.version equals the
 * object's meta.version. delete: fails if missing, or (with version) if the version differs.
 * `lease: true` attaches the key to this manager process's lease (it vanishes when we die).
 * The store sets meta.created_at/updated_at; meta.version comes back through the watch.
 */
export type Write = {
  [K in Kind]:
    | { op: 'create'; kind: K; object: Objects[K]; lease?: boolean }
    | { op: 'update'; kind: K; object: Objects[K]; lease?: boolean }
    | { op: 'delete'; kind: K; id: string; version?: number };
}[Kind];

export type Conflict = { kind: Kind; id: string; reason: 'exists' | 'missing' | 'version' };

/** One transaction's outcome: applied at `revision`, or refused with the first conflict found. */
export type CommitResult = { ok: true; revision: number } | { ok: false; conflict: Conflict };

export interface Store {
  view(): ReadView;
  /** Called after each applied change set, in revision order. Returns the unsubscribe function. */
  subscribe(listener: (events: StoreEvent[], revision: number) => void): () => void;
  /** One transaction, all or nothing. Transport failures throw StoreUnavailableError after retries. */
  commit(writes: Write[]): Promise<CommitResult>;
  /**
   * Many independent writes, split into transactions that fit etcd's limits. A write that conflicts
   * is skipped (reported), the others still land. Safe to repeat.
   */
  batch(writes: Write[]): Promise<{ revision: number; conflicts: Conflict[] }>;
  /** Resolves once the in-memory copy has applied `revision` (read-your-writes). */
  waitFor(revision: number): Promise<void>;
}

/** Leadership among managers (an etcd election on a lease). */
export interface Leadership {
  isLeader(): boolean;
  /** Called with true when this manager becomes leader, false when it stops being leader. */
  onChange(listener: (leader: boolean) => void): () => void;
  /** The current leader's id (manager node id), if any. */
  leader(): Promise<string | undefined>;
  resign(): Promise<void>;
}

export class StoreUnavailableError extends Error {
  override name = 'StoreUnavailableError';
}
