// Turns a task's ContainerSpec plus its image's config into the runtime's ContainerConfig, with
// Docker's merge rules (command/args vs Entrypoint/Cmd, env by key, workdir, user, stop signal).
import type { Task } from '../../proto/gen/gantry/v1/objects.ts';
import type { ContainerConfig } from '../runtime/types.ts';

/** The fields of an OCI image config the merge reads (worker/image's OciImageConfig fits). */
export interface ImageConfigLike {
  Env?: string[] | null;
  Cmd?: string[] | null;
  Entrypoint?: string[] | null;
  WorkingDir?: string;
  User?: string;
  StopSignal?: string;
  Labels?: Record<string, string> | null;
}

export interface NetworkAttachmentResult {
  network: ContainerConfig['network'];
  files?: ContainerConfig['files'];
}

export const DEFAULT_STOP_GRACE_MS = 10_000;

/** Labels every task container carries, so a restarted worker (or a human) can tell whose it is. */
export function taskLabels(task: Task): Record<string, string> {
  return {
    'gantry.task.id': task.id,
    'gantry.service.id': task.serviceId,
    'gantry.service.name': task.serviceName,
    'gantry.task.slot': String(task.slot),
    'gantry.node.id': task.nodeId,
  };
}

/** The image reference to run: the manager-resolved digest pins the tag when it is known. */
export function imageRef(task: Task): string {
  const c = task.spec?.container;
  if (!c?.image) return '';
  if (c.imageDigest && /^sha256:[a-f0-9]{64}$/.test(c.imageDigest) && !c.image.includes('@')) return `${c.image}@${c.imageDigest}`;
  return c.image;
}

/** Docker's argv: --entrypoint replaces Entrypoint and drops the image's Cmd; args replace Cmd. */
export function mergeArgs(command: string[], args: string[], image: ImageConfigLike): string[] {
  if (command.length) return [...command, ...args];
  return [...(image.Entrypoint ?? []), ...(args.length ? args : (image.Cmd ?? []))];
}

/** Image env first, the task's overriding by key, order of first appearance kept. */
export function mergeEnv(imageEnv: string[], taskEnv: string[]): string[] {
  const out = new Map<string, string>();
  for (const e of [...imageEnv, ...taskEnv]) {
    const i = e.indexOf('=');
    const k = i < 0 ? e : e.slice(0, i);
    out.set(k, e);
  }
  return [...out.values()];
}

export function stopGraceMs(task: Task): number {
  const g = task.spec?.container?.stopGracePeriodMs ?? 0;
  return g > 0 ? g : DEFAULT_STOP_GRACE_MS;
}

/** The container for task over the image's snapshot dirs (lowest first). */
export function containerConfigFor(task: Task, image: ImageConfigLike, lowerDirs: string[], net: NetworkAttachmentResult = { network: { mode: 'none' } }):
  { ok: true; config: ContainerConfig } | { ok: false; error: string } {
  const c = task.spec?.container;
  if (!c) return { ok: false, error: `task ${task.id} has no container spec` };
  const args = mergeArgs(c.command ?? [], c.args ?? [], image);
  if (args.length === 0) return { ok: false, error: `image "${c.image}" has no Entrypoint or Cmd and the task gives no command (set --command or args)` };
  const mounts: ContainerConfig['mounts'] = [];
  for (const m of c.mounts ?? []) {
    if (m.type !== 'bind' && m.type !== 'tmpfs') return { ok: false, error: `mount type "${m.type}" for ${m.target} is not supported on this worker (use bind or tmpfs)` };
    if (!m.target.startsWith('/')) return { ok: false, error: `mount target "${m.target}" must be an absolute path` };
    if (m.type === 'bind' && !m.source.startsWith('/')) return { ok: false, error: `bind mount source "${m.source}" must be an absolute path on the host` };
    mounts.push({ type: m.type, source: m.source, target: m.target, readOnly: m.readOnly });
  }
  const limits = task.spec?.resources?.limits;
  const config: ContainerConfig = {
    id: task.id,
    rootfs: { kind: 'layers', lowerDirs },
    args,
    env: mergeEnv(image.Env ?? [], c.env ?? []),
    cwd: c.dir || image.WorkingDir || '/',
    user: c.user || image.User || '',
    hostname: c.hostname || task.id.slice(0, 12),
    tty: c.tty,
    readOnlyRootfs: c.readOnly,
    capAdd: c.capAdd ?? [],
    capDrop: c.capDrop ?? [],
    limits: {
      ...(limits?.memoryBytes ? { memoryBytes: limits.memoryBytes } : {}),
      ...(limits?.nanoCpus ? { nanoCpus: limits.nanoCpus } : {}),
      ...(c.pidsLimit ? { pidsLimit: c.pidsLimit } : {}),
    },
    mounts,
    network: net.network,
    files: net.files,
    stopSignal: c.stopSignal || image.StopSignal || 'SIGTERM',
    labels: { ...(image.Labels ?? {}), ...(c.labels ?? {}), ...taskLabels(task) },
  };
  return { ok: true, config };
}
