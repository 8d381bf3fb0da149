// `gantry service create|ls|ps|inspect|update|rollback|scale|rm|logs`: Docker's flags, tables or
// --format json, and exit codes that tell the truth about convergence (waits unless --detach).
import { bool, type FlagDef, list, str, UsageError } from '../args.ts';
import type { Command, CommandContext } from '../command.ts';
import { callError, CallError } from '../connection.ts';
import { type Control, control } from '../control-client.ts';
import {
  currentState,
  FORMAT_FLAG,
  imageText,
  json,
  modeName,
  outputFormat,
  prettyService,
  replicasText,
  shortId,
  table,
  taskName,
  taskStateName,
} from '../format.ts';
import { waitForConvergence } from '../progress.ts';
import {
  COMMON_SPEC_FLAGS,
  CREATE_LIST_FLAGS,
  CREATE_SPEC_FLAGS,
  EXTRA_SPEC_FLAGS,
  createSpec,
  modeFromFlags,
  UPDATE_SPEC_FLAGS,
  updatedSpec,
} from '../service-spec.ts';
import { parseCount, parseDuration } from '../units.ts';
import type { LogMessage } from '../../proto/gen/gantry/v1/control.ts';
import type { Service, Task } from '../../proto/gen/gantry/v1/objects.ts';

const PENDING = 64;
const RUNNING = 512;

const DETACH: FlagDef = { name: 'detach', short: 'd', kind: 'bool', help: 'return at once instead of waiting for the service to converge' };
const NO_RESOLVE: FlagDef = { name: 'no-resolve-image', kind: 'bool', help: 'do not ask the registry for the digest of the image tag' };
const QUIET: FlagDef = { name: 'quiet', short: 'q', kind: 'bool', help: 'print only ids (create/update: no progress output)' };

const devNull: NodeJS.WritableStream = { write: () => true } as unknown as NodeJS.WritableStream;

/** Polls the service until it converges; returns the exit code and prints why when it does not. */
export async function converge(
  api: Control,
  ctx: CommandContext,
  ref: string,
  quiet: boolean,
  baseline: Set<string>,
  before?: Service,
  rollback = false,
): Promise<number> {
  const baselineUpdate = before?.updateStatus ? { state: before.updateStatus.state, startedAt: before.updateStatus.startedAt } : undefined;
  const result = await waitForConvergence({
    out: quiet ? devNull : ctx.out,
    isTTY: ctx.isTTY && !quiet,
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    observe: async () => {
      let service: Service;
      try {
        service = await api.getService(ref);
      } catch (e) {
        if (e instanceof CallError && e.code === 5) return undefined;
        throw e;
      }
      const [tasks, summaries, nodes] = await Promise.all([
        api.listTasks({ service: service.id }),
        api.listServices(),
        api.listNodes(),
      ]);
      const summary = summaries.services.find((s) => s.service?.id === service.id) ?? { running: 0, desired: 0, completed: 0 };
      return {
        service,
        summary,
        tasks: tasks.tasks,
        hostnames: new Map(nodes.nodes.map((n) => [n.id, n.description?.hostname ?? n.id])),
        baseline,
        baselineUpdate,
        rollback,
        now: Date.now(),
      };
    },
  });
  if (result.ok) return 0;
  ctx.err.write(`Error: ${result.error}\n`);
  return 1;
}

async function taskIds(api: Control, serviceId: string): Promise<Set<string>> {
  return new Set((await api.listTasks({ service: serviceId })).tasks.map((t) => t.id));
}

const create: Command = {
  path: ['service', 'create'],
  summary: 'Create a service',
  usage: 'gantry service create [OPTIONS] IMAGE [COMMAND] [ARG...]',
  stopAtPositional: 1,
  flags: [
    { name: 'name', kind: 'string', help: 'service name' },
    { name: 'replicas', kind: 'string', help: 'number of tasks (replicated, replicated-job)' },
    { name: 'mode', kind: 'string', help: 'replicated (default), global, replicated-job or global-job' },
    { name: 'max-concurrent', kind: 'string', help: 'replicated-job: tasks running at once (default: replicas)' },
    ...COMMON_SPEC_FLAGS,
    ...EXTRA_SPEC_FLAGS,
    ...CREATE_SPEC_FLAGS,
    ...CREATE_LIST_FLAGS,
    DETACH,
    NO_RESOLVE,
    QUIET,
  ],
  async run(args, ctx) {
    const mode = modeFromFlags(str(args, 'mode'), str(args, 'replicas'), str(args, 'max-concurrent'));
    const spec = createSpec(args, ctx.env, str(args, 'name') ?? '', mode);
    const api = control(ctx);
    const svc = await api.createService({ spec, noResolveImage: bool(args, 'no-resolve-image') });
    ctx.out.write(`${svc.id}\n`);
    const quiet = bool(args, 'quiet');
    if (!quiet && !svc.spec?.task?.container?.imageDigest) {
      ctx.err.write(
        `warning: image "${spec.task?.container?.image}" was not pinned to a digest (no registry could be asked): each node resolves the tag itself, so nodes may run different images\n`,
      );
    }
    if (bool(args, 'detach')) return 0;
    return converge(api, ctx, svc.id, quiet, new Set());
  },
};

