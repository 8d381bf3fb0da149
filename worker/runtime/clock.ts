// Time for the worker's runtimes and task runners, injected so tests drive timers by hand.
// systemClock is the real one; ManualClock advances only when told.

export interface Clock {
  now(): number;
  /** Calls fn after ms; the returned function cancels it. */
  after(ms: number, fn: () => void): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
};

/** A clock for tests: timers fire only from advance(). */
export class ManualClock implements Clock {
  private t: number;
  private timers: { at: number; fn: () => void; seq: number }[] = [];
  private seq = 0;
  constructor(start = 1_700_000_000_000) {
    this.t = start;
  }
  now(): number {
    return this.t;
  }
  after(ms: number, fn: () => void): () => void {
    const timer = { at: this.t + Math.max(0, ms), fn, seq: this.seq++ };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((x) => x !== timer);
    };
  }
  /** Moves time forward by ms, firing due timers in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = Math.max(this.t, due.at);
      due.fn();
    }
    this.t = end;
  }
  pending(): number {
    return this.timers.length;
  }
}
