// A manager's keys at rest under autolock: <data>/certs/cluster.key.locked (0600) holds the cluster
// key wrapped with the unlock key (autolock.ts) and replaces cluster.key; autolock off puts it back.
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type Unwrapped, unwrapWithUnlockKey, wrapWithUnlockKey } from './autolock.ts';
import { certsDir, saveClusterKey } from './node-certs.ts';
import { SealError, seal, unseal } from './seal.ts';

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

// ---------------------------------------------------------------------------------------------
// The manager's own TLS key (like Docker's): <data>/certs/key.pem.locked replaces key.pem while
// autolock is on, sealed with the cluster key — which is itself on disk only wrapped with the unlock
// key, so neither opens without the unlock key, and a rotation rewrites one file (cluster.key.locked):
// no crash can leave the two keys wrapped with different unlock keys. etcd reads its key from a file,
// so a running manager keeps a clear copy off the disk (beside the socket: /run), removed at stop.

const TLS_KEY_CONTEXT = 'gantry/tls-key';

export function lockedTlsKeyPath(dataDir: string): string {
  return path.join(certsDir(dataDir), 'key.pem.locked');
}

function clearTlsKeyPath(dataDir: string): string {
  return path.join(certsDir(dataDir), 'key.pem');
}

async function writeAtomic(file: string, data: string | Buffer): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, data, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
}

/** Writes the TLS key sealed with `clusterKey` (autolock on) or in clear (undefined), and removes the other form. */
export async function writeTlsKeyAtRest(dataDir: string, keyPem: string, clusterKey: Buffer | undefined): Promise<void> {
  if (clusterKey === undefined) {
    await writeAtomic(clearTlsKeyPath(dataDir), keyPem);
    await rm(lockedTlsKeyPath(dataDir), { force: true });
    return;
  }
  await writeAtomic(lockedTlsKeyPath(dataDir), seal(clusterKey, Buffer.from(keyPem), TLS_KEY_CONTEXT));
  await rm(clearTlsKeyPath(dataDir), { force: true });
}

/** The TLS key when it is on disk only sealed: undefined when it is not (in clear, or none). */
export async function readLockedTlsKey(dataDir: string, clusterKey: Buffer): Promise<Unwrapped | undefined> {
  if ((await exists(clearTlsKeyPath(dataDir))) || !(await exists(lockedTlsKeyPath(dataDir)))) return undefined;
  try {
    return { ok: true, plain: unseal(clusterKey, await readFile(lockedTlsKeyPath(dataDir)), TLS_KEY_CONTEXT) };
  } catch (err) {
    if (err instanceof SealError) return { ok: false, reason: `${lockedTlsKeyPath(dataDir)} does not open with this manager's cluster key (${err.message})` };
    throw err;
  }
}

/** cert.pem and ca.pem of a host whose key is on disk only wrapped (undefined otherwise). */
export async function loadCertsOfLockedKey(dataDir: string): Promise<{ certPem: string; caPem: string } | undefined> {
  if ((await exists(clearTlsKeyPath(dataDir))) || !(await exists(lockedTlsKeyPath(dataDir)))) return undefined;
  const dir = certsDir(dataDir);
  const [certPem, caPem] = await Promise.all(['cert.pem', 'ca.pem'].map((f) => readFile(path.join(dir, f), 'utf8')));
  return { certPem, caPem };
}

export async function writeRuntimeKey(file: string, keyPem: string): Promise<void> {
  await writeAtomic(file, keyPem);
}

/** cert.pem and ca.pem alone (the key is written by writeTlsKeyAtRest). */
export async function writeCertsOnly(dataDir: string, certPem: string, caPem: string): Promise<void> {
  const dir = certsDir(dataDir);
  for (const [f, data] of [['cert.pem', certPem], ['ca.pem', caPem]] as const) {
    await writeAtomic(path.join(dir, f), data);
    await chmod(path.join(dir, f), 0o644);
  }
}