const ls: Command = {
  path: ['service', 'ls'],
  aliases: [['service', 'list']],
  summary: 'List services',
  usage: 'gantry service ls [OPTIONS]',
  flags: [QUIET, FORMAT_FLAG, { name: 'filter', short: 'f', kind: 'list', help: 'filter: name=PREFIX, mode=replicated|global|...' }],
  async run(args, ctx) {
    const format = outputFormat(args);
    const filters = parseFilters(list(args, 'filter'), ['name', 'mode', 'id']);
    const res = await control(ctx).listServices();
    const services = res.services
      .filter((s) => (filters.name ?? []).every((n) => (s.service?.spec?.name ?? '').startsWith(n)))
      .filter((s) => (filters.id ?? []).every((n) => (s.service?.id ?? '').startsWith(n)))
      .filter((s) => (filters.mode ?? []).every((m) => modeName(s.service?.spec).replace(' ', '-') === m))
      .sort((a, b) => (a.service?.spec?.name ?? '').localeCompare(b.service?.spec?.name ?? ''));
    if (format === 'json') {
      ctx.out.write(json(services));
      return 0;
    }
    if (bool(args, 'quiet')) {
      for (const s of services) ctx.out.write(`${s.service?.id}\n`);
      return 0;
    }
    const rows = services.map((s) => [
      shortId(s.service?.id ?? ''),
      s.service?.spec?.name ?? '',
      modeName(s.service?.spec),
      replicasText(s.service?.spec, s.running, s.desired, s.completed),
      imageText(s.service?.spec),
      (s.service?.endpoint?.ports?.length ? s.service.endpoint.ports : (s.service?.spec?.endpoint?.ports ?? [])).map((p) => `*:${p.publishedPort}->${p.targetPort}/${p.protocol || 'tcp'}`).join(', '),
    ]);
    ctx.out.write(table(['ID', 'NAME', 'MODE', 'REPLICAS', 'IMAGE', 'PORTS'], rows));
    return 0;
  },
};

/** --filter key=value (repeatable) → {key: [values]}; unknown keys are a usage error. */
export function parseFilters(values: string[], allowed: string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const f of values) {
    const eq = f.indexOf('=');
    const key = eq < 0 ? f : f.slice(0, eq);
    if (eq < 0 || !allowed.includes(key)) throw new UsageError(`--filter "${f}": use ${allowed.map((a) => `${a}=VALUE`).join(', ')}`);
    (out[key] ??= []).push(f.slice(eq + 1));
  }
  return out;
}

const DESIRED_FILTER: Record<string, number[]> = { running: [RUNNING], shutdown: [640, 576], accepted: [256], ready: [384] };

function errorText(t: Task, noTrunc: boolean): string {
  const s = t.status?.state ?? 0;
  const e = t.status?.err || (s <= PENDING ? t.status?.message ?? '' : '');
  if (!e) return '';
  const cut = noTrunc || e.length <= 60 ? e : `${e.slice(0, 59)}…`;
  return `"${cut}"`;
}

