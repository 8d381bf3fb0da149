// tests/helpers.ts — fixtures for gantry-exec tests: build the binaries, make busybox bundles
// with the probe inside, run commands, and find leftovers (cgroups, mounts, processes).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, openSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const EXEC_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
export const GANTRY_EXEC = join(EXEC_DIR, 'build', 'gantry-exec');
export const PROBE = join(EXEC_DIR, 'build', 'probe');
export const RUNC = '/usr/sbin/runc';

let built = false;
/** Build gantry-exec and the probe (make is a no-op when up to date); throws saying what to do. */
export function ensureBuilt(): void {
  if (built) return;
  built = true;
  // test files run in parallel processes: serialise the builds
  const r = spawnSync('flock', [join(EXEC_DIR, '.build.lock'), 'make', '-C', EXEC_DIR], { encoding: 'utf8' });
  if (r.status !== 0 || !existsSync(GANTRY_EXEC)) {
    throw new Error(`building gantry-exec failed (make -C ${EXEC_DIR}): ${r.stderr || r.error}. Install gcc, make and libseccomp-dev.`);
  }
}

// biome-ignore lint/suspicious/noExplicitAny: an OCI config is free-form JSON that tests edit in place
export type Spec = Record<string, any>;

/** A config.json like `runc spec`, non-tty, for args. */
export function baseSpec(args: string[]): Spec {
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args,
      env: ['PATH=/bin:/usr/bin:/sbin', 'TERM=xterm'],
      cwd: '/',
      capabilities: {
        bounding: ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'],
        effective: ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'],
        permitted: ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'],
        ambient: ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'],
      },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: true },
    hostname: 'box',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
    ],
    linux: {
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths: ['/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/sched_debug', '/sys/firmware', '/proc/scsi'],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

const APPLETS = ['sh', 'echo', 'cat', 'sleep', 'true', 'false', 'ls', 'id', 'hostname', 'dd', 'yes', 'head', 'mount', 'kill', 'ps', 'grep', 'wc', 'test', 'touch', 'mkdir', 'readlink'];

/** A bundle dir with a busybox rootfs (plus /bin/probe) and config.json. */
export function makeBundle(dir: string, spec: Spec): string {
  const rootfs = join(dir, 'rootfs');
  for (const d of ['bin', 'proc', 'dev', 'sys', 'tmp', 'etc']) mkdirSync(join(rootfs, d), { recursive: true });
  copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'));
  chmodSync(join(rootfs, 'bin', 'busybox'), 0o755);
  for (const a of APPLETS) symlinkSync('busybox', join(rootfs, 'bin', a));
  if (existsSync(PROBE)) copyFileSync(PROBE, join(rootfs, 'bin', 'probe'));
  writeSpec(dir, spec);
  return dir;
}

export function writeSpec(dir: string, spec: Spec): void {
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec, null, 1));
}

/** A fresh temp dir removed by the returned cleanup. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `${prefix}-`));
}

export function rmrf(p: string): void {
  try {
    rmSync(p, { recursive: true, force: true });
  } catch {
    /* busy mounts are reported by leak checks */
  }
}

export type RunResult = { status: number | null; stdout: string; stderr: string };

