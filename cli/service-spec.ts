// The mapping from `service create` / `service update` flags to a ServiceSpec: one table of flags,
// each with the edit it makes, so update reuses create's flags (the rolling-update work adds more).
import type { FlagDef, ParsedArgs } from './args.ts';
import { UsageError } from './args.ts';
import {
  DEFAULT_STOP_GRACE_PERIOD_MS,
  defaultRestartPolicy,
  defaultUpdateConfig,
} from '../manager/controlapi/defaults.ts';
import {
  ContainerSpec,
  type HealthConfig,
  type Mount,
  type PortConfig,
  type ResourceRequirements,
  type RestartPolicy,
  type SecretReference,
  ServiceSpec,
  TaskSpec,
  type UpdateConfig,
} from '../proto/gen/gantry/v1/objects.ts';
import { type Parsed, parseBytes, parseCount, parseCpus, parseDuration } from './units.ts';

function need<T>(p: Parsed<T>, flag: string): T {
  if (!p.ok) throw new UsageError(p.error.startsWith('--') ? p.error : `--${flag}: ${p.error}`);
  return p.value;
}

function keyValue(text: string, flag: string): [string, string] {
  const eq = text.indexOf('=');
  if (eq === 0) throw new UsageError(`--${flag} "${text}": the key is empty (write KEY=VALUE)`);
  return eq < 0 ? [text, ''] : [text.slice(0, eq), text.slice(eq + 1)];
}

export function task(spec: ServiceSpec): TaskSpec {
  spec.task ??= TaskSpec.fromPartial({});
  return spec.task;
}
export function container(spec: ServiceSpec): ContainerSpec {
  const t = task(spec);
  t.container ??= ContainerSpec.fromPartial({ stopGracePeriodMs: DEFAULT_STOP_GRACE_PERIOD_MS });
  return t.container;
}
function resources(spec: ServiceSpec): Required<ResourceRequirements> {
  const t = task(spec);
  t.resources ??= { limits: undefined, reservations: undefined };
  t.resources.limits ??= { nanoCpus: 0, memoryBytes: 0 };
  t.resources.reservations ??= { nanoCpus: 0, memoryBytes: 0 };
  return t.resources as Required<ResourceRequirements>;
}
function restart(spec: ServiceSpec): RestartPolicy {
  const t = task(spec);
  t.restart ??= defaultRestartPolicy();
  return t.restart;
}
function placement(spec: ServiceSpec) {
  const t = task(spec);
  t.placement ??= { constraints: [], preferences: [], maxReplicas: 0, platforms: [] };
  return t.placement;
}
function updateConfig(spec: ServiceSpec, which: 'update' | 'rollback'): UpdateConfig {
  spec[which] ??= defaultUpdateConfig();
  return spec[which] as UpdateConfig;
}

/** A flag and the edit it makes; `value` is the flag's string, boolean or list. */
type Apply = (spec: ServiceSpec, value: never) => void;
export interface SpecFlag extends FlagDef {
  apply: Apply;
}

const flag = (name: string, kind: FlagDef['kind'], help: string, apply: Apply, short?: string): SpecFlag =>
  ({ name, kind, help, short, apply }) as SpecFlag;

const RESTART_CONDITIONS: Record<string, 0 | 1 | 2> = { any: 0, 'on-failure': 1, none: 2 };
const FAILURE_ACTIONS: Record<string, 0 | 1 | 2> = { pause: 0, continue: 1, rollback: 2 };
const ORDERS: Record<string, 0 | 1> = { 'stop-first': 0, 'start-first': 1 };

function pick<T>(table: Record<string, T>, text: string, flagName: string): T {
  if (!(text in table)) throw new UsageError(`--${flagName} "${text}" is not one of: ${Object.keys(table).join(', ')}`);
  return table[text];
}