/** Tasks grouped by slot (newest first), older ones shown as " \_ web.1" like Docker. */
export function psRows(tasks: Task[], hostnames: Map<string, string>, now: number, noTrunc: boolean): string[][] {
  const key = (t: Task) => `${t.serviceName}\u0000${t.slot > 0 ? String(t.slot).padStart(8, '0') : t.nodeId}`;
  const sorted = [...tasks].sort((a, b) => {
    const k = key(a).localeCompare(key(b));
    if (k !== 0) return k;
    return (b.meta?.createdAt ?? 0) - (a.meta?.createdAt ?? 0);
  });
  let last = '';
  return sorted.map((t) => {
    const first = key(t) !== last;
    last = key(t);
    return [
      shortId(t.id, noTrunc),
      first ? taskName(t) : ` \\_ ${taskName(t)}`,
      t.spec?.container?.image ?? '',
      t.nodeId ? (hostnames.get(t.nodeId) ?? shortId(t.nodeId)) : '',
      taskStateName(t.desiredState),
      currentState(t, now),
      errorText(t, noTrunc),
    ];
  });
}

const ps: Command = {
  path: ['service', 'ps'],
  summary: "List a service's tasks",
  usage: 'gantry service ps [OPTIONS] SERVICE [SERVICE...]',
  flags: [
    { name: 'no-trunc', kind: 'bool', help: 'do not truncate ids and errors' },
    { name: 'filter', short: 'f', kind: 'list', help: 'filter: desired-state=running|shutdown|accepted, node=NODE' },
    QUIET,
    FORMAT_FLAG,
  ],
  async run(args, ctx) {
    if (args.positionals.length === 0) throw new UsageError('name at least one SERVICE');
    const format = outputFormat(args);
    const filters = parseFilters(list(args, 'filter'), ['desired-state', 'node']);
    for (const d of filters['desired-state'] ?? []) {
      if (!(d in DESIRED_FILTER)) throw new UsageError(`--filter desired-state=${d}: use running, shutdown, accepted or ready`);
    }
    const api = control(ctx);
    const nodes = await api.listNodes();
    const hostnames = new Map(nodes.nodes.map((n) => [n.id, n.description?.hostname ?? n.id]));
    let tasks: Task[] = [];
    for (const ref of args.positionals) {
      const svc = await api.getService(ref);
      const nodeRefs = filters.node ?? [''];
      for (const node of nodeRefs) tasks.push(...(await api.listTasks({ service: svc.id, node })).tasks);
    }
    const desired = (filters['desired-state'] ?? []).flatMap((d) => DESIRED_FILTER[d]);
    if (desired.length > 0) tasks = tasks.filter((t) => desired.includes(t.desiredState));
    if (format === 'json') {
      ctx.out.write(json(tasks));
      return 0;
    }
    if (bool(args, 'quiet')) {
      for (const t of tasks) ctx.out.write(`${t.id}\n`);
      return 0;
    }
    const rows = psRows(tasks, hostnames, Date.now(), bool(args, 'no-trunc'));
    ctx.out.write(table(['ID', 'NAME', 'IMAGE', 'NODE', 'DESIRED STATE', 'CURRENT STATE', 'ERROR'], rows));
    return 0;
  },
};

const inspect: Command = {
  path: ['service', 'inspect'],
  summary: 'Show services in detail (JSON, or --pretty)',
  usage: 'gantry service inspect [OPTIONS] SERVICE [SERVICE...]',
  flags: [{ name: 'pretty', kind: 'bool', help: 'human-readable text instead of JSON' }, FORMAT_FLAG],
  async run(args, ctx) {
    if (args.positionals.length === 0) throw new UsageError('name at least one SERVICE');
    outputFormat(args);
    const api = control(ctx);
    const found: Service[] = [];
    let failed = false;
    for (const ref of args.positionals) {
      try {
        found.push(await api.getService(ref));
      } catch (e) {
        if (!(e instanceof CallError)) throw e;
        ctx.err.write(`Error: ${e.message}\n`);
        failed = true;
      }
    }
    if (bool(args, 'pretty')) ctx.out.write(found.map(prettyService).join('\n'));
    else ctx.out.write(json(found));
    return failed ? 1 : 0;
  },
};

