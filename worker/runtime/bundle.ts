// Builds the OCI runtime spec (config.json) for a ContainerConfig with Docker's defaults: capabilities,
// seccomp, masked paths, mounts, devices, limits, user resolution. Pure: file contents come in as opts.
import type { ContainerConfig } from './types.ts';
import { defaultSeccompProfile, type SeccompProfile } from './seccomp-default.ts';

export const ALL_CAPS = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN',
  'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE', 'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME', 'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];

export const DEFAULT_CAPS = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const DEFAULT_PIDS_LIMIT = 4096;
export const DEFAULT_NOFILE = 1048576;
export const CPU_PERIOD_US = 100000;

export const MASKED_PATHS = [
  '/proc/asound', '/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
];
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

export interface BundleOptions {
  /** e.g. "/gantry/<id>": `<cgroup-parent>/<id>` (see cgroupsPathFor). */
  cgroupsPath: string;
  /** Contents of the rootfs's /etc/passwd and /etc/group, for user names and supplementary groups. */
  passwd?: string;
  group?: string;
  /** Capabilities the host can grant (its bounding set); others are left out of capAdd ALL. */
  hostCaps?: readonly string[];
  /** RLIMIT_NOFILE for the container; clamp to the host's hard limit (no CAP_SYS_RESOURCE). */
  nofile?: number;
  /** Where files from config.files were written on the host, by container path (bind-mounted read-only). */
  fileSources?: Record<string, string>;
  arch?: string;
}

export type OciSpec = Record<string, unknown> & {
  process: {
    terminal: boolean; user: { uid: number; gid: number; additionalGids?: number[] }; args: string[];
    env: string[]; cwd: string; capabilities: Record<string, string[]>; rlimits: { type: string; hard: number; soft: number }[];
    noNewPrivileges: boolean;
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: { destination: string; type: string; source: string; options?: string[] }[];
  linux: {
    namespaces: { type: string; path?: string }[]; cgroupsPath: string; resources: Record<string, unknown>;
    seccomp: SeccompProfile; maskedPaths: string[]; readonlyPaths: string[];
    devices: { path: string; type: string; major: number; minor: number; fileMode: number; uid: number; gid: number }[];
  };
};

export type BuildResult = { ok: true; spec: OciSpec } | { ok: false; error: string };

/** `<parent>/<id>` as an absolute cgroupfs path ("gantry" → "/gantry/<id>"). */
export function cgroupsPathFor(parent: string, id: string): string {
  const p = parent.replace(/^\/+|\/+$/g, '');
  return p ? `/${p}/${id}` : `/${id}`;
}

/** "net_admin" / "CAP_NET_ADMIN" → "CAP_NET_ADMIN"; "all" → "ALL"; undefined if unknown. */
export function normalizeCap(name: string): string | undefined {
  const up = name.trim().toUpperCase();
  if (up === 'ALL') return 'ALL';
  const c = up.startsWith('CAP_') ? up : `CAP_${up}`;
  return ALL_CAPS.includes(c) ? c : undefined;
}

/** Docker's rule: add ALL = every cap but the dropped; drop ALL = only the added; else defaults + add - drop. */
export function capabilitySet(capAdd: string[], capDrop: string[], hostCaps?: readonly string[]): { ok: true; caps: string[] } | { ok: false; error: string } {
  const add: string[] = [];
  const drop: string[] = [];
  for (const [list, out] of [[capAdd, add], [capDrop, drop]] as const) {
    for (const n of list) {
      const c = normalizeCap(n);
      if (!c) return { ok: false, error: `unknown capability "${n}" (use names like NET_ADMIN or CAP_NET_ADMIN, or ALL)` };
      out.push(c);
    }
  }
  const all = hostCaps ? ALL_CAPS.filter((c) => hostCaps.includes(c)) : ALL_CAPS;
  let set: Set<string>;
  if (add.includes('ALL')) set = new Set(all.filter((c) => !drop.includes(c)));
  else if (drop.includes('ALL')) set = new Set(add);
  else set = new Set([...DEFAULT_CAPS, ...add].filter((c) => !drop.includes(c)));
  return { ok: true, caps: ALL_CAPS.filter((c) => set.has(c)) };
}

interface PasswdEntry { name: string; uid: number; gid: number; home: string }
interface GroupEntry { name: string; gid: number; members: string[] }

export function parsePasswd(text = ''): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 4 || line.startsWith('#')) continue;
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    if (!Number.isInteger(uid) || !Number.isInteger(gid)) continue;
    out.push({ name: f[0], uid, gid, home: f[5] ?? '/' });
  }
  return out;
}

