// Validation of service and node specs: the last typed stage (input → with defaults → validated).
// Pure; every problem is a message that names the field and says what is allowed.
import { constants as osConstants } from 'node:os';
import type { NodeSpec } from '../../proto/gen/gantry/v1/objects.ts';
import { parseConstraint } from './constraints.ts';
import type { DefaultedServiceSpec } from './defaults.ts';
import { checkImageRef } from './imageref.ts';

declare const validBrand: unique symbol;
/** A spec that passed validateServiceSpec: every sub-message present, every value in range. */
export type ValidServiceSpec = DefaultedServiceSpec & { readonly [validBrand]: true };

export type Validated<T> = { ok: true; value: T } | { ok: false; problems: string[] };

export const MAX_REPLICAS = 100_000;
export const MIN_MEMORY_LIMIT = 6 * 1024 * 1024;
const NAME = /^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$/;
const HOSTNAME = /^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;

export function bytesText(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(2).replace(/\.?0+$/, '')}${units[i]}`;
}

function isWhole(v: number): boolean {
  return Number.isSafeInteger(v) && v >= 0;
}

export function validServiceName(name: string): string | undefined {
  if (name === '') return 'name is required (--name NAME)';
  if (name.length > 63 || !NAME.test(name)) {
    return `name "${name}" is invalid: use at most 63 letters, digits, '-' and '_', starting and ending with a letter or digit`;
  }
  return undefined;
}

export function validSignal(sig: string): boolean {
  if (/^\d+$/.test(sig)) return Number(sig) > 0 && Number(sig) < 65;
  const upper = sig.toUpperCase();
  const name = upper.startsWith('SIG') ? upper : `SIG${upper}`;
  return name in osConstants.signals || /^SIGRTM(IN|AX)([+-]\d+)?$/.test(name);
}

export function validateServiceSpec(spec: DefaultedServiceSpec): Validated<ValidServiceSpec> {
  const p: string[] = [];
  const nameProblem = validServiceName(spec.name);
  if (nameProblem) p.push(nameProblem);
  for (const k of Object.keys(spec.labels)) if (k === '') p.push('label with an empty key: write --label KEY=VALUE');

  // mode
  const mode = spec.mode;
  switch (mode.$case) {
    case 'replicated': {
      const r = mode.value.replicas;
      if (!isWhole(r)) p.push(`replicas must be a whole number ≥ 0, not ${r}`);
      else if (r > MAX_REPLICAS) p.push(`replicas ${r} is more than the maximum of ${MAX_REPLICAS}`);
      break;
    }
    case 'replicatedJob': {
      const { maxConcurrent, totalCompletions } = mode.value;
      if (!isWhole(maxConcurrent)) p.push(`max concurrent must be a whole number ≥ 0, not ${maxConcurrent}`);
      if (!isWhole(totalCompletions)) p.push(`total completions (replicas) must be a whole number ≥ 0, not ${totalCompletions}`);
      break;
    }
    case 'global':
    case 'globalJob':
      break;
    default: {
      const never: never = mode;
      p.push(`mode ${JSON.stringify(never)} is unknown: use replicated, global, replicated-job or global-job`);
    }
  }

  // container
  const c = spec.task.container;
  const image = checkImageRef(c.image);
  if (!image.ok) p.push(image.error);
  for (const e of c.env) {
    const eq = e.indexOf('=');
    if (eq < 0) p.push(`env "${e}" has no value: write KEY=VALUE`);
    else if (eq === 0) p.push(`env "${e}" has no name: write KEY=VALUE`);
    else if (/\s/.test(e.slice(0, eq))) p.push(`env "${e}": the name must not contain whitespace`);
  }
  if (c.dir !== '' && !c.dir.startsWith('/')) p.push(`workdir "${c.dir}" must be an absolute path`);
  if (c.hostname !== '' && (c.hostname.length > 253 || !HOSTNAME.test(c.hostname))) {
    p.push(`hostname "${c.hostname}" is not a valid host name`);
  }
  for (const k of Object.keys(c.labels)) if (k === '') p.push('container label with an empty key: write --container-label KEY=VALUE');
  if (!isWhole(c.stopGracePeriodMs)) p.push(`stop grace period must be ≥ 0, not ${c.stopGracePeriodMs}ms`);
  if (c.stopSignal !== '' && !validSignal(c.stopSignal)) p.push(`stop signal "${c.stopSignal}" is not a signal (e.g. SIGTERM, SIGINT, 15)`);
  for (const [flag, caps] of [['cap-add', c.capAdd], ['cap-drop', c.capDrop]] as const) {
    for (const cap of caps) {
      if (!/^(?:CAP_)?[A-Z_]+$/i.test(cap)) p.push(`${flag} "${cap}" is not a capability name (e.g. NET_ADMIN or CAP_NET_ADMIN, or ALL)`);
    }
  }
  if (!Number.isSafeInteger(c.pidsLimit) || c.pidsLimit < 0) p.push(`pids limit must be a whole number ≥ 0, not ${c.pidsLimit}`);
  for (const m of c.mounts) {
    if (!['bind', 'volume', 'tmpfs'].includes(m.type)) p.push(`mount type "${m.type}" is unknown: use bind, volume or tmpfs`);
    if (!m.target.startsWith('/')) p.push(`mount target "${m.target}" must be an absolute path`);
    if (m.type === 'bind' && !m.source.startsWith('/')) p.push(`bind mount source "${m.source}" must be an absolute path`);
  }
  const hc = c.healthcheck;
  if (hc && hc.test.length > 0 && !['NONE', 'CMD', 'CMD-SHELL'].includes(hc.test[0])) {
    p.push(`healthcheck test must start with NONE, CMD or CMD-SHELL, not "${hc.test[0]}"`);
  }

  // resources
  const { limits, reservations } = spec.task.resources;
  for (const [what, r] of [['limit', limits], ['reservation', reservations]] as const) {
    if (!r) continue;
    if (!isWhole(r.nanoCpus)) p.push(`CPU ${what} must be ≥ 0, not ${r.nanoCpus / 1e9}`);
    if (!isWhole(r.memoryBytes)) p.push(`memory ${what} must be ≥ 0, not ${r.memoryBytes}`);
  }
  if (limits && reservations) {
    if (limits.memoryBytes > 0 && limits.memoryBytes < reservations.memoryBytes) {
      p.push(`memory limit ${bytesText(limits.memoryBytes)} is below the memory reservation ${bytesText(reservations.memoryBytes)}`);
    }
    if (limits.nanoCpus > 0 && limits.nanoCpus < reservations.nanoCpus) {
      p.push(`CPU limit ${limits.nanoCpus / 1e9} is below the CPU reservation ${reservations.nanoCpus / 1e9}`);
    }
  }
  if (limits && limits.memoryBytes > 0 && limits.memoryBytes < MIN_MEMORY_LIMIT) {
    p.push(`memory limit ${bytesText(limits.memoryBytes)} is below the minimum of ${bytesText(MIN_MEMORY_LIMIT)}`);
  }

  // restart
  const r = spec.task.restart;
  if (![0, 1, 2].includes(r.condition)) p.push(`restart condition ${r.condition} is unknown: use any, on-failure or none`);
  if (!isWhole(r.delayMs)) p.push(`restart delay must be ≥ 0, not ${r.delayMs}ms`);
  if (!isWhole(r.windowMs)) p.push(`restart window must be ≥ 0, not ${r.windowMs}ms`);
  if (!isWhole(r.maxAttempts)) p.push(`restart max attempts must be a whole number ≥ 0, not ${r.maxAttempts}`);

  // placement
  const pl = spec.task.placement;
  for (const text of pl.constraints) {
    const parsed = parseConstraint(text);
    if (!parsed.ok) p.push(parsed.error);
  }
  for (const pref of pl.preferences) {
    if (!/^(node\.labels\.|engine\.labels\.)\S+$/.test(pref.spread) && !['node.id', 'node.hostname', 'node.role', 'node.platform.os', 'node.platform.arch'].includes(pref.spread)) {
      p.push(`placement preference spread="${pref.spread}" must name a node attribute such as node.labels.zone`);
    }
  }
  if (!isWhole(pl.maxReplicas)) p.push(`replicas max per node must be a whole number ≥ 0, not ${pl.maxReplicas}`);
  else if (pl.maxReplicas > 0 && mode.$case !== 'replicated' && mode.$case !== 'replicatedJob') {
    p.push('replicas max per node can only be used with replicated mode');
  }

  // update / rollback
  for (const [what, u] of [['update', spec.update], ['rollback', spec.rollback]] as const) {
    if (!isWhole(u.parallelism)) p.push(`${what} parallelism must be a whole number ≥ 0, not ${u.parallelism}`);
    if (!isWhole(u.delayMs)) p.push(`${what} delay must be ≥ 0, not ${u.delayMs}ms`);
    if (!isWhole(u.monitorMs)) p.push(`${what} monitor must be ≥ 0, not ${u.monitorMs}ms`);
    if (!(u.maxFailureRatio >= 0 && u.maxFailureRatio <= 1)) p.push(`${what} max failure ratio must be between 0 and 1, not ${u.maxFailureRatio}`);
    const actions = what === 'update' ? [0, 1, 2] : [0, 1];
    if (!actions.includes(u.failureAction)) {
      p.push(`${what} failure action ${u.failureAction} is unknown: use ${what === 'update' ? 'pause, continue or rollback' : 'pause or continue'}`);
    }
    if (![0, 1].includes(u.order)) p.push(`${what} order ${u.order} is unknown: use stop-first or start-first`);
  }

  if (hc) {
    for (const [what, v] of [['interval', hc.intervalMs], ['timeout', hc.timeoutMs], ['start period', hc.startPeriodMs], ['retries', hc.retries]] as const) {
      if (!isWhole(v)) p.push(`healthcheck ${what} must be ≥ 0, not ${v}`);
    }
  }
  for (const n of spec.task.networks) if (n.target === '') p.push('network attachment without a network name or id');

  // endpoint
  const published = new Set<string>();
  for (const port of spec.endpoint?.ports ?? []) {
    const key = `${port.publishedPort}/${port.protocol || 'tcp'}`;
    if (port.publishedPort > 0 && published.has(key)) p.push(`published port ${key} is given twice`);
    published.add(key);
    if (!(port.targetPort >= 1 && port.targetPort <= 65535)) p.push(`published port target ${port.targetPort} must be 1-65535`);
    if (!(port.publishedPort >= 0 && port.publishedPort <= 65535)) p.push(`published port ${port.publishedPort} must be 0-65535`);
    if (!['', 'tcp', 'udp', 'sctp'].includes(port.protocol)) p.push(`port protocol "${port.protocol}" is unknown: use tcp, udp or sctp`);
  }

  if (p.length > 0) return { ok: false, problems: p };
  return { ok: true, value: spec as ValidServiceSpec };
}

export function validateNodeSpec(spec: NodeSpec): string[] {
  const p: string[] = [];
  if (![0, 1, 2].includes(spec.availability)) p.push(`availability ${spec.availability} is unknown: use active, pause or drain`);
  if (![0, 1].includes(spec.desiredRole)) p.push(`role ${spec.desiredRole} is unknown: use worker or manager`);
  for (const k of Object.keys(spec.labels)) if (k === '') p.push('node label with an empty key: write --label-add KEY=VALUE');
  return p;
}
