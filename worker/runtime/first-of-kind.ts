// Lets the first job of a kind run alone: jobs of the same kind that arrive while it runs wait for
// it to end (whatever its outcome), later ones do not wait at all. For work whose first run fills a
// cache the others then hit: gantry-exec compiles a seccomp profile once and keeps the program
// (native-exec/src/seccomp_cache.c), but the 50 creates of a first converge would all miss at once
// and compile the same profile 50 times.
import { OnceCache } from '../once-cache.ts';

export class FirstOfKind {
  /** Per kind, the end of its first job (at most 64 kinds, oldest out). */
  private readonly firsts = new OnceCache<void>();

  /** Waits for the first job of this kind if it is running; returns what the caller calls once its own job ended. */
  async turn(kind: string): Promise<() => void> {
    let ended: (() => void) | undefined;
    const first = this.firsts.get(kind, () => new Promise<void>((resolve) => (ended = resolve)));
    if (ended) return ended; // this caller is the first
    await first;
    return () => {};
  }
}
