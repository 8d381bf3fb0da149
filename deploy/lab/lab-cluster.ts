// Forms a gantry cluster on lab hosts with the real CLI (init on one, join-token, join on the
// others) and waits until every node is Ready; plus the polling helper everything here uses.
import type { Lab, LabHost } from './lab-hosts.ts';
import { type NodeRow, nodeRows } from './gantry-json.ts';
import { sleep } from './sys.ts';

/**
 * Polls `check` until it returns true; any other return value (a string) is the reason it is not
 * done yet, and the last reason is the error message on timeout. Exceptions count as reasons.
 */
export async function until(check: () => true | string | Promise<true | string>, timeoutMs: number, intervalMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let reason = 'never checked';
  for (;;) {
    try {
      const r = await check();
      if (r === true) return;
      reason = r;
    } catch (err) {
      reason = `check threw: ${(err as Error).message}`;
    }
    if (Date.now() > deadline) throw new Error(`not done after ${timeoutMs} ms: ${reason}`);
    await sleep(intervalMs);
  }
}

/** Runs the CLI and returns stdout, or throws with the command, exit code, stderr and the host's log tail. */
export async function gantryOk(h: LabHost, args: string[]): Promise<string> {
  const r = await h.gantry(args);
  if (r.code !== 0) {
    throw new Error(`${h.name}: \`gantry ${args.join(' ')}\` exited ${r.code}: ${(r.stderr || r.stdout).trim()}\n--- ${h.name} gantryd log ---\n${h.logTail(15)}`);
  }
  return r.stdout;
}

export async function nodes(h: LabHost): Promise<NodeRow[]> {
  return nodeRows(await gantryOk(h, ['node', 'ls', '--format', 'json']));
}

/** Starts a host's gantryd (when not running) and joins it to the cluster managed by `manager`. */
export async function joinHost(manager: LabHost, h: LabHost, opts: { role?: 'worker' | 'manager' } = {}): Promise<void> {
  if (!h.running()) await h.start();
  const token = (await gantryOk(manager, ['join-token', '-q', opts.role ?? 'worker'])).trim();
  await gantryOk(h, ['join', '--token', token, `${manager.ip}:4242`]);
}

/**
 * Starts gantryd on the given hosts (default: all), `init` on the first, `join` on the rest, and
 * waits until `node ls` on the manager shows every one of them Ready.
 */
export async function formCluster(lab: Lab, opts: { hosts?: number[]; timeoutMs?: number } = {}): Promise<LabHost> {
  const idx = opts.hosts ?? lab.hosts.map((h) => h.index);
  const hosts = idx.map((i) => lab.host(i));
  const manager = hosts[0];
  await Promise.all(hosts.filter((h) => !h.running()).map((h) => h.start()));
  await gantryOk(manager, ['init', '--advertise-addr', manager.ip]);
  for (const h of hosts.slice(1)) await joinHost(manager, h);
  await waitReady(manager, hosts, opts.timeoutMs ?? 60_000);
  return manager;
}

/** Waits until `node ls` on `manager` lists each host Ready. */
export async function waitReady(manager: LabHost, hosts: LabHost[], timeoutMs = 60_000): Promise<void> {
  await until(async () => {
    const ns = await nodes(manager);
    const notReady = hosts.filter((h) => !ns.some((n) => n.hostname === h.name && n.status === 'ready'));
    if (notReady.length === 0) return true;
    return `not ready: ${notReady.map((h) => h.name).join(', ')}; node ls: ${ns.map((n) => `${n.hostname}=${n.status}/${n.availability}`).join(' ')}`;
  }, timeoutMs);
}
