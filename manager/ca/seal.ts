// The cluster key: 32 random bytes that only managers hold (on disk 0600, handed to a joining
// manager over mutual TLS). It seals what etcd must not hold in clear: the root CA key, secret values.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

const VERSION = 1;

export function newClusterKey(): Buffer {
  return randomBytes(32);
}

/** AES-256-GCM: version(1) | iv(12) | tag(16) | ciphertext. `context` binds it to where it belongs. */
export function seal(key: Buffer, plain: Buffer, context: string): Buffer {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(Buffer.from(context));
  const body = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([Buffer.from([VERSION]), iv, c.getAuthTag(), body]);
}

export class SealError extends Error {
  override name = 'SealError';
}

export function unseal(key: Buffer, sealed: Buffer, context: string): Buffer {
  if (sealed.length < 29 || sealed[0] !== VERSION) throw new SealError(`${context}: not sealed by this version of gantry`);
  const d = createDecipheriv('aes-256-gcm', key, sealed.subarray(1, 13));
  d.setAAD(Buffer.from(context));
  d.setAuthTag(sealed.subarray(13, 29));
  try {
    return Buffer.concat([d.update(sealed.subarray(29)), d.final()]);
  } catch {
    throw new SealError(`${context}: cannot unseal it with this manager's cluster key (another cluster's key, or tampered)`);
  }
}
