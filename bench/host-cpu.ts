// The host's busy CPU time, for benches that report what a run cost besides how long it took.
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** The host's busy CPU time so far, ms (/proc/stat: user, nice, system, irq, softirq, steal). */
export function hostBusyMs(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return ((f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] ?? 0)) * 1000) / 100;
}

/**
 * After a removal, waits for the host to go quiet (the containers' processes are gone, but unmounts,
 * netns and cgroup teardown go on for a while): the next measurement, of either system, starts from
 * the same idle host. At most 30 s.
 */
export async function settle(): Promise<void> {
  const end = Date.now() + 30_000;
  while (Date.now() < end) {
    const b0 = hostBusyMs();
    await sleep(300);
    if (hostBusyMs() - b0 < 0.15 * 300 * 2) return; // under 15 % of both cores
  }
}
