// The etcd member a manager's gantryd runs: Debian's /usr/bin/etcd as a supervised child on ports chosen once
// and kept in <dataDir>/member.json, restarted with backoff when it dies; plus member add/remove/list helpers.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { EtcdRpc, type EtcdTls, type Member } from './etcd-rpc.ts';

export interface EtcdMemberOptions {
  /** e.g. <gantry data>/etcd; holds member.json and etcd's own data dir (data/). */
  dataDir: string;
  name: string;
  /** The IP to listen on and advertise, e.g. 127.0.0.1 or the node's advertise address. */
  host: string;
  /** name=peerURL,... when joining an existing cluster (this member's entry included). */
  initialCluster?: string;
  clusterState?: 'new' | 'existing';
  /** Restart a lost cluster from this member's data alone (disaster recovery). */
  forceNewCluster?: boolean;
  log?: (line: string) => void;
  /** The etcd binary (default /usr/bin/etcd). */
  binary?: string;
  /** How long to wait for the first healthy answer (default 30 s). */
  startTimeoutMs?: number;
  /**
   * Peer and client TLS with certificates from the cluster CA: the files etcd reads (it re-reads
   * them on new connections, so renewals apply) and the same material for our own client calls.
   */
  tls?: { files: { ca: string; cert: string; key: string }; material: () => EtcdTls };
}

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  /** Stops etcd (SIGTERM, then SIGKILL after 5 s) and its supervision. */
  stop(): Promise<void>;
  /** Called when etcd exits unexpectedly (it is then restarted with backoff). */
  onExit?: (code: number | null, signal: NodeJS.Signals | null) => void;
  /** The current etcd process id (undefined while it is down). */
  pid(): number | undefined;
  /** How many times etcd was restarted after dying. */
  restarts(): number;
  /** Resolves once etcd answers a request again (after a restart). */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Stops etcd (SIGTERM) and starts it again at once, so it reads its files anew; resolves once healthy. */
  restart(): Promise<void>;
}

interface Persisted {
  name: string;
  host: string;
  clientPort: number;
  peerPort: number;
}

/** A port that was free on `host` a moment ago. */
export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read ${path}: ${(err as Error).message} (remove it to pick new ports)`);
  }
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(`${path}.tmp`, JSON.stringify(value, null, 2) + '\n');
  await rename(`${path}.tmp`, path);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Kills an etcd left running on this data dir by a previous gantryd that died (it would hold the db lock). */
async function killStale(pidFile: string, dataDir: string, log: (l: string) => void): Promise<void> {
  let pid: number;
  try {
    pid = Number((await readFile(pidFile, 'utf8')).trim());
  } catch {
    return;
  }
  if (!pid || !alive(pid)) return;
  let cmdline = '';
  try {
    cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').join(' ');
  } catch {
    return;
  }
  if (!cmdline.includes('etcd') || !cmdline.includes(dataDir)) return;
  log(`etcd: stopping stale etcd pid ${pid} left on ${dataDir}`);
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  if (alive(pid)) process.kill(pid, 'SIGKILL');
}

async function healthy(clientUrl: string, timeoutMs: number, tls?: EtcdTls): Promise<void> {
  const rpc = new EtcdRpc([clientUrl], { callTimeoutMs: Math.min(1000, timeoutMs), tls });
  try {
    // A linearizable read: answers only when this member is part of a cluster with a leader.
    await rpc.once('KV', 'range', { key: Buffer.from('/gantry-health') }, Math.min(1000, timeoutMs));
  } finally {
    rpc.close();
  }
}

/**
 * The URLs this member has (or will have): ports chosen on first use and kept in <dataDir>/member.json.
 * A joining manager calls this first, so the leader can MemberAdd its peer URL before it starts.
 */
export async function memberUrls(
  opts: Pick<EtcdMemberOptions, 'dataDir' | 'name' | 'host' | 'log'> & { tls?: unknown },
): Promise<{ clientUrl: string; peerUrl: string }> {
  await mkdir(opts.dataDir, { recursive: true, mode: 0o700 });
  const metaPath = join(opts.dataDir, 'member.json');
  let p = await readJson<Persisted>(metaPath);
  if (!p || p.host !== opts.host || p.name !== opts.name) {
    if (p) opts.log?.(`etcd: member.json was for ${p.name}@${p.host}; choosing new ports for ${opts.name}@${opts.host}`);
    p = { name: opts.name, host: opts.host, clientPort: await freePort(opts.host), peerPort: await freePort(opts.host) };
    while (p.peerPort === p.clientPort) p.peerPort = await freePort(opts.host);
    await writeJson(metaPath, p);
  }
  const hostPart = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const scheme = opts.tls ? 'https' : 'http';
  return { clientUrl: `${scheme}://${hostPart}:${p.clientPort}`, peerUrl: `${scheme}://${hostPart}:${p.peerPort}` };
}

