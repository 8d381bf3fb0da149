// A multi-host Docker Swarm on the lab: one dockerd per netns host (data under the host's dir,
// containers under its cgroup parent), host 0 the manager, the rest joined as workers.
import * as http from 'node:http';
import { until } from '../deploy/lab/lab-cluster.ts';
import { type HostInfo, Lab, type LabHost } from '../deploy/lab/lab-hosts.ts';
import { type RunResult, run } from '../deploy/lab/sys.ts';
import { DOCKERD } from './swarm.ts';

function dockerdArgv(h: HostInfo): string[] {
  return [
    DOCKERD,
    '--data-root',
    `${h.dataDir}/docker`,
    '--exec-root',
    `${h.runDir}/docker`,
    '--pidfile',
    `${h.runDir}/dockerd.pid`,
    '-H',
    `unix://${h.runDir}/docker.sock`,
    '--iptables=false',
    '--ip-masq=false',
    '--bridge=none',
    '--cgroup-parent',
    `/${h.cgroupParent}`,
  ];
}

export function docker(h: LabHost, args: string[]): Promise<RunResult> {
  return run('docker', args, { env: { ...process.env, DOCKER_HOST: `unix://${h.runDir}/docker.sock`, DOCKER_CONFIG: `${h.dir}/docker-cli` }, timeoutMs: 120_000 });
}

async function dockerOk(h: LabHost, args: string[]): Promise<string> {
  const r = await docker(h, args);
  if (r.code !== 0) throw new Error(`${h.name}: docker ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** GET on host h's Engine API. */
export function dockerApi<T>(h: LabHost, p: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath: `${h.runDir}/docker.sock`, path: p }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => ((res.statusCode ?? 500) >= 300 ? reject(new Error(`${p}: ${res.statusCode} ${body}`)) : resolve(JSON.parse(body) as T)));
    });
    req.on('error', reject);
  });
}

export async function startDockerd(h: LabHost): Promise<void> {
  await h.start();
  await until(async () => (await docker(h, ['version', '--format', '{{.Server.Version}}'])).code === 0 || `dockerd on ${h.name} not answering`, 60_000, 100);
}

/** A lab whose hosts run dockerd as one swarm (host 0 manager). Tear down with lab.down(). */
export async function swarmLab(hosts: number, image: { tar: string; ref: string }): Promise<Lab> {
  const lab = await Lab.up({ hosts, daemon: (h) => dockerdArgv(h), waitForSocket: false, env: { DOCKER_SERVICE_PREFER_OFFLINE_IMAGE: '1' } });
  try {
    await Promise.all(lab.hosts.map((h) => startDockerd(h)));
    const m = lab.host(0);
    await dockerOk(m, ['swarm', 'init', '--advertise-addr', m.ip]);
    const token = (await dockerOk(m, ['swarm', 'join-token', '-q', 'worker'])).trim();
    for (const h of lab.hosts.slice(1)) await dockerOk(h, ['swarm', 'join', '--advertise-addr', h.ip, '--token', token, `${m.ip}:2377`]);
    await Promise.all(lab.hosts.map((h) => dockerOk(h, ['import', image.tar, image.ref])));
    await until(async () => {
      const nodes = await dockerApi<{ Status: { State: string } }[]>(m, '/v1.41/nodes');
      const ready = nodes.filter((n) => n.Status.State === 'ready').length;
      return ready === hosts || `${ready}/${hosts} swarm nodes ready`;
    }, 60_000);
    return lab;
  } catch (err) {
    await lab.down().catch(() => {});
    throw err;
  }
}

/** Running tasks (desired and observed) of a service, with their node ids. */
export async function swarmRunning(m: LabHost, service: string): Promise<{ id: string; node: string }[]> {
  const filters = encodeURIComponent(JSON.stringify({ service: [service], 'desired-state': ['running'] }));
  const tasks = await dockerApi<{ ID: string; NodeID: string; Status: { State: string } }[]>(m, `/v1.41/tasks?filters=${filters}`);
  return tasks.filter((t) => t.Status.State === 'running').map((t) => ({ id: t.ID, node: t.NodeID }));
}

export async function swarmNodeId(m: LabHost, hostname: string): Promise<string> {
  const nodes = await dockerApi<{ ID: string; Description: { Hostname: string }; Status: { Addr: string } }[]>(m, '/v1.41/nodes');
  const n = nodes.find((x) => x.Status.Addr === hostname || x.Description.Hostname === hostname);
  if (!n) throw new Error(`swarm node ${hostname} not found`);
  return n.ID;
}

export { dockerOk };
