// Join tokens: GNTRY-1-<sha256 of the root CA certificate, hex>-<secret>-<w|m>. The digest lets the
// joiner check the manager's CA before it sends anything (manager/ca/join-pin.ts); the secret
// proves to the manager that an operator gave it; the letter says what it joins as. Rotating a
// token replaces the secret (joined nodes are unaffected: they hold certificates).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Cluster } from '../../proto/gen/gantry/v1/objects.ts';

export type JoinRole = 'worker' | 'manager';

/** sha256 of the root CA certificate's DER (the first one, when given a PEM bundle), hex. */
export function rootDigest(rootCaCert: Uint8Array | string | undefined): string {
  const text = Buffer.from(rootCaCert ?? '').toString();
  const m = text.match(/-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/);
  if (!m) return '0'.repeat(64);
  return createHash('sha256').update(Buffer.from(m[1].replace(/\s/g, ''), 'base64')).digest('hex');
}

export function newJoinToken(role: JoinRole, rootCaCert?: Uint8Array | string): string {
  return `GNTRY-1-${rootDigest(rootCaCert)}-${randomBytes(20).toString('hex')}-${role === 'worker' ? 'w' : 'm'}`;
}

export interface ParsedToken {
  digest: string;
  secret: string;
  role: JoinRole;
}

export function parseJoinToken(token: string): ParsedToken | undefined {
  const m = token.trim().match(/^GNTRY-1-([0-9a-f]{64})-([0-9A-Za-z]{16,})-([wm])$/);
  if (!m) return undefined;
  return { digest: m[1], secret: m[2], role: m[3] === 'w' ? 'worker' : 'manager' };
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The role a token grants in this cluster, or undefined when it is not one of its current tokens. */
export function tokenRole(cluster: Cluster, token: string): JoinRole | undefined {
  const t = token.trim();
  if (cluster.joinTokens?.worker && sameSecret(t, cluster.joinTokens.worker)) return 'worker';
  if (cluster.joinTokens?.manager && sameSecret(t, cluster.joinTokens.manager)) return 'manager';
  return undefined;
}

/** Why a token was refused, for the joiner: the manager's answer never says which token exists. */
export function explainRefusedToken(cluster: Cluster, token: string): string {
  const p = parseJoinToken(token);
  const what = !p
    ? 'it is not a gantry join token (GNTRY-1-<CA digest>-<secret>-<w|m>)'
    : p.digest !== rootDigest(cluster.rootCaCert)
      ? 'it names another root CA than this cluster\'s'
      : 'wrong or rotated';
  return `join token is not valid for this cluster (${what}): get the current one with \`gantry join-token worker\` (or \`manager\`) on a manager`;
}

export function newNodeSecret(): string {
  return randomBytes(32).toString('base64url');
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export function secretMatches(secret: string, hash: string): boolean {
  return hash.length > 0 && sameSecret(hashSecret(secret), hash);
}
