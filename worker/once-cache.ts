// A small cache of promises by key, for what a worker works out once per image: concurrent callers
// (the 50 tasks of a converge) share one promise; a failure is forgotten, so the next call tries again.

export class OnceCache<V> {
  private readonly m = new Map<string, Promise<V>>();
  private readonly max: number;

  /** At most max entries, oldest out (64: one per image a node runs). */
  constructor(max = 64) {
    this.max = max;
  }

  get(key: string, make: () => Promise<V>): Promise<V> {
    const known = this.m.get(key);
    if (known) return known;
    if (this.m.size >= this.max) this.m.delete(this.m.keys().next().value as string);
    const p = make();
    this.m.set(key, p);
    p.catch(() => this.m.get(key) === p && this.m.delete(key));
    return p;
  }
}