const scale: Command = {
  path: ['service', 'scale'],
  summary: 'Scale one or more replicated services',
  usage: 'gantry service scale [OPTIONS] SERVICE=REPLICAS [SERVICE=REPLICAS...]',
  flags: [DETACH, QUIET],
  async run(args, ctx) {
    if (args.positionals.length === 0) throw new UsageError('give at least one SERVICE=REPLICAS');
    const wanted = args.positionals.map((p) => {
      const eq = p.lastIndexOf('=');
      if (eq <= 0) throw new UsageError(`"${p}" is not SERVICE=REPLICAS`);
      const n = parseCount(p.slice(eq + 1), `replicas for ${p.slice(0, eq)}`);
      if (!n.ok) throw new UsageError(n.error);
      return { ref: p.slice(0, eq), replicas: n.value };
    });
    const api = control(ctx);
    let code = 0;
    const scaled: Array<{ id: string; baseline: Set<string>; before: Service }> = [];
    for (const w of wanted) {
      try {
        const svc = await api.getService(w.ref);
        const spec = svc.spec!;
        const m = spec.mode;
        if (m?.$case === 'replicated') m.value.replicas = w.replicas;
        else if (m?.$case === 'replicatedJob') m.value.totalCompletions = w.replicas;
        else throw new CallError(`service "${spec.name}" is ${modeName(spec)}: scale works only on replicated services`, 9);
        const baseline = await taskIds(api, svc.id);
        await api.updateService({ ref: svc.id, version: svc.meta?.version ?? 0, spec, rollback: '', noResolveImage: bool(args, 'no-resolve-image') });
        ctx.out.write(`${w.ref} scaled to ${w.replicas}\n`);
        scaled.push({ id: svc.id, baseline, before: svc });
      } catch (e) {
        if (!(e instanceof CallError)) throw e;
        ctx.err.write(`Error: ${e.message}\n`);
        code = 1;
      }
    }
    if (bool(args, 'detach')) return code;
    for (const s of scaled) code = Math.max(code, await converge(api, ctx, s.id, bool(args, 'quiet'), s.baseline, s.before));
    return code;
  },
};

const rm: Command = {
  path: ['service', 'rm'],
  aliases: [['service', 'remove']],
  summary: 'Remove one or more services',
  usage: 'gantry service rm SERVICE [SERVICE...]',
  flags: [],
  async run(args, ctx) {
    if (args.positionals.length === 0) throw new UsageError('name at least one SERVICE');
    const api = control(ctx);
    let code = 0;
    for (const ref of args.positionals) {
      try {
        await api.removeService(ref);
        ctx.out.write(`${ref}\n`);
      } catch (e) {
        if (!(e instanceof CallError)) throw e;
        ctx.err.write(`Error: ${e.message}\n`);
        code = 1;
      }
    }
    return code;
  },
};

const update: Command = {
  path: ['service', 'update'],
  summary: "Update a service's spec (tasks restart only when their spec changes)",
  usage: 'gantry service update [OPTIONS] SERVICE',
  flags: [
    { name: 'replicas', kind: 'string', help: 'number of tasks' },
    { name: 'rollback', kind: 'bool', help: 'go back to the previous spec' },
    { name: 'resume', kind: 'bool', help: 'continue a paused update or rollback (the same as an update with no change)' },
    ...COMMON_SPEC_FLAGS,
    ...EXTRA_SPEC_FLAGS,
    ...UPDATE_SPEC_FLAGS,
    DETACH,
    NO_RESOLVE,
    QUIET,
  ],
  async run(args, ctx) {
    if (args.positionals.length !== 1) throw new UsageError('name exactly one SERVICE');
    const api = control(ctx);
    const svc = await api.getService(args.positionals[0]);
    const baseline = await taskIds(api, svc.id);
    let updated: Service;
    if (bool(args, 'rollback')) {
      updated = await api.updateService({ ref: svc.id, version: svc.meta?.version ?? 0, rollback: 'previous', noResolveImage: false });
    } else {
      const spec = updatedSpec(svc.spec!, args, ctx.env);
      updated = await api.updateService({ ref: svc.id, version: svc.meta?.version ?? 0, spec, rollback: '', noResolveImage: bool(args, 'no-resolve-image') });
    }
    ctx.out.write(`${updated.spec?.name ?? svc.id}\n`);
    if (bool(args, 'detach')) return 0;
    return converge(api, ctx, svc.id, bool(args, 'quiet'), baseline, svc, bool(args, 'rollback'));
  },
};

const rollback: Command = {
  path: ['service', 'rollback'],
  summary: 'Revert a service to its previous spec',
  usage: 'gantry service rollback [OPTIONS] SERVICE',
  flags: [DETACH, QUIET],
  async run(args, ctx) {
    if (args.positionals.length !== 1) throw new UsageError('name exactly one SERVICE');
    const api = control(ctx);
    const svc = await api.getService(args.positionals[0]);
    const baseline = await taskIds(api, svc.id);
    const updated = await api.updateService({ ref: svc.id, version: svc.meta?.version ?? 0, rollback: 'previous', noResolveImage: false });
    ctx.out.write(`${updated.spec?.name ?? svc.id}\n`);
    if (bool(args, 'detach')) return 0;
    return converge(api, ctx, svc.id, bool(args, 'quiet'), baseline, svc, true);
  },
};

