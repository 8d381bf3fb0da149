// Benchmark: time from `service create --replicas N` to N tasks running, gantry vs Docker Swarm in
// the same run (same busybox rootfs, same polling), plus gantry's host-failure replacement time on the lab.
//
//   node_modules/.bin/node bench/service-converge.ts [--replicas 1,10,50] [--only gantry|swarm]
//        [--runtime native|runc|crun] [--hosts 1] [--failover] [--failover-replicas 12] [--rounds 1]
//   --hosts N > 1: both systems on N lab hosts (gantryd per netns host; a dockerd swarm per netns host).
//   --gantryd-node-options "..."  NODE_OPTIONS for the lab's gantryd (to try V8 flags, e.g. --max-semi-space-size=32).
import { type ChildProcess, spawn } from 'node:child_process';
import { dial } from '../cli/connection.ts';
import { field, nodeRows, parseJsonRows } from '../deploy/lab/gantry-json.ts';
import { formCluster, gantryOk, until } from '../deploy/lab/lab-cluster.ts';
import { cleanupLabs, Lab, type LabHost, REPO_ROOT } from '../deploy/lab/lab-hosts.ts';
import { sleep } from '../deploy/lab/sys.ts';
import { ControlService } from '../proto/gen/gantry/v1/control.ts';
import { TaskState } from '../proto/gen/gantry/v1/objects.ts';
import { busyboxRootfsTar } from '../test/helpers/lab-rootfs.ts';
import { Swarm } from './swarm.ts';
import { docker, dockerOk, swarmLab, swarmNodeId, swarmRunning } from './swarm-lab.ts';
import { buildCli } from '../cli/bundle.ts';
import { hostBusyMs, settle } from './host-cpu.ts';

/** The CLI a user runs: the installed bundle, built fresh at the start of main(). */
let cliEntry = '';

const IMAGE = 'gantry-bench/busybox:1';
const POLL_MS = 25;

interface Opts {
  replicas: number[];
  only?: 'gantry' | 'swarm';
  runtime?: string;
  failover: boolean;
  failoverReplicas: number;
  rounds: number;
  hosts: number;
  gantrydNodeOptions?: string;
}

