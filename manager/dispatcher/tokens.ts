// Join tokens and node secrets. A token is GNTRY-1-<secret>-<w|m>: the secret proves the joining
// host was given it by an operator; the role letter says what it joins as. Rotating a token
// replaces the secret (joined nodes are unaffected: they hold their own node secret).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Cluster } from '../../proto/gen/gantry/v1/objects.ts';

export type JoinRole = 'worker' | 'manager';

export function newJoinToken(role: JoinRole): string {
  return `GNTRY-1-${randomBytes(24).toString('base64url')}-${role === 'worker' ? 'w' : 'm'}`;
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

export function newNodeSecret(): string {
  return randomBytes(32).toString('base64url');
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export function secretMatches(secret: string, hash: string): boolean {
  return hash.length > 0 && sameSecret(hashSecret(secret), hash);
}
