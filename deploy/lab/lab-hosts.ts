// The lab: several gantry hosts on one machine, each a network namespace on a private bridge with
// its own data dir, run dir, cgroup parent and hostname; starts, kills and tears down everything it made.
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  cgroupDirs,
  cgroupPids,
  cmdline,
  isAlive,
  killAll,
  mountsUnder,
  must,
  netnsList,
  netnsPids,
  type RunResult,
  removeCgroupTree,
  run,
  sleep,
  unmountTree,
} from './sys.ts';
import { secretsDirFor } from '../../worker/secrets.ts';

/** The repository root (deploy/lab/ → ../..). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Every lab's temp root is `${LAB_DIR_PREFIX}<id>`; netns names start with `gl<id>`, cgroups with `gantry-lab<id>-`. */
export const LAB_DIR_PREFIX = '/tmp/gantry-lab-';
export const CGROUP_PREFIX = 'gantry-lab';
export const MANAGER_PORT = 4242;
const NETNS_RE = /^gl(\d+)(sw|h\d+)$/;

export interface LabOptions {
  hosts: number;
  /** 1..254; picked automatically (first free) when absent. */
  id?: number;
  /** The "daemon" each host runs; defaults to gantryd. A stand-in (e.g. `['sleep','infinity']`) tests the lab alone. */
  daemon?: (host: HostInfo, extraArgs: string[]) => string[];
  /** Wait for the host's socket to accept connections in start(); defaults to true unless `daemon` is given. */
  waitForSocket?: boolean;
  /** gantryd --runtime (native|runc|crun|sim); gantryd's default when absent. */
  runtime?: string;
  /** Extra environment for the daemon. */
  env?: NodeJS.ProcessEnv;
  /** Who owns the lab: a pid (cleanup removes the lab once it is dead) or null (kept until `lab down`). Default: this process. */
  owner?: number | null;
}

export interface HostInfo {
  index: number;
  name: string;
  ns: string;
  ip: string;
  dir: string;
  dataDir: string;
  runDir: string;
  socket: string;
  logFile: string;
  cgroupParent: string;
}

interface LabRecord {
  id: number;
  hosts: number;
  owner: number | null;
  created: string;
  runtime?: string;
}

export function labRoot(id: number): string {
  return `${LAB_DIR_PREFIX}${id}`;
}

export function subnet(id: number): string {
  return `10.213.${id}`;
}

export function hostInfo(id: number, index: number): HostInfo {
  const name = `gl${id}h${index}`;
  const dir = `${labRoot(id)}/h${index}`;
  return {
    index,
    name,
    ns: name,
    ip: `${subnet(id)}.${10 + index}`,
    dir,
    dataDir: `${dir}/data`,
    runDir: `${dir}/run`,
    socket: `${dir}/run/gantry.sock`,
    logFile: `${dir}/gantryd.log`,
    cgroupParent: `${CGROUP_PREFIX}${id}-h${index}`,
  };
}

/** gantryd's command line for a lab host. */
export function gantrydArgv(h: HostInfo, runtime: string | undefined, extra: string[]): string[] {
  const argv = [
    process.execPath,
    path.join(REPO_ROOT, 'cli/gantryd.ts'),
    '--data-dir',
    h.dataDir,
    '--socket',
    h.socket,
    '--exec-root',
    h.runDir,
    '--listen-addr',
    `${h.ip}:${MANAGER_PORT}`,
    '--advertise-addr',
    h.ip,
    '--cgroup-parent',
    h.cgroupParent,
    '--hostname',
    h.name,
  ];
  if (runtime) argv.push('--runtime', runtime);
  return [...argv, ...extra];
}

export class LabHost implements HostInfo {
  readonly index: number;
  readonly name: string;
  readonly ns: string;
  readonly ip: string;
  readonly dir: string;
  readonly dataDir: string;
  readonly runDir: string;
  readonly socket: string;
  readonly logFile: string;
  readonly cgroupParent: string;
  readonly #lab: Lab;
  #child: ChildProcess | undefined;

