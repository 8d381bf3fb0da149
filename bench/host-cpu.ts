// The host's busy CPU time, for benches that report what a run cost besides how long it took.
import { readFileSync } from 'node:fs';

/** The host's busy CPU time so far, ms (/proc/stat: user, nice, system, irq, softirq, steal). */
export function hostBusyMs(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return ((f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] ?? 0)) * 1000) / 100;
}
