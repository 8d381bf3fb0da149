// The one place worker/network does I/O with other programs: `run` (ip, bridge, iptables, nsenter:
// argv arrays, never a shell, stdin for batches) and the gantry-net helper (netlink, JSON lines).
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { type CommandResult, runCommand } from '../runtime/spawner.ts';

/** One veth pair of a container: `host` stays here (on `master`), `peer` goes into the netns. */
export interface NetLink {
  host: string;
  peer: string;
  master?: string;
  mtu?: number;
  mac?: string;
  alias?: string;
  /** a.b.c.d/n on the peer */
  addr?: string;
}

/** A container's netns at `netns` (absolute path), its links, default route, nat rules. */
export interface NetnsSpec {
  netns: string;
  links: NetLink[];
  gateway?: string;
  /** iptables-restore input applied inside the new netns (only when it has rules). */
  rules?: string;
}

export type NetResult = { ok: true; us: number } | { ok: false; error: string };

/** gantry-net (native-exec/src/net): netns + veths + addresses + routes over rtnetlink. */
export interface NetHelper {
  /** Makes the netns and everything in it, or nothing (the helper undoes a half-made one). */
  create(spec: NetnsSpec): Promise<NetResult>;
  /** Unmounts and removes the netns; the kernel removes its veths. `wait`: delete them first. */
  remove(netns: string, opts?: { wait?: boolean }): Promise<NetResult>;
  /** iptables-restore -w inside the netns. */
  restore(netns: string, input: string): Promise<NetResult>;
  close(): void;
}

export interface Sys {
  /** Runs `bin args`; resolves stdout; rejects with stderr unless `allowFail`. */
  run(bin: string, args: string[], opts?: { input?: string; allowFail?: boolean }): Promise<{ ok: boolean; out: string; err: string }>;
  /** A new gantry-net helper, or a reason it is not available (callers fall back to `run`). */
  netHelper?(): NetHelper | { missing: string };
}

export class CommandError extends Error {
  override name = 'CommandError';
}

/** Where gantry-net is: $GANTRY_NET_HELPER (only there), else this checkout's build, else /usr/local/bin, /usr/bin. */
export function netHelperPath(): string {
  if (process.env.GANTRY_NET_HELPER) return process.env.GANTRY_NET_HELPER;
  const built = new URL('../../native-exec/build/gantry-net', import.meta.url).pathname;
  return [built, '/usr/local/bin/gantry-net', '/usr/bin/gantry-net'].find((p) => existsSync(p)) ?? built;
}

/**
 * Speaks to one long-lived gantry-net process (started at the first request, again after it dies):
 *   → {"id":N,"op":"create"|"delete"|"restore",...}\n   ← {"id":N,"ok":true,"us":850}\n
 * Answers come in request order. The process is unref'd while idle so it never holds node open.
 */
export class GantryNet implements NetHelper {
  private readonly bin: string;
  private p: ChildProcessWithoutNullStreams | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, (r: NetResult) => void>();
  private stderr = '';

  constructor(bin: string) {
    this.bin = bin;
  }

  private proc(): ChildProcessWithoutNullStreams {
    if (this.p) return this.p;
    const p = spawn(this.bin, ['serve'], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.p = p;
    this.stderr = '';
    createInterface({ input: p.stdout }).on('line', (line) => {
      let m: { id?: number; ok?: boolean; us?: number; error?: string };
      try {
        m = JSON.parse(line);
      } catch {
        return;
      }
      // answers come in request order: one without a known id (a request it could not read) is the oldest's
      const id = this.pending.has(m.id ?? 0) ? (m.id ?? 0) : this.pending.keys().next().value;
      const done = id === undefined ? undefined : this.pending.get(id);
      if (!done || id === undefined) return;
      this.pending.delete(id);
      done(m.ok ? { ok: true, us: m.us ?? 0 } : { ok: false, error: m.error ?? 'gantry-net failed without a message' });
      this.idle();
    });
    p.stderr.on('data', (d) => {
      this.stderr = (this.stderr + d).slice(-2000);
    });
    const gone = (why: string) => {
      if (this.p !== p) return;
      this.p = undefined;
      const err = `gantry-net (${this.bin}) ${why}${this.stderr.trim() ? `: ${this.stderr.trim()}` : ''}`;
      for (const done of this.pending.values()) done({ ok: false, error: err });
      this.pending.clear();
    };
    p.on('error', (e) => gone(`could not run: ${e.message}`));
    p.on('exit', (code, sig) => gone(`exited (${sig ?? code})`));
    p.stdin.on('error', () => {});
    return p;
  }

  /** Let node exit while nothing is asked of the helper. */
  private idle(): void {
    if (this.pending.size || !this.p) return;
    this.p.unref();
    for (const s of [this.p.stdin, this.p.stdout, this.p.stderr] as unknown as { unref?: () => void }[]) s.unref?.();
  }

  private ask(req: Record<string, unknown>): Promise<NetResult> {
    const p = this.proc();
    p.ref();
    for (const s of [p.stdin, p.stdout, p.stderr] as unknown as { ref?: () => void }[]) s.ref?.();
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      p.stdin.write(`${JSON.stringify({ id, ...req })}\n`);
    });
  }

  create(spec: NetnsSpec): Promise<NetResult> {
    return this.ask({ op: 'create', ...spec });
  }

  remove(netns: string, opts: { wait?: boolean } = {}): Promise<NetResult> {
    return this.ask({ op: 'delete', netns, wait: !!opts.wait });
  }

  restore(netns: string, input: string): Promise<NetResult> {
    return this.ask({ op: 'restore', netns, input });
  }

  close(): void {
    const p = this.p;
    this.p = undefined;
    for (const done of this.pending.values()) done({ ok: false, error: 'gantry-net closed' });
    this.pending.clear();
    p?.stdin.end(); // EOF: the helper finishes the request in hand and exits
  }
}

/** False when the command did not run at all (missing binary, exec refused): allowFail callers hear of that too. */
function ran(r: CommandResult): boolean {
  return !(r.code !== 0 && r.stdout === '' && /^spawn \S+ E[A-Z]+$/.test(r.stderr.trim()));
}

export const realSys: Sys = {
  // through the spawner helper (worker/runtime/spawner.ts): a fork from gantryd itself copies its
  // ~190 MB of page tables and blocks its event loop for that long; the helper forks in ~0.1 ms
  async run(bin, args, opts = {}) {
    const r = await runCommand(bin, args, { input: opts.input ?? '', timeoutMs: 60_000 });
    const ok = r.code === 0;
    if (!ok && (!opts.allowFail || !ran(r))) throw new CommandError(`${bin} ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
    return { ok, out: r.stdout, err: r.stderr };
  },
  netHelper() {
    const bin = netHelperPath();
    if (!existsSync(bin)) return { missing: `gantry-net not found at ${bin} (build it: make -C native-exec, or set GANTRY_NET_HELPER)` };
    return new GantryNet(bin);
  },
};
