// Benchmark: a 20-replica service rolled to a new image (the same busybox rootfs imported under two
// tags) and rolled back, parallelism 1 and 5, stop-first and start-first, monitor 0: gantry vs Docker Swarm.
//
//   node_modules/.bin/node bench/update.ts [--replicas 20] [--parallelism 1,5] [--order stop-first,start-first] [--only gantry|swarm] [--poll-ms 25] [--timeline]
//
// --timeline prints, for gantry, when the polls first saw each task desired running, running,
// desired to stop and stopped (ms from the update's start): where a batch waits on what.
//
// Time = from spawning `service update -d --image B` (or `service rollback -d`) to every task that
// should run running image B (A), none of the other left running. Both systems on one host (a
// one-host gantry lab; a dockerd swarm in its own netns), tasks stopped with SIGKILL so neither
// waits out a stop grace period for `sleep`, which ignores SIGTERM as PID 1.
import { type ChildProcess, spawn } from 'node:child_process';
import { dial, unary } from '../cli/connection.ts';
import { field, parseJsonRows } from '../deploy/lab/gantry-json.ts';
import { formCluster, gantryOk, until } from '../deploy/lab/lab-cluster.ts';
import { cleanupLabs, Lab, type LabHost, REPO_ROOT } from '../deploy/lab/lab-hosts.ts';
import { sleep } from '../deploy/lab/sys.ts';
import { ControlClient } from '../proto/gen/gantry/v1/control.ts';
import { type Task, TaskState } from '../proto/gen/gantry/v1/objects.ts';
import { busyboxRootfsTar } from '../test/helpers/lab-rootfs.ts';
import { Swarm } from './swarm.ts';
import { buildCli } from '../cli/bundle.ts';
import { hostBusyMs } from './host-cpu.ts';

/** The CLI a user runs: the installed bundle, built fresh at the start of main(). */
let cliEntry = '';

const A = 'gantry-bench/busybox:1';
const B = 'gantry-bench/busybox:2';
let POLL_MS = 25;

interface Opts {
  replicas: number;
  parallelism: number[];
  orders: string[];
  only?: 'gantry' | 'swarm';
  pollMs: number;
  timeline: boolean;
}

