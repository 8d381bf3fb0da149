// `gantry cluster backup`: a consistent copy of the cluster state. The manager's in-memory view is
// exactly the state at one etcd revision, so the backup is that view, one JSON line per object
// (kind, id, protobuf as base64) after a header line. Live sessions are not state and are left out.
import type { ControlServer } from '../proto/gen/gantry/v1/control.ts';
import { decode, encode, idOf } from './store/codec.ts';
import { KINDS, type Kind, type ReadView, type Store, type StoredObject } from './store/types.ts';

export const BACKUP_FORMAT = 'gantry-backup/1';

export interface BackupHeader {
  format: typeof BACKUP_FORMAT;
  revision: number;
  clusterId: string;
  createdAt: string;
  counts: Partial<Record<Kind, number>>;
}

/** The backup of a view: a header line, then one line per object. Pure. */
export function* backupLines(view: ReadView, now: Date): Generator<string> {
  const kinds = KINDS.filter((k) => k !== 'sessions');
  const counts: Partial<Record<Kind, number>> = {};
  for (const k of kinds) counts[k] = view.list(k).length;
  const header: BackupHeader = { format: BACKUP_FORMAT, revision: view.revision, clusterId: view.cluster()?.id ?? '', createdAt: now.toISOString(), counts };
  yield `${JSON.stringify(header)}\n`;
  for (const kind of kinds) {
    for (const object of view.list(kind)) {
      yield `${JSON.stringify({ kind, id: idOf(kind, object), value: Buffer.from(encode(kind, object)).toString('base64') })}\n`;
    }
  }
}

/** Reads a backup back into objects; refuses anything that is not one, naming the line. */
export function parseBackup(text: string): { header: BackupHeader; objects: { kind: Kind; object: StoredObject }[] } {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  let header: BackupHeader;
  try {
    header = JSON.parse(lines[0] ?? '') as BackupHeader;
  } catch {
    throw new Error('not a gantry backup: the first line is not a JSON header');
  }
  if (header.format !== BACKUP_FORMAT) throw new Error(`not a gantry backup (format "${header.format}", expected ${BACKUP_FORMAT})`);
  const objects = lines.slice(1).map((line, i) => {
    const rec = JSON.parse(line) as { kind: Kind; id: string; value: string };
    if (!KINDS.includes(rec.kind)) throw new Error(`backup line ${i + 2}: unknown kind "${rec.kind}"`);
    return { kind: rec.kind, object: decode(rec.kind, Buffer.from(rec.value, 'base64')) };
  });
  return { header, objects };
}

/** The Backup RPC, for the control API's handler table. */
export function backupHandlers(deps: { store: Store; now?: () => Date }): Partial<ControlServer> {
  return {
    backup: (call) => {
      const lines = backupLines(deps.store.view(), deps.now?.() ?? new Date());
      let chunk = '';
      for (const line of lines) {
        chunk += line;
        if (chunk.length >= 256 * 1024) {
          call.write({ data: Buffer.from(chunk) });
          chunk = '';
        }
      }
      if (chunk) call.write({ data: Buffer.from(chunk) });
      call.end();
    },
  };
}
