// One allocator tick's network work over a view: the writes for networks and services, and the
// NEW tasks with their addresses (those that cannot get one yet stay NEW with the reason).
import { PublishMode, type Task } from '../../proto/gen/gantry/v1/objects.ts';
import { newId } from '../ids.ts';
import type { ReadView, Write } from '../store/types.ts';
import { allocateTaskNetworks, NetworkContext, planNetworks, planServiceEndpoint, publishedPorts, SPECIAL_NETWORKS } from './network-allocator.ts';

function needsNetworks(view: ReadView, t: Task): boolean {
  if ((t.spec?.networks ?? []).some((n) => !SPECIAL_NETWORKS.has(n.target))) return true;
  const s = view.get('services', t.serviceId);
  return (s?.spec?.endpoint?.ports ?? []).some((p) => p.publishMode === PublishMode.PUBLISH_MODE_INGRESS);
}

export function networkWrites(view: ReadView, fresh: Task[], all: boolean, now: number, ids: () => string = newId): { writes: Write[]; tasks: Task[] } {
  const needing = fresh.filter((t) => needsNetworks(view, t));
  if (!all && needing.length === 0) return { writes: [], tasks: fresh };
  const ctx = new NetworkContext(view);
  planNetworks(ctx, ids);
  const writes: Write[] = [];
  if (all) {
    const taken = publishedPorts(view);
    for (const s of view.list('services')) {
      const next = planServiceEndpoint(ctx, s, taken);
      if (next) writes.push({ op: 'update', kind: 'services', object: next });
    }
  }
  for (const id of ctx.changed) {
    const n = ctx.networks.get(id);
    if (n) writes.push({ op: ctx.created.has(id) ? 'create' : 'update', kind: 'networks', object: n });
  }
  const ready: Task[] = [];
  for (const t of fresh) {
    if (!needing.includes(t)) {
      ready.push(t);
      continue;
    }
    const r = allocateTaskNetworks(ctx, t);
    if (r.ok) ready.push(r.task);
    else if (t.status?.message !== r.error) writes.push({ op: 'update', kind: 'tasks', object: { ...t, status: { ...t.status!, timestamp: now, message: r.error } } });
  }
  return { writes, tasks: ready };
}
