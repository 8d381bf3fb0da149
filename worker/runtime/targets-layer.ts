// A shared read-only overlay layer holding empty files where gantryd bind-mounts a container's
// /etc/hosts, /etc/resolv.conf and /etc/hostname. Without it every container's runtime created
// them (and copied /etc up) in its own upper dir: ~5 new inodes per container, each costly on a
// busy ext4 (Docker's per-container "init layer" does the same job; this one is made once).
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';

/** Paths a layer may hold: absolute, normalized, no `..`, at least one directory deep. */
export function layerPaths(paths: readonly string[]): string[] | undefined {
  const out: string[] = [];
  for (const p of paths) {
    if (!p.startsWith('/') || posix.normalize(p) !== p || p.split('/').includes('..') || p.split('/').length < 3) return undefined;
    out.push(p);
  }
  return [...new Set(out)].sort();
}

/**
 * Whether the image (lower dirs, lowest first) lets the layer sit on top unchanged: every parent
 * directory of every path is a real directory where the image has it (a symlinked /etc would be
 * hidden by the layer's directory), and every path is a regular file or absent.
 */
export async function layerFits(lowerDirs: readonly string[], paths: readonly string[]): Promise<boolean> {
  const topmost = async (rel: string) => {
    for (let i = lowerDirs.length - 1; i >= 0; i--) {
      const st = await lstat(join(lowerDirs[i], rel)).catch(() => undefined);
      if (st) return st;
    }
    return undefined;
  };
  for (const p of paths) {
    const parts = p.split('/').filter(Boolean);
    for (let i = 1; i < parts.length; i++) {
      const st = await topmost(parts.slice(0, i).join('/'));
      if (st && !st.isDirectory()) return false;
    }
    const st = await topmost(parts.join('/'));
    if (st && !st.isFile()) return false;
  }
  return true;
}

/** Makes (once; tmp dir + rename, so a crash or a racing create never leaves half a layer) and returns the layer for `paths` under `root`. */
export async function ensureTargetsLayer(root: string, paths: readonly string[]): Promise<string> {
  const key = createHash('sha256').update(paths.join('\0')).digest('hex').slice(0, 16);
  const dir = join(root, 'targets', key);
  if (await lstat(dir).then(() => true, () => false)) return dir;
  const tmp = `${dir}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    for (const p of paths) {
      await mkdir(join(tmp, posix.dirname(p)), { recursive: true, mode: 0o755 });
      await writeFile(join(tmp, p), '', { mode: 0o644 });
    }
    await rename(tmp, dir).catch(async (e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOTEMPTY' && e.code !== 'EEXIST') throw e; // made meanwhile by another create
    });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return dir;
}
