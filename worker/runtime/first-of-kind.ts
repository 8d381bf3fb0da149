// Lets the first job of a kind run alone: jobs of the same kind that arrive while it runs wait for
// it to end (whatever its outcome), later ones do not wait at all. For work whose first run fills a
// cache the others then hit: gantry-exec compiles a seccomp profile once and keeps the program
// (native-exec/src/seccomp_cache.c), but the 50 creates of a first converge would all miss at once
// and compile the same profile 50 times.

export class FirstOfKind {
  private readonly firsts = new Map<string, Promise<void>>();
  private readonly max: number;

  /** Remembers at most max kinds (oldest out). */
  constructor(max = 64) {
    this.max = max;
  }

  /** Waits for the first job of this kind if it is running; returns what the caller calls once its own job ended. */
  async turn(kind: string): Promise<() => void> {
    const first = this.firsts.get(kind);
    if (first) {
      await first;
      return () => {};
    }
    if (this.firsts.size >= this.max) this.firsts.delete(this.firsts.keys().next().value as string);
    let ended!: () => void;
    this.firsts.set(kind, new Promise<void>((resolve) => (ended = resolve)));
    return ended;
  }
}
