// MemoryElection: leadership for tests without etcd. Candidates queue in the order they start; the
// first leads; resign() (or the test's setLeader) moves leadership on. Listeners are called synchronously.
import type { Leadership } from './types.ts';

interface Candidate {
  id: string;
  listeners: Set<(leader: boolean) => void>;
  leading: boolean;
}

export class MemoryElection {
  private queue: Candidate[] = [];

  private handles = new Map<string, Leadership>();

  /** Starts campaigning as `candidateId` (asking again for the same id returns the same campaign). */
  leadership(candidateId: string): Leadership {
    const existing = this.handles.get(candidateId);
    if (existing) return existing;
    const c: Candidate = { id: candidateId, listeners: new Set(), leading: false };
    this.queue.push(c);
    this.settle();
    const handle: Leadership = {
      isLeader: () => c.leading,
      onChange: (l) => {
        const entry = (v: boolean) => l(v);
        c.listeners.add(entry);
        return () => c.listeners.delete(entry);
      },
      leader: async () => this.queue[0]?.id,
      resign: async () => {
        if (this.handles.get(candidateId) === handle) this.handles.delete(candidateId);
        this.queue = this.queue.filter((x) => x !== c);
        this.settle();
      },
    };
    this.handles.set(candidateId, handle);
    return handle;
  }

  /** The current leader's id. */
  current(): string | undefined {
    return this.queue[0]?.id;
  }

  /** Moves `candidateId` to the front (as if the others' leases expired in turn). */
  setLeader(candidateId: string): void {
    const i = this.queue.findIndex((c) => c.id === candidateId);
    if (i < 0) throw new Error(`no candidate "${candidateId}" (candidates: ${this.queue.map((c) => c.id).join(', ') || 'none'})`);
    const [c] = this.queue.splice(i, 1);
    this.queue.unshift(c);
    this.settle();
  }

  private settle(): void {
    // Step down before anyone steps up, so two never lead at once even inside listeners.
    for (const c of this.queue.slice(1)) this.set(c, false);
    if (this.queue[0]) this.set(this.queue[0], true);
  }

  private set(c: Candidate, v: boolean): void {
    if (c.leading === v) return;
    c.leading = v;
    for (const l of [...c.listeners]) l(v);
  }
}
