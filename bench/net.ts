// bench/net.ts — the routing mesh against going straight to a task (wrk, requests/s and latency),
// and what network setup adds to a container start (NetworkManager.attach/detach, timed).
//
//   node_modules/.bin/node bench/net.ts [--only setup|mesh] [--seconds 5] [--connections 16] [--attaches 20]
//
// Everything runs inside lab network namespaces (deploy/lab) and a scratch netns this script
// makes and removes; nothing is sent outside them.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run } from '../deploy/lab/sys.ts';
import type { NetworkState } from '../proto/gen/gantry/v1/network.ts';
import type { Task } from '../proto/gen/gantry/v1/objects.ts';
import { type ClusterLab, gantryOk, IMAGE, live, ps, startClusterLab, stopClusterLab, until } from '../test/helpers/lab.ts';
import { NetworkManager } from '../worker/network/manager.ts';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

interface WrkResult {
  rps: number;
  latencyMs: number;
  errors: string;
}

function parseWrk(out: string): WrkResult {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const lat = /Latency\s+([\d.]+)(us|ms|s)/.exec(out);
  const f = lat ? { us: 0.001, ms: 1, s: 1000 }[lat[2] as 'us' | 'ms' | 's'] : 0;
  const errors = /Socket errors:.*|Non-2xx.*/.exec(out)?.[0] ?? '';
  return { rps, latencyMs: lat ? Number(lat[1]) * f : 0, errors };
}

async function wrk(c: ClusterLab, hostIndex: number, url: string, seconds: number, conns: number): Promise<WrkResult> {
  const r = await c.lab.hosts[hostIndex].exec(['wrk', '-t2', `-c${conns}`, `-d${seconds}s`, url], { timeoutMs: (seconds + 30) * 1000 });
  if (r.code !== 0) throw new Error(`wrk ${url}: ${r.stderr || r.stdout}`);
  return parseWrk(r.stdout);
}

/** The mesh: from a host without the task, to its published port vs to the task's ingress address. */
async function mesh(seconds: number, conns: number): Promise<void> {
  let c: ClusterLab | undefined;
  try {
    c = await startClusterLab({ hosts: 3 });
    const [h0, , h2] = c.lab.hosts;
    await gantryOk(c.manager, ['service', 'create', '-d', '--name', 'web', '--publish', '8080:80', '--constraint', `node.hostname==${h0.name}`, IMAGE,
      'sh', '-c', 'mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www']);
    const cl = c;
    await until(async () => live(await ps(cl.manager, 'web')).length === 1 || 'web not running', 60_000);
    const usage = JSON.parse(await gantryOk(c.manager, ['network', 'inspect', 'ingress']))[0];
    const taskIp = (usage.tasks as string[]).find((t) => t.includes('(web.'))?.split(' ').pop();
    if (!taskIp) throw new Error(`no ingress address for web: ${JSON.stringify(usage.tasks)}`);
    await until(async () => (await h2.exec(['timeout', '3', '/bin/busybox', 'wget', '-qO-', `http://${h2.ip}:8080/`])).code === 0 || 'mesh not answering', 30_000);
    // warm up both paths, then measure each twice, interleaved
    await wrk(c, 2, `http://${h2.ip}:8080/`, 1, conns);
    await wrk(c, 2, `http://${taskIp}/`, 1, conns);
    const rounds: { mesh: WrkResult; direct: WrkResult }[] = [];
    for (let i = 0; i < 2; i++) {
      const m = await wrk(c, 2, `http://${h2.ip}:8080/`, seconds, conns);
      const d = await wrk(c, 2, `http://${taskIp}/`, seconds, conns);
      rounds.push({ mesh: m, direct: d });
    }
    const avg = (k: 'mesh' | 'direct', f: 'rps' | 'latencyMs') => rounds.reduce((a, r) => a + r[k][f], 0) / rounds.length;
    console.log(`routing mesh (wrk -t2 -c${conns} -d${seconds}s, from ${h2.name}, task on ${h0.name}, busybox httpd, new connection per request):`);
    console.log(`  mesh    http://${h2.ip}:8080/  ${avg('mesh', 'rps').toFixed(0)} req/s  avg latency ${avg('mesh', 'latencyMs').toFixed(2)} ms ${rounds.map((r) => r.mesh.errors).filter(Boolean).join(' ')}`);
    console.log(`  direct  http://${taskIp}/      ${avg('direct', 'rps').toFixed(0)} req/s  avg latency ${avg('direct', 'latencyMs').toFixed(2)} ms ${rounds.map((r) => r.direct.errors).filter(Boolean).join(' ')}`);
    console.log(`  ratio mesh/direct: ${(avg('mesh', 'rps') / avg('direct', 'rps')).toFixed(3)} (goal >= 0.9)`);
  } finally {
    await stopClusterLab(c);
  }
}

