// How the cluster commands print: aligned tables, `--format json`, Docker's state words and ages
// ("Running 5 seconds ago"), replica counts ("2/3"), and the `inspect --pretty` text of services and nodes.
import { type ParsedArgs, str, UsageError } from './args.ts';
import type { Node, Service, ServiceSpec, Task, UpdateConfig } from '../proto/gen/gantry/v1/objects.ts';
import { formatBytes, formatCpus, formatDuration, humanDuration } from './units.ts';

export type OutputFormat = 'table' | 'json';

/** The --format flag: "table" (default) or "json". */
export function outputFormat(args: ParsedArgs): OutputFormat {
  const f = str(args, 'format');
  if (f === undefined || f === '' || f === 'table') return 'table';
  if (f === 'json') return 'json';
  throw new UsageError(`--format "${f}" is not supported: use table or json`);
}

export const FORMAT_FLAG = { name: 'format', kind: 'string', help: 'output format: table (default) or json' } as const;

/** Columns separated by at least three spaces, like Docker's tabwriter; the last column is not padded. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] + 3)))
      .join('')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/** Pretty JSON; bytes fields print as base64. */
export function json(value: unknown): string {
  return (
    JSON.stringify(
      value,
      (_k, v) => {
        if (v && typeof v === 'object' && v.type === 'Buffer' && Array.isArray(v.data)) return Buffer.from(v.data).toString('base64');
        if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
        return v;
      },
      2,
    ) + '\n'
  );
}

export function shortId(id: string, noTrunc = false): string {
  return noTrunc ? id : id.slice(0, 12);
}

const TASK_STATES: Record<number, string> = {
  0: 'New',
  64: 'Pending',
  192: 'Assigned',
  256: 'Accepted',
  320: 'Preparing',
  384: 'Ready',
  448: 'Starting',
  512: 'Running',
  576: 'Complete',
  640: 'Shutdown',
  704: 'Failed',
  768: 'Rejected',
  800: 'Remove',
  832: 'Orphaned',
};

export function taskStateName(state: number | undefined): string {
  return TASK_STATES[state ?? 0] ?? `Unknown(${state})`;
}

/** "Running 5 seconds ago" */
export function currentState(task: Task, now: number): string {
  const ts = task.status?.timestamp || task.meta?.updatedAt || 0;
  // Docker lower-cases the age: "Running about a minute ago"
  const age = ts > 0 ? ` ${humanDuration(Math.max(0, now - ts)).toLowerCase()} ago` : '';
  return `${taskStateName(task.status?.state)}${age}`;
}

/** Docker names a task "web.1" (replicated) or "web.<node id>" (global). */
export function taskName(task: Task): string {
  return task.slot > 0 ? `${task.serviceName}.${task.slot}` : `${task.serviceName}.${task.nodeId}`;
}

export function modeName(spec: ServiceSpec | undefined): string {
  switch (spec?.mode?.$case) {
    case undefined:
      return 'unknown';
    case 'replicated':
      return 'replicated';
    case 'global':
      return 'global';
    case 'replicatedJob':
      return 'replicated job';
    case 'globalJob':
      return 'global job';
    default: {
      const never: never = spec?.mode as never;
      return String(never);
    }
  }
}

/** "2/3"; jobs: "1/4 (2/4 completed)"; a max-per-node limit adds " (max 2 per node)". */
export function replicasText(spec: ServiceSpec | undefined, running: number, desired: number, completed: number): string {
  const mode = spec?.mode?.$case;
  let out = `${running}/${desired}`;
  if (mode === 'replicatedJob' || mode === 'globalJob') out += ` (${completed}/${desired} completed)`;
  const max = spec?.task?.placement?.maxReplicas ?? 0;
  if (max > 0 && mode === 'replicated') out += ` (max ${max} per node)`;
  return out;
}

export function imageText(spec: ServiceSpec | undefined): string {
  return spec?.task?.container?.image ?? '';
}

export function nodeStatusText(n: Node): string {
  return ['Unknown', 'Down', 'Ready', 'Disconnected'][n.status?.state ?? 0] ?? 'Unknown';
}

export function availabilityText(n: Node): string {
  return ['Active', 'Pause', 'Drain'][n.spec?.availability ?? 0] ?? 'Unknown';
}

export function managerStatusText(n: Node): string {
  if (n.role !== 1) return '';
  if (n.managerStatus?.leader) return 'Leader';
  // a manager whose host is down or disconnected is not reachable, whatever it last recorded
  if (n.status?.state === 1 || n.status?.state === 3) return 'Unreachable';
  const r = n.managerStatus?.reachability ?? '';
  return r ? r[0].toUpperCase() + r.slice(1) : 'Unknown';
}