export function run(bin: string, args: string[], opts: { input?: string; timeout?: number } = {}): RunResult {
  const r = spawnSync(bin, args, { encoding: 'utf8', input: opts.input ?? '', timeout: opts.timeout ?? 20000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Run in the background, resolve with the result when it exits. */
export function runAsync(bin: string, args: string[], input = ''): Promise<RunResult> {
  return new Promise((resolve) => {
    const c = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => { stdout += d; });
    c.stderr.on('data', (d) => { stderr += d; });
    c.on('close', (status) => resolve({ status, stdout, stderr }));
    c.stdin.end(input);
  });
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(st);
  } catch {
    return false;
  }
}

/** Poll until check returns null (done) or a reason; throws the last reason after timeoutMs. */
export async function waitFor(check: () => string | null, timeoutMs = 10000): Promise<void> {
  const end = Date.now() + timeoutMs;
  let why: string | null = 'not checked';
  while (Date.now() < end) {
    why = check();
    if (why === null) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out: ${why}`);
}

/** Mount points whose path contains needle. */
export function mountsContaining(needle: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m) => m?.includes(needle));
}

/** cgroup dirs named with needle under any v1 controller or the unified mount. */
export function cgroupsContaining(needle: string): string[] {
  const found: string[] = [];
  const walk = (d: string, depth: number) => {
    if (depth > 4) return;
    let entries: string[] = [];
    try {
      entries = readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e);
      if (e.includes(needle)) found.push(p);
      walk(p, depth + 1);
    }
  };
  walk('/sys/fs/cgroup', 0);
  return found;
}

/** Processes whose command line contains needle (excluding this test process). */
export function processesContaining(needle: string): number[] {
  const pids: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmd.includes(needle) && pidAlive(Number(p))) pids.push(Number(p));
    } catch {
      /* gone */
    }
  }
  return pids;
}

export function killQuietly(pid: number, sig: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

/** rmdir a cgroup dir, children first (cgroup dirs only hold virtual files). */
export function rmdirQuietly(dir: string): void {
  try {
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) rmdirQuietly(join(dir, e.name));
    rmdirSync(dir);
  } catch {
    /* gone or busy */
  }
}

export function unique(prefix: string): string {
  return `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

export { execFileSync };

/** A gantry-exec state root plus bundles, with leak checks and cleanup for one test file. */
export class Harness {
  root = '';
  dirs: string[] = [];
  ids: string[] = [];
  cgroupParents: string[] = [];

  constructor() {
    ensureBuilt();
    this.root = tempDir('gx-root');
    this.dirs.push(this.root);
  }

  /** Run gantry-exec; output goes through files, so a container holding our stdio cannot block us. */
  gx(args: string[], opts: { env?: Record<string, string> } = {}): RunResult {
    const dir = tempDir('gx-out');
    const outPath = join(dir, 'out');
    const errPath = join(dir, 'err');
    const out = openSync(outPath, 'w+');
    const err = openSync(errPath, 'w+');
    try {
      const r = spawnSync(GANTRY_EXEC, ['--root', this.root, ...args], {
        stdio: ['ignore', out, err], timeout: 30000, env: { ...process.env, ...opts.env },
      });
      return { status: r.status, stdout: readFileSync(outPath, 'utf8'), stderr: readFileSync(errPath, 'utf8') };
    } finally {
      closeSync(out);
      closeSync(err);
      rmrf(dir);
    }
  }

  gxAsync(args: string[]): Promise<RunResult> {
    return runAsync(GANTRY_EXEC, ['--root', this.root, ...args]);
  }

  /** A new id and bundle for spec (edit it first). */
  bundle(args: string[], edit: (s: Spec) => void = () => {}): { id: string; bundle: string; spec: Spec } {
    const id = unique('gx');
    this.ids.push(id);
    const bundle = tempDir('gx-bundle');
    this.dirs.push(bundle);
    const spec = baseSpec(args);
    edit(spec);
    makeBundle(bundle, spec);
    return { id, bundle, spec };
  }

  state(id: string): Spec {
    const r = this.gx(['state', id]);
    if (r.status !== 0) throw new Error(`state ${id}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  }

  /** What a container left behind: state dir, cgroups, mounts, processes. Empty when clean. */
  leftovers(id: string, bundle?: string): string[] {
    const left: string[] = [];
    if (existsSync(join(this.root, id))) left.push(`state dir ${join(this.root, id)}`);
    for (const c of cgroupsContaining(id)) left.push(`cgroup ${c}`);
    if (bundle) for (const m of mountsContaining(bundle)) left.push(`mount ${m}`);
    for (const p of processesContaining(id)) left.push(`process ${p}`);
    return left;
  }

  cleanup(): void {
    for (const id of this.ids) {
      this.gx(['delete', '--force', id]);
      for (const p of processesContaining(id)) killQuietly(p);
      for (const c of cgroupsContaining(id)) rmdirQuietly(c);
    }
    for (const c of this.cgroupParents) for (const d of cgroupsContaining(c)) rmdirQuietly(d);
    for (const d of this.dirs) rmrf(d);
  }
}
