// A manager's keys at rest under autolock: <data>/certs/cluster.key.locked (0600) holds the cluster
// key wrapped with the unlock key (autolock.ts) and replaces cluster.key; autolock off puts it back.
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type Unwrapped, unwrapWithUnlockKey, wrapWithUnlockKey } from './autolock.ts';
import { certsDir, saveClusterKey } from './node-certs.ts';

const CONTEXT = 'gantry/cluster-key';

export function lockedClusterKeyPath(dataDir: string): string {
  return path.join(certsDir(dataDir), 'cluster.key.locked');
}

function clearClusterKeyPath(dataDir: string): string {
  return path.join(certsDir(dataDir), 'cluster.key');
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

/** A locked manager: its cluster key is on disk only wrapped. */
export async function keysLockedAtRest(dataDir: string): Promise<boolean> {
  return (await exists(lockedClusterKeyPath(dataDir))) && !(await exists(clearClusterKeyPath(dataDir)));
}

/** Wraps the cluster key with `unlockKey` and removes the key in clear (the wrapped file is written first). */
export async function writeClusterKeyLocked(dataDir: string, unlockKey: string, clusterKey: Buffer): Promise<void> {
  const file = lockedClusterKeyPath(dataDir);
  await mkdir(certsDir(dataDir), { recursive: true, mode: 0o700 });
  await writeFile(`${file}.tmp`, wrapWithUnlockKey(unlockKey, clusterKey, CONTEXT), { mode: 0o600 });
  await chmod(`${file}.tmp`, 0o600);
  await rename(`${file}.tmp`, file);
  await rm(clearClusterKeyPath(dataDir), { force: true });
}

/** Autolock off: the cluster key in clear again (cluster.key), the wrapped copy removed. */
export async function writeClusterKeyClear(dataDir: string, clusterKey: Buffer): Promise<void> {
  await saveClusterKey(dataDir, clusterKey);
  await rm(lockedClusterKeyPath(dataDir), { force: true });
}

export async function readLockedClusterKey(dataDir: string, unlockKey: string): Promise<Unwrapped> {
  let wrapped: Buffer;
  try {
    wrapped = await readFile(lockedClusterKeyPath(dataDir));
  } catch (err) {
    return { ok: false, reason: `cannot read ${lockedClusterKeyPath(dataDir)}: ${(err as Error).message}` };
  }
  return unwrapWithUnlockKey(unlockKey, wrapped, CONTEXT);
}

/** A demoted or departing manager keeps no cluster key, wrapped or not. */
export async function removeLockedClusterKey(dataDir: string): Promise<void> {
  await rm(lockedClusterKeyPath(dataDir), { force: true });
}