export function parseGroup(text = ''): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 3 || line.startsWith('#')) continue;
    const gid = Number(f[2]);
    if (!Number.isInteger(gid)) continue;
    out.push({ name: f[0], gid, members: (f[3] ?? '').split(',').filter(Boolean) });
  }
  return out;
}

export type ResolvedUser = { uid: number; gid: number; additionalGids: number[]; home: string };

/** Docker's `--user`: "", "name", "uid", "name:group", "uid:gid", resolved against the rootfs's files. */
export function resolveUser(user: string, passwd?: string, group?: string): { ok: true; user: ResolvedUser } | { ok: false; error: string } {
  const users = parsePasswd(passwd);
  const groups = parseGroup(group);
  const [u, g] = (user || '0').split(':', 2) as [string, string | undefined];
  const numeric = (s: string) => /^\d+$/.test(s);
  let entry: PasswdEntry | undefined;
  let uid: number;
  if (numeric(u)) {
    uid = Number(u);
    entry = users.find((e) => e.uid === uid);
  } else {
    entry = users.find((e) => e.name === u);
    if (!entry) return { ok: false, error: `user "${u}" not found in the image's /etc/passwd (use a numeric uid or add the user to the image)` };
    uid = entry.uid;
  }
  let gid = entry?.gid ?? 0;
  if (g !== undefined && g !== '') {
    if (numeric(g)) gid = Number(g);
    else {
      const ge = groups.find((e) => e.name === g);
      if (!ge) return { ok: false, error: `group "${g}" not found in the image's /etc/group` };
      gid = ge.gid;
    }
  }
  const additionalGids = g === undefined && entry
    ? [...new Set(groups.filter((e) => e.members.includes(entry.name) && e.gid !== gid).map((e) => e.gid))]
    : [];
  return { ok: true, user: { uid, gid, additionalGids, home: entry?.home || '/' } };
}

function envWithDefaults(env: string[], hostname: string, home: string, tty: boolean): string[] {
  const keys = new Set(env.map((e) => e.split('=', 1)[0]));
  const out: string[] = [];
  if (!keys.has('PATH')) out.push(DEFAULT_PATH);
  if (!keys.has('HOSTNAME') && hostname) out.push(`HOSTNAME=${hostname}`);
  if (tty && !keys.has('TERM')) out.push('TERM=xterm');
  out.push(...env);
  if (!keys.has('HOME')) out.push(`HOME=${home}`);
  return out;
}

const DEVICES = [
  { path: '/dev/null', major: 1, minor: 3 },
  { path: '/dev/zero', major: 1, minor: 5 },
  { path: '/dev/full', major: 1, minor: 7 },
  { path: '/dev/random', major: 1, minor: 8 },
  { path: '/dev/urandom', major: 1, minor: 9 },
  { path: '/dev/tty', major: 5, minor: 0 },
].map((d) => ({ ...d, type: 'c', fileMode: 0o666, uid: 0, gid: 0 }));

/** Docker's device cgroup rules: deny all, mknod anything, use the standard devices, ptys and tun. */
const DEVICE_RULES = [
  { allow: false, access: 'rwm' },
  { allow: true, type: 'c', access: 'm' },
  { allow: true, type: 'b', access: 'm' },
  ...[[1, 3], [1, 5], [1, 7], [1, 8], [1, 9], [5, 0], [5, 1], [5, 2], [10, 200]].map(([major, minor]) => ({ allow: true, type: 'c', major, minor, access: 'rwm' })),
  { allow: true, type: 'c', major: 136, access: 'rwm' },
];

