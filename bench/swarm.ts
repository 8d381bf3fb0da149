// Runs Debian's dockerd as a single-node Docker Swarm in its own network namespace, with its own
// data/exec roots, socket and cgroup parent, for benchmarks to compare against; stop() removes all of it.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { cgroupDirs, cgroupPids, isAlive, killAll, must, netnsPids, type RunResult, removeCgroupTree, run, sleep, unmountTree } from '../deploy/lab/sys.ts';

export const DOCKERD = '/usr/sbin/dockerd';

export class Swarm {
  readonly root: string;
  readonly ns: string;
  readonly socket: string;
  readonly cgroupParent: string;
  readonly log: string;
  #pid = 0;

  constructor(tag = String(process.pid)) {
    this.root = `/tmp/gantry-bench-swarm-${tag}`;
    this.ns = `gbswarm${tag}`;
    this.socket = `${this.root}/docker.sock`;
    this.cgroupParent = `gantry-bench-swarm-${tag}`;
    this.log = `${this.root}/dockerd.log`;
  }

  /**
   * Starts dockerd and `docker swarm init`. On this machine dockerd needs --iptables=false and
   * --bridge=none (no NAT setup, no docker0); swarm's own ingress/gwbridge work in the netns.
   * DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 stops the swarm agent from trying a registry before
   * using the imported image (no network here: it would only add DNS timeouts to Swarm's times).
   */
  static async start(tag?: string): Promise<Swarm> {
    const s = new Swarm(tag);
    await s.#start();
    return s;
  }

  async #start(): Promise<void> {
    if (!fs.existsSync(DOCKERD)) throw new Error(`${DOCKERD} not found: install docker.io`);
    fs.mkdirSync(`${this.root}/exec`, { recursive: true });
    // dockerd's exec root (containerd's state, runc's, the shims') on a tmpfs, as /run is on a systemd host; gantry's lab hosts have the same
    await must('mount', ['-t', 'tmpfs', '-o', 'mode=0755', 'bench-swarm-exec', `${this.root}/exec`]);
    await must('ip', ['netns', 'add', this.ns]);
    await must('ip', ['-n', this.ns, 'link', 'set', 'lo', 'up']);
    const out = fs.openSync(this.log, 'a');
    const child = spawn(
      'nsenter',
      [
        `--net=/run/netns/${this.ns}`,
        '--',
        DOCKERD,
        '--data-root',
        `${this.root}/data`,
        '--exec-root',
        `${this.root}/exec`,
        '--pidfile',
        `${this.root}/dockerd.pid`,
        '-H',
        `unix://${this.socket}`,
        '--iptables=false',
        '--ip-masq=false',
        '--bridge=none',
        '--cgroup-parent',
        `/${this.cgroupParent}`,
      ],
      { detached: true, stdio: ['ignore', out, out], env: { ...process.env, DOCKER_SERVICE_PREFER_OFFLINE_IMAGE: '1' } },
    );
    fs.closeSync(out);
    child.unref();
    this.#pid = child.pid ?? 0;
    const deadline = Date.now() + 60_000;
    while ((await this.docker(['version', '--format', '{{.Server.Version}}'])).code !== 0) {
      if (!isAlive(this.#pid)) throw new Error(`dockerd exited at start; see ${this.log}`);
      if (Date.now() > deadline) throw new Error(`dockerd not answering on ${this.socket} after 60s; see ${this.log}`);
      await sleep(100);
    }
    const init = await this.docker(['swarm', 'init', '--advertise-addr', '127.0.0.1']);
    if (init.code !== 0) throw new Error(`docker swarm init: ${init.stderr.trim()}`);
  }

  docker(args: string[], timeoutMs = 120_000): Promise<RunResult> {
    return run('docker', args, {
      env: { ...process.env, DOCKER_HOST: `unix://${this.socket}`, DOCKER_CONFIG: `${this.root}/cli` },
      timeoutMs,
    });
  }

  async importImage(tar: string, ref: string): Promise<void> {
    const r = await this.docker(['import', tar, ref]);
    if (r.code !== 0) throw new Error(`docker import ${tar} ${ref}: ${r.stderr.trim()}`);
  }

  /** GET on the Engine API over the unix socket (fast polling: no CLI process per poll). */
  api<T>(p: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const req = http.get({ socketPath: this.socket, path: p }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => {
          if ((res.statusCode ?? 500) >= 300) reject(new Error(`docker API ${p}: ${res.statusCode} ${body.trim()}`));
          else resolve(JSON.parse(body) as T);
        });
      });
      req.on('error', reject);
    });
  }

  /** Tasks of a service whose desired and observed state are both running. */
  async runningTasks(service: string): Promise<{ id: string; node: string }[]> {
    const filters = encodeURIComponent(JSON.stringify({ service: [service], 'desired-state': ['running'] }));
    const tasks = await this.api<{ ID: string; NodeID: string; Status: { State: string } }[]>(`/v1.41/tasks?filters=${filters}`);
    return tasks.filter((t) => t.Status.State === 'running').map((t) => ({ id: t.ID, node: t.NodeID }));
  }

  /** Stops dockerd, its containerd, shims and containers, and removes its netns, mounts, cgroups and files. */
  async stop(): Promise<string[]> {
    const errors: string[] = [];
    if (this.#pid && isAlive(this.#pid)) {
      process.kill(this.#pid, 'SIGTERM');
      const deadline = Date.now() + 20_000;
      while (isAlive(this.#pid) && Date.now() < deadline) await sleep(100);
    }
    const left = await killAll(() => {
      const set = new Set(netnsPids(this.ns));
      for (const d of cgroupDirs(this.cgroupParent, { whole: true })) for (const p of cgroupPids(d)) set.add(p);
      for (const p of processesUsing(this.root)) set.add(p);
      return [...set];
    });
    if (left.length) errors.push(`processes survived: ${left.join(', ')}`);
    const mounts = await unmountTree(this.root);
    if (mounts.length) errors.push(`mounts stayed: ${mounts.join(', ')}`);
    for (const d of cgroupDirs(this.cgroupParent, { whole: true })) errors.push(...removeCgroupTree(d));
    await run('ip', ['netns', 'del', this.ns]);
    if (!mounts.length) fs.rmSync(this.root, { recursive: true, force: true });
    return errors;
  }
}

/** Pids whose command line mentions `root` (containerd and its shims are started with paths under it). */
function processesUsing(root: string): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(root)) out.push(pid);
    } catch {
      // gone
    }
  }
  return out;
}
