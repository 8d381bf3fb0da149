// Fixtures for runtime and task-manager tests: busybox rootfs dirs, container configs, and
// leak finders (mounts, cgroups, processes) so every test can prove it left nothing behind.
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ContainerConfig } from '../types.ts';

export const RUNC = '/usr/sbin/runc';
export const CRUN = '/usr/bin/crun';
export const GANTRY_EXEC = new URL('../../../native-exec/build/gantry-exec', import.meta.url).pathname;

/**
 * Throws, naming what is missing and what to run, unless the runtimes these tests use are here:
 * deploy/install.sh installs runc and crun and builds gantry-exec, so a missing one is a broken
 * install to be seen, not tests to skip.
 */
export function requireRuntimes(bins: string[] = [RUNC, CRUN, GANTRY_EXEC]): void {
  const missing = bins.filter((b) => !existsSync(b));
  if (missing.length > 0) throw new Error(`${missing.join(', ')} not found: run deploy/install.sh (apt runc crun; make -C native-exec)`);
}

const APPLETS = ['sh', 'echo', 'cat', 'sleep', 'true', 'false', 'ls', 'id', 'hostname', 'trap', 'kill', 'ps', 'grep', 'wc', 'test', 'touch', 'mkdir', 'env', 'seq', 'unshare', 'head'];

/** A directory holding a busybox rootfs (with /etc/passwd and /etc/group). */
export function busyboxRootfs(dir: string): string {
  for (const d of ['bin', 'proc', 'dev', 'sys', 'tmp', 'etc']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync('/bin/busybox', join(dir, 'bin', 'busybox'));
  chmodSync(join(dir, 'bin', 'busybox'), 0o755);
  for (const a of APPLETS) if (!existsSync(join(dir, 'bin', a))) symlinkSync('busybox', join(dir, 'bin', a));
  writeFileSync(join(dir, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
  writeFileSync(join(dir, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
  return dir;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `${prefix}-`));
}

export function rmrf(p: string): void {
  try {
    rmSync(p, { recursive: true, force: true });
  } catch {
    /* leak checks report what stayed */
  }
}

export function unique(prefix: string): string {
  return `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

export function containerConfig(id: string, rootfs: ContainerConfig['rootfs'], args: string[], over: Partial<ContainerConfig> = {}): ContainerConfig {
  return {
    id, rootfs, args, env: [], cwd: '/', user: '', hostname: id.slice(0, 12), tty: false, readOnlyRootfs: false,
    capAdd: [], capDrop: [], limits: {}, mounts: [], network: { mode: 'none' }, stopSignal: 'SIGTERM', labels: {}, ...over,
  };
}

export function mountsContaining(needle: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m) => m?.includes(needle));
}

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

export function processesContaining(needle: string): number[] {
  const pids: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').replaceAll('\0', ' ');
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      if (cmd.includes(needle) && !/^\d+ \(.*\) Z/.test(stat)) pids.push(Number(p));
    } catch {
      /* gone */
    }
  }
  return pids;
}

/** Removes empty cgroup dirs named needle (a test's cgroup parent) under every hierarchy. */
export function removeCgroups(needle: string): void {
  for (const d of cgroupsContaining(needle).sort((a, b) => b.length - a.length)) {
    try {
      rmdirSync(d);
    } catch {
      /* reported by leak checks */
    }
  }
}

/** Poll until check returns null (done) or a reason; throws the last reason after timeoutMs. */
export async function waitFor(check: () => string | null | Promise<string | null>, timeoutMs = 15000): Promise<void> {
  const end = Date.now() + timeoutMs;
  let why: string | null = 'not checked';
  while (Date.now() < end) {
    why = await check();
    if (why === null) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out: ${why}`);
}