function defaultMounts(): OciSpec['mounts'] {
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=67108864'] },
  ];
}

/** The OCI runtime spec for config, with root.path = rootfsPath. Invalid input comes back as { ok: false }. */
export function buildOciSpec(config: ContainerConfig, rootfsPath: string, opts: BundleOptions): BuildResult {
  if (config.args.length === 0) return { ok: false, error: `container ${config.id}: no command (the image has no Entrypoint/Cmd and the task gives none)` };
  if (!config.cwd.startsWith('/')) return { ok: false, error: `container ${config.id}: working directory "${config.cwd}" must be absolute` };
  const caps = capabilitySet(config.capAdd, config.capDrop, opts.hostCaps);
  if (!caps.ok) return caps;
  const user = resolveUser(config.user, opts.passwd, opts.group);
  if (!user.ok) return user;

  const mounts = defaultMounts();
  for (const m of config.mounts) {
    if (!m.target.startsWith('/')) return { ok: false, error: `mount target "${m.target}" must be absolute` };
    if (m.type === 'bind') {
      mounts.push({ destination: m.target, type: 'bind', source: m.source, options: ['rbind', m.readOnly ? 'ro' : 'rw'] });
    } else {
      mounts.push({ destination: m.target, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'noexec', 'mode=1777', ...(m.readOnly ? ['ro'] : [])] });
    }
  }
  for (const f of config.files ?? []) {
    const src = opts.fileSources?.[f.path];
    if (src) mounts.push({ destination: f.path, type: 'bind', source: src, options: ['rbind', 'ro'] });
  }

  const namespaces: OciSpec['linux']['namespaces'] = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'cgroup' }];
  const net = config.network;
  switch (net.mode) {
    case 'none': namespaces.push({ type: 'network' }); break;
    case 'path': namespaces.push({ type: 'network', path: net.path }); break;
    case 'host': break;
    default: { const never: never = net; return { ok: false, error: `unknown network mode ${JSON.stringify(never)}` }; }
  }

  const { memoryBytes, nanoCpus, pidsLimit } = config.limits;
  const resources: Record<string, unknown> = {
    devices: DEVICE_RULES,
    pids: { limit: pidsLimit && pidsLimit > 0 ? pidsLimit : DEFAULT_PIDS_LIMIT },
  };
  if (memoryBytes && memoryBytes > 0) resources.memory = { limit: memoryBytes };
  if (nanoCpus && nanoCpus > 0) resources.cpu = { quota: Math.max(1000, Math.round((nanoCpus * CPU_PERIOD_US) / 1e9)), period: CPU_PERIOD_US };

  const nofile = opts.nofile ?? DEFAULT_NOFILE;
  const capList = caps.caps;
  const spec: OciSpec = {
    ociVersion: '1.0.2',
    process: {
      terminal: config.tty,
      user: { uid: user.user.uid, gid: user.user.gid, ...(user.user.additionalGids.length ? { additionalGids: user.user.additionalGids } : {}) },
      args: config.args,
      env: envWithDefaults(config.env, config.hostname, user.user.home, config.tty),
      cwd: config.cwd || '/',
      capabilities: { bounding: capList, effective: capList, permitted: capList },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: nofile, soft: nofile }],
      noNewPrivileges: false,
    },
    root: { path: rootfsPath, readonly: config.readOnlyRootfs },
    hostname: config.hostname,
    mounts,
    annotations: config.labels,
    linux: {
      namespaces,
      cgroupsPath: opts.cgroupsPath,
      resources,
      seccomp: defaultSeccompProfile(new Set(capList), opts.arch),
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
      devices: DEVICES,
    },
  };
  return { ok: true, spec };
}