function updateFlags(which: 'update' | 'rollback'): SpecFlag[] {
  const actions = which === 'update' ? FAILURE_ACTIONS : { pause: 0 as const, continue: 1 as const };
  return [
    flag(`${which}-parallelism`, 'string', `maximum number of tasks ${which}d at once (0 = all)`, (s, v: string) => {
      updateConfig(s, which).parallelism = need(parseCount(v, `--${which}-parallelism`), `${which}-parallelism`);
    }),
    flag(`${which}-delay`, 'string', `delay between ${which}s (e.g. 10s)`, (s, v: string) => {
      updateConfig(s, which).delayMs = need(parseDuration(v), `${which}-delay`);
    }),
    flag(`${which}-failure-action`, 'string', `on ${which} failure: ${Object.keys(actions).join('|')}`, (s, v: string) => {
      updateConfig(s, which).failureAction = pick(actions, v, `${which}-failure-action`);
    }),
    flag(`${which}-monitor`, 'string', `how long to watch each ${which}d task for failure (e.g. 5s)`, (s, v: string) => {
      updateConfig(s, which).monitorMs = need(parseDuration(v), `${which}-monitor`);
    }),
    flag(`${which}-max-failure-ratio`, 'string', `failure rate tolerated during an ${which} (0-1)`, (s, v: string) => {
      const n = Number(v);
      if (v.trim() === '' || !(n >= 0 && n <= 1)) throw new UsageError(`--${which}-max-failure-ratio must be a number between 0 and 1, not "${v}"`);
      updateConfig(s, which).maxFailureRatio = n;
    }),
    flag(`${which}-order`, 'string', `${which} order: stop-first|start-first`, (s, v: string) => {
      updateConfig(s, which).order = pick(ORDERS, v, `${which}-order`);
    }),
  ];
}

/** Flags that mean the same on create and update. */
export const COMMON_SPEC_FLAGS: SpecFlag[] = [
  flag('workdir', 'string', 'working directory inside the container', (s, v: string) => {
    container(s).dir = v;
  }, 'w'),
  flag('user', 'string', 'user[:group] the container runs as', (s, v: string) => {
    container(s).user = v;
  }, 'u'),
  flag('hostname', 'string', 'container host name', (s, v: string) => {
    container(s).hostname = v;
  }),
  flag('reserve-cpu', 'string', 'CPUs reserved per task (e.g. 0.5)', (s, v: string) => {
    resources(s).reservations.nanoCpus = need(parseCpus(v), 'reserve-cpu');
  }),
  flag('reserve-memory', 'string', 'memory reserved per task (e.g. 512MiB)', (s, v: string) => {
    resources(s).reservations.memoryBytes = need(parseBytes(v), 'reserve-memory');
  }),
  flag('limit-cpu', 'string', 'CPU limit per task (e.g. 1.5)', (s, v: string) => {
    resources(s).limits.nanoCpus = need(parseCpus(v), 'limit-cpu');
  }),
  flag('limit-memory', 'string', 'memory limit per task (e.g. 1GiB)', (s, v: string) => {
    resources(s).limits.memoryBytes = need(parseBytes(v), 'limit-memory');
  }),
  flag('limit-pids', 'string', 'maximum number of processes per task (0 = unlimited)', (s, v: string) => {
    container(s).pidsLimit = need(parseCount(v, '--limit-pids'), 'limit-pids');
  }),
  flag('restart-condition', 'string', 'restart when: any|on-failure|none (default any)', (s, v: string) => {
    restart(s).condition = pick(RESTART_CONDITIONS, v, 'restart-condition');
  }),
  flag('restart-delay', 'string', 'delay between restarts (default 5s)', (s, v: string) => {
    restart(s).delayMs = need(parseDuration(v), 'restart-delay');
  }),
  flag('restart-max-attempts', 'string', 'maximum restarts before giving up (0 = unlimited)', (s, v: string) => {
    restart(s).maxAttempts = need(parseCount(v, '--restart-max-attempts'), 'restart-max-attempts');
  }),
  flag('restart-window', 'string', 'window in which restarts are counted (e.g. 1m)', (s, v: string) => {
    restart(s).windowMs = need(parseDuration(v), 'restart-window');
  }),
  flag('stop-grace-period', 'string', 'time to wait after the stop signal before killing (default 10s)', (s, v: string) => {
    container(s).stopGracePeriodMs = need(parseDuration(v), 'stop-grace-period');
  }),
  flag('stop-signal', 'string', 'signal that stops the container (default SIGTERM)', (s, v: string) => {
    container(s).stopSignal = v;
  }),
  flag('replicas-max-per-node', 'string', 'maximum tasks of this service per node (0 = unlimited)', (s, v: string) => {
    placement(s).maxReplicas = need(parseCount(v, '--replicas-max-per-node'), 'replicas-max-per-node');
  }),
  flag('read-only', 'bool', 'mount the container root filesystem read-only', (s, v: boolean) => {
    container(s).readOnly = v;
  }),
  flag('tty', 'bool', 'allocate a pseudo-TTY', (s, v: boolean) => {
    container(s).tty = v;
  }, 't'),
  ...updateFlags('update'),
  ...updateFlags('rollback'),
];

