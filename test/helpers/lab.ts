// The end-to-end tests' view of the lab: bring up N netns hosts running gantryd as one cluster
// with the busybox image on each, read `service ps`/`node ls`, and count real container processes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type NodeRow, type TaskRow, taskRows } from '../../deploy/lab/gantry-json.ts';
import { formCluster, gantryOk, joinHost, nodes, until, waitReady } from '../../deploy/lab/lab-cluster.ts';
import { cleanupLabs, Lab, type LabHost, REPO_ROOT } from '../../deploy/lab/lab-hosts.ts';
import { busyboxRootfsTar } from './lab-rootfs.ts';

export { formCluster, gantryOk, joinHost, nodes, until, waitReady };
export type { Lab, LabHost, NodeRow, TaskRow };

export const IMAGE = 'lab/busybox:1';

/**
 * A test body whose failure carries the last lines of each host's gantryd log, appended to the
 * error's stack: CI keeps only the test output, and a failure seen once there is otherwise mute.
 */
export function explainFailure<T extends unknown[]>(hosts: () => LabHost[], fn: (...args: T) => Promise<void>, lines = 30): (...args: T) => Promise<void> {
  return async (...args: T) => {
    try {
      await fn(...args);
    } catch (err) {
      if (err instanceof Error) {
        const tails = hosts().map((h) => `--- ${h.name} gantryd log, last ${lines} lines ---\n${h.logTail(lines).split('\n').map((l) => l.slice(0, 300)).join('\n')}`);
        err.stack = `${err.stack}\n${tails.join('\n')}`;
      }
      throw err;
    }
  };
}

/** Why the cluster tests cannot run here, or undefined when they can (for `{ skip }`). */
export function clusterSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, mounts, cgroups)';
  for (const f of ['cli/gantryd.ts', 'cli/gantry.ts']) if (!fs.existsSync(path.join(REPO_ROOT, f))) return `${f} does not exist yet`;
  return undefined;
}

export interface ClusterLab {
  lab: Lab;
  manager: LabHost;
  /** Hosts that are in the cluster (the first `join` of the lab's hosts). */
  members: LabHost[];
}

/**
 * A lab of `hosts` hosts; the first `join` (default all) form a cluster managed by host 0, each
 * with the busybox image imported. Removes stale labs first. Call stopClusterLab in `after`.
 */
export async function startClusterLab(opts: { hosts: number; join?: number; runtime?: string }): Promise<ClusterLab> {
  await cleanupLabs();
  const lab = await Lab.up({ hosts: opts.hosts, runtime: opts.runtime });
  try {
    const members = lab.hosts.slice(0, opts.join ?? opts.hosts);
    const manager = await formCluster(lab, { hosts: members.map((h) => h.index) });
    await Promise.all(members.map((h) => importImage(h)));
    return { lab, manager, members };
  } catch (err) {
    await lab.down().catch(() => {});
    throw err;
  }
}

export async function stopClusterLab(c: { lab: Lab } | undefined): Promise<void> {
  try {
    await c?.lab.down();
  } finally {
    await cleanupLabs();
  }
}

/** `gantry image import` of the busybox rootfs on that host (images are per host). */
export async function importImage(h: LabHost): Promise<void> {
  await gantryOk(h, ['image', 'import', busyboxRootfsTar(), IMAGE]);
}

/** `service ps NAME --format json`, with each row's node as a lab hostname (ids are mapped through `node ls`). */
export async function ps(h: LabHost, service: string): Promise<TaskRow[]> {
  const rows = taskRows(await gantryOk(h, ['service', 'ps', service, '--format', 'json']));
  if (rows.some((r) => r.node && !/^gl\d+h\d+$/.test(r.node))) {
    const ns = await nodes(h);
    for (const r of rows) {
      const n = ns.find((x) => x.id === r.node || (r.node.length >= 6 && x.id.startsWith(r.node)));
      if (n) r.node = n.hostname;
    }
  }
  return rows;
}

/** Tasks that should run and do. */
export function live(tasks: TaskRow[]): TaskRow[] {
  return tasks.filter((t) => t.desired === 'running' && t.state === 'running');
}

export function countByNode(tasks: TaskRow[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const t of tasks) m.set(t.node, (m.get(t.node) ?? 0) + 1);
  return m;
}

/** One line per task for failure messages: "web.1@gl3h0 running/running ‹error›". */
export function summary(tasks: TaskRow[]): string {
  return tasks.map((t) => `${t.name}@${t.node || '-'} ${t.desired}/${t.state}${t.error || t.message ? ` ‹${t.error || t.message}›` : ''}`).join('; ') || '(no tasks)';
}

/** A task's "why" as a user sees it: its error and the system's message (or the CURRENT STATE cell). */
export function reason(t: TaskRow): string {
  return [t.error, t.message, t.current].filter(Boolean).join(' | ');
}

/** Container processes on a host running `sleep MARK` (how the tests give each service a findable process). */
export function sleepers(h: LabHost, mark: string): number[] {
  return h.processes((argv) => path.basename(argv[0] ?? '') === 'sleep' && argv[1] === mark).map((p) => p.pid);
}

/** Per-host count of `sleep MARK` processes over the given hosts. */
export function sleepersByHost(hosts: LabHost[], mark: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const h of hosts) {
    const n = sleepers(h, mark).length;
    if (n) m.set(h.name, n);
  }
  return m;
}

export function fmtMap(m: Map<string, number>): string {
  return [...m].map(([k, v]) => `${k}=${v}`).join(' ') || '(none)';
}

/** `service create -d --name NAME [flags] IMAGE sleep MARK` */
export async function createSleeper(h: LabHost, name: string, mark: string, flags: string[] = []): Promise<void> {
  await gantryOk(h, ['service', 'create', '-d', '--name', name, ...flags, IMAGE, 'sleep', mark]);
}

/** Removes a service and waits until its containers are gone from every host. */
export async function removeService(c: ClusterLab, name: string, mark: string): Promise<void> {
  await gantryOk(c.manager, ['service', 'rm', name]);
  await until(() => {
    const m = sleepersByHost(c.lab.hosts, mark);
    return m.size === 0 || `${name} containers still running: ${fmtMap(m)}`;
  }, 60_000);
}

/**
 * Waits until `service ps` shows exactly `want` live tasks and the hosts run exactly those
 * containers (a `sleep MARK` process per live task on the same host, nothing else: nothing runs twice).
 */
export async function waitConverged(c: ClusterLab, service: string, mark: string, want: number, timeoutMs = 60_000): Promise<TaskRow[]> {
  let last: TaskRow[] = [];
  await until(async () => {
    last = await ps(c.manager, service);
    const l = live(last);
    if (l.length !== want) return `${l.length}/${want} running: ${summary(last)}`;
    const byPs = countByNode(l);
    const byProc = sleepersByHost(c.lab.hosts, mark);
    if (fmtMap(sortMap(byPs)) !== fmtMap(sortMap(byProc))) return `service ps says ${fmtMap(sortMap(byPs))} but processes are ${fmtMap(sortMap(byProc))}`;
    return true;
  }, timeoutMs);
  return last;
}

function sortMap(m: Map<string, number>): Map<string, number> {
  return new Map([...m].sort(([a], [b]) => a.localeCompare(b)));
}