export async function startEtcdMember(opts: EtcdMemberOptions): Promise<EtcdMember> {
  const log = opts.log ?? (() => {});
  const binary = opts.binary ?? '/usr/bin/etcd';
  const { clientUrl, peerUrl } = await memberUrls(opts);
  const pidFile = join(opts.dataDir, 'etcd.pid');
  await killStale(pidFile, opts.dataDir, log);

  const baseArgs = [
    `--name=${opts.name}`,
    `--data-dir=${join(opts.dataDir, 'data')}`,
    `--listen-client-urls=${clientUrl}`,
    `--advertise-client-urls=${clientUrl}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=${opts.initialCluster ?? `${opts.name}=${peerUrl}`}`,
    `--initial-cluster-state=${opts.clusterState ?? 'new'}`,
    '--initial-cluster-token=gantry',
    // A LAN/lab: notice a dead leader within about a second.
    '--heartbeat-interval=100',
    '--election-timeout=1000',
    '--auto-compaction-mode=revision',
    '--auto-compaction-retention=1000',
    '--quota-backend-bytes=4294967296',
    '--max-txn-ops=128',
    '--max-request-bytes=1572864',
    // Our client pings every 5 s; let it (etcd's default minimum is 5 s too, this leaves slack).
    '--grpc-keepalive-min-time=1s',
    '--enable-v2=false',
    '--logger=zap',
    '--log-outputs=stderr',
    '--log-level=warn',
    ...(opts.tls
      ? [
          `--cert-file=${opts.tls.files.cert}`,
          `--key-file=${opts.tls.files.key}`,
          `--trusted-ca-file=${opts.tls.files.ca}`,
          '--client-cert-auth',
          `--peer-cert-file=${opts.tls.files.cert}`,
          `--peer-key-file=${opts.tls.files.key}`,
          `--peer-trusted-ca-file=${opts.tls.files.ca}`,
          '--peer-client-cert-auth',
        ]
      : []),
  ];
  let forceNew = opts.forceNewCluster === true;
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ETCD')) env[k] = v;

  let child: ChildProcess | undefined;
  let stopped = false;
  let restarts = 0;
  let restartTimer: NodeJS.Timeout | undefined;
  let backoff = 200;
  let startedAt = 0;
  let exited: Promise<void> = Promise.resolve();
  let spawnError: string | undefined;
  let restarting = false;

  const member: EtcdMember = {
    name: opts.name,
    clientUrl,
    peerUrl,
    pid: () => child?.pid,
    restarts: () => restarts,
    stop,
    waitHealthy,
    restart,
  };

  function launch(): void {
    const args = forceNew ? [...baseArgs, '--force-new-cluster'] : baseArgs;
    forceNew = false; // only once: later restarts rejoin the (new) cluster normally
    const c = spawn(binary, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    startedAt = Date.now();
    if (c.pid) void writeFile(pidFile, `${c.pid}\n`).catch(() => {});
    for (const s of [c.stdout, c.stderr]) if (s) createInterface({ input: s }).on('line', (l) => log(`etcd[${opts.name}]: ${l}`));
    exited = new Promise((resolve) => {
      c.on('error', (err) => {
        spawnError = `cannot run ${binary}: ${err.message} (is etcd-server installed?)`;
        log(`etcd: ${spawnError}`);
      });
      c.on('close', (code, signal) => {
        if (child === c) child = undefined;
        resolve();
        if (stopped || restarting) return;
        log(`etcd: ${opts.name} exited (${signal ?? `code ${code}`}); restarting in ${backoff} ms`);
        try {
          member.onExit?.(code, signal);
        } catch {}
        if (Date.now() - startedAt > 10_000) backoff = 200;
        restartTimer = setTimeout(() => {
          restartTimer = undefined;
          if (stopped) return;
          restarts++;
          launch();
        }, backoff);
        backoff = Math.min(backoff * 2, 5000);
      });
    });
  }

  async function waitHealthy(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    while (Date.now() < deadline) {
      if (stopped) throw new Error(`etcd ${opts.name} was stopped`);
      if (spawnError) throw new Error(`etcd ${opts.name}: ${spawnError}`);
      try {
        await healthy(clientUrl, Math.max(100, Math.min(1000, deadline - Date.now())), opts.tls?.material());
        return;
      } catch (err) {
        last = err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    throw new Error(
      `etcd ${opts.name} at ${clientUrl} not healthy after ${Math.round(timeoutMs / 1000)}s (${(last as Error)?.message ?? last}); see its log lines above`,
    );
  }

  async function restart(): Promise<void> {
    if (stopped) throw new Error(`etcd ${opts.name} was stopped`);
    restarting = true;
    try {
      if (restartTimer) clearTimeout(restartTimer);
      restartTimer = undefined;
      const c = child;
      if (c && c.exitCode === null && c.signalCode === null) {
        c.kill('SIGTERM');
        const killer = setTimeout(() => c.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(killer);
      }
      if (stopped) return;
      launch();
    } finally {
      restarting = false;
    }
    await waitHealthy(opts.startTimeoutMs ?? 30_000);
  }

  async function stop(): Promise<void> {
    stopped = true;
    if (restartTimer) clearTimeout(restartTimer);
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill('SIGTERM');
    const killer = setTimeout(() => c.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(killer);
  }

  launch();
  try {
    await waitHealthy(opts.startTimeoutMs ?? 30_000);
  } catch (err) {
    await stop();
    throw err;
  }
  log(`etcd: ${opts.name} healthy at ${clientUrl} (peer ${peerUrl})`);
  return member;
}

// ----- cluster membership (for adding and removing managers) -----

type Target = string[] | { endpoints: string[]; tls?: EtcdTls };

async function withRpc<T>(target: Target, fn: (rpc: EtcdRpc) => Promise<T>): Promise<T> {
  const rpc = Array.isArray(target) ? new EtcdRpc(target) : new EtcdRpc(target.endpoints, { tls: target.tls });
  try {
    return await fn(rpc);
  } finally {
    rpc.close();
  }
}

export interface MemberInfo {
  /** etcd's member id, as a decimal string (uint64). */
  id: string;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

const info = (m: Member): MemberInfo => ({
  id: m.ID,
  name: m.name,
  peerUrls: m.peerURLs,
  clientUrls: m.clientURLs,
  isLearner: m.isLearner,
});

export function listMembers(target: Target): Promise<MemberInfo[]> {
  return withRpc(target, async (rpc) => (await rpc.memberList()).members.map(info));
}

/**
 * Adds a member (call before the new manager starts its etcd with clusterState 'existing').
 * Returns it and the `initialCluster` string the new member needs (its name is filled in by you).
 */
export function addMember(target: Target, peerUrl: string, name: string): Promise<{ member: MemberInfo; initialCluster: string }> {
  return withRpc(target, async (rpc) => {
    const res = await rpc.memberAdd([peerUrl]);
    const parts = res.members.map((m) => (m.ID === res.member.ID ? `${name}=${peerUrl}` : m.peerURLs.map((u) => `${m.name}=${u}`).join(',')));
    return { member: info(res.member), initialCluster: parts.join(',') };
  });
}

export function removeMember(target: Target, id: string): Promise<MemberInfo[]> {
  return withRpc(target, async (rpc) => (await rpc.memberRemove(id)).members.map(info));
}