function parse(argv: string[]): Opts {
  const get = (n: string) => {
    const i = argv.indexOf(`--${n}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const only = get('only');
  if (only && only !== 'gantry' && only !== 'swarm') throw new Error(`--only gantry|swarm, not ${only}`);
  return {
    replicas: (get('replicas') ?? '1,10,50').split(',').map(Number),
    only: only as Opts['only'],
    runtime: get('runtime'),
    failover: argv.includes('--failover'),
    failoverReplicas: Number(get('failover-replicas') ?? 12),
    rounds: Number(get('rounds') ?? 1),
    hosts: Number(get('hosts') ?? 1),
    gantrydNodeOptions: get('gantryd-node-options'),
  };
}

/** Starts a CLI process now and resolves when it exits (the user-visible create call). */
function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const c: ChildProcess = spawn(cmd, args, { env, cwd: REPO_ROOT });
    let out = '';
    c.stdout?.on('data', (d) => (out += d));
    c.stderr?.on('data', (d) => (out += d));
    c.on('exit', (code) => resolve({ code: code ?? 1, out }));
  });
}

async function pollUntil(check: () => Promise<number>, want: number, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let n = 0;
  for (;;) {
    n = await check();
    if (n >= want) return;
    if (Date.now() > deadline) throw new Error(`${what}: only ${n}/${want} running after ${timeoutMs} ms`);
    await sleep(POLL_MS);
  }
}

// ---------------------------------------------------------------------------------------------
// gantry

interface GantryTarget {
  host: LabHost;
  /** What `service create` gets: IMAGE pinned to its digest when every host has the same one. */
  image: string;
  /** Extra `service create` flags (--no-resolve-image when the CLI has it). */
  createFlags: string[];
  running(service: string, excludeNode?: string): Promise<number>;
  /** Container processes (`sleep 1d`) still alive on the lab's hosts. */
  containersLeft(): number;
  close(): void;
}

/**
 * Imports the busybox rootfs on every host and decides how to spare `service create` the registry
 * lookup Swarm skips with --no-resolve-image (offline here, gantry's lookup waits for a timeout):
 * that flag if the CLI has it, else the image pinned to its digest when all hosts agree on it.
 */
async function gantryTarget(lab: Lab, host: LabHost, tar: string): Promise<GantryTarget> {
  await Promise.all(lab.hosts.map((h) => gantryOk(h, ['image', 'import', tar, IMAGE])));
  const help = await host.gantry(['service', 'create', '--help']);
  let image = IMAGE;
  const createFlags: string[] = [];
  if (help.stdout.includes('--no-resolve-image')) createFlags.push('--no-resolve-image');
  else {
    const digests = new Set<string>();
    for (const h of lab.hosts) {
      const rows = parseJsonRows(await gantryOk(h, ['image', 'ls', '--format', 'json']));
      const row = rows.find((r) => field(r, 'repoTags').includes(IMAGE));
      digests.add(row ? field(row, 'manifestDigest') : '');
    }
    const [d] = [...digests];
    if (digests.size === 1 && d) image = `${IMAGE}@${d}`;
    else console.error(`note: hosts hold different digests for ${IMAGE}; gantry's times include its registry lookup timeout`);
  }
  return gantryClient(lab, host, image, createFlags);
}

function gantryClient(lab: Lab, host: LabHost, image: string, createFlags: string[]): GantryTarget {
  // the CLI's own path: unary calls over gantryd's local socket (Swarm is polled through its Engine API socket)
  const conn = dial(`unix://${host.socket}`);
  return {
    host,
    image,
    createFlags,
    async running(service, excludeNode) {
      const res = await conn.call(ControlService.listTasks, { service, node: '', desiredRunningOnly: true }, 5_000);
      return (res.tasks ?? []).filter((t) => t.status?.state === TaskState.TASK_STATE_RUNNING && (!excludeNode || t.nodeId !== excludeNode)).length;
    },
    containersLeft: () => lab.hosts.reduce((n, h) => n + h.processes((a) => a[0] === 'sleep' && a[1] === '1d').length, 0),
    close: () => conn.close(),
  };
}

interface Sample {
  total: number; // create spawned → N running
  create: number; // create spawned → the CLI exited
  cpu: number; // the whole host's busy CPU time over `total`, ms (both cores; polling included, the same for both systems)
}

async function gantryConverge(t: GantryTarget, n: number, tag: string): Promise<Sample> {
  const name = `conv${n}x${tag}`;
  const env = { ...process.env, GANTRY_HOST: `unix://${t.host.socket}` };
  const t0 = performance.now();
  const c0 = hostBusyMs();
  const created = await exec(process.execPath, [cliEntry, 'service', 'create', '-d', ...t.createFlags, '--name', name, '--replicas', String(n), t.image, 'sleep', '1d'], env);
  const create = performance.now() - t0;
  if (created.code !== 0) throw new Error(`gantry service create ${name}: ${created.out.trim()}`);
  await pollUntil(() => t.running(name), n, 300_000, `gantry ${name}`);
  const ms = performance.now() - t0;
  const cpu = hostBusyMs() - c0;
  await gantryOk(t.host, ['service', 'rm', name]);
  await until(() => t.containersLeft() === 0 || `${name}: ${t.containersLeft()} containers still running`, 120_000, 100);
  await settle();
  return { total: ms, create, cpu };
}

// ---------------------------------------------------------------------------------------------
// Swarm

/** What the converge loop needs from a swarm: a single dockerd (Swarm) or a lab of them (swarm-lab). */
interface SwarmTarget {
  env: NodeJS.ProcessEnv;
  running(service: string): Promise<number>;
  docker(args: string[]): Promise<{ code: number; stderr: string }>;
  containersLeft(service: string): Promise<number>;
}

function singleSwarm(s: Swarm): SwarmTarget {
  return {
    env: { ...process.env, DOCKER_HOST: `unix://${s.socket}`, DOCKER_CONFIG: `${s.root}/cli` },
    running: async (name) => (await s.runningTasks(name)).length,
    docker: (args) => s.docker(args),
    containersLeft: async (name) => (await s.docker(['ps', '-q', '--filter', `label=com.docker.swarm.service.name=${name}`])).stdout.trim().split('\n').filter(Boolean).length,
  };
}

function labSwarm(lab: Lab): SwarmTarget {
  const m = lab.host(0);
  return {
    env: { ...process.env, DOCKER_HOST: `unix://${m.runDir}/docker.sock`, DOCKER_CONFIG: `${m.dir}/docker-cli` },
    running: async (name) => (await swarmRunning(m, name)).length,
    docker: (args) => docker(m, args),
    containersLeft: async (name) => {
      let n = 0;
      for (const h of lab.hosts) n += (await docker(h, ['ps', '-q', '--filter', `label=com.docker.swarm.service.name=${name}`])).stdout.trim().split('\n').filter(Boolean).length;
      return n;
    },
  };
}

async function swarmConverge(s: SwarmTarget, n: number, tag: string): Promise<Sample> {
  const name = `conv${n}x${tag}`;
  const t0 = performance.now();
  const c0 = hostBusyMs();
  const created = await exec('docker', ['service', 'create', '-d', '--no-resolve-image', '--name', name, '--replicas', String(n), IMAGE, 'sleep', '1d'], s.env);
  const create = performance.now() - t0;
  if (created.code !== 0) throw new Error(`docker service create ${name}: ${created.out.trim()}`);
  await pollUntil(() => s.running(name), n, 300_000, `swarm ${name}`);
  const ms = performance.now() - t0;
  const cpu = hostBusyMs() - c0;
  const rm = await s.docker(['service', 'rm', name]);
  if (rm.code !== 0) throw new Error(`docker service rm ${name}: ${rm.stderr}`);
  await until(async () => {
    const left = await s.containersLeft(name);
    return left === 0 || `${name}: ${left} containers still running`;
  }, 120_000, 200);
  await settle();
  return { total: ms, create, cpu };
}

// ---------------------------------------------------------------------------------------------

function fmt(ms: number | undefined): string {
  return ms === undefined ? '-' : `${(ms / 1000).toFixed(3)} s`;
}

async function gantryFailover(tar: string, o: Opts): Promise<{ ms: number; note: string }> {
  const lab = await Lab.up({ hosts: 4, runtime: o.runtime });
  try {
    const m = await formCluster(lab);
    const t = await gantryTarget(lab, m, tar);
    try {
      const n = o.failoverReplicas;
      await gantryOk(m, ['service', 'create', '-d', ...t.createFlags, '--name', 'failover', '--replicas', String(n), t.image, 'sleep', '1d']);
      await pollUntil(() => t.running('failover'), n, 120_000, 'failover service');
      const victim = lab.host(3);
      const node = nodeRows(await gantryOk(m, ['node', 'ls', '--format', 'json'])).find((x) => x.hostname === victim.name);
      if (!node) throw new Error(`${victim.name} not in node ls`);
      const t0 = performance.now();
      await victim.kill();
      await pollUntil(() => t.running('failover', node.id), n, 120_000, 'replacement tasks');
      return { ms: performance.now() - t0, note: '' };
    } finally {
      t.close();
    }
  } finally {
    await lab.down();
  }
}

async function swarmFailover(tar: string, n: number): Promise<number> {
  const lab = await swarmLab(4, { tar, ref: IMAGE });
  try {
    const m = lab.host(0);
    await dockerOk(m, ['service', 'create', '-d', '--no-resolve-image', '--name', 'failover', '--replicas', String(n), IMAGE, 'sleep', '1d']);
    await pollUntil(async () => (await swarmRunning(m, 'failover')).length, n, 120_000, 'swarm failover service');
    const victim = lab.host(3);
    const nodeId = await swarmNodeId(m, victim.ip);
    const t0 = performance.now();
    await victim.kill();
    await pollUntil(async () => (await swarmRunning(m, 'failover')).filter((x) => x.node !== nodeId).length, n, 180_000, 'swarm replacement tasks');
    return performance.now() - t0;
  } finally {
    await lab.down();
  }
}

async function main(): Promise<void> {
  cliEntry = await buildCli();
  const o = parse(process.argv.slice(2));
  const tar = busyboxRootfsTar();
  const g: Record<number, Sample[]> = {};
  const d: Record<number, Sample[]> = {};
  let failoverMs: number | undefined;
  let failoverNote = '';
  let swarmFailoverMs: number | undefined;

  // Both systems are up at once and measured alternately (round r: gantry first when r is even), so
  // a change in the host's load (2 shared cores here) falls on both rather than on one.
  const teardown: (() => Promise<void>)[] = [];
  try {
    let gt: GantryTarget | undefined;
    let st: SwarmTarget | undefined;
    if (o.only !== 'swarm') {
      await cleanupLabs();
      const lab = await Lab.up({ hosts: o.hosts, runtime: o.runtime, env: o.gantrydNodeOptions ? { NODE_OPTIONS: o.gantrydNodeOptions } : undefined });
      teardown.push(() => lab.down());
      const h = await formCluster(lab);
      gt = await gantryTarget(lab, h, tar);
      const t = gt;
      teardown.push(async () => t.close());
      console.error(`gantry image: ${gt.image} ${gt.createFlags.join(' ')}`);
    }
    if (o.only !== 'gantry') {
      if (o.hosts > 1) {
        const lab = await swarmLab(o.hosts, { tar, ref: IMAGE });
        teardown.push(() => lab.down());
        st = labSwarm(lab);
      } else {
        const sw = await Swarm.start();
        teardown.push(async () => {
          const errs = await sw.stop();
          if (errs.length) console.error(`swarm cleanup: ${errs.join('; ')}`);
        });
        await sw.importImage(tar, IMAGE);
        st = singleSwarm(sw);
      }
    }
    for (let r = 0; r < o.rounds; r++) {
      for (const n of o.replicas) {
        const runG = async () => {
          if (gt) (g[n] ??= []).push(await gantryConverge(gt, n, `g${r}`));
        };
        const runS = async () => {
          if (st) (d[n] ??= []).push(await swarmConverge(st, n, `s${r}`));
        };
        if (r % 2 === 0) {
          await runG();
          await runS();
        } else {
          await runS();
          await runG();
        }
        console.error(`round ${r} N=${n}: gantry ${fmt(g[n]?.at(-1)?.total)} (host CPU ${fmt(g[n]?.at(-1)?.cpu)}) swarm ${fmt(d[n]?.at(-1)?.total)} (host CPU ${fmt(d[n]?.at(-1)?.cpu)})`);
      }
    }
  } finally {
    for (const down of teardown.reverse()) await down().catch((e: Error) => console.error(`cleanup: ${e.message}`));
  }

  if (o.failover && o.only !== 'swarm') {
    const r = await gantryFailover(tar, o);
    failoverMs = r.ms;
    failoverNote = r.note;
  }
  if (o.failover && o.only !== 'gantry') swarmFailoverMs = await swarmFailover(tar, o.failoverReplicas);

  const median = (xs: Sample[] | undefined, k: keyof Sample) => {
    if (!xs?.length) return undefined;
    const v = xs.map((x) => x[k]).sort((p, q) => p - q);
    return v[Math.floor(v.length / 2)];
  };
  console.log(`\nservice converge: create --replicas N → N running on ${o.hosts} host(s) (busybox \`sleep 1d\`, runtime ${o.runtime ?? 'gantryd default'}; median of ${o.rounds})`);
  console.log('N\tgantry\tswarm\tgantry/swarm\t(create call: gantry / swarm)\t(host CPU busy: gantry / swarm)');
  for (const n of o.replicas) {
    const a = median(g[n], 'total');
    const b = median(d[n], 'total');
    console.log(`${n}\t${fmt(a)}\t${fmt(b)}\t${a !== undefined && b !== undefined ? (a / b).toFixed(3) : '-'}\t(${fmt(median(g[n], 'create'))} / ${fmt(median(d[n], 'create'))})\t(${fmt(median(g[n], 'cpu'))} / ${fmt(median(d[n], 'cpu'))})`);
  }
  if (failoverMs !== undefined || swarmFailoverMs !== undefined) {
    console.log(`\nhost failure → replacements running (${o.failoverReplicas} replicas on 4 lab hosts, host 3 killed: daemon, etcd/containerd, monitors, containers)`);
    console.log(`gantry ${fmt(failoverMs)}\tswarm ${fmt(swarmFailoverMs)}${failoverNote ? `\t(${failoverNote})` : ''}`);
  }
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(`service-converge: ${err.message}`);
    process.exit(1);
  },
);
