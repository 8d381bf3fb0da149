// Host-side primitives for the lab: running commands, finding processes by netns or cgroup,
// killing them, unmounting trees and removing cgroups. Linux only, needs root; no lab policy here.
import os from 'node:os';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command and resolves with its exit code and output; never rejects on a non-zero exit. */
export function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number; cwd?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      { env: opts.env ?? process.env, maxBuffer: 64 << 20, timeout: opts.timeoutMs ?? 0, cwd: opts.cwd, encoding: 'utf8' },
      (err, stdout, stderr) => {
        let code = 0;
        if (err) {
          const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean; signal?: string };
          code = typeof e.code === 'number' ? e.code : 127;
          // 124 only for our own timeout (as timeout(1)); a death by a signal is 128 + its number,
          // as a shell reports it (a crash must not read as a hang)
          if (e.killed) code = 124;
          else if (e.signal) code = 128 + (os.constants.signals[e.signal as NodeJS.Signals] ?? 0);
          if (typeof e.code === 'string' && !stderr) stderr = `${cmd}: ${e.message}`;
        }
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Like run, but throws an error naming the command when it exits non-zero. */
export async function must(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`\`${cmd} ${args.join(' ')}\` exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function allPids(): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid) out.push(pid);
  }
  return out;
}

/** Pids whose network namespace is the named one (like `ip netns pids NAME`). */
export function netnsPids(ns: string): number[] {
  let want: fs.Stats;
  try {
    want = fs.statSync(`/run/netns/${ns}`);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const pid of allPids()) {
    try {
      const st = fs.statSync(`/proc/${pid}/ns/net`);
      if (st.ino === want.ino && st.dev === want.dev) out.push(pid);
    } catch {
      // the process is gone or hides its ns
    }
  }
  return out;
}

/** Mount points of every cgroup hierarchy (v1 controllers and the v2 unified mount). */
export function cgroupMounts(): string[] {
  const out: string[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fstype = line.slice(sep + 3).split(' ')[0];
    if (fstype === 'cgroup' || fstype === 'cgroup2') out.push(unescapeMount(line.split(' ')[4]));
  }
  return out;
}

/**
 * Every cgroup directory (in any hierarchy, depth ≤ 3) whose name starts with `prefix`; with
 * `whole`, only the name itself or it plus a non-digit suffix (`gantry-lab1-h1` but not `…-h10`).
 */
export function cgroupDirs(prefix: string, opts: { whole?: boolean } = {}): string[] {
  const hit = (name: string) => name.startsWith(prefix) && (!opts.whole || name.length === prefix.length || !/[0-9]/.test(name[prefix.length]));
  const out: string[] = [];
  const walk = (dir: string, depth: number) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const p = `${dir}/${e.name}`;
      if (hit(e.name)) out.push(p);
      else if (depth < 3) walk(p, depth + 1);
    }
  };
  for (const m of cgroupMounts()) walk(m, 1);
  return out;
}

/** Pids in a cgroup directory and every cgroup below it. */
export function cgroupPids(dir: string): number[] {
  const out = new Set<number>();
  const walk = (d: string) => {
    try {
      for (const l of fs.readFileSync(`${d}/cgroup.procs`, 'utf8').split('\n')) if (l) out.add(Number(l));
      for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(`${d}/${e.name}`);
    } catch {
      // removed under us
    }
  };
  walk(dir);
  return [...out];
}

/** Removes a cgroup tree bottom-up (only empty cgroups can go). Returns the dirs it could not remove. */
export function removeCgroupTree(dir: string): string[] {
  const left: string[] = [];
  const walk = (d: string) => {
    let entries: fs.Dirent[] = [];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory()) walk(`${d}/${e.name}`);
    try {
      fs.rmdirSync(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') left.push(d);
    }
  };
  walk(dir);
  return left;
}

/**
 * SIGKILLs whatever `find()` returns, over and over, until it returns nothing (processes may fork
 * while we kill). Returns the pids still alive after `timeoutMs`.
 */
export async function killAll(find: () => number[], timeoutMs = 10_000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pids = find().filter((p) => p !== process.pid);
    if (pids.length === 0) return [];
    if (Date.now() > deadline) return pids;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await sleep(30);
  }
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** Mount points at or below `root`, deepest first. */
export function mountsUnder(root: string): string[] {
  const base = root.replace(/\/+$/, '');
  const out: string[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    const mp = unescapeMount(f[4]);
    if (mp === base || mp.startsWith(`${base}/`)) out.push(mp);
  }
  return out.sort((a, b) => b.length - a.length);
}

/** Unmounts everything at or below `root` (lazily when busy). Returns mount points that stayed. */
export async function unmountTree(root: string): Promise<string[]> {
  for (let i = 0; i < 5; i++) {
    const mps = mountsUnder(root);
    if (mps.length === 0) return [];
    for (let j = 0; j < mps.length; j += 200) await run('umount', ['-l', ...mps.slice(j, j + 200)]);
  }
  return mountsUnder(root);
}

/** Lists named network namespaces (`ip netns ls` without the id suffixes). */
export function netnsList(): string[] {
  try {
    return fs.readdirSync('/run/netns');
  } catch {
    return [];
  }
}

/** The command line of a process as an argv array, or undefined when it is gone. */
export function cmdline(pid: number): string[] | undefined {
  try {
    const raw = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((x, i, a) => x !== '' || i < a.length - 1);
  } catch {
    return undefined;
  }
}