/** --since: a duration ago ("10m") or a timestamp (RFC 3339 or Unix seconds). */
export function parseSince(text: string, now: number): number {
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const d = parseDuration(text);
  if (d.ok) return now - d.value;
  const t = Date.parse(text);
  if (!Number.isNaN(t)) return t;
  throw new UsageError(`--since "${text}" is neither a duration (10m) nor a timestamp (2026-01-02T15:04:05Z, or Unix seconds)`);
}

export function logPrefix(m: LogMessage, noTaskIds: boolean, noTrunc: boolean): string {
  const name = m.slot > 0 ? `${m.serviceName}.${m.slot}` : `${m.serviceName}.${m.nodeId}`;
  const id = noTaskIds ? '' : `.${shortId(m.taskId, noTrunc)}`;
  return `${name}${id}@${m.nodeHostname || m.nodeId}    | `;
}

const logs: Command = {
  path: ['service', 'logs'],
  summary: 'Show the logs of a service or task',
  usage: 'gantry service logs [OPTIONS] SERVICE|TASK',
  flags: [
    { name: 'follow', short: 'f', kind: 'bool', help: 'keep streaming new output' },
    { name: 'tail', short: 'n', kind: 'string', help: 'lines from the end of each log (default all)' },
    { name: 'since', kind: 'string', help: 'only lines since a timestamp or a duration ago (e.g. 10m)' },
    { name: 'timestamps', short: 't', kind: 'bool', help: 'show timestamps' },
    { name: 'no-task-ids', kind: 'bool', help: 'do not show task ids' },
    { name: 'no-trunc', kind: 'bool', help: 'do not truncate ids' },
    { name: 'raw', kind: 'bool', help: 'no prefixes' },
  ],
  async run(args, ctx) {
    if (args.positionals.length !== 1) throw new UsageError('name exactly one SERVICE or TASK');
    const tailText = str(args, 'tail') ?? 'all';
    let tail = -1;
    if (tailText !== 'all') {
      const n = parseCount(tailText, '--tail');
      if (!n.ok) throw new UsageError(n.error);
      tail = n.value;
    }
    const sinceText = str(args, 'since');
    const sinceMs = sinceText === undefined ? 0 : parseSince(sinceText, Date.now());
    const api = control(ctx);
    const stream = api.client.serviceLogs({
      ref: args.positionals[0],
      follow: bool(args, 'follow'),
      tail,
      sinceMs,
      timestamps: bool(args, 'timestamps'),
    });
    const raw = bool(args, 'raw');
    const errors: string[] = [];
    const partial = new Map<string, { prefix: string; text: string; out: NodeJS.WritableStream }>();
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (m: LogMessage) => {
        if (m.error) {
          errors.push(m.error);
          ctx.err.write(`error: ${m.nodeHostname || m.nodeId || 'a node'}: ${m.error}\n`);
          return;
        }
        const out = m.stream === 'stderr' ? ctx.err : ctx.out;
        const prefix = (raw ? '' : logPrefix(m, bool(args, 'no-task-ids'), bool(args, 'no-trunc'))) + (bool(args, 'timestamps') ? `${new Date(m.timeMs).toISOString()} ` : '');
        const key = `${m.taskId}/${m.stream}`;
        const text = (partial.get(key)?.text ?? '') + m.data.toString('utf8');
        const lines = text.split('\n');
        partial.set(key, { prefix, text: lines.pop() ?? '', out });
        for (const line of lines) out.write(`${prefix}${line}\n`);
      });
      stream.on('end', resolve);
      stream.on('error', (e: Error & { code?: number; details?: string }) => {
        if (e.code === 1 /* CANCELLED */) resolve();
        else reject(callError(e as never, api.target));
      });
    });
    for (const p of partial.values()) if (p.text) p.out.write(`${p.prefix}${p.text}\n`);
    if (errors.length > 0) {
      ctx.err.write(`Error: logs are incomplete: ${errors.length} node${errors.length > 1 ? 's' : ''} could not be read\n`);
      return 1;
    }
    return 0;
  },
};

export const commands: Command[] = [create, ls, ps, inspect, update, rollback, scale, rm, logs];
