// Secrets and configs a service names must exist when it is created or updated: each reference
// is resolved to the object's id (by id or name) here, so a typo fails the command instead of
// failing every task later on a worker. Pure over the view.
import type { ReadView } from '../store/types.ts';
import type { ValidServiceSpec } from './validate.ts';

/** Fills in each reference's id; returns one problem per reference that names nothing. */
export function resolveSecretRefs(view: ReadView, spec: ValidServiceSpec): string[] {
  const files = spec.task.container.files;
  if (!files) return [];
  const problems: string[] = [];
  for (const [kind, refs] of [
    ['secrets', files.secrets],
    ['configs', files.configs],
  ] as const) {
    const objects = view.list(kind);
    for (const ref of refs) {
      const found = objects.find((o) => o.id === ref.secretId || (ref.secretName !== '' && o.spec?.name === ref.secretName));
      if (!found) {
        const what = kind === 'secrets' ? 'secret' : 'config';
        problems.push(`${what} "${ref.secretName || ref.secretId}" not found: create it first (gantry ${what} create ${ref.secretName || 'NAME'} FILE)`);
        continue;
      }
      ref.secretId = found.id;
      ref.secretName = found.spec?.name ?? ref.secretName;
    }
  }
  return problems;
}