/** Inside a scratch netns: attach/detach N containers (bridge only, then bridge + overlay). */
async function attachProbe(n: number): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-bench-net-'));
  const nm = new NetworkManager({ nodeId: 'benchprobe', netnsDir: path.join(dir, 'netns'), dns: false });
  const state: NetworkState = {
    nodeId: 'benchprobe',
    nodeAddr: '127.0.0.1',
    networks: [
      { id: 'br', name: 'bridge', driver: 'bridge', subnet: '172.16.0.0/12', vni: 0, ingress: false, nodeAddr: '172.31.250.0/24', peers: [] },
      { id: 'ov', name: 'ov', driver: 'overlay', subnet: '10.250.0.0/24', vni: 9999, ingress: false, nodeAddr: '', peers: [] },
    ],
    services: [],
    localTasks: [],
  };
  const task = (i: number, overlay: boolean): Task =>
    ({ id: `benchtask${String(i).padStart(16, '0')}`, serviceId: 'svc', networks: overlay ? [{ networkId: 'ov', addresses: [`10.250.0.${i + 2}/24`], aliases: [] }] : [], spec: { networks: [] } }) as unknown as Task;
  try {
    for (const overlay of [false, true]) {
      const ids = Array.from({ length: n }, (_, i) => task(i + (overlay ? 100 : 0), overlay));
      state.localTasks = ids.map((t) => t.id);
      nm.setState(state);
      await nm.attach(task(200 + (overlay ? 1 : 0), overlay)); // warm-up: bridge, chains, overlay devices
      const t0 = performance.now();
      for (const t of ids) await nm.attach(t);
      const t1 = performance.now();
      for (const t of ids) await nm.detach(t.id);
      const t2 = performance.now();
      console.log(`  ${overlay ? 'bridge + overlay' : 'bridge only     '}  attach ${((t1 - t0) / n).toFixed(1)} ms/container  detach ${((t2 - t1) / n).toFixed(1)} ms/container  (n=${n})`);
    }
  } finally {
    await nm.teardown();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function setupCost(n: number): Promise<void> {
  const ns = `gantry-bench-${process.pid}`;
  await run('ip', ['netns', 'add', ns]);
  try {
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    console.log(`network setup per container start (NetworkManager in scratch netns ${ns}: netns + veths + addresses + iptables):`);
    const r = await run('nsenter', [`--net=/run/netns/${ns}`, '--', process.execPath, import.meta.filename, '--attach-probe', String(n)], { timeoutMs: 300_000 });
    process.stdout.write(r.stdout);
    if (r.code !== 0) console.log(`  probe failed: ${r.stderr.trim()}`);
  } finally {
    await run('ip', ['netns', 'del', ns]);
  }
}

if (process.argv.includes('--attach-probe')) {
  await attachProbe(arg('attach-probe', 20));
} else {
  const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : '';
  if (only !== 'mesh') await setupCost(arg('attaches', 20));
  if (only !== 'setup') await mesh(arg('seconds', 5), arg('connections', 16));
}
