// Secrets and configs: validation (name, size), sealing of values with the cluster key, who uses
// what, and the values a node may receive (only those its assigned tasks reference). Pure functions.
import type { Config, Secret, SecretReference, Service, Task } from '../../proto/gen/gantry/v1/objects.ts';
import { TaskState } from '../../proto/gen/gantry/v1/objects.ts';
import { seal, unseal } from '../ca/seal.ts';

export type SecretKind = 'secrets' | 'configs';
export const MAX_SIZE: Record<SecretKind, number> = { secrets: 500 * 1024, configs: 1000 * 1024 };
const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/;

export function noun(kind: SecretKind): string {
  return kind === 'secrets' ? 'secret' : 'config';
}

/** What is wrong with a new secret/config (empty when nothing). */
export function validate(kind: SecretKind, name: string, data: Uint8Array): string[] {
  const problems: string[] = [];
  if (!NAME.test(name)) problems.push(`${noun(kind)} name "${name}" must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit`);
  if (data.length === 0) problems.push(`${noun(kind)} "${name}" is empty`);
  if (data.length > MAX_SIZE[kind]) problems.push(`${noun(kind)} "${name}" is ${data.length} bytes: the limit is ${MAX_SIZE[kind] / 1024} KB`);
  return problems;
}

const context = (kind: SecretKind, id: string) => `gantry/${kind}/${id}`;

export function sealValue(key: Buffer, kind: SecretKind, id: string, data: Uint8Array): Buffer {
  return seal(key, Buffer.from(data), context(kind, id));
}

export function unsealValue(key: Buffer, kind: SecretKind, id: string, sealed: Uint8Array): Buffer {
  return unseal(key, Buffer.from(sealed), context(kind, id));
}

export function refsOf(kind: SecretKind, spec: Service['spec'] | Task['spec'] | undefined): SecretReference[] {
  const files = spec && 'task' in spec ? spec.task?.container?.files : (spec as Task['spec'] | undefined)?.container?.files;
  return (kind === 'secrets' ? files?.secrets : files?.configs) ?? [];
}

/** The key a reference is known by on the wire (an id, or the name when the CLI gave only that). */
export function refKey(r: SecretReference): string {
  return r.secretId || r.secretName;
}

/** Names of the services whose spec (current or previous, for rollback) uses the object. */
export function usedBy(kind: SecretKind, s: { id: string; spec?: { name: string } }, services: Service[]): string[] {
  return services
    .filter((svc) => [svc.spec, svc.previousSpec].some((spec) => refsOf(kind, spec).some((r) => (r.secretId ? r.secretId === s.id : r.secretName === s.spec?.name))))
    .map((svc) => svc.spec?.name ?? svc.id);
}

/** Keys (refKey) of the secrets/configs that `tasks` (a node's assigned, not yet finished ones) use. */
export function neededBy(kind: SecretKind, tasks: Task[]): Set<string> {
  const ids = new Set<string>();
  for (const t of tasks) {
    if ((t.desiredState ?? 0) > TaskState.TASK_STATE_RUNNING && (t.status?.state ?? 0) > TaskState.TASK_STATE_RUNNING) continue;
    for (const r of refsOf(kind, t.spec)) ids.add(refKey(r));
  }
  return ids;
}

export type StoredSecret = Secret | Config;
