// Placement constraint expressions ("node.labels.zone==a", "node.role!=manager"): parse, explain, match.
// Pure; the control API validates with it and counts a global service's eligible nodes with it.
import type { Node } from '../../proto/gen/gantry/v1/objects.ts';

export type Constraint = { key: string; op: '==' | '!='; value: string };

export const CONSTRAINT_KEYS =
  'node.id, node.hostname, node.role, node.labels.*, engine.labels.*, node.platform.os, node.platform.arch';

const EXACT_KEYS = new Set(['node.id', 'node.hostname', 'node.role', 'node.platform.os', 'node.platform.arch']);

function knownKey(key: string): boolean {
  if (EXACT_KEYS.has(key)) return true;
  for (const prefix of ['node.labels.', 'engine.labels.']) {
    if (key.startsWith(prefix) && key.length > prefix.length) return true;
  }
  return false;
}

export function parseConstraint(text: string): { ok: true; value: Constraint } | { ok: false; error: string } {
  const m = /^\s*([^=!\s]+)\s*(==|!=)\s*(.*?)\s*$/.exec(text);
  if (!m || m[3] === '' || /^=|[=!]=/.test(m[3])) {
    return { ok: false, error: `constraint "${text}" is not of the form KEY==VALUE or KEY!=VALUE; keys: ${CONSTRAINT_KEYS}` };
  }
  const key = m[1].toLowerCase().startsWith('node.labels.') || m[1].toLowerCase().startsWith('engine.labels.') ? m[1] : m[1].toLowerCase();
  if (!knownKey(key)) return { ok: false, error: `constraint "${text}" has an unknown key "${m[1]}"; keys: ${CONSTRAINT_KEYS}` };
  if (key === 'node.role' && m[3] !== 'manager' && m[3] !== 'worker') {
    return { ok: false, error: `constraint "${text}": node.role is manager or worker, not "${m[3]}"` };
  }
  return { ok: true, value: { key, op: m[2] as '==' | '!=', value: m[3] } };
}

/** The node's value for a constraint key, or undefined when it has none (a missing label). */
export function nodeAttribute(node: Node, key: string): string | undefined {
  switch (key) {
    case 'node.id':
      return node.id;
    case 'node.hostname':
      return node.description?.hostname;
    case 'node.role':
      return node.role === 1 ? 'manager' : 'worker';
    case 'node.platform.os':
      return node.description?.platform?.os;
    case 'node.platform.arch':
      return node.description?.platform?.architecture;
  }
  if (key.startsWith('node.labels.')) return node.spec?.labels?.[key.slice('node.labels.'.length)];
  if (key.startsWith('engine.labels.')) return node.description?.engineLabels?.[key.slice('engine.labels.'.length)];
  return undefined;
}

/** Swarm's rule: == needs the attribute present and equal (case-insensitive); != holds when absent. */
export function matches(node: Node, c: Constraint): boolean {
  const v = nodeAttribute(node, c.key);
  const equal = v !== undefined && v.toLowerCase() === c.value.toLowerCase();
  return c.op === '==' ? equal : !equal;
}
