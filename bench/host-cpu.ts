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

/** The fields of /proc/PID/stat after the command name (state first), or undefined when it is gone. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** CPU time (ms) a process used so far: its threads, and its children it has reaped (utime..cstime); 0 when it is gone. */
export function processCpuMs(pid: number): number {
  const f = statFields(pid);
  return f ? ((Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 1000) / 100 : 0;
}

/** The parent's pid (0 when the process is gone). */
export function parentPid(pid: number): number {
  return Number(statFields(pid)?.[1] ?? 0);
}

/** The command name of a process ('' when it is gone). */
export function processComm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/**
 * Starts an account of where the host's CPU goes: each of the given processes by name (its comm
 * unless given; summed per name), and the rest of the host. The returned function ends it and gives ms per name, plus 'rest'
 * and 'host'. A process's reaped children count as its own.
 */
export function cpuAccount(pids: (number | [number, string])[]): () => Record<string, number> {
  const host0 = hostBusyMs();
  const named = pids.map((p): [number, string] => (typeof p === 'number' ? [p, processComm(p)] : p));
  const start = new Map(named.map(([p, comm]) => [p, { comm, ms: processCpuMs(p) }]));
  return () => {
    const out: Record<string, number> = {};
    let counted = 0;
    for (const [pid, s] of start) {
      const used = processCpuMs(pid) - s.ms;
      if (used <= 0) continue;
      out[s.comm] = (out[s.comm] ?? 0) + used;
      counted += used;
    }
    out.host = hostBusyMs() - host0;
    out.rest = out.host - counted;
    return out;
  };
}
