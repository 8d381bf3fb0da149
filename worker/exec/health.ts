// Container health checks with Docker's semantics: which check applies (task spec, else the image's
// HEALTHCHECK), the probe argv, the pure state update per probe, and the loop that runs probes.
import type { HealthConfig, Task } from '../../proto/gen/gantry/v1/objects.ts';
import type { ExecResult } from '../runtime/types.ts';

export interface HealthSpec {
  args: string[];
  intervalMs: number;
  timeoutMs: number;
  retries: number;
  startPeriodMs: number;
}

/** An image config's Healthcheck (durations in nanoseconds, as in the OCI/Docker image config). */
export interface ImageHealthcheck {
  Test?: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  Retries?: number;
}

export type Health = 'starting' | 'healthy' | 'unhealthy';

export const HEALTH_DEFAULTS = { intervalMs: 30_000, timeoutMs: 30_000, retries: 3, startPeriodMs: 0 };

/** ["CMD", a...] → a; ["CMD-SHELL", s] → sh -c s; ["NONE"] or empty → undefined. */
export function probeArgs(test: string[]): string[] | undefined {
  switch (test[0]) {
    case 'CMD': return test.length > 1 ? test.slice(1) : undefined;
    case 'CMD-SHELL': return test[1] ? ['/bin/sh', '-c', test[1]] : undefined;
    default: return undefined;
  }
}

/** The task's healthcheck wins (["NONE"] disables); otherwise the image's. */
export function healthSpecFor(task: Task, image?: ImageHealthcheck): HealthSpec | undefined {
  const t: HealthConfig | undefined = task.spec?.container?.healthcheck;
  if (t?.test?.length) {
    const args = probeArgs(t.test);
    if (!args) return undefined;
    return {
      args,
      intervalMs: t.intervalMs || HEALTH_DEFAULTS.intervalMs,
      timeoutMs: t.timeoutMs || HEALTH_DEFAULTS.timeoutMs,
      retries: t.retries || HEALTH_DEFAULTS.retries,
      startPeriodMs: t.startPeriodMs || HEALTH_DEFAULTS.startPeriodMs,
    };
  }
  const args = image?.Test?.length ? probeArgs(image.Test) : undefined;
  if (!args) return undefined;
  const ms = (ns?: number) => (ns ? Math.round(ns / 1e6) : 0);
  return {
    args,
    intervalMs: ms(image!.Interval) || HEALTH_DEFAULTS.intervalMs,
    timeoutMs: ms(image!.Timeout) || HEALTH_DEFAULTS.timeoutMs,
    retries: image!.Retries || HEALTH_DEFAULTS.retries,
    startPeriodMs: ms(image!.StartPeriod) || HEALTH_DEFAULTS.startPeriodMs,
  };
}

export interface HealthState {
  health: Health;
  failures: number;
  /** A success ends the start period early (Docker). */
  started: boolean;
}

/** One probe's effect: success → healthy; failures in the start period don't count; retries in a row → unhealthy. */
export function nextHealth(s: HealthState, ok: boolean, sinceStartMs: number, spec: HealthSpec): HealthState {
  if (ok) return { health: 'healthy', failures: 0, started: true };
  if (!s.started && sinceStartMs < spec.startPeriodMs) return s;
  const failures = s.failures + 1;
  return { health: failures >= spec.retries ? 'unhealthy' : s.health, failures, started: s.started };
}

/**
 * Probes every interval until unhealthy (resolves) or aborted (resolves undefined). Reports each
 * change of health through onHealth, starting with "starting".
 */
export async function monitorHealth(o: {
  spec: HealthSpec;
  exec(args: string[], timeoutMs: number): Promise<ExecResult>;
  now(): number;
  after(ms: number, fn: () => void): () => void;
  onHealth(h: Health, lastOutput: string): void;
  signal: AbortSignal;
}): Promise<'unhealthy' | undefined> {
  const start = o.now();
  let s: HealthState = { health: 'starting', failures: 0, started: false };
  o.onHealth('starting', '');
  for (;;) {
    const aborted = await new Promise<boolean>((resolve) => {
      if (o.signal.aborted) return resolve(true);
      const onAbort = () => {
        cancel();
        resolve(true);
      };
      const cancel = o.after(o.spec.intervalMs, () => {
        o.signal.removeEventListener('abort', onAbort);
        resolve(false);
      });
      o.signal.addEventListener('abort', onAbort, { once: true });
    });
    if (aborted) return undefined;
    let r: ExecResult;
    try {
      r = await o.exec(o.spec.args, o.spec.timeoutMs);
    } catch (e) {
      r = { exitCode: -1, output: String(e) };
    }
    if (o.signal.aborted) return undefined;
    const next = nextHealth(s, r.exitCode === 0, o.now() - start, o.spec);
    if (next.health !== s.health) o.onHealth(next.health, r.output);
    s = next;
    if (s.health === 'unhealthy') return 'unhealthy';
  }
}