/** Flags only `service create` has (lists that update edits with -add/-rm). */
export const CREATE_SPEC_FLAGS: SpecFlag[] = [
  flag('env', 'list', 'environment variable KEY=VALUE (KEY alone: taken from your environment)', () => {}, 'e'),
  flag('label', 'list', 'service label KEY=VALUE', (s, v: string[]) => {
    for (const l of v) {
      const [k, val] = keyValue(l, 'label');
      s.labels[k] = val;
    }
  }, 'l'),
  flag('container-label', 'list', 'container label KEY=VALUE', (s, v: string[]) => {
    for (const l of v) {
      const [k, val] = keyValue(l, 'container-label');
      container(s).labels[k] = val;
    }
  }),
  flag('constraint', 'list', 'placement constraint, e.g. node.labels.zone==a', (s, v: string[]) => {
    placement(s).constraints.push(...v);
  }),
  flag('placement-pref', 'list', 'placement preference, e.g. spread=node.labels.zone', (s, v: string[]) => {
    for (const p of v) {
      const [k, val] = keyValue(p, 'placement-pref');
      if (k !== 'spread' || val === '') throw new UsageError(`--placement-pref "${p}" must be spread=NODE_ATTRIBUTE (e.g. spread=node.labels.zone)`);
      placement(s).preferences.push({ spread: val });
    }
  }),
  flag('entrypoint', 'string', 'override the image entrypoint (a command line, split on spaces)', (s, v: string) => {
    container(s).command = v.trim() === '' ? [] : v.trim().split(/\s+/);
  }),
  flag('cap-add', 'list', 'add a Linux capability', (s, v: string[]) => {
    container(s).capAdd.push(...v);
  }),
  flag('cap-drop', 'list', 'drop a Linux capability', (s, v: string[]) => {
    container(s).capDrop.push(...v);
  }),
];

/** "8080:80", "8080:80/udp", "80" (published port chosen by the cluster) or "published=8080,target=80,protocol=udp,mode=host". */
export function parsePublish(text: string): PortConfig {
  const bad = () =>
    new UsageError(`--publish "${text}" is not PUBLISHED:TARGET[/PROTOCOL] or published=P,target=T[,protocol=tcp|udp][,mode=ingress|host]`);
  const port = (v: string | undefined): number => {
    if (v === undefined || !/^\d+$/.test(v) || Number(v) > 65535) throw bad();
    return Number(v);
  };
  if (text.includes('=')) {
    const kv = Object.fromEntries(text.split(',').map((p) => p.split('=', 2) as [string, string]));
    for (const k of Object.keys(kv)) if (!['published', 'target', 'protocol', 'mode', 'name'].includes(k)) throw bad();
    if (kv.mode !== undefined && kv.mode !== 'ingress' && kv.mode !== 'host') throw bad();
    return {
      name: kv.name ?? '',
      protocol: kv.protocol ?? 'tcp',
      targetPort: port(kv.target),
      publishedPort: kv.published === undefined ? 0 : port(kv.published),
      publishMode: kv.mode === 'host' ? 1 : 0,
    };
  }
  const m = /^(?:(\d+):)?(\d+)(?:\/(tcp|udp|sctp))?$/.exec(text);
  if (!m) throw bad();
  return { name: '', protocol: m[3] ?? 'tcp', targetPort: port(m[2]), publishedPort: m[1] === undefined ? 0 : port(m[1]), publishMode: 0 };
}

/** "type=bind,source=/a,target=/b,readonly" (src/dst/destination and ro accepted too). */
export function parseMount(text: string): Mount {
  const out: Mount = { type: 'volume', source: '', target: '', readOnly: false };
  for (const part of text.split(',')) {
    const [k, v] = part.split('=', 2);
    switch (k) {
      case 'type':
        out.type = v ?? '';
        break;
      case 'source':
      case 'src':
        out.source = v ?? '';
        break;
      case 'target':
      case 'dst':
      case 'destination':
        out.target = v ?? '';
        break;
      case 'readonly':
      case 'ro':
        out.readOnly = v === undefined || v === 'true' || v === '1';
        break;
      default:
        throw new UsageError(`--mount "${text}": unknown option "${k}" (use type, source, target, readonly)`);
    }
  }
  if (!out.target) throw new UsageError(`--mount "${text}" needs target=PATH`);
  return out;
}

