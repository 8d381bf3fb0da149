// The loop every leader controller shares: subscribe to the store, mark dirty on interesting
// events, tick after a short debounce, run a pure decision and apply it, re-tick on conflicts.
import type { ReadView, Store, StoreEvent } from './store/types.ts';

/** Injected time. Tests pass a ManualClock (manager/fake-clock.ts); production passes systemClock. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/** A narrow logger; `console` fits. */
export interface Log {
  debug(msg: string, ...args: unknown[]): void;
  info(msg: string, ...args: unknown[]): void;
  warn(msg: string, ...args: unknown[]): void;
  error(msg: string, ...args: unknown[]): void;
}

export const silentLog: Log = { debug() {}, info() {}, warn() {}, error() {} };

/** What every controller loop class receives from the composition root. */
export interface ControllerDeps {
  store: Store;
  clock: Clock;
  log: Log;
  /** Debounce between the first dirty mark and the tick (default 0: the events of one watch response still arrive together). */
  debounceMs?: number;
}

/** What one tick reports back to the loop. */
export interface TickResult {
  /** Something did not land (version conflict) or is left to do: tick again soon. */
  again?: boolean;
  /** Tick again at this time (ms, clock time) even without events (restart delays, grace periods). */
  wakeAt?: number;
}

export interface LoopHooks {
  name: string;
  /** Is this change something the controller must look at? */
  interested(event: StoreEvent): boolean;
  /** Decide from the view and apply; must not throw for expected outcomes. */
  tick(view: ReadView): Promise<TickResult>;
  /** A wakeAt time has come (before the tick it causes). */
  onWake?(): void;
}

/**
 * The dirty/debounce/tick machine. One tick at a time; events arriving during a tick schedule
 * the next one. After a tick's writes land the loop waits for the store's view to include them
 * (the tick's implementation does that via store.waitFor) so no decision is made twice.
 */
export class ControllerLoop {
  private readonly deps: ControllerDeps;
  private readonly hooks: LoopHooks;
  private readonly debounceMs: number;
  private unsubscribe: (() => void) | undefined;
  private timer: unknown;
  private timerAt = Number.POSITIVE_INFINITY;
  private wakeTimer: unknown;
  private wakeAt = Number.POSITIVE_INFINITY;
  private dirty = false;
  private running = false;
  private current: Promise<void> | undefined;
  private stopped = true;
  private idleWaiters: Array<() => void> = [];

  constructor(deps: ControllerDeps, hooks: LoopHooks) {
    this.deps = deps;
    this.hooks = hooks;
    this.debounceMs = deps.debounceMs ?? 0;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    // Subscribe before the first read, so nothing between the read and the subscription is lost.
    this.unsubscribe = this.deps.store.subscribe((events) => {
      if (this.stopped) return;
      // Every event is offered (hooks collect dirty ids as they answer), then one mark.
      let any = false;
      for (const e of events) if (this.hooks.interested(e)) any = true;
      if (any) this.markDirty();
    });
    this.markDirty();
  }

  /** Stops reacting; resolves once a tick in flight (if any) has finished its writes. */
  stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    if (this.timer !== undefined) this.deps.clock.clearTimeout(this.timer);
    if (this.wakeTimer !== undefined) this.deps.clock.clearTimeout(this.wakeTimer);
    this.timer = this.wakeTimer = undefined;
    this.timerAt = this.wakeAt = Number.POSITIVE_INFINITY;
    this.dirty = false;
    this.notifyIdle();
    return this.current ?? Promise.resolve();
  }

  /** True once stop() was called (a tick in flight checks it between its writes). */
  get isStopped(): boolean {
    return this.stopped;
  }

  /** Ask for a tick (after the debounce). */
  markDirty(): void {
    if (this.stopped) return;
    this.dirty = true;
    if (!this.running) this.arm(this.debounceMs);
  }

  /** True when no tick is running or scheduled by a dirty mark (timers for later wakes may remain). */
  get idle(): boolean {
    return !this.running && !this.dirty;
  }

  /** Resolves when the loop is idle (tests). */
  whenIdle(): Promise<void> {
    if (this.idle || this.stopped) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private arm(ms: number): void {
    const at = this.deps.clock.now() + ms;
    if (this.timer !== undefined && this.timerAt <= at) return;
    if (this.timer !== undefined) this.deps.clock.clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = this.deps.clock.setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Number.POSITIVE_INFINITY;
      this.current = this.run().finally(() => {
        this.current = undefined;
      });
    }, ms);
  }

  private scheduleWake(at: number): void {
    if (this.wakeTimer !== undefined && this.wakeAt <= at) return;
    if (this.wakeTimer !== undefined) this.deps.clock.clearTimeout(this.wakeTimer);
    this.wakeAt = at;
    this.wakeTimer = this.deps.clock.setTimeout(
      () => {
        this.wakeTimer = undefined;
        this.wakeAt = Number.POSITIVE_INFINITY;
        this.hooks.onWake?.();
        this.markDirty();
      },
      Math.max(0, at - this.deps.clock.now()),
    );
  }

  private async run(): Promise<void> {
    if (this.stopped || this.running) return;
    this.running = true;
    this.dirty = false;
    let result: TickResult = {};
    try {
      result = await this.hooks.tick(this.deps.store.view());
    } catch (err) {
      // Store unavailable or a bug: log, and try again after a pause rather than spinning.
      this.deps.log.error(`${this.hooks.name}: tick failed: ${(err as Error)?.stack ?? err}`);
      result = { wakeAt: this.deps.clock.now() + 500 };
    } finally {
      this.running = false;
    }
    if (this.stopped) return;
    if (result.wakeAt !== undefined && Number.isFinite(result.wakeAt)) this.scheduleWake(result.wakeAt);
    if (result.again) this.dirty = true;
    if (this.dirty) this.arm(this.debounceMs);
    else this.notifyIdle();
  }

  private notifyIdle(): void {
    const ws = this.idleWaiters.splice(0);
    for (const w of ws) w();
  }
}
