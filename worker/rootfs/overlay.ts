// A container's root filesystem: an overlayfs mount at <containerDir>/rootfs over the image's snapshot dirs,
// with the container's own upper/work dirs; short symlink names keep the option string under a page.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

export interface MountRootfsOptions {
  /** Snapshot dirs, LOWEST LAYER FIRST (as ImageStore.snapshotDirs returns them). */
  lowerDirs: string[];
  /** Holds l/ (symlinks to the lowers), the mount point rootfs/, and upper/ and work/ unless diskDir is given. */
  containerDir: string;
  /** Where upper/ and work/ (what the container writes) live when not in containerDir: on disk while containerDir is on a tmpfs. */
  diskDir?: string;
  /** No syncs for this overlay: faster, but its upper dir is unusable after a host crash. */
  volatile?: boolean;
  /** Mount read-only (no upper dir): used to look inside an image. */
  readOnly?: boolean;
}

export interface MountedRootfs {
  rootfs: string;
  unmount(): Promise<void>;
}

/** overlayfs stacks at most 500 lower layers. */
export const MAX_LAYERS = 500;

/** The overlay option string for the given number of lowers (names under containerDir, cwd-relative). */
export function overlayOptions(count: number, o: { volatile?: boolean; readOnly?: boolean; diskDir?: string }): string {
  const lowers: string[] = [];
  for (let i = count - 1; i >= 0; i--) lowers.push(`l/${i.toString(36)}`); // overlay wants the TOPMOST first
  if (count === 0) lowers.push('l/empty');
  if (o.readOnly) return `lowerdir=${lowers.length === 1 ? `${lowers[0]}:l/empty` : lowers.join(':')}`;
  const d = o.diskDir ? `${o.diskDir}/` : '';
  let s = `lowerdir=${lowers.join(':')},upperdir=${d}upper,workdir=${d}work`;
  if (o.volatile) s += ',volatile';
  return s;
}

export async function mountRootfs(opts: MountRootfsOptions): Promise<MountedRootfs> {
  const dir = path.resolve(opts.containerDir);
  if (opts.lowerDirs.length > MAX_LAYERS) throw new Error(`image has ${opts.lowerDirs.length} layers; overlayfs stacks at most ${MAX_LAYERS}`);
  const rootfs = path.join(dir, 'rootfs');
  if (await isMountPoint(rootfs)) throw new Error(`${rootfs} is already mounted; unmountRootfs("${dir}") first`);
  await fsp.mkdir(rootfs, { recursive: true });
  const disk = opts.diskDir ? path.resolve(opts.diskDir) : undefined;
  if (!opts.readOnly) {
    await fsp.mkdir(path.join(disk ?? dir, 'upper'), { recursive: true });
    await fsp.mkdir(path.join(disk ?? dir, 'work'), { recursive: true });
    // a volatile overlay leaves work/work/incompat/volatile behind, which makes the next mount refuse
    await fsp.rm(path.join(disk ?? dir, 'work', 'work', 'incompat'), { recursive: true, force: true });
  }
  const l = path.join(dir, 'l');
  await fsp.rm(l, { recursive: true, force: true });
  await fsp.mkdir(path.join(l, 'empty'), { recursive: true });
  for (const [i, lower] of opts.lowerDirs.entries()) {
    if (!fs.statSync(lower, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`layer directory ${lower} does not exist`);
    await fsp.symlink(path.resolve(lower), path.join(l, i.toString(36)));
  }
  const options = overlayOptions(opts.lowerDirs.length, { ...opts, diskDir: disk });
  await exec('mount', ['-t', 'overlay', 'overlay', '-o', options, rootfs], dir, `mount overlay on ${rootfs}`);
  return {
    rootfs,
    unmount: () => unmountRootfs(dir),
  };
}

/**
 * Unmounts <containerDir>/rootfs and anything mounted below it (deepest first); safe to call again, or after a
 * gantryd restart. A busy mount is detached lazily rather than left behind.
 */
export async function unmountRootfs(containerDir: string): Promise<void> {
  const rootfs = path.join(path.resolve(containerDir), 'rootfs');
  let real: string;
  try {
    real = await fsp.realpath(rootfs);
  } catch {
    return;
  }
  for (let round = 0; round < 8; round++) {
    const mounts = (await mountPoints()).filter((m) => m === real || m.startsWith(`${real}/`)).sort((a, b) => b.length - a.length);
    if (mounts.length === 0) return;
    for (const m of mounts) {
      try {
        await exec('umount', [m], '/', `unmount ${m}`);
      } catch (e) {
        if (!/busy/i.test((e as Error).message)) throw e;
        await exec('umount', ['-l', m], '/', `lazy unmount ${m}`);
      }
    }
  }
}

async function mountPoints(): Promise<string[]> {
  const info = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').map((l) => l.split(' ')[4]).filter((m): m is string => !!m).map(unescapeMountinfo);
}

/** True when `p` is a mount point in this mount namespace (from /proc/self/mountinfo). */
export async function isMountPoint(p: string): Promise<boolean> {
  let real: string;
  try {
    real = await fsp.realpath(p);
  } catch {
    return false;
  }
  const info = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  for (const line of info.split('\n')) {
    const f = line.split(' ');
    if (f.length > 4 && unescapeMountinfo(f[4]) === real) return true;
  }
  return false;
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

function exec(cmd: string, args: string[], cwd: string, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => {
      err += d;
    });
    p.on('error', (e) => reject(new Error(`${what}: ${e.message}`)));
    p.on('close', (c) => (c === 0 ? resolve() : reject(new Error(`${what}: ${err.trim() || `${cmd} exited ${c}`}`))));
  });
}
