// OciRuntime: containers through any runc-compatible binary (runc, crun, gantry-exec), each held by a
// detached `gantry-exec monitor` so it outlives gantryd; state lives in <stateDir>/<id>/ for re-adoption.
//
//  OciRuntime (gantryd)             gantry-exec monitor (detached)            BIN (runc|crun|gantry-exec)
//   | mount rootfs, write config.json, meta.json                                |
//   | spawn `monitor --runtime BIN ... ID` --> | setsid, subreaper                |
//   |                                          | `BIN create --pid-file ...` ----> | container created (stopped at exec)
//   | <-- {"pid":N} exit 0  (or 1 + error) --- | holds stdio: ctr.log, attach.sock |
//   | `BIN start ID` ------------------------------------------------------------> | exec user process
//   | fs.watch(dir) + connect(attach.sock)     |                                  |
//   |                                          | <-- SIGCHLD (container exits)    |
//   | <-- exit.json (tmp+rename), socket EOF - | exits                            |
//   | `BIN delete --force ID`, unmount rootfs, rm -r <stateDir>/<id> ---------->  |
//
// A gantryd restart loses nothing: the monitor keeps running, and a new OciRuntime reads meta.json,
// asks `BIN state`, and waits on exit.json again.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync, watch } from 'node:fs';
import { chmod, type FileHandle, lstat, mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { basename, join } from 'node:path';
import { ALL_CAPS, buildOciSpec, cgroupsPathFor } from './bundle.ts';
import { type Clock, systemClock } from './clock.ts';
import { type Log, nullLog } from './log.ts';
import { mountsUnder, type RootfsMounter } from './rootfs-mount.ts';
import { runCommand, spawnerMounter, warmSpawner } from './spawner.ts';
import { OnceCache } from '../once-cache.ts';
import { startThroughFifo } from './exec-fifo.ts';
import { FirstOfKind } from './first-of-kind.ts';
import { StateFiles } from './state-files.ts';
import { ensureTargetsLayer, layerFits, layerPaths } from './targets-layer.ts';
import {
  type ContainerConfig, type ContainerState, type ExecResult, type LogEntry, type LogOptions, type Runtime, RuntimeError,
} from './types.ts';

export interface OciRuntimeOptions {
  name: string;                 // "runc" | "crun" | "native" | any
  binary: string;               // the runc-compatible CLI
  root: string;                 // its --root: <exec-root>/runtime/<name>
  stateDir: string;             // <exec-root>/containers: one directory per container (bundle, sockets, pid and exit files)
  /** <data-dir>/containers: what a container writes (upper/, work/) and prints (ctr.log*), kept on disk. Default: stateDir. */
  diskDir?: string;
  monitorBinary: string;        // gantry-exec (its `monitor` subcommand)
  cgroupParent: string;         // gantryd --cgroup-parent, default "gantry"
  log?: Log;
  clock?: Clock;
  rootfs?: RootfsMounter;       // default: worker/rootfs/overlay.ts, else a mount(8) fallback
  /** Run BIN in a private mount namespace without the cgroup2 mount (crun on a hybrid host). Default: auto. */
  privateCgroupMount?: boolean;
  commandTimeoutMs?: number;
}

/** What is persisted in <stateDir>/<id>/meta.json, enough to re-adopt and remove the container later. */
export interface ContainerMeta {
  id: string;
  runtime: string;
  createdAt: number;
  startedAt?: number;
  stopSignal: string;
  rootfs: { kind: 'layers' | 'dir'; path: string };
  labels: Record<string, string>;
  tty: boolean;
  /** The runtime CLI and --root that created it: later calls use them, whichever runtime is current. */
  binary?: string;
  runtimeRoot?: string;
  /** Where its upper/, work/ and logs are, when not in its state dir. */
  diskDir?: string;
}

interface ExitFile { exitCode: number; signal: number | null; oomKilled: boolean; finishedAt: string }

const MAX_EXEC_OUTPUT = 4096;
/** overlayfs stacks at most 500 lower dirs (worker/rootfs/overlay.ts MAX_LAYERS): the targets layer needs one. */
const MAX_LOWER_DIRS = 500;

/** True when /sys/fs/cgroup/unified is a cgroup2 mount beside v1 controllers. */
export function isHybridCgroupHost(): boolean {
  try {
    const info = readFileSync('/proc/self/mountinfo', 'utf8');
    return info.split('\n').some((l) => l.split(' ')[4] === '/sys/fs/cgroup/unified' && l.includes(' - cgroup2 '));
  } catch {
    return false;
  }
}

/** The host's capability bounding set as CAP_ names (root here may lack CAP_SYS_RESOURCE). */
export function hostCapabilities(): string[] {
  try {
    const m = /CapBnd:\s*([0-9a-f]+)/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (!m) return ALL_CAPS;
    const mask = BigInt(`0x${m[1]}`);
    const order = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME', 'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE'];
    return order.filter((_, i) => (mask >> BigInt(i)) & 1n);
  } catch {
    return ALL_CAPS;
  }
}

/** min(1048576, this process's hard RLIMIT_NOFILE): raising it needs CAP_SYS_RESOURCE. */
export function hostNofile(): number {
  try {
    const m = /Max open files\s+\d+\s+(\d+|unlimited)/.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (m && m[1] !== 'unlimited') return Math.min(1048576, Number(m[1]));
  } catch {
    /* fall through */
  }
  return 1048576;
}

/** Reads a rootfs file unless it is a symlink (which would resolve against the host). */
async function readRootfsFile(rootfs: string, rel: string): Promise<string | undefined> {
  try {
    const p = join(rootfs, rel);
    if ((await lstat(p)).isSymbolicLink()) return undefined;
    return await readFile(p, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Creates an empty file at rel inside rootfs (and its parent dirs) when missing, so every runtime can
 * bind a file over it. Skips paths that pass through a symlink: those would resolve on the host.
 */
async function ensureFileTarget(rootfs: string, rel: string): Promise<void> {
  const parts = rel.split('/').filter(Boolean);
  let cur = rootfs;
  for (const [i, part] of parts.entries()) {
    cur = join(cur, part);
    const last = i === parts.length - 1;
    try {
      const st = await lstat(cur);
      if (st.isSymbolicLink()) return;
      if (last || !st.isDirectory()) return;
    } catch {
      if (last) await writeFile(cur, '', { flag: 'wx', mode: 0o644 }).catch(() => {});
      else await mkdir(cur, { mode: 0o755 }).catch(() => {});
    }
  }
}

function pidAlive(pid: number, comm?: string): boolean {
  if (!(pid > 0)) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (/^\d+ \(.*\) [ZX]/.test(stat)) return false;
    if (comm && !stat.startsWith(`${pid} (${comm})`)) return false;
    return true;
  } catch {
    return false;
  }
}

function parseLogLine(line: string): (LogEntry & { raw: string }) | undefined {
  try {
    const j = JSON.parse(line) as { log: string; stream: string; time: string };
    return { stream: j.stream === 'stderr' ? 'stderr' : 'stdout', timeMs: Date.parse(j.time), data: Buffer.from(j.log), raw: line };
  } catch {
    return undefined;
  }
}

/**
 * Follows one json-file log across rotation: reads what was appended since the last drain, and when
 * the path names a new file (the monitor rotated), finishes the old one and continues in the new one.
 */
class LogTail {
  private readonly path: string;
  private fh: FileHandle | undefined;
  private ino = 0;
  private pos = 0;
  private partial = Buffer.alloc(0);

  constructor(path: string) {
    this.path = path;
  }

  async open(): Promise<void> {
    try {
      this.fh = await open(this.path, 'r');
      this.ino = (await this.fh.stat()).ino;
      this.pos = 0;
      this.partial = Buffer.alloc(0);
    } catch {
      this.fh = undefined;
    }
  }

  /** True when p is the file this tail holds (a rotation happened between listing and reading). */
  isFile(p: string): boolean {
    try {
      return this.fh !== undefined && statSync(p).ino === this.ino;
    } catch {
      return false;
    }
  }

  async drain(): Promise<LogEntry[]> {
    const out: LogEntry[] = [];
    if (this.fh) await this.readNew(out);
    let ino = 0;
    try {
      ino = statSync(this.path).ino;
    } catch {
      return out;
    }
    if (this.fh && ino === this.ino) return out;
    // Rotated, maybe several times: read every file newer than ours, oldest first, then hold ctr.log.
    const chain: { path: string; ino: number }[] = [];
    for (let i = 20; i >= 1; i--) {
      try {
        chain.push({ path: `${this.path}.${i}`, ino: statSync(`${this.path}.${i}`).ino });
      } catch {
        /* not there */
      }
    }
    const mine = this.ino ? chain.findIndex((c) => c.ino === this.ino) : -1;
    // the monitor closes a file before it renames it: what it wrote there since the read above is
    // final now, and would be lost once we move on to the newer files
    if (this.fh) await this.readNew(out);
    await this.fh?.close();
    this.fh = undefined;
    for (const c of chain.slice(mine + 1)) {
      try {
        const fh = await open(c.path, 'r');
        this.fh = fh;
        this.pos = 0;
        this.partial = Buffer.alloc(0);
        await this.readNew(out);
      } catch {
        /* rotated away meanwhile: those lines are lost */
      } finally {
        await this.fh?.close();
        this.fh = undefined;
      }
    }
    await this.open();
    if (this.fh) await this.readNew(out);
    return out;
  }

  private async readNew(out: LogEntry[]): Promise<void> {
    const buf = Buffer.alloc(64 * 1024);
    for (;;) {
      const { bytesRead } = await this.fh!.read(buf, 0, buf.length, this.pos);
      if (bytesRead === 0) return;
      this.pos += bytesRead;
      let data = Buffer.concat([this.partial, buf.subarray(0, bytesRead)]);
      for (let nl = data.indexOf(10); nl >= 0; nl = data.indexOf(10)) {
        const e = nl > 0 ? parseLogLine(data.subarray(0, nl).toString('utf8')) : undefined;
        if (e) out.push({ stream: e.stream, timeMs: e.timeMs, data: e.data });
        data = data.subarray(nl + 1);
      }
      this.partial = Buffer.from(data);
    }
  }

  async close(): Promise<void> {
    await this.fh?.close();
    this.fh = undefined;
  }
}

type CmdResult = { code: number; stdout: string; stderr: string };
type ImageUsers = { passwd?: string; group?: string };

const profileKeys = new WeakMap<object, string>();

/** A seccomp profile's identity: a hash of its content, worked out once per profile object (the default one is shared). */
function profileKey(profile: object | undefined): string {
  if (!profile) return '';
  let k = profileKeys.get(profile);
  if (k === undefined) profileKeys.set(profile, (k = createHash('sha256').update(JSON.stringify(profile)).digest('hex')));
  return k;
}

export class OciRuntime implements Runtime {
  readonly name: string;
  private readonly o: OciRuntimeOptions;
  private readonly log: Log;
  private readonly clock: Clock;
  private readonly hostCaps = hostCapabilities();
  private readonly nofile = hostNofile();
  private mounter: RootfsMounter | undefined;
  private bin: string;
  /** gantry-exec creates missing bind-mount targets itself; for runc/crun gantryd makes them first. */
  private readonly makesMountTargets: boolean;
  private rootMade = false;
  /** The state dir's files: synchronous calls on a tmpfs (state-files.ts). */
  private readonly files: StateFiles;
  /** Per layer stack: its /etc/passwd and /etc/group, whether the targets layer fits it; the targets layers made. */
  private readonly usersByImage = new OnceCache<ImageUsers>();
  private readonly fitByImage = new OnceCache<boolean>();
  private readonly targetLayers = new OnceCache<string>();
  /** gantry-exec's first create of a seccomp profile compiles it into its cache: it goes alone (first-of-kind.ts). */
  private readonly seccompFirsts = new FirstOfKind();
  /** meta.json as this process last wrote or read it (it is the only writer): start, wait, state and stop each need it. */
  private readonly metas = new Map<string, ContainerMeta>();
  private swept: Promise<void> | undefined;
  private wrapped = false;

  constructor(opts: OciRuntimeOptions) {
    this.o = { commandTimeoutMs: 30_000, ...opts };
    this.name = opts.name;
    this.log = opts.log ?? nullLog;
    this.clock = opts.clock ?? systemClock;
    this.mounter = opts.rootfs;
    this.bin = opts.binary;
    const isCrun = basename(opts.binary) === 'crun' || opts.name === 'crun';
    this.wrapped = opts.privateCgroupMount ?? (isCrun && isHybridCgroupHost());
    this.makesMountTargets = basename(opts.binary) === 'gantry-exec';
    this.files = new StateFiles(opts.stateDir);
    warmSpawner();
  }

  private dir(id: string): string {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(id)) throw new RuntimeError(`invalid container id "${id}"`);
    return join(this.o.stateDir, id);
  }

  /** Where a container's writes and logs are: recorded at create (containers made before the split keep them in their state dir). */
  private diskOf(id: string, meta: ContainerMeta | undefined): string {
    return meta?.diskDir ?? this.dir(id);
  }

  /**
   * Once per process, before the first create or list: disk dirs whose state dir is gone (the exec
   * root is a tmpfs and the host rebooted, or gantryd crashed mid-remove) are removed, unless an
   * overlay still writes there. And the disk dirs are spread over the file system (spreadSubdirs).
   */
  private sweepDisk(): Promise<void> {
    const base = this.o.diskDir;
    if (!base || base === this.o.stateDir) return Promise.resolve();
    this.swept ??= (async () => {
      await this.spreadSubdirs(base);
      const names = await readdir(base).catch(() => [] as string[]);
      if (!names.length) return;
      const info = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
      for (const n of names) {
        if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(n)) continue; // not a container id: not ours
        const disk = join(base, n);
        if (existsSync(join(this.dir(n), 'meta.json')) || existsSync(join(disk, 'meta.json')) || info.includes(`upperdir=${disk}/upper`)) continue;
        this.log.info('removing the disk dir of a container whose state is gone', { id: n, dir: disk });
        await rm(disk, { recursive: true, force: true }).catch((err) => this.log.warn('could not remove a stale disk dir', { dir: disk, err: String(err) }));
      }
    })();
    return this.swept;
  }

  /**
   * Marks dir as a top of directory hierarchies for ext4's allocator (`chattr +T`): each container's
   * dir then goes to a block group of its own instead of its parent's. Without a journal, ext4
   * skips inodes freed in the last seconds when it allocates one, and in a group where the
   * previous containers were just removed that scan cost ~1 ms per new inode (a container makes
   * ~8: its dirs, overlayfs's work dir and its mount-time probes). File systems without the flag
   * refuse it, and nothing changes there.
   */
  private async spreadSubdirs(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    const r = await runCommand('chattr', ['+T', dir], { timeoutMs: 5000 });
    if (r.code !== 0) this.log.debug('disk dir not marked as a top dir', { dir, err: r.stderr.trim() });
  }

  /** The runtime binary to call: a wrapper script when BIN must not see the cgroup2 mount. */
  private async runtimeBin(): Promise<string> {
    if (!this.wrapped) return this.bin;
    const wrapper = join(this.o.root, 'bin', 'runtime');
    if (!existsSync(wrapper)) {
      await mkdir(join(this.o.root, 'bin'), { recursive: true });
      // crun 1.8 refuses hybrid cgroups; without the unified mount it sees plain cgroup v1.
      const script = `#!/bin/sh\n# ${this.name}: run in a private mount namespace without the cgroup2 mount (hybrid host)\n` +
        `exec unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$0" "$@"' ${JSON.stringify(this.o.binary)} "$@"\n`;
      await writeFile(`${wrapper}.tmp`, script);
      await chmod(`${wrapper}.tmp`, 0o755);
      await rename(`${wrapper}.tmp`, wrapper);
    }
    return wrapper;
  }

  /** The CLI and root that own a container: the ones recorded at create, else this runtime's. */
  private async target(meta?: ContainerMeta): Promise<{ bin: string; root: string }> {
    if (meta?.binary && meta.runtimeRoot && existsSync(meta.binary)) return { bin: meta.binary, root: meta.runtimeRoot };
    return { bin: await this.runtimeBin(), root: this.o.root };
  }

  private async cmd(args: string[], meta?: ContainerMeta, timeoutMs = this.o.commandTimeoutMs!): Promise<CmdResult> {
    const { bin, root } = await this.target(meta);
    return runCommand(bin, ['--root', root, ...args], { timeoutMs });
  }

  private static errLine(r: CmdResult): string {
    const lines = r.stderr.trim().split('\n').filter(Boolean);
    const last = lines[lines.length - 1] ?? `exit status ${r.code}`;
    const m = /msg="((?:[^"\\]|\\.)*)"/.exec(last);
    return m ? m[1].replace(/\\(.)/g, '$1') : last;
  }

  private async readMeta(id: string): Promise<ContainerMeta | undefined> {
    const known = this.metas.get(id);
    if (known) return known;
    const meta = await this.files.readJson<ContainerMeta>(join(this.dir(id), 'meta.json'));
    if (meta) this.metas.set(id, meta);
    return meta;
  }

  private async readExit(id: string): Promise<ExitFile | undefined> {
    return this.files.readJson<ExitFile>(join(this.dir(id), 'exit.json'));
  }

  private monitorAlive(id: string): boolean {
    try {
      const pid = Number(readFileSync(join(this.dir(id), 'monitor.pid'), 'utf8').trim());
      return pidAlive(pid, 'gantry-monitor');
    } catch {
      return false;
    }
  }

  /**
   * The image's /etc/passwd and /etc/group (user names, supplementary groups), read through the
   * container's fresh overlay so they are the image's own: kept per layer stack (the lower dirs are
   * immutable snapshots), read again for a plain directory rootfs.
   */
  private imageUsers(config: ContainerConfig, rootfs: string): Promise<ImageUsers> {
    const read = async () => ({ passwd: await readRootfsFile(rootfs, 'etc/passwd'), group: await readRootfsFile(rootfs, 'etc/group') });
    if (config.rootfs.kind !== 'layers') return read();
    return this.usersByImage.get(config.rootfs.lowerDirs.join('\0'), read);
  }

  /** Whether the shared mount-targets layer may sit on this layer stack (targets-layer.ts), once per stack. */
  private targetsFit(lowerDirs: string[], targets: string[]): Promise<boolean> {
    return this.fitByImage.get([...lowerDirs, '', ...targets].join('\0'), () => layerFits(lowerDirs, targets));
  }

  /** The shared mount-targets layer for these paths, made once per process (targets-layer.ts). */
  private targetsLayer(targets: string[]): Promise<string> {
    return this.targetLayers.get(targets.join('\0'), () => ensureTargetsLayer(this.o.root, targets));
  }

  /** The given mounter, else the default one run in the spawner helper (its mount(8) forks stay out of gantryd). */
  private async getMounter(): Promise<RootfsMounter> {
    if (!this.mounter) this.mounter = spawnerMounter();
    return this.mounter;
  }

  async create(config: ContainerConfig): Promise<void> {
    const dir = this.dir(config.id);
    if (existsSync(join(dir, 'meta.json'))) throw new RuntimeError(`container ${config.id} already exists in ${dir} (remove it first)`);
    await this.sweepDisk();
    if (!this.rootMade) {
      await mkdir(this.o.root, { recursive: true });
      this.rootMade = true;
    }
    await this.files.mkdir(dir, 0o700);
    // its writes and logs on disk, the rest in the state dir (a tmpfs: no disk inodes for bundle, sockets, pid files)
    const disk = this.o.diskDir && this.o.diskDir !== this.o.stateDir ? join(this.o.diskDir, config.id) : undefined;
    // mkdir answers undefined when the dir was there: no meta.json, so it is left from an earlier life
    if (disk && (await mkdir(disk, { recursive: true, mode: 0o700 })) === undefined) {
      await rm(disk, { recursive: true, force: true });
      await mkdir(disk, { mode: 0o700 });
    }
    let unmount: (() => Promise<void>) | undefined;
    try {
      let rootfs: string;
      const targets = config.files?.length ? layerPaths(config.files.map((f) => f.path)) : undefined;
      if (config.rootfs.kind === 'layers') {
        const lowerDirs = [...config.rootfs.lowerDirs];
        // the bind targets come from a shared layer on top, not made in this container's upper dir
        if (targets && lowerDirs.length < MAX_LOWER_DIRS && (await this.targetsFit(lowerDirs, targets))) lowerDirs.push(await this.targetsLayer(targets));
        const m = await (await this.getMounter()).mountRootfs({ lowerDirs, containerDir: dir, diskDir: disk, volatile: true });
        rootfs = m.rootfs;
        unmount = m.unmount;
      } else {
        rootfs = config.rootfs.path;
        if (!existsSync(rootfs)) throw new RuntimeError(`rootfs directory ${rootfs} for container ${config.id} does not exist`);
      }
      const fileSources: Record<string, string> = {};
      if (config.files?.length) {
        await this.files.mkdir(join(dir, 'files'));
        for (const [i, f] of config.files.entries()) {
          const src = join(dir, 'files', `${i}-${basename(f.path)}`);
          await this.files.write(src, f.content, f.mode ?? 0o644);
          fileSources[f.path] = src;
          // gantry-exec makes a missing mount target itself, inside the root (RESOLVE_IN_ROOT)
          if (!this.makesMountTargets) await ensureFileTarget(rootfs, f.path);
        }
      }
      const users = await this.imageUsers(config, rootfs);
      const built = buildOciSpec(config, rootfs, {
        cgroupsPath: cgroupsPathFor(this.o.cgroupParent, config.id),
        passwd: users.passwd,
        group: users.group,
        hostCaps: this.hostCaps,
        nofile: this.nofile,
        fileSources,
      });
      if (!built.ok) throw new RuntimeError(`container ${config.id}: ${built.error}`);
      // not tmp + rename: meta.json, written next, is what marks the container as made
      await this.files.write(join(dir, 'config.json'), JSON.stringify(built.spec));
      const meta: ContainerMeta = {
        id: config.id, runtime: this.name, createdAt: this.clock.now(), stopSignal: config.stopSignal || 'SIGTERM',
        rootfs: { kind: config.rootfs.kind, path: rootfs }, labels: config.labels, tty: config.tty,
        binary: await this.runtimeBin(), runtimeRoot: this.o.root, diskDir: disk,
      };
      await this.files.writeAtomic(join(dir, 'meta.json'), JSON.stringify(meta));
      this.metas.set(config.id, meta);
      const profile = this.makesMountTargets ? profileKey(built.spec.linux.seccomp) : '';
      const compiled = profile ? await this.seccompFirsts.turn(profile) : () => {};
      const r = await this.spawnMonitor(config, dir, disk).finally(compiled);
      if (r.code !== 0) throw new RuntimeError(`create container ${config.id} with ${this.name}: ${OciRuntime.errLine(r)}`);
      this.log.debug('created', { id: config.id, out: r.stdout.trim() });
    } catch (e) {
      this.metas.delete(config.id);
      await unmount?.().catch((err) => this.log.warn('unmount after failed create', { id: config.id, err: String(err) }));
      if ((await mountsUnder(dir)).length === 0) {
        await this.files.rmTree(dir);
        if (disk) await rm(disk, { recursive: true, force: true });
      }
      throw e instanceof RuntimeError ? e : new RuntimeError(`create container ${config.id}: ${(e as Error).message}`, { cause: e });
    }
  }

  private async spawnMonitor(config: ContainerConfig, dir: string, logDir: string | undefined): Promise<CmdResult> {
    const args = ['monitor', '--runtime', await this.runtimeBin(), '--runtime-root', this.o.root, '--bundle', dir, '--state-dir', dir];
    if (logDir) args.push('--log-dir', logDir);
    if (config.logMaxBytes) args.push('--log-max-size', String(config.logMaxBytes));
    if (config.logMaxFiles) args.push('--log-max-files', String(config.logMaxFiles));
    if (config.tty) args.push('--tty');
    args.push(config.id);
    return runCommand(this.o.monitorBinary, args, { timeoutMs: this.o.commandTimeoutMs });
  }

  async start(id: string): Promise<void> {
    const meta = await this.readMeta(id);
    if (!meta) throw new RuntimeError(`container ${id} not found (create it first)`);
    if (meta.startedAt) return; // started before (a gantryd restart between start and RUNNING)
    const byGantryExec = basename(meta.binary ?? '') === 'gantry-exec' && meta.runtimeRoot;
    if (!(byGantryExec && startThroughFifo(meta.runtimeRoot!, id))) {
      const r = await this.cmd(['start', id], meta);
      if (r.code !== 0) throw new RuntimeError(`start container ${id} with ${this.name}: ${OciRuntime.errLine(r)}`);
    }
    const started = { ...meta, startedAt: this.clock.now() };
    await this.files.rewriteInPlace(join(this.dir(id), 'meta.json'), JSON.stringify(started));
    this.metas.set(id, started);
  }

  async state(id: string): Promise<ContainerState> {
    const meta = await this.readMeta(id);
    if (!meta) return { id, status: 'unknown', pid: 0 };
    const base = { id, startedAt: meta.startedAt };
    const exit = await this.readExit(id);
    if (exit) return { ...base, status: 'stopped', pid: 0, exitCode: exit.exitCode, oomKilled: exit.oomKilled, finishedAt: Date.parse(exit.finishedAt) };
    const r = await this.cmd(['state', id], meta);
    if (r.code === 0) {
      try {
        const s = JSON.parse(r.stdout) as { status: string; pid: number };
        if (s.status === 'created' || s.status === 'running') return { ...base, status: s.status, pid: s.pid };
        if (s.status === 'paused') return { ...base, status: 'running', pid: s.pid };
      } catch {
        /* unparsable: treat as unknown below */
      }
    }
    // Stopped (or gone) without exit.json: either the monitor is about to write it, or it died
    // (host reboot, killed). Re-read once; otherwise the exit code is lost.
    const late = await this.readExit(id);
    if (late) return { ...base, status: 'stopped', pid: 0, exitCode: late.exitCode, oomKilled: late.oomKilled, finishedAt: Date.parse(late.finishedAt) };
    if (this.monitorAlive(id)) return { ...base, status: 'running', pid: 0 };
    return { ...base, status: 'stopped', pid: 0 };
  }

  async wait(id: string, signal?: AbortSignal): Promise<ContainerState> {
    const dir = this.dir(id);
    if (!(await this.readMeta(id))) throw new RuntimeError(`container ${id} not found`);
    for (;;) {
      signal?.throwIfAborted();
      const changed = this.watchExit(dir, signal);
      try {
        if (existsSync(join(dir, 'exit.json'))) return await this.state(id);
        if (!this.monitorAlive(id)) break;
        await changed.promise;
      } finally {
        changed.close();
      }
    }
    // The monitor is gone without writing exit.json (killed, host reboot): nothing will tell us
    // about the exit, so ask the runtime once a second. The exit code is lost.
    this.log.warn('container monitor is gone; polling the runtime for the exit', { id });
    for (;;) {
      const st = await this.state(id);
      if (st.status === 'stopped' || st.status === 'unknown') return st;
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          cancel();
          reject(signal!.reason ?? new Error('aborted'));
        };
        const cancel = this.clock.after(1000, () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        });
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
  }

  /** Resolves on exit.json appearing, the monitor's attach socket closing, or abort (rejects). */
  private watchExit(dir: string, signal?: AbortSignal): { promise: Promise<void>; close(): void } {
    let done!: () => void;
    let fail!: (e: unknown) => void;
    const promise = new Promise<void>((res, rej) => {
      done = res;
      fail = rej;
    });
    const watcher = watch(dir, (_ev, file) => {
      if (file === 'exit.json') done();
    });
    watcher.on('error', () => done());
    const sock = connect(join(dir, 'attach.sock'));
    sock.on('data', () => {});
    sock.on('error', () => {});
    sock.on('close', () => done());
    const onAbort = () => fail(signal!.reason ?? new Error('aborted'));
    signal?.addEventListener('abort', onAbort, { once: true });
    promise.catch(() => {});
    return {
      promise,
      close() {
        watcher.close();
        sock.destroy();
        signal?.removeEventListener('abort', onAbort);
      },
    };
  }

  async kill(id: string, sig: string): Promise<void> {
    const st = await this.state(id);
    if (st.status === 'stopped' || st.status === 'unknown') return;
    const r = await this.cmd(['kill', id, sig], await this.readMeta(id));
    if (r.code !== 0) {
      const after = await this.state(id);
      if (after.status === 'stopped') return;
      throw new RuntimeError(`kill container ${id} with ${sig}: ${OciRuntime.errLine(r)}`);
    }
  }

  async stop(id: string, graceMs: number): Promise<ContainerState> {
    const meta = await this.readMeta(id);
    if (!meta) return { id, status: 'unknown', pid: 0 };
    const st = await this.state(id);
    if (st.status === 'stopped') return st;
    // A created container's init waits at exec and ignores the stop signal: kill it outright.
    if (st.status === 'created' || graceMs <= 0) {
      await this.kill(id, 'SIGKILL');
      return this.wait(id);
    }
    await this.kill(id, meta.stopSignal);
    const ac = new AbortController();
    const cancel = this.clock.after(graceMs, () => ac.abort(new Error('grace period over')));
    try {
      return await this.wait(id, ac.signal);
    } catch {
      this.log.info('stop grace period over, killing', { id, graceMs });
      await this.kill(id, 'SIGKILL');
      return this.wait(id);
    } finally {
      cancel();
    }
  }

  async remove(id: string): Promise<void> {
    const dir = this.dir(id);
    if (!existsSync(dir)) {
      this.metas.delete(id);
      return;
    }
    const meta = await this.readMeta(id);
    const r = await this.cmd(['delete', '--force', id], meta);
    if (r.code !== 0 && !/does not exist|not found|no such/i.test(r.stderr)) {
      const st = await this.cmd(['state', id], meta);
      if (st.code === 0) throw new RuntimeError(`remove container ${id}: ${OciRuntime.errLine(r)}`);
    }
    if (this.monitorAlive(id)) {
      // delete --force killed the container; give the monitor its exit, bounded.
      const ac = new AbortController();
      const cancel = this.clock.after(5000, () => ac.abort());
      await this.wait(id, ac.signal).catch(() => {});
      cancel();
    }
    if (meta?.rootfs.kind !== 'dir') await (await this.getMounter()).unmountRootfs(dir);
    const left = await mountsUnder(dir);
    if (left.length) throw new RuntimeError(`remove container ${id}: ${left.join(', ')} still mounted (unmount it, then remove again)`);
    this.metas.delete(id);
    await this.files.rmTree(dir);
    if (meta?.diskDir) await rm(meta.diskDir, { recursive: true, force: true });
  }

  async list(): Promise<ContainerState[]> {
    await this.sweepDisk();
    let names: string[];
    try {
      names = await readdir(this.o.stateDir);
    } catch {
      return [];
    }
    const out: ContainerState[] = [];
    for (const n of names) {
      const meta = await this.files.readJson<ContainerMeta>(join(this.o.stateDir, n, 'meta.json'));
      if (meta?.id === n) out.push(await this.state(n)); // whichever runtime made it: calls go to that one
    }
    return out;
  }

  /** Labels etc. recorded at create (for re-adoption). */
  async meta(id: string): Promise<ContainerMeta | undefined> {
    return this.readMeta(id);
  }

  async *logs(id: string, opts: LogOptions): AsyncIterable<LogEntry> {
    const dir = this.dir(id);
    if (!existsSync(dir)) throw new RuntimeError(`container ${id} not found`);
    const logDir = this.diskOf(id, await this.readMeta(id));
    const filter = (e: LogEntry) => !opts.sinceMs || e.timeMs >= opts.sinceMs;
    // Open the live file first: what is written while the rotated files are read is still in it.
    const tail = new LogTail(join(logDir, 'ctr.log'));
    await tail.open();
    try {
      let entries: LogEntry[] = [];
      for (let i = 20; i >= 1; i--) {
        const p = join(logDir, `ctr.log.${i}`);
        if (!existsSync(p) || tail.isFile(p)) continue;
        for (const line of (await readFile(p, 'utf8').catch(() => '')).split('\n')) {
          const e = line ? parseLogLine(line) : undefined;
          if (e && filter(e)) entries.push(e);
        }
      }
      for (const e of await tail.drain()) if (filter(e)) entries.push(e);
      if (opts.tail >= 0) entries = opts.tail === 0 ? [] : entries.slice(-opts.tail);
      for (const e of entries) {
        if (opts.signal?.aborted) return;
        yield e;
      }
      if (!opts.follow) return;
      for (;;) {
        if (opts.signal?.aborted) return;
        const exited = existsSync(join(dir, 'exit.json')) || !this.monitorAlive(id);
        const change = this.watchLog(dir, logDir, opts.signal);
        try {
          for (const e of await tail.drain()) {
            if (opts.signal?.aborted) return;
            if (filter(e)) yield e;
          }
          if (exited) return; // everything was written before exit.json
          await change.promise.catch(() => {});
        } finally {
          change.close();
        }
      }
    } finally {
      await tail.close();
    }
  }

  /** Resolves on any change in the container's state or log dir (log appended, rotated, exit.json), monitor exit or abort. */
  private watchLog(dir: string, logDir: string, signal?: AbortSignal): { promise: Promise<void>; close(): void } {
    let done!: () => void;
    const promise = new Promise<void>((res) => {
      done = res;
    });
    const watchers = [...new Set([dir, logDir])].map((d) => watch(d, () => done()));
    for (const w of watchers) w.on('error', () => done());
    const sock = connect(join(dir, 'attach.sock'));
    sock.on('data', () => {});
    sock.on('error', () => done());
    sock.on('close', () => done());
    signal?.addEventListener('abort', done, { once: true });
    return {
      promise,
      close() {
        for (const w of watchers) w.close();
        sock.destroy();
        signal?.removeEventListener('abort', done);
      },
    };
  }

  async exec(id: string, args: string[], timeoutMs: number): Promise<ExecResult> {
    const { bin, root } = await this.target(await this.readMeta(id));
    return new Promise((resolve) => {
      const child = spawn(bin, ['--root', root, 'exec', id, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      const add = (d: Buffer) => {
        if (output.length < MAX_EXEC_OUTPUT) output = (output + d.toString()).slice(0, MAX_EXEC_OUTPUT);
      };
      child.stdout.on('data', add);
      child.stderr.on('data', add);
      let timedOut = false;
      let cancelKill = () => {};
      const cancel = this.clock.after(timeoutMs, () => {
        timedOut = true;
        child.kill('SIGTERM'); // runc exec forwards it to the process
        cancelKill = this.clock.after(2000, () => child.kill('SIGKILL'));
      });
      child.on('error', (e) => {
        cancel();
        resolve({ exitCode: 126, output: `exec in container ${id}: ${e.message}` });
      });
      child.on('close', (code, sig) => {
        cancel();
        cancelKill();
        if (timedOut) resolve({ exitCode: -1, output: `${output}\nexec in container ${id} timed out after ${timeoutMs}ms`.trim() });
        else resolve({ exitCode: code ?? 128 + (sig ? 9 : 0), output });
      });
    });
  }
}

/** Where the gantry-exec binary is built in this repository. */
export function defaultGantryExecPath(): string {
  return new URL('../../native-exec/build/gantry-exec', import.meta.url).pathname;
}