const RESTART = ['any', 'on-failure', 'none'];
const FAILURE_ACTION = ['pause', 'continue', 'rollback'];
const ORDER = ['stop-first', 'start-first'];

function updateLines(title: string, u: UpdateConfig | undefined): string[] {
  if (!u) return [];
  return [
    `${title}:`,
    ` Parallelism:\t${u.parallelism}`,
    ...(u.delayMs ? [` Delay:\t\t${formatDuration(u.delayMs)}`] : []),
    ` On failure:\t${FAILURE_ACTION[u.failureAction] ?? u.failureAction}`,
    ` Monitoring Period: ${formatDuration(u.monitorMs)}`,
    ` Max failure ratio: ${u.maxFailureRatio}`,
    ` Update order:      ${ORDER[u.order] ?? u.order}`,
  ];
}

function kv(map: Record<string, string> | undefined, indent: string): string[] {
  return Object.entries(map ?? {}).map(([k, v]) => `${indent}${k}=${v}`);
}

/** `service inspect --pretty`, close to Docker's. */
export function prettyService(s: Service): string {
  const spec = s.spec;
  const t = spec?.task;
  const c = t?.container;
  const lines: string[] = [];
  lines.push(`ID:\t\t${s.id}`, `Name:\t\t${spec?.name ?? ''}`);
  if (spec && Object.keys(spec.labels).length > 0) lines.push('Labels:', ...kv(spec.labels, ' '));
  const mode = spec?.mode;
  if (mode?.$case === 'replicated') lines.push('Service Mode:\tReplicated', ` Replicas:\t${mode.value.replicas}`);
  else if (mode?.$case === 'replicatedJob') {
    lines.push('Service Mode:\tReplicated Job', ` Max Concurrent:\t${mode.value.maxConcurrent}`, ` Total Completions:\t${mode.value.totalCompletions}`);
  } else lines.push(`Service Mode:\t${modeName(spec).replace(/\b\w/g, (x) => x.toUpperCase())}`);
  lines.push(`Spec Version:\t${s.specVersion}`);
  if (s.updateStatus && s.updateStatus.state !== 0) {
    const states = ['unknown', 'updating', 'paused', 'completed', 'rollback_started', 'rollback_paused', 'rollback_completed'];
    lines.push('UpdateStatus:', ` State:\t\t${states[s.updateStatus.state] ?? s.updateStatus.state}`);
    if (s.updateStatus.message) lines.push(` Message:\t${s.updateStatus.message}`);
    if (s.updateStatus.startedAt) lines.push(` Started:\t${new Date(s.updateStatus.startedAt).toISOString()}`);
    if (s.updateStatus.completedAt) lines.push(` Completed:\t${new Date(s.updateStatus.completedAt).toISOString()}`);
  }
  const pl = t?.placement;
  lines.push('Placement:');
  if (pl?.constraints.length) lines.push(` Constraints:\t[${pl.constraints.join(' ')}]`);
  if (pl?.preferences.length) lines.push(` Preferences:\t[${pl.preferences.map((p) => `spread=${p.spread}`).join(' ')}]`);
  if (pl?.maxReplicas) lines.push(` Max Replicas Per Node:\t${pl.maxReplicas}`);
  lines.push(...updateLines('UpdateConfig', spec?.update), ...updateLines('RollbackConfig', spec?.rollback));
  lines.push('ContainerSpec:', ` Image:\t\t${c?.image ?? ''}${c?.imageDigest ? `@${c.imageDigest}` : ''}`);
  if (c?.command.length) lines.push(` Command:\t${c.command.join(' ')}`);
  if (c?.args.length) lines.push(` Args:\t\t${c.args.join(' ')}`);
  if (c?.env.length) lines.push(' Env:', ...c.env.map((e) => `  ${e}`));
  if (c?.dir) lines.push(` Dir:\t\t${c.dir}`);
  if (c?.user) lines.push(` User:\t\t${c.user}`);
  if (c?.hostname) lines.push(` Hostname:\t${c.hostname}`);
  if (c && Object.keys(c.labels).length > 0) lines.push(' Labels:', ...kv(c.labels, '  '));
  if (c?.stopSignal) lines.push(` Stop Signal:\t${c.stopSignal}`);
  if (c?.stopGracePeriodMs) lines.push(` Stop Grace Period:\t${formatDuration(c.stopGracePeriodMs)}`);
  if (c?.tty) lines.push(' TTY:\t\ttrue');
  if (c?.readOnly) lines.push(' Read Only:\ttrue');
  if (c?.capAdd.length) lines.push(` Capabilities Added:\t${c.capAdd.join(', ')}`);
  if (c?.capDrop.length) lines.push(` Capabilities Dropped:\t${c.capDrop.join(', ')}`);
  const r = t?.resources;
  if (r && (r.limits?.nanoCpus || r.limits?.memoryBytes || r.reservations?.nanoCpus || r.reservations?.memoryBytes)) {
    lines.push('Resources:');
    if (r.reservations?.nanoCpus || r.reservations?.memoryBytes) {
      lines.push(' Reservations:');
      if (r.reservations.nanoCpus) lines.push(`  CPU:\t\t${formatCpus(r.reservations.nanoCpus)}`);
      if (r.reservations.memoryBytes) lines.push(`  Memory:\t${formatBytes(r.reservations.memoryBytes)}`);
    }
    if (r.limits?.nanoCpus || r.limits?.memoryBytes) {
      lines.push(' Limits:');
      if (r.limits.nanoCpus) lines.push(`  CPU:\t\t${formatCpus(r.limits.nanoCpus)}`);
      if (r.limits.memoryBytes) lines.push(`  Memory:\t${formatBytes(r.limits.memoryBytes)}`);
    }
  }
  const rp = t?.restart;
  if (rp) {
    lines.push(
      'Restart Policy:',
      ` Condition:\t${RESTART[rp.condition] ?? rp.condition}`,
      ` Delay:\t\t${formatDuration(rp.delayMs)}`,
      ` Max Attempts:\t${rp.maxAttempts}`,
      ` Window:\t${formatDuration(rp.windowMs)}`,
    );
  }
  // the allocated ports (dynamic ones filled in) once the allocator has seen the service
  const ports = s.endpoint?.ports?.length ? s.endpoint.ports : (spec?.endpoint?.ports ?? []);
  if (ports.length > 0) {
    lines.push('Ports:', ...ports.map((p) => ` PublishedPort = ${p.publishedPort}\n  Protocol = ${p.protocol || 'tcp'}\n  TargetPort = ${p.targetPort}\n  PublishMode = ${p.publishMode === 1 ? 'host' : 'ingress'}`));
  }
  return lines.join('\n') + '\n';
}

