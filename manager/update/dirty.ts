// Which tasks an update must replace: a task whose spec differs from its service's (swarmkit's
// IsTaskDirty). `--force` bumps TaskSpec.forceUpdate, so it makes every task dirty.
import type { Service, Task } from '../../proto/gen/gantry/v1/objects.ts';

/** Key-sorted JSON: equal specs give equal strings whatever order their fields were built in. */
export function stableJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${stableJson(o[k])}`)
    .join(',')}}`;
}

const cache = new WeakMap<object, string>();

/** The comparison key of the service's task spec (stored objects are not mutated: kept per spec object). */
export function taskSpecKey(service: Service): string {
  const spec = service.spec?.task;
  if (!spec) return stableJson({});
  let k = cache.get(spec);
  if (k === undefined) cache.set(spec, (k = stableJson(spec)));
  return k;
}

/** Same spec version is clean without comparing; otherwise the spec content decides (a rollback keeps untouched tasks). */
export function isDirty(t: Task, service: Service, key: string): boolean {
  if (t.specVersion === service.specVersion) return false;
  const spec = t.spec ?? {};
  let k = cache.get(spec);
  if (k === undefined) cache.set(spec, (k = stableJson(spec)));
  return k !== key;
}