function health(spec: ServiceSpec): HealthConfig {
  const c = container(spec);
  c.healthcheck ??= { test: [], intervalMs: 0, timeoutMs: 0, retries: 0, startPeriodMs: 0 };
  return c.healthcheck;
}

/** Health check, ports, mounts, networks and runtime: the same on create and update. */
export const EXTRA_SPEC_FLAGS: SpecFlag[] = [
  flag('health-cmd', 'string', 'command run to check health (run by /bin/sh)', (s, v: string) => {
    health(s).test = ['CMD-SHELL', v];
  }),
  flag('health-interval', 'string', 'time between health checks (e.g. 30s)', (s, v: string) => {
    health(s).intervalMs = need(parseDuration(v), 'health-interval');
  }),
  flag('health-timeout', 'string', 'time one health check may take', (s, v: string) => {
    health(s).timeoutMs = need(parseDuration(v), 'health-timeout');
  }),
  flag('health-retries', 'string', 'consecutive failures before unhealthy', (s, v: string) => {
    health(s).retries = need(parseCount(v, '--health-retries'), 'health-retries');
  }),
  flag('health-start-period', 'string', 'time to start before failures count', (s, v: string) => {
    health(s).startPeriodMs = need(parseDuration(v), 'health-start-period');
  }),
  flag('no-healthcheck', 'bool', "disable the image's health check", (s, v: boolean) => {
    if (v) health(s).test = ['NONE'];
  }),
  flag('endpoint-mode', 'string', 'vip (a virtual IP balances over the tasks; default) or dnsrr (DNS returns every task)', (s, v: string) => {
    if (v !== 'vip' && v !== 'dnsrr') throw new UsageError(`--endpoint-mode "${v}" must be vip or dnsrr`);
    s.endpoint ??= { mode: 0, ports: [] };
    s.endpoint.mode = v === 'dnsrr' ? 1 : 0;
  }),
  flag('runtime', 'string', 'container runtime on the workers (native, runc, crun; default: the worker default)', (s, v: string) => {
    task(s).runtime = v;
  }),
];

/** Lists on create; update has -add/-rm variants of them. */
export const CREATE_LIST_FLAGS: SpecFlag[] = [
  flag('publish', 'list', 'publish a port: PUBLISHED:TARGET[/PROTOCOL]', (s, v: string[]) => {
    s.endpoint ??= { mode: 0, ports: [] };
    s.endpoint.ports.push(...v.map(parsePublish));
  }, 'p'),
  flag('mount', 'list', 'attach a mount: type=bind|volume|tmpfs,source=...,target=...[,readonly]', (s, v: string[]) => {
    container(s).mounts.push(...v.map(parseMount));
  }),
  flag('network', 'list', 'attach the service to a network', (s, v: string[]) => {
    task(s).networks.push(...v.map((target) => ({ target, aliases: [] })));
  }),
  flag('secret', 'list', 'give the service a secret: NAME[,target=FILE][,mode=0400] (at /run/secrets/FILE)', (s, v: string[]) => {
    const c = container(s);
    c.files ??= { secrets: [], configs: [] };
    c.files.secrets.push(...v.map((t) => parseSecretRef(t, 'secret')));
  }),
  flag('config', 'list', 'give the service a config: NAME[,target=/PATH][,mode=0444]', (s, v: string[]) => {
    const c = container(s);
    c.files ??= { secrets: [], configs: [] };
    c.files.configs.push(...v.map((t) => parseSecretRef(t, 'config')));
  }),
];

/** `NAME[,target=...][,mode=...]` or `source=NAME,...`: resolved to the object by name on the manager. */
export function parseSecretRef(text: string, flag: string): SecretReference {
  const ref: SecretReference = { secretId: '', secretName: '', target: '', mode: 0 };
  for (const part of text.split(',')) {
    const [k, v] = part.includes('=') ? keyValue(part, flag) : ['source', part];
    if (k === 'source' || k === 'src') ref.secretName = v;
    else if (k === 'target') ref.target = v;
    else if (k === 'mode') ref.mode = Number.parseInt(v, 8);
    else throw new UsageError(`--${flag} "${text}": unknown option "${k}" (use source, target, mode)`);
  }
  if (!ref.secretName) throw new UsageError(`--${flag} "${text}" needs a name`);
  if (Number.isNaN(ref.mode) || ref.mode > 0o777) throw new UsageError(`--${flag} "${text}": mode is an octal file mode like 0400`);
  return ref;
}