/** `node inspect --pretty`, close to Docker's. */
export function prettyNode(n: Node): string {
  const d = n.description;
  const lines = [
    `ID:\t\t\t${n.id}`,
    ...(n.spec?.name ? [`Name:\t\t\t${n.spec.name}`] : []),
    ...(n.spec && Object.keys(n.spec.labels).length > 0 ? ['Labels:', ...kv(n.spec.labels, ' - ')] : []),
    `Hostname:\t\t${d?.hostname ?? ''}`,
    'Status:',
    ` State:\t\t\t${nodeStatusText(n)}`,
    ...(n.status?.message ? [` Message:\t\t${n.status.message}`] : []),
    ` Availability:\t\t${availabilityText(n)}`,
    ` Address:\t\t${n.status?.addr ?? ''}`,
  ];
  if (n.role === 1) {
    lines.push('Manager Status:', ` Address:\t\t${n.managerStatus?.addr ?? ''}`, ` Raft Status:\t\t${managerStatusText(n) === 'Leader' ? 'Reachable' : managerStatusText(n)}`, ` Leader:\t\t${n.managerStatus?.leader ? 'Yes' : 'No'}`);
  }
  if (n.spec && n.spec.desiredRole !== n.role) lines.push(`Desired Role:\t\t${n.spec.desiredRole === 1 ? 'manager' : 'worker'} (not yet applied)`);
  lines.push(
    'Platform:',
    ` Operating System:\t${d?.platform?.os ?? ''}`,
    ` Architecture:\t\t${d?.platform?.architecture ?? ''}`,
    'Resources:',
    ` CPUs:\t\t\t${formatCpus(d?.resources?.nanoCpus ?? 0)}`,
    ` Memory:\t\t${formatBytes(d?.resources?.memoryBytes ?? 0)}`,
    `Engine Version:\t\t${d?.engineVersion ?? ''}`,
  );
  if (d && Object.keys(d.engineLabels).length > 0) lines.push('Engine Labels:', ...kv(d.engineLabels, ' - '));
  if (d?.runtimes.length) lines.push(`Runtimes:\t\t${d.runtimes.join(' ')}`);
  return lines.join('\n') + '\n';
}
