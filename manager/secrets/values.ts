// What the dispatcher sends a node: the clear values of the secrets and configs its tasks use,
// unsealed at the moment of sending, each once per session.
import type { SecretValues } from '../../proto/gen/gantry/v1/dispatcher.ts';
import type { Task } from '../../proto/gen/gantry/v1/objects.ts';
import type { ReadView } from '../store/types.ts';
import { neededBy, type SecretKind, type StoredSecret, unsealValue } from './secrets.ts';

export function secretValuesFor(view: ReadView, tasks: Task[], sent: Set<string>, clusterKey: Buffer, log: (m: string) => void): SecretValues | undefined {
  const values: SecretValues['values'] = [];
  for (const kind of ['secrets', 'configs'] as SecretKind[]) {
    for (const key of neededBy(kind, tasks)) {
      if (sent.has(key)) continue;
      const s = (view.get(kind, key) ?? (view.list(kind) as StoredSecret[]).find((x) => x.spec?.name === key)) as StoredSecret | undefined;
      const id = s?.id ?? key;
      if (!s?.spec?.data) {
        log(`${kind === 'secrets' ? 'secret' : 'config'} ${key} used by a task does not exist`);
        continue;
      }
      try {
        values.push({ id: key, data: unsealValue(clusterKey, kind, id, s.spec.data) });
        sent.add(key);
      } catch (err) {
        log(`cannot unseal ${kind} ${id}: ${(err as Error).message}`);
      }
    }
  }
  return values.length > 0 ? { values } : undefined;
}
