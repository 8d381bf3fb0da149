// Naming objects the way users do: full id, then exact name (services by name, nodes by hostname or
// spec name, tasks as web.1), then a unique id prefix. Pure over a ReadView; results are values.
import type { Node, Service, Task } from '../../proto/gen/gantry/v1/objects.ts';
import type { ReadView } from '../store/types.ts';

export type Resolved<T> =
  | { ok: true; value: T }
  | { ok: false; reason: 'not-found' | 'ambiguous' | 'empty'; message: string };

function byPrefix<T extends { id: string }>(
  what: string,
  ref: string,
  all: T[],
  label: (o: T) => string,
): Resolved<T> {
  const hits = all.filter((o) => o.id.startsWith(ref));
  if (hits.length === 1) return { ok: true, value: hits[0] };
  if (hits.length === 0) return { ok: false, reason: 'not-found', message: `${what} "${ref}" not found` };
  const shown = hits
    .slice(0, 10)
    .map((o) => `${o.id} (${label(o)})`)
    .join(', ');
  const more = hits.length > 10 ? ` and ${hits.length - 10} more` : '';
  return {
    ok: false,
    reason: 'ambiguous',
    message: `${what} id prefix "${ref}" is ambiguous: it matches ${shown}${more}; use more characters or the name`,
  };
}

export function resolveService(view: ReadView, ref: string): Resolved<Service> {
  if (ref === '') return { ok: false, reason: 'empty', message: 'a service name or id is required' };
  const exact = view.get('services', ref);
  if (exact) return { ok: true, value: exact };
  const named = view.serviceByName(ref);
  if (named) return { ok: true, value: named };
  return byPrefix('service', ref, view.list('services'), (s) => s.spec?.name ?? '');
}

export function nodeName(n: Node): string {
  return n.spec?.name || n.description?.hostname || n.id;
}

export function resolveNode(view: ReadView, ref: string): Resolved<Node> {
  if (ref === '') return { ok: false, reason: 'empty', message: 'a node hostname or id is required' };
  const exact = view.get('nodes', ref);
  if (exact) return { ok: true, value: exact };
  const nodes = view.list('nodes');
  const named = nodes.filter((n) => n.description?.hostname === ref || (n.spec?.name ?? '') === ref);
  if (named.length === 1) return { ok: true, value: named[0] };
  if (named.length > 1) {
    return {
      ok: false,
      reason: 'ambiguous',
      message: `node name "${ref}" is ambiguous: nodes ${named.map((n) => n.id).join(', ')} share it; use the id`,
    };
  }
  return byPrefix('node', ref, nodes, nodeName);
}

/** "web.2" names the newest task of slot 2 (global: "web.<node id>"); otherwise id / id prefix. */
export function resolveTask(view: ReadView, ref: string): Resolved<Task> {
  if (ref === '') return { ok: false, reason: 'empty', message: 'a task id is required' };
  const exact = view.get('tasks', ref);
  if (exact) return { ok: true, value: exact };
  const dot = ref.lastIndexOf('.');
  if (dot > 0) {
    const service = view.serviceByName(ref.slice(0, dot));
    const which = ref.slice(dot + 1);
    if (service) {
      const tasks = view
        .tasksByService(service.id)
        .filter((t) => (/^\d+$/.test(which) ? t.slot === Number(which) : t.nodeId === which || t.id.startsWith(which)))
        .sort((a, b) => (b.meta?.createdAt ?? 0) - (a.meta?.createdAt ?? 0));
      if (tasks.length > 0) return { ok: true, value: tasks[0] };
      return { ok: false, reason: 'not-found', message: `task "${ref}" not found` };
    }
  }
  return byPrefix('task', ref, view.list('tasks'), (t) => `${t.serviceName}.${t.slot || t.nodeId}`);
}