function parse(argv: string[]): Opts {
  const get = (n: string) => {
    const i = argv.indexOf(`--${n}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  return {
    replicas: Number(get('replicas') ?? 20),
    parallelism: (get('parallelism') ?? '1,5').split(',').map(Number),
    orders: (get('order') ?? 'stop-first,start-first').split(','),
    only: get('only') as Opts['only'],
    pollMs: Number(get('poll-ms') ?? 25),
    timeline: argv.includes('--timeline'),
  };
}

function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const c: ChildProcess = spawn(cmd, args, { env, cwd: REPO_ROOT });
    let out = '';
    c.stdout?.on('data', (d) => (out += d));
    c.stderr?.on('data', (d) => (out += d));
    c.on('exit', (code) => resolve({ code: code ?? 1, out }));
  });
}

/** Polls `count` (tasks running `image`, or -1 while a task of another image still runs) until it reaches `want`. */
async function pollImage(count: () => Promise<number>, want: number, what: string, timeoutMs = 600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const n = await count();
    if (n >= want) return;
    if (Date.now() > deadline) throw new Error(`${what}: ${n}/${want} after ${timeoutMs} ms`);
    await sleep(POLL_MS);
  }
}

interface Result {
  update: number;
  rollback: number;
  /** Of which the CLI took (spawn to exit): the rest is the system rolling the tasks. */
  updateCli: number;
  rollbackCli: number;
  /** The host's busy CPU time over the update and over the rollback, ms. */
  updateCpu: number;
  rollbackCpu: number;
}

interface System {
  name: string;
  /** Creates the service running A and waits until all run. */
  create(name: string, flags: string[]): Promise<void>;
  /** Spawns the update (-d) and returns when the CLI returned. */
  update(name: string): Promise<void>;
  rollback(name: string): Promise<void>;
  /** Tasks desired and observed running `image`; -1 when a task of another image still runs. */
  running(name: string, image: string): Promise<number>;
  remove(name: string): Promise<void>;
  /** Where the time of the last roll to `image` went, per slot (gantry: from the tasks' own times). */
  breakdown?(name: string, image: string): Promise<string>;
  /** What the polls saw since `t0` (performance.now()), one line per event (gantry). */
  timeline?(t0: number): string;
}

async function measure(sys: System, o: Opts, order: string, p: number): Promise<Result> {
  const name = `upd${p}${order === 'start-first' ? 's' : 'k'}`;
  const flags = ['--replicas', String(o.replicas), '--stop-signal', 'SIGKILL', '--update-parallelism', String(p), '--update-order', order, '--update-monitor', '0s', '--rollback-parallelism', String(p), '--rollback-order', order, '--rollback-monitor', '0s'];
  await sys.create(name, flags);
  await pollImage(() => sys.running(name, A), o.replicas, `${sys.name} create ${name}`);
  let t0 = performance.now();
  let c0 = hostBusyMs();
  await sys.update(name);
  const updateCli = performance.now() - t0;
  await pollImage(() => sys.running(name, B), o.replicas, `${sys.name} update ${name}`);
  const update = performance.now() - t0;
  const updateCpu = hostBusyMs() - c0;
  if (sys.breakdown) console.error(`${sys.name} ${order}/${p} update: ${await sys.breakdown(name, B)}`);
  if (o.timeline && sys.timeline) console.error(`${sys.name} ${order}/${p} update timeline:\n${sys.timeline(t0)}`);
  t0 = performance.now();
  c0 = hostBusyMs();
  await sys.rollback(name);
  const rollbackCli = performance.now() - t0;
  await pollImage(() => sys.running(name, A), o.replicas, `${sys.name} rollback ${name}`);
  const rollback = performance.now() - t0;
  const rollbackCpu = hostBusyMs() - c0;
  if (sys.breakdown) console.error(`${sys.name} ${order}/${p} rollback: ${await sys.breakdown(name, A)}`);
  if (o.timeline && sys.timeline) console.error(`${sys.name} ${order}/${p} rollback timeline:\n${sys.timeline(t0)}`);
  await sys.remove(name);
  return { update, rollback, updateCli, rollbackCli, updateCpu, rollbackCpu };
}

async function gantrySystem(lab: Lab, h: LabHost, tar: string): Promise<System & { close(): void }> {
  for (const ref of [A, B]) await gantryOk(h, ['image', 'import', tar, ref]);
  // Pinned refs spare the control API a registry lookup (offline here: it would wait for a DNS
  // failure), as Swarm's --no-resolve-image does; the same rootfs gives both tags one digest.
  const rows = parseJsonRows(await gantryOk(h, ['image', 'ls', '--format', 'json']));
  const pin = (ref: string) => {
    const row = rows.find((r) => field(r, 'repoTags').includes(ref));
    const d = row ? field(row, 'manifestDigest') : '';
    return d ? `${ref}@${d}` : ref;
  };
  const conn = dial(`unix://${h.socket}`);
  // When the polls first saw each task reach a state, or be desired running (25 ms resolution).
  const seen = new Map<string, Map<string, number>>();
  const slots = new Map<string, string>(); // task id → "3B": slot and image
  const see = (t: Task, what: string) => {
    let m = seen.get(t.id);
    if (!m) seen.set(t.id, (m = new Map()));
    if (!m.has(what)) m.set(what, Date.now());
  };
  const client = conn.client(ControlClient);
  const env = { ...process.env, GANTRY_HOST: `unix://${h.socket}` };
  const cli = cliEntry;
  const run = async (args: string[]) => {
    const r = await exec(process.execPath, [cli, ...args], env);
    if (r.code !== 0) throw new Error(`gantry ${args.join(' ')}: ${r.out.trim()}`);
  };
  return {
    name: 'gantry',
    create: (name, flags) => run(['service', 'create', '-d', '--name', name, ...flags, pin(A), 'sleep', '1d']),
    update: (name) => run(['service', 'update', '-d', '--image', pin(B), name]),
    rollback: (name) => run(['service', 'rollback', '-d', name]),
    async running(name, image) {
      const res = await unary(conn, client.listTasks.bind(client), { service: name, node: '', desiredRunningOnly: false }, 5_000);
      let n = 0;
      let other = false;
      for (const t of res.tasks ?? []) {
        const st = t.status?.state ?? 0;
        if (st >= TaskState.TASK_STATE_ASSIGNED) see(t, 'assigned');
        if (st >= TaskState.TASK_STATE_READY) see(t, 'ready');
        if (t.desiredState === TaskState.TASK_STATE_RUNNING) see(t, 'go');
        if (t.desiredState > TaskState.TASK_STATE_RUNNING) see(t, 'stop');
        if (st === TaskState.TASK_STATE_RUNNING) see(t, 'running');
        if (st > TaskState.TASK_STATE_RUNNING) see(t, 'stopped');
        slots.set(t.id, `${t.slot}${t.spec?.container?.image?.startsWith(B) ? 'B' : 'A'}`);
        if (st !== TaskState.TASK_STATE_RUNNING) continue;
        if (!t.spec?.container?.image?.startsWith(image)) other = true;
        else if (t.desiredState === TaskState.TASK_STATE_RUNNING) n++;
      }
      return other ? -1 : n;
    },
    async remove(name) {
      seen.clear();
      slots.clear();
      await run(['service', 'rm', name]);
      const left = () => lab.hosts.reduce((k, x) => k + x.processes((a) => a[0] === 'sleep' && a[1] === '1d').length, 0);
      await until(() => left() === 0 || `${left()} containers left`, 120_000, 100);
    },
    async breakdown(name, image) {
      const res = await unary(conn, client.listTasks.bind(client), { service: name, node: '', desiredRunningOnly: false }, 5_000);
      return breakdown(res.tasks ?? [], image, seen);
    },
    timeline(t0) {
      // seen holds Date.now() values; t0 is performance.now()
      const origin = Date.now() - (performance.now() - t0);
      const events: [number, string][] = [];
      for (const [id, m] of seen) for (const [what, at] of m) if (at >= origin && what !== 'assigned') events.push([at - origin, `slot ${slots.get(id)} ${what}`]);
      return events
        .sort((a, b) => a[0] - b[0])
        .map(([ms, e]) => `  +${Math.round(ms)} ms ${e}`)
        .join('\n');
    },
    close: () => conn.close(),
  };
}

const median = (xs: number[]) => (xs.length === 0 ? 0 : [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]);

/**
 * Per slot, from the tasks' records (manager and worker share this host's clock): `react` = the
 * new task created after the previous one in its slot order came up (the updater's reaction);
 * `stop` = created → the old task of its slot reported stopped (stop-first); `start` = the later of
 * created / old stopped → the new task reported RUNNING; `gap` = between consecutive RUNNING reports.
 */
function breakdown(tasks: readonly Task[], image: string, seen: Map<string, Map<string, number>>): string {
  const fresh = tasks.filter((t) => t.spec?.container?.image?.startsWith(image) && t.status?.state === TaskState.TASK_STATE_RUNNING && t.desiredState === TaskState.TASK_STATE_RUNNING);
  const newest = new Map<number, Task>();
  for (const t of fresh) if ((newest.get(t.slot)?.meta?.createdAt ?? 0) < (t.meta?.createdAt ?? 0)) newest.set(t.slot, t);
  const rows = [...newest.values()].sort((a, b) => (a.status?.timestamp ?? 0) - (b.status?.timestamp ?? 0));
  const react: number[] = [];
  const stop: number[] = [];
  const start: number[] = [];
  const gap: number[] = [];
  const sched: number[] = [];
  const prep: number[] = [];
  const run: number[] = [];
  let prevUp = 0;
  for (const t of rows) {
    const created = t.meta?.createdAt ?? 0;
    const up = t.status?.timestamp ?? 0;
    const old = tasks
      .filter((x) => x.slot === t.slot && x !== t && (x.meta?.createdAt ?? 0) < created && (x.status?.state ?? 0) >= TaskState.TASK_STATE_COMPLETE)
      .sort((a, b) => (b.meta?.createdAt ?? 0) - (a.meta?.createdAt ?? 0))[0];
    const stopped = old && (old.status?.timestamp ?? 0) >= created ? (old.status?.timestamp ?? 0) : 0;
    if (prevUp > 0) {
      gap.push(up - prevUp);
      if (created >= prevUp) react.push(created - prevUp);
    }
    if (stopped) stop.push(stopped - created);
    start.push(up - Math.max(created, stopped));
    // From the polls: created → assigned (allocator, scheduler), → prepared (READY), and from the
    // later of prepared / desired running (its turn) → RUNNING (the worker's start and report).
    const m = seen.get(t.id);
    const assigned = m?.get('assigned');
    const ready = m?.get('ready');
    const go = m?.get('go');
    if (assigned) sched.push(assigned - created);
    if (assigned && ready) prep.push(ready - assigned);
    if (ready && go && Math.max(ready, go) <= up) run.push(up - Math.max(ready, go));
    prevUp = up;
  }
  const f = (xs: number[]) => (xs.length ? `${median(xs)} ms (n=${xs.length})` : '-');
  return `median per slot: react ${f(react)}, stop ${f(stop)}, start ${f(start)}, gap between RUNNING reports ${f(gap)}; polled: created→assigned ${f(sched)}, assigned→prepared ${f(prep)}, prepared and its turn→RUNNING ${f(run)}`;
}

function swarmSystem(s: Swarm): System {
  const env = { ...process.env, DOCKER_HOST: `unix://${s.socket}`, DOCKER_CONFIG: `${s.root}/cli` };
  const run = async (args: string[]) => {
    const r = await exec('docker', args, env);
    if (r.code !== 0) throw new Error(`docker ${args.join(' ')}: ${r.out.trim()}`);
  };
  return {
    name: 'swarm',
    create: (name, flags) => run(['service', 'create', '-d', '--no-resolve-image', '--name', name, ...flags, A, 'sleep', '1d']),
    update: (name) => run(['service', 'update', '-d', '--no-resolve-image', '--image', B, name]),
    rollback: (name) => run(['service', 'rollback', '-d', name]),
    async running(name, image) {
      const filters = encodeURIComponent(JSON.stringify({ service: [name] }));
      const tasks = await s.api<{ DesiredState: string; Status: { State: string }; Spec: { ContainerSpec: { Image: string } } }[]>(`/v1.41/tasks?filters=${filters}`);
      let n = 0;
      for (const t of tasks) {
        if (t.Status.State !== 'running') continue;
        if (!t.Spec.ContainerSpec.Image.startsWith(image)) return -1;
        if (t.DesiredState === 'running') n++;
      }
      return n;
    },
    async remove(name) {
      await run(['service', 'rm', name]);
      await until(async () => {
        const r = await s.docker(['ps', '-q', '--filter', `label=com.docker.swarm.service.name=${name}`]);
        const left = r.stdout.trim().split('\n').filter(Boolean).length;
        return left === 0 || `${left} containers left`;
      }, 120_000, 200);
    },
  };
}

async function main(): Promise<void> {
  cliEntry = await buildCli();
  const o = parse(process.argv.slice(2));
  POLL_MS = o.pollMs;
  const tar = busyboxRootfsTar();
  const combos = o.orders.flatMap((order) => o.parallelism.map((p) => [order, p] as const));
  const g = new Map<string, Result>();
  const d = new Map<string, Result>();
  // Both systems up at once and measured alternately, combo by combo, so that load from anything
  // else on the host (this 2-CPU machine is shared) weighs on both alike.
  let lab: Lab | undefined;
  let sw: Swarm | undefined;
  let gsys: (System & { close(): void }) | undefined;
  try {
    if (o.only !== 'swarm') {
      await cleanupLabs();
      lab = await Lab.up({ hosts: 1 });
      const h = await formCluster(lab);
      gsys = await gantrySystem(lab, h, tar);
    }
    let ssys: System | undefined;
    if (o.only !== 'gantry') {
      sw = await Swarm.start();
      for (const ref of [A, B]) await sw.importImage(tar, ref);
      ssys = swarmSystem(sw);
    }
    for (const [order, p] of combos) {
      const key = `${order}/${p}`;
      if (gsys) {
        g.set(key, await measure(gsys, o, order, p));
        console.error(`gantry ${key}: ${JSON.stringify(g.get(key))}`);
      }
      if (ssys) {
        d.set(key, await measure(ssys, o, order, p));
        console.error(`swarm ${key}: ${JSON.stringify(d.get(key))}`);
      }
    }
  } finally {
    gsys?.close();
    await lab?.down();
    if (sw) {
      const errs = await sw.stop();
      if (errs.length) console.error(`swarm cleanup: ${errs.join('; ')}`);
    }
  }
  const f = (ms: number | undefined) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(2)} s`);
  const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined ? (a / b).toFixed(3) : '-');
  console.log(`\nrolling update of ${o.replicas} replicas to a new image (same rootfs, two tags), monitor 0, one host`);
  console.log('order\tparallelism\tgantry update\tswarm update\tratio\tgantry rollback\tswarm rollback\tratio');
  for (const [order, p] of combos) {
    const a = g.get(`${order}/${p}`);
    const b = d.get(`${order}/${p}`);
    console.log(`${order}\t${p}\t${f(a?.update)}\t${f(b?.update)}\t${ratio(a?.update, b?.update)}\t${f(a?.rollback)}\t${f(b?.rollback)}\t${ratio(a?.rollback, b?.rollback)}`);
  }
  // The same without the CLI's own time (gantry's is a Node process loading the generated protos).
  const roll = (r: Result | undefined, k: 'update' | 'rollback') => (r ? r[k] - r[k === 'update' ? 'updateCli' : 'rollbackCli'] : undefined);
  console.log('\nthe same from the CLI\'s exit (the CLI\'s own time: gantry update / swarm update / gantry rollback / swarm rollback)');
  console.log('order\tparallelism\tgantry update\tswarm update\tratio\tgantry rollback\tswarm rollback\tratio\tCLI times');
  for (const [order, p] of combos) {
    const a = g.get(`${order}/${p}`);
    const b = d.get(`${order}/${p}`);
    const cli = [a?.updateCli, b?.updateCli, a?.rollbackCli, b?.rollbackCli].map(f).join(' / ');
    console.log(`${order}\t${p}\t${f(roll(a, 'update'))}\t${f(roll(b, 'update'))}\t${ratio(roll(a, 'update'), roll(b, 'update'))}\t${f(roll(a, 'rollback'))}\t${f(roll(b, 'rollback'))}\t${ratio(roll(a, 'rollback'), roll(b, 'rollback'))}\t${cli}`);
  }
  console.log('\nthe host\'s busy CPU time over each (both cores; gantry update / swarm update / gantry rollback / swarm rollback)');
  for (const [order, p] of combos) {
    const a = g.get(`${order}/${p}`);
    const b = d.get(`${order}/${p}`);
    console.log(`${order}\t${p}\t${[a?.updateCpu, b?.updateCpu, a?.rollbackCpu, b?.rollbackCpu].map(f).join(' / ')}`);
  }
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(`update bench: ${err.message}`);
    process.exit(1);
  },
);
