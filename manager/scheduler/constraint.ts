// Placement constraints and platforms as the scheduler and the global orchestrator evaluate them:
// parsed once per expression (the control API's parser, so both agree), defensive about bad input.
import type { Node, Placement, Platform } from '../../proto/gen/gantry/v1/objects.ts';
import { type Constraint, matches, parseConstraint } from '../controlapi/constraints.ts';

export type ParsedConstraint = { text: string; ok: true; c: Constraint } | { text: string; ok: false; error: string };

const cache = new Map<string, ParsedConstraint>();

/** Parse (memoised); a malformed expression is kept as a value that matches no node. */
export function parse(text: string): ParsedConstraint {
  let p = cache.get(text);
  if (!p) {
    const r = parseConstraint(text);
    p = r.ok ? { text, ok: true, c: r.value } : { text, ok: false, error: r.error };
    if (cache.size > 10_000) cache.clear();
    cache.set(text, p);
  }
  return p;
}

export function constraintHolds(node: Node, p: ParsedConstraint): boolean {
  return p.ok && matches(node, p.c);
}

const ARCH: Record<string, string> = { x86_64: 'amd64', amd64: 'amd64', aarch64: 'arm64', arm64: 'arm64', armhf: 'arm', armv7l: 'arm', i386: '386', i686: '386' };

export function normArch(a: string): string {
  const l = a.toLowerCase();
  return ARCH[l] ?? l;
}

/** True when the placement lists no platforms or the node's os/arch is one of them (empty fields match anything). */
export function platformHolds(node: Node, platforms: readonly Platform[]): boolean {
  if (platforms.length === 0) return true;
  const os = (node.description?.platform?.os ?? '').toLowerCase();
  const arch = normArch(node.description?.platform?.architecture ?? '');
  return platforms.some(
    (p) => (!p.os || p.os.toLowerCase() === os) && (!p.architecture || normArch(p.architecture) === arch),
  );
}

/** All constraints and the platform list hold on this node. */
export function placementHolds(node: Node, placement: Placement | undefined): boolean {
  for (const text of placement?.constraints ?? []) if (!constraintHolds(node, parse(text))) return false;
  return platformHolds(node, placement?.platforms ?? []);
}
