// Autolock's keys, pure: the unlock key (`GNTRYKEY-1-<43 base64url chars>`, 32 random bytes), the
// key-encryption key derived from it (HKDF-SHA256, a fresh salt per wrap), wrapping a key at rest
// (AES-256-GCM, seal.ts) and the cluster's copy of the unlock key, sealed with the cluster key.
import { hkdfSync, randomBytes } from 'node:crypto';
import { SealError, seal, unseal } from './seal.ts';

export const UNLOCK_KEY_PREFIX = 'GNTRYKEY-1-';
const MAGIC = Buffer.from('GNTRYLOCK1');
const SALT_LEN = 16;
const UNLOCK_KEY_CONTEXT = 'gantry/unlock-key';

export function newUnlockKey(): string {
  return UNLOCK_KEY_PREFIX + randomBytes(32).toString('base64url');
}

/** The key's 32 bytes, or why the text is not an unlock key. */
export function parseUnlockKey(text: string): { ok: true; key: Buffer } | { ok: false; reason: string } {
  const t = text.trim();
  if (!t.startsWith(UNLOCK_KEY_PREFIX)) {
    return { ok: false, reason: `this is not a gantry unlock key (${UNLOCK_KEY_PREFIX}…): copy it from \`gantry cluster unlock-key\` on an unlocked manager` };
  }
  const body = t.slice(UNLOCK_KEY_PREFIX.length);
  const key = /^[A-Za-z0-9_-]{43}$/.test(body) ? Buffer.from(body, 'base64url') : Buffer.alloc(0);
  if (key.length !== 32) return { ok: false, reason: `the unlock key is malformed (${UNLOCK_KEY_PREFIX} then 43 characters): check it was copied whole` };
  return { ok: true, key };
}

/** The key-encryption key: HKDF suffices, the unlock key is 256 random bits (no password to stretch). */
export function deriveKek(unlockKey: Buffer, salt: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', unlockKey, salt, 'gantry/autolock/kek', 32));
}

/** At rest: "GNTRYLOCK1" | salt(16) | seal(kek, plain, context). */
export function wrapWithUnlockKey(unlockKey: string, plain: Buffer, context: string): Buffer {
  const parsed = parseUnlockKey(unlockKey);
  if (!parsed.ok) throw new Error(parsed.reason);
  const salt = randomBytes(SALT_LEN);
  return Buffer.concat([MAGIC, salt, seal(deriveKek(parsed.key, salt), plain, context)]);
}

export function isWrapped(data: Buffer): boolean {
  return data.length > MAGIC.length + SALT_LEN && data.subarray(0, MAGIC.length).equals(MAGIC);
}

export type Unwrapped = { ok: true; plain: Buffer } | { ok: false; reason: string };

/** A wrong key is a value (the operator mistyped), not an exception. */
export function unwrapWithUnlockKey(unlockKey: string, wrapped: Buffer, context: string): Unwrapped {
  const parsed = parseUnlockKey(unlockKey);
  if (!parsed.ok) return parsed;
  if (!isWrapped(wrapped)) return { ok: false, reason: `${context} is not wrapped by gantry autolock (damaged file?)` };
  const salt = wrapped.subarray(MAGIC.length, MAGIC.length + SALT_LEN);
  try {
    return { ok: true, plain: unseal(deriveKek(parsed.key, salt), wrapped.subarray(MAGIC.length + SALT_LEN), context) };
  } catch (err) {
    if (err instanceof SealError) return { ok: false, reason: 'the unlock key is wrong: it does not open this manager\'s keys (was it rotated? use the key `gantry cluster unlock-key` printed last)' };
    throw err;
  }
}

/** The cluster's copy of the unlock key (Cluster.unlock_key_sealed): only managers can read it. */
export function sealUnlockKey(clusterKey: Buffer, unlockKey: string): Buffer {
  return seal(clusterKey, Buffer.from(unlockKey), UNLOCK_KEY_CONTEXT);
}

/** undefined when autolock is off (nothing sealed). */
export function unsealUnlockKey(clusterKey: Buffer, sealed: Uint8Array | undefined): string | undefined {
  if (!sealed?.length) return undefined;
  return unseal(clusterKey, Buffer.from(sealed), UNLOCK_KEY_CONTEXT).toString();
}

/**
 * What a manager does with its keys at rest when the cluster's unlock key is `want` (undefined =
 * autolock off) and its files are wrapped with `have` (undefined = in clear, null = not known yet).
 */
export function keysAtRestAction(want: string | undefined, have: string | undefined | null): 'wrap' | 'clear' | 'none' {
  if (have !== null && want === have) return 'none';
  return want === undefined ? 'clear' : 'wrap';
}
