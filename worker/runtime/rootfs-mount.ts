// How OciRuntime gets a container's root filesystem mounted: the narrow RootfsMounter interface
// (worker/rootfs/overlay.ts implements it) and a small fallback that mounts overlayfs with mount(8).
import { execFile } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface RootfsMounter {
  /** lowerDirs lowest first; upper/work live under diskDir, else containerDir; volatile skips overlay syncs. */
  mountRootfs(opts: { lowerDirs: string[]; containerDir: string; diskDir?: string; volatile: boolean }): Promise<{ rootfs: string; unmount(): Promise<void> }>;
  /** Unmounts whatever mountRootfs mounted for containerDir; a no-op when nothing is mounted. */
  unmountRootfs(containerDir: string): Promise<void>;
}

function run(bin: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(bin, args, { timeout: 30_000 }, (err, _out, stderr) => {
      if (err) reject(new Error(`${bin} ${args.join(' ')}: ${String(stderr).trim() || err.message}`));
      else resolve();
    });
  });
}

/** Mount points at or below dir, deepest first. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  const out = info.split('\n').map((l) => l.split(' ')[4]).filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)))
    .map((m) => m.replace(/\\040/g, ' '));
  return out.sort((a, b) => b.length - a.length);
}

/** Overlay at <containerDir>/rootfs over the lower dirs, upper/work in the container dir. */
export const fallbackMounter: RootfsMounter = {
  async mountRootfs({ lowerDirs, containerDir, diskDir, volatile }) {
    const rootfs = join(containerDir, 'rootfs');
    const upper = join(diskDir ?? containerDir, 'upper');
    const work = join(diskDir ?? containerDir, 'work');
    for (const d of [rootfs, upper, work]) await mkdir(d, { recursive: true });
    if (lowerDirs.length === 0) throw new Error(`no image layers to mount for ${containerDir}`);
    const lower = [...lowerDirs].reverse().join(':');
    const opts = `lowerdir=${lower},upperdir=${upper},workdir=${work}${volatile ? ',volatile' : ''}`;
    await run('mount', ['-t', 'overlay', 'overlay', '-o', opts, rootfs]);
    return { rootfs, unmount: () => fallbackMounter.unmountRootfs(containerDir) };
  },
  async unmountRootfs(containerDir) {
    for (const m of await mountsUnder(join(containerDir, 'rootfs'))) await run('umount', ['-l', m]);
  },
};

/** worker/rootfs/overlay.ts when it exists, else the fallback. */
export async function defaultMounter(): Promise<RootfsMounter> {
  try {
    const url = new URL('../rootfs/overlay.ts', import.meta.url).href; // not a static import: it may not exist yet
    const mod = (await import(url)) as Partial<RootfsMounter>;
    if (typeof mod.mountRootfs === 'function' && typeof mod.unmountRootfs === 'function') {
      return { mountRootfs: mod.mountRootfs, unmountRootfs: mod.unmountRootfs } as RootfsMounter;
    }
  } catch {
    /* not built yet */
  }
  return fallbackMounter;
}