/** Flags only `service update` has. */
export const UPDATE_SPEC_FLAGS: SpecFlag[] = [
  flag('image', 'string', 'image for the service (resolved again, so a re-pushed tag is picked up)', (s, v: string) => {
    container(s).image = v;
    container(s).imageDigest = '';
  }),
  flag('args', 'string', 'the command\'s arguments, replacing the current ones (split like a shell: --args "sh -c \'exit 3\'")', (s, v: string) => {
    container(s).args = shellWords(v);
  }),
  flag('env-add', 'list', 'add or replace an environment variable KEY=VALUE', () => {}),
  flag('env-rm', 'list', 'remove an environment variable KEY', (s, v: string[]) => {
    container(s).env = container(s).env.filter((e) => !v.includes(e.split('=')[0]));
  }),
  flag('label-add', 'list', 'add or replace a service label KEY=VALUE', (s, v: string[]) => {
    for (const l of v) {
      const [k, val] = keyValue(l, 'label-add');
      s.labels[k] = val;
    }
  }),
  flag('label-rm', 'list', 'remove a service label KEY', (s, v: string[]) => {
    for (const k of v) delete s.labels[k];
  }),
  flag('constraint-add', 'list', 'add a placement constraint', (s, v: string[]) => {
    const p = placement(s);
    p.constraints.push(...v.filter((c) => !p.constraints.includes(c)));
  }),
  flag('constraint-rm', 'list', 'remove a placement constraint', (s, v: string[]) => {
    placement(s).constraints = placement(s).constraints.filter((c) => !v.includes(c));
  }),
  flag('publish-add', 'list', 'publish a port: PUBLISHED:TARGET[/PROTOCOL]', (s, v: string[]) => {
    s.endpoint ??= { mode: 0, ports: [] };
    for (const p of v.map(parsePublish)) {
      s.endpoint.ports = s.endpoint.ports.filter((x) => !(x.publishedPort === p.publishedPort && p.publishedPort !== 0 && x.protocol === p.protocol));
      s.endpoint.ports.push(p);
    }
  }),
  flag('publish-rm', 'list', 'stop publishing a port: PUBLISHED[/PROTOCOL]', (s, v: string[]) => {
    if (!s.endpoint) return;
    for (const text of v) {
      const [port, proto = 'tcp'] = text.split('/');
      s.endpoint.ports = s.endpoint.ports.filter((x) => !(String(x.publishedPort) === port.split(':')[0] && (x.protocol || 'tcp') === proto));
    }
  }),
  flag('mount-add', 'list', 'add a mount: type=...,source=...,target=...', (s, v: string[]) => {
    const c = container(s);
    for (const m of v.map(parseMount)) c.mounts = [...c.mounts.filter((x) => x.target !== m.target), m];
  }),
  flag('mount-rm', 'list', 'remove the mount at a target path', (s, v: string[]) => {
    container(s).mounts = container(s).mounts.filter((x) => !v.includes(x.target));
  }),
  flag('network-add', 'list', 'attach the service to a network', (s, v: string[]) => {
    const t = task(s);
    for (const target of v) if (!t.networks.some((n) => n.target === target)) t.networks.push({ target, aliases: [] });
  }),
  flag('network-rm', 'list', 'detach the service from a network', (s, v: string[]) => {
    task(s).networks = task(s).networks.filter((n) => !v.includes(n.target));
  }),
  flag('force', 'bool', 'restart every task even if nothing changed', (s, v: boolean) => {
    if (v) task(s).forceUpdate += 1;
  }),
];

/** KEY=VALUE, or KEY alone taken from the caller's environment (dropped when unset, as Docker does). */
export function envEntries(values: string[], env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  for (const e of values) {
    if (e.startsWith('=')) throw new UsageError(`--env "${e}": the name is empty (write KEY=VALUE)`);
    if (e.includes('=')) out.push(e);
    else if (env[e] !== undefined) out.push(`${e}=${env[e]}`);
  }
  return out;
}

/** Replaces or adds KEY=VALUE entries by key. */
export function mergeEnv(current: string[], add: string[]): string[] {
  const keys = new Set(add.map((e) => e.split('=')[0]));
  return [...current.filter((e) => !keys.has(e.split('=')[0])), ...add];
}

/** Applies every flag of `flags` that `args` carries, in table order. */
export function applyFlags(spec: ServiceSpec, args: ParsedArgs, flags: SpecFlag[]): void {
  for (const f of flags) {
    const v = args.flags.get(f.name);
    if (v === undefined) continue;
    f.apply(spec, v as never);
  }
}