  constructor(lab: Lab, info: HostInfo) {
    this.#lab = lab;
    this.index = info.index;
    this.name = info.name;
    this.ns = info.ns;
    this.ip = info.ip;
    this.dir = info.dir;
    this.dataDir = info.dataDir;
    this.runDir = info.runDir;
    this.socket = info.socket;
    this.logFile = info.logFile;
    this.cgroupParent = info.cgroupParent;
  }

  get #pidFile(): string {
    return `${this.dir}/gantryd.pid`;
  }

  /** The daemon's pid (also its process group), from this process or the pid file; undefined when not running. */
  pid(): number | undefined {
    let pid: number | undefined;
    if (this.#child?.pid && this.#child.exitCode === null && this.#child.signalCode === null) pid = this.#child.pid;
    else {
      try {
        pid = Number(fs.readFileSync(this.#pidFile, 'utf8').trim()) || undefined;
      } catch {
        pid = undefined;
      }
    }
    return pid && isAlive(pid) && !isZombieOrOther(pid, this.ns) ? pid : undefined;
  }

  running(): boolean {
    return this.pid() !== undefined;
  }

  /**
   * Starts the daemon in this host's netns, in its own process group, output appended to logFile.
   * Resolves once its socket accepts connections (gantryd) or right away (stand-in daemons).
   */
  async start(extraArgs: string[] = []): Promise<void> {
    if (this.running()) throw new Error(`lab host ${this.name}: daemon already running (pid ${this.pid()}); stop() it first`);
    fs.mkdirSync(this.dataDir, { recursive: true });
    fs.mkdirSync(this.runDir, { recursive: true });
    // the host's /run: a tmpfs, as on any systemd host (gantryd's exec root; dockerd's in bench/swarm-lab)
    if (!mountsUnder(this.runDir).includes(this.runDir)) await must('mount', ['-t', 'tmpfs', '-o', 'mode=0755', `lab-run-${this.name}`, this.runDir]);
    fs.rmSync(this.socket, { force: true });
    const argv = this.#lab.daemonArgv(this, extraArgs);
    const log = fs.openSync(this.logFile, 'a');
    fs.writeSync(log, `\n=== ${new Date().toISOString()} start: ${argv.join(' ')}\n`);
    // nsenter --net switches only the network namespace: unlike `ip netns exec` it keeps the
    // root mount namespace, so the overlay mounts gantryd makes stay visible (and removable) here.
    const child = spawn('nsenter', [`--net=/run/netns/${this.ns}`, '--', ...argv], {
      detached: true,
      stdio: ['ignore', log, log],
      cwd: REPO_ROOT,
      env: { ...process.env, ...this.#lab.env, GANTRY_LAB_HOST: this.name },
    });
    fs.closeSync(log);
    this.#child = child;
    child.unref();
    const exited = new Promise<string>((resolve) => {
      child.once('exit', (code, signal) => resolve(`exited with ${signal ?? `code ${code}`}`));
      child.once('error', (err) => resolve(`failed to start: ${err.message}`));
    });
    if (!child.pid) throw new Error(`lab host ${this.name}: could not spawn ${argv[0]}: ${await exited}`);
    fs.writeFileSync(this.#pidFile, `${child.pid}\n`);
    if (!this.#lab.waitForSocket) return;
    const deadline = Date.now() + 60_000;
    let early: string | undefined;
    void exited.then((why) => {
      early = why;
    });
    for (;;) {
      if (early) throw new Error(`lab host ${this.name}: daemon ${early} before its socket was ready; last log lines:\n${this.logTail()}`);
      if (await canConnect(this.socket)) return;
      if (Date.now() > deadline) {
        throw new Error(`lab host ${this.name}: socket ${this.socket} not accepting after 60s; last log lines:\n${this.logTail()}`);
      }
      await sleep(50);
    }
  }

  /** Graceful stop: SIGTERM to the daemon, then SIGKILL to its process group after `graceMs`. Containers may survive (by design). */
  async stop(graceMs = 15_000): Promise<void> {
    const pid = this.pid();
    if (pid === undefined) return;
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return;
    }
    const deadline = Date.now() + graceMs;
    while (isAlive(pid) && Date.now() < deadline) await sleep(25);
    if (isAlive(pid)) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // gone
      }
      await killAll(() => (isAlive(pid) ? [pid] : []));
    }
    fs.rmSync(this.#pidFile, { force: true });
  }

  /**
   * The host dies: SIGKILL to every process in its netns (gantryd, its etcd, container monitors)
   * and in its cgroup parent (containers), then what a reboot clears goes too: mounts under its
   * dir, its run dir, its cgroups. Its data dir stays, like a disk.
   */
  async kill(): Promise<void> {
    const left = await killAll(() => this.pids());
    if (left.length) throw new Error(`lab host ${this.name}: processes survived SIGKILL: ${left.join(', ')}`);
    fs.rmSync(this.#pidFile, { force: true });
    const mounts = [...(await unmountTree(this.dir)), ...(await removeSecretsTmpfs(this.dataDir))];
    fs.rmSync(this.runDir, { recursive: true, force: true });
    const cg = cgroupDirs(this.cgroupParent, { whole: true }).flatMap(removeCgroupTree);
    if (mounts.length || cg.length) {
      throw new Error(`lab host ${this.name}: could not remove mounts [${mounts.join(', ')}] or cgroups [${cg.join(', ')}]`);
    }
  }

  /** Every process that belongs to this host: in its netns or in its cgroup parent. */
  pids(): number[] {
    const set = new Set(netnsPids(this.ns));
    for (const d of cgroupDirs(this.cgroupParent, { whole: true })) for (const p of cgroupPids(d)) set.add(p);
    return [...set];
  }

  /** This host's processes whose argv matches `pred` (e.g. a container's `sleep 86401`). */
  processes(pred: (argv: string[]) => boolean = () => true): { pid: number; argv: string[] }[] {
    const out: { pid: number; argv: string[] }[] = [];
    for (const pid of this.pids()) {
      const argv = cmdline(pid);
      if (argv && pred(argv)) out.push({ pid, argv });
    }
    return out;
  }

  /** Runs the gantry CLI against this host's socket (from inside its netns). */
  gantry(args: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
    return run(
      'nsenter',
      [`--net=/run/netns/${this.ns}`, '--', process.execPath, path.join(REPO_ROOT, 'cli/gantry.ts'), ...args],
      { env: { ...process.env, GANTRY_HOST: `unix://${this.socket}` }, timeoutMs: opts.timeoutMs ?? 60_000, input: opts.input, cwd: REPO_ROOT },
    );
  }

  /** Runs a command inside this host's netns. */
  exec(cmd: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
    return run('nsenter', [`--net=/run/netns/${this.ns}`, '--', ...cmd], { timeoutMs: opts.timeoutMs ?? 60_000, env: opts.env });
  }

  logTail(lines = 30): string {
    try {
      return fs.readFileSync(this.logFile, 'utf8').split('\n').slice(-lines - 1).join('\n');
    } catch {
      return '(no log)';
    }
  }
}

/** True when `pid` was reused by a process outside this host's netns (stale pid file). */
function isZombieOrOther(pid: number, ns: string): boolean {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (/\) Z /.test(st)) return true;
    const mine = fs.statSync(`/run/netns/${ns}`);
    const its = fs.statSync(`/proc/${pid}/ns/net`);
    // nsenter itself starts in the root netns for a moment; only a pid that settled elsewhere is stale.
    return !(its.ino === mine.ino && its.dev === mine.dev) && cmdline(pid)?.[0] !== 'nsenter';
  } catch {
    return true;
  }
}

function canConnect(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    if (!fs.existsSync(socket)) return resolve(false);
    const s = net.connect(socket);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export class Lab {
  readonly id: number;
  readonly root: string;
  readonly hosts: LabHost[];
  readonly waitForSocket: boolean;
  readonly env: NodeJS.ProcessEnv;
  readonly #daemon: (host: HostInfo, extraArgs: string[]) => string[];

  constructor(id: number, hosts: number, opts: Omit<LabOptions, 'hosts' | 'id'> = {}) {
    this.id = id;
    this.root = labRoot(id);
    const runtime = opts.runtime;
    this.#daemon = opts.daemon ?? ((h, extra) => gantrydArgv(h, runtime, extra));
    this.waitForSocket = opts.waitForSocket ?? opts.daemon === undefined;
    this.env = opts.env ?? {};
    this.hosts = Array.from({ length: hosts }, (_, i) => new LabHost(this, hostInfo(id, i)));
  }

  daemonArgv(h: HostInfo, extra: string[]): string[] {
    return this.#daemon(h, extra);
  }

  host(i: number): LabHost {
    const h = this.hosts[i];
    if (!h) throw new Error(`lab ${this.id} has hosts 0..${this.hosts.length - 1}, not ${i}`);
    return h;
  }

  get switchNs(): string {
    return `gl${this.id}sw`;
  }

  /** Creates the switch, the hosts' namespaces and links, and their dirs. Daemons are not started. */
  static async up(opts: LabOptions): Promise<Lab> {
    if (!Number.isInteger(opts.hosts) || opts.hosts < 1 || opts.hosts > 200) throw new Error(`lab: hosts must be 1..200, got ${opts.hosts}`);
    const id = opts.id ?? pickId();
    if (opts.id !== undefined) claimId(opts.id);
    const lab = new Lab(id, opts.hosts, opts);
    const record: LabRecord = { id, hosts: opts.hosts, owner: opts.owner === undefined ? process.pid : opts.owner, created: new Date().toISOString(), runtime: opts.runtime };
    fs.writeFileSync(`${lab.root}/lab.json`, `${JSON.stringify(record)}\n`);
    try {
      await lab.#makeNetwork();
    } catch (err) {
      await lab.down().catch(() => {});
      throw err;
    }
    return lab;
  }

  /** Re-opens a lab made by another process (the CLI's `down`, `ls`). */
  static open(id: number, opts: Omit<LabOptions, 'hosts' | 'id'> = {}): Lab {
    const rec = readRecord(id);
    if (!rec) throw new Error(`lab ${id} not found (no ${labRoot(id)}/lab.json); \`lab.ts ls\` lists labs`);
    return new Lab(id, rec.hosts, { runtime: rec.runtime, ...opts });
  }

  async #makeNetwork(): Promise<void> {
    const sw = this.switchNs;
    const net24 = subnet(this.id);
    await must('ip', ['netns', 'add', sw]);
    const inSw = (args: string[]) => must('ip', ['-n', sw, ...args]);
    await inSw(['link', 'set', 'lo', 'up']);
    await inSw(['link', 'add', 'br0', 'type', 'bridge']);
    await inSw(['addr', 'add', `${net24}.1/24`, 'dev', 'br0']);
    await inSw(['link', 'set', 'br0', 'up']);
    for (const h of this.hosts) {
      fs.mkdirSync(h.dataDir, { recursive: true });
      fs.mkdirSync(h.runDir, { recursive: true });
      await must('ip', ['netns', 'add', h.ns]);
      // Both ends are created directly in their namespaces: the root netns never sees them.
      await must('ip', ['link', 'add', 'eth0', 'netns', h.ns, 'type', 'veth', 'peer', 'name', `h${h.index}`, 'netns', sw]);
      await inSw(['link', 'set', `h${h.index}`, 'master', 'br0']);
      await inSw(['link', 'set', `h${h.index}`, 'up']);
      const inH = (args: string[]) => must('ip', ['-n', h.ns, ...args]);
      await inH(['link', 'set', 'lo', 'up']);
      await inH(['addr', 'add', `${h.ip}/24`, 'dev', 'eth0']);
      await inH(['link', 'set', 'eth0', 'up']);
      await inH(['route', 'add', 'default', 'via', `${net24}.1`]);
    }
  }

  /** Drops all traffic between hosts a and b (both directions, iptables in their namespaces) until heal(). */
  async partition(a: number, b: number): Promise<void> {
    const ha = this.host(a);
    const hb = this.host(b);
    for (const [x, y] of [
      [ha, hb],
      [hb, ha],
    ]) {
      await ensureChain(x.ns);
      await must('ip', ['netns', 'exec', x.ns, 'iptables', '-A', 'GANTRY-LAB', '-s', y.ip, '-j', 'DROP']);
      await must('ip', ['netns', 'exec', x.ns, 'iptables', '-A', 'GANTRY-LAB', '-d', y.ip, '-j', 'DROP']);
    }
  }

  /** Cuts host a off from every other host. */
  async isolate(a: number): Promise<void> {
    for (const h of this.hosts) if (h.index !== a) await this.partition(a, h.index);
  }

  /** Removes every partition rule. */
  async heal(): Promise<void> {
    for (const h of this.hosts) await run('ip', ['netns', 'exec', h.ns, 'iptables', '-F', 'GANTRY-LAB']);
  }

  /** Stops everything and removes namespaces, links, mounts, cgroups, processes and the temp root. Safe to call twice or after a failed up. */
  async down(): Promise<void> {
    const errors: string[] = [];
    // GANTRY_LAB_KEEP_LOGS=DIR keeps every host's gantryd log (for a failure seen only under load)
    const keep = process.env.GANTRY_LAB_KEEP_LOGS;
    if (keep) {
      fs.mkdirSync(keep, { recursive: true });
      for (const h of this.hosts) if (fs.existsSync(h.logFile)) fs.copyFileSync(h.logFile, path.join(keep, `${new Date().toISOString().replace(/[:.]/g, "")}-${h.name}.log`));
    }
    for (const h of this.hosts) {
      try {
        await h.kill();
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
    errors.push(...(await removeLabLeftovers(this.id)));
    if (errors.length) throw new Error(`lab ${this.id} down: ${errors.join('; ')}`);
  }
}

async function ensureChain(ns: string): Promise<void> {
  const ipt = (args: string[]) => run('ip', ['netns', 'exec', ns, 'iptables', ...args]);
  if ((await ipt(['-n', '-L', 'GANTRY-LAB'])).code === 0) return;
  await must('ip', ['netns', 'exec', ns, 'iptables', '-N', 'GANTRY-LAB']);
  for (const chain of ['INPUT', 'OUTPUT', 'FORWARD']) await must('ip', ['netns', 'exec', ns, 'iptables', '-I', chain, '-j', 'GANTRY-LAB']);
}

function readRecord(id: number): LabRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(`${labRoot(id)}/lab.json`, 'utf8')) as LabRecord;
  } catch {
    return undefined;
  }
}

function idInUse(id: number): boolean {
  return fs.existsSync(labRoot(id)) || netnsList().some((n) => n.match(NETNS_RE)?.[1] === String(id));
}

function claimId(id: number): void {
  if (!Number.isInteger(id) || id < 1 || id > 254) throw new Error(`lab id must be 1..254, got ${id}`);
  if (netnsList().some((n) => n.match(NETNS_RE)?.[1] === String(id))) throw new Error(`lab ${id} exists (netns gl${id}*); \`lab.ts down --id ${id}\` first`);
  try {
    fs.mkdirSync(labRoot(id)); // atomic claim against labs started in parallel
  } catch {
    throw new Error(`lab ${id} exists (${labRoot(id)}); \`lab.ts down --id ${id}\` first`);
  }
}

function pickId(): number {
  for (let id = 1; id <= 254; id++) {
    if (idInUse(id)) continue;
    try {
      fs.mkdirSync(labRoot(id));
      return id;
    } catch {
      // taken by a parallel lab between the check and the claim
    }
  }
  throw new Error('no free lab id in 1..254; `node deploy/lab/lab.ts cleanup` removes stale labs');
}

/** A host's secrets tmpfs lives under /run (what a reboot clears), outside the lab's dir: it goes with the host. */
async function removeSecretsTmpfs(dataDir: string): Promise<string[]> {
  const dir = secretsDirFor(dataDir);
  const stayed = await unmountTree(dir);
  if (!stayed.length) fs.rmSync(dir, { recursive: true, force: true });
  return stayed;
}

/** Removes whatever remains of lab `id` by name: processes, mounts, cgroups, netns, temp dir. Returns problems. */
export async function removeLabLeftovers(id: number): Promise<string[]> {
  const errors: string[] = [];
  const nss = netnsList().filter((n) => n.match(NETNS_RE)?.[1] === String(id));
  const cgs = cgroupDirs(`${CGROUP_PREFIX}${id}-`);
  const left = await killAll(() => {
    const set = new Set<number>();
    for (const ns of nss) for (const p of netnsPids(ns)) set.add(p);
    for (const d of cgs) for (const p of cgroupPids(d)) set.add(p);
    return [...set];
  });
  if (left.length) errors.push(`processes survived SIGKILL: ${left.join(', ')}`);
  const hostDataDirs = fs.existsSync(labRoot(id)) ? fs.readdirSync(labRoot(id)).map((h) => `${labRoot(id)}/${h}/data`) : [];
  const mounts = [...(await unmountTree(labRoot(id))), ...(await Promise.all(hostDataDirs.map(removeSecretsTmpfs))).flat()];
  if (mounts.length) errors.push(`mounts stayed: ${mounts.join(', ')}`);
  for (const d of cgroupDirs(`${CGROUP_PREFIX}${id}-`)) errors.push(...removeCgroupTree(d).map((x) => `cgroup stayed: ${x}`));
  for (const ns of nss) {
    const r = await run('ip', ['netns', 'del', ns]);
    if (r.code !== 0) errors.push(`ip netns del ${ns}: ${r.stderr.trim()}`);
  }
  if (!mounts.length) fs.rmSync(labRoot(id), { recursive: true, force: true });
  return errors;
}

export interface LabListing {
  id: number;
  hosts: number;
  owner: number | null;
  ownerAlive: boolean;
  netns: string[];
  created?: string;
}

/** Every lab on this machine, from temp roots, netns names and cgroup names. */
export function listLabs(): LabListing[] {
  const ids = new Set<number>();
  for (const e of fs.readdirSync('/tmp')) {
    const m = /^gantry-lab-(\d+)$/.exec(e);
    if (m) ids.add(Number(m[1]));
  }
  for (const n of netnsList()) {
    const m = n.match(NETNS_RE);
    if (m) ids.add(Number(m[1]));
  }
  for (const d of cgroupDirs(CGROUP_PREFIX)) {
    const m = /gantry-lab(\d+)-/.exec(path.basename(d));
    if (m) ids.add(Number(m[1]));
  }
  return [...ids]
    .sort((a, b) => a - b)
    .map((id) => {
      const rec = readRecord(id);
      const owner = rec ? rec.owner : null;
      return {
        id,
        hosts: rec?.hosts ?? 0,
        owner,
        ownerAlive: owner !== null && isAlive(owner),
        netns: netnsList().filter((n) => n.match(NETNS_RE)?.[1] === String(id)),
        created: rec?.created,
      };
    });
}

/**
 * Removes stale labs: those whose owner process is dead, and name-prefixed leftovers with no
 * lab record. With `all`, every lab (including live ones and ones kept by the CLI).
 */
export async function cleanupLabs(opts: { all?: boolean } = {}): Promise<{ removed: number[]; errors: string[] }> {
  const removed: number[] = [];
  const errors: string[] = [];
  for (const l of listLabs()) {
    const rec = readRecord(l.id);
    const stale = !rec ? !isFresh(l.id) : rec.owner !== null && !isAlive(rec.owner);
    if (!opts.all && !stale) continue;
    const errs = await removeLabLeftovers(l.id);
    errors.push(...errs.map((e) => `lab ${l.id}: ${e}`));
    removed.push(l.id);
  }
  return { removed, errors };
}

/** A lab dir without lab.json may be one being created right now (claimed but not yet recorded). */
function isFresh(id: number): boolean {
  try {
    return Date.now() - fs.statSync(labRoot(id)).mtimeMs < 10_000;
  } catch {
    return false;
  }
}
