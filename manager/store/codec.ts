// How each kind of object is identified, encoded and versioned: the protobuf codec per kind, the
// id of an object (sessions: their node id), and reading/setting meta (sessions have none).
import { Network } from '../../proto/gen/gantry/v1/network.ts';
import { Cluster, Config, Node, Secret, Service, Session, Task } from '../../proto/gen/gantry/v1/objects.ts';
import type { Kind, Objects, StoredObject } from './types.ts';

export interface Codec<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(input: Uint8Array): T;
}

export const CODECS: { [K in Kind]: Codec<Objects[K]> } = {
  nodes: Node,
  services: Service,
  tasks: Task,
  clusters: Cluster,
  sessions: Session,
  networks: Network,
  secrets: Secret,
  configs: Config,
};

/** The object's id within its kind (a session is keyed by its node id). */
export function idOf(kind: Kind, object: StoredObject): string {
  return kind === 'sessions' ? (object as Session).nodeId : (object as { id: string }).id;
}

export function encode<K extends Kind>(kind: K, object: Objects[K]): Uint8Array {
  return (CODECS[kind] as Codec<Objects[K]>).encode(object).finish();
}

export function decode<K extends Kind>(kind: K, bytes: Uint8Array): Objects[K] {
  return (CODECS[kind] as Codec<Objects[K]>).decode(bytes);
}

/** A deep copy through the wire format, so a copy behaves exactly like an object read back from etcd. */
export function copy<K extends Kind>(kind: K, object: Objects[K]): Objects[K] {
  return decode(kind, encode(kind, object));
}

type Meta = { version: number; createdAt: number; updatedAt: number };

/** The version the writer holds (meta.version), or undefined for kinds without meta (sessions). */
export function versionOf(kind: Kind, object: StoredObject): number | undefined {
  if (kind === 'sessions') return undefined;
  return (object as { meta?: Meta }).meta?.version ?? 0;
}

export function createdAtOf(kind: Kind, object: StoredObject): number {
  if (kind === 'sessions') return 0;
  return (object as { meta?: Meta }).meta?.createdAt ?? 0;
}

/** Sets meta in place (objects without meta are left alone). */
export function setMeta(kind: Kind, object: StoredObject, meta: Meta): void {
  if (kind === 'sessions') return;
  (object as { meta?: Meta }).meta = meta;
}
