// Read-modify-write of a node with optimistic concurrency: re-read and re-apply on a version race.
import type { Node } from '../../proto/gen/gantry/v1/objects.ts';
import type { Store } from '../store/types.ts';

/** Applies `change` to the stored node until it lands; `change` returning undefined means "nothing to do". */
export async function retryUpdate(store: Store, nodeId: string, change: (n: Node) => Node | undefined, attempts = 10): Promise<boolean> {
  for (let i = 0; i < attempts; i++) {
    const current = store.view().get('nodes', nodeId);
    if (!current) return false;
    const next = change(current);
    if (!next) return false;
    const res = await store.commit([{ op: 'update', kind: 'nodes', object: next }]);
    if (res.ok) return true;
    if (res.conflict.reason === 'missing') return false;
    await store.waitFor(store.view().revision + 1).catch(() => {});
  }
  throw new Error(`node ${nodeId}: gave up after ${attempts} version conflicts`);
}