export type ModeName = 'replicated' | 'global' | 'replicated-job' | 'global-job';

/** The mode from --mode/--replicas/--max-concurrent; undefined when none was given (server default). */
export function modeFromFlags(mode: string | undefined, replicas: string | undefined, maxConcurrent: string | undefined): ServiceSpec['mode'] {
  const r = replicas === undefined ? undefined : need(parseCount(replicas, '--replicas'), 'replicas');
  const mc = maxConcurrent === undefined ? undefined : need(parseCount(maxConcurrent, '--max-concurrent'), 'max-concurrent');
  const m = (mode ?? 'replicated') as ModeName;
  if ((m === 'global' || m === 'global-job') && r !== undefined) throw new UsageError(`--replicas cannot be used with --mode ${m}`);
  if (mc !== undefined && m !== 'replicated-job') throw new UsageError('--max-concurrent can only be used with --mode replicated-job');
  switch (m) {
    case 'replicated':
      return mode === undefined && r === undefined ? undefined : { $case: 'replicated', value: { replicas: r ?? 1 } };
    case 'global':
      return { $case: 'global', value: {} };
    case 'replicated-job':
      return { $case: 'replicatedJob', value: { totalCompletions: r ?? 1, maxConcurrent: mc ?? r ?? 1 } };
    case 'global-job':
      return { $case: 'globalJob', value: {} };
    default:
      throw new UsageError(`--mode "${mode}" is not one of: replicated, global, replicated-job, global-job`);
  }
}

/** The spec `service create` sends: name, image, command, the flags' edits; absent parts get server defaults. */
export function createSpec(args: ParsedArgs, env: NodeJS.ProcessEnv, name: string, mode: ServiceSpec['mode']): ServiceSpec {
  const [image, ...cmd] = args.positionals;
  if (!image) throw new UsageError('an IMAGE is required: gantry service create [OPTIONS] IMAGE [COMMAND] [ARG...]');
  const spec = ServiceSpec.fromPartial({ name });
  spec.mode = mode;
  const c = container(spec);
  c.image = image;
  c.args = cmd;
  applyFlags(spec, args, [...COMMON_SPEC_FLAGS, ...EXTRA_SPEC_FLAGS, ...CREATE_SPEC_FLAGS, ...CREATE_LIST_FLAGS]);
  const envFlag = args.flags.get('env');
  if (Array.isArray(envFlag)) c.env = envEntries(envFlag, env);
  return spec;
}

/** Applies `service update` flags onto a copy of the current spec. */
export function updatedSpec(current: ServiceSpec, args: ParsedArgs, env: NodeJS.ProcessEnv): ServiceSpec {
  const spec = ServiceSpec.fromPartial(current as never);
  applyFlags(spec, args, [...COMMON_SPEC_FLAGS, ...EXTRA_SPEC_FLAGS, ...UPDATE_SPEC_FLAGS]);
  const add = args.flags.get('env-add');
  if (Array.isArray(add)) container(spec).env = mergeEnv(container(spec).env, envEntries(add, env));
  const replicas = args.flags.get('replicas');
  if (typeof replicas === 'string') {
    const n = need(parseCount(replicas, '--replicas'), 'replicas');
    const m = spec.mode;
    if (m?.$case === 'replicated') m.value.replicas = n;
    else if (m?.$case === 'replicatedJob') m.value.totalCompletions = n;
    else throw new UsageError(`--replicas works only on replicated services; "${spec.name}" is ${m?.$case ?? 'unknown'}`);
  }
  return spec;
}

/** Splits a command line like a POSIX shell would (quotes and backslashes; no expansions). */
export function shellWords(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let has = false;
  let q: '"' | "'" | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (q === "'") {
      if (c === "'") q = undefined;
      else cur += c;
    } else if (q === '"') {
      if (c === '"') q = undefined;
      else if (c === '\\' && i + 1 < line.length && '"\\$`'.includes(line[i + 1])) cur += line[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      q = c;
      has = true;
    } else if (c === '\\' && i + 1 < line.length) {
      cur += line[++i];
      has = true;
    } else if (/\s/.test(c)) {
      if (has || cur) out.push(cur);
      cur = '';
      has = false;
    } else {
      cur += c;
    }
  }
  if (has || cur) out.push(cur);
  return out;
}
