// End-to-end networking on 3 lab hosts (real gantryd, etcd, containers, VXLAN, iptables, DNS):
// the routing mesh, service discovery (VIP, tasks., dnsrr), host-mode ports, egress NAT, pool
// exhaustion, port conflicts, and cleanup. All traffic stays inside the lab's namespaces.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { run } from '../../deploy/lab/sys.ts';
import {
  type ClusterLab,
  clusterSkipReason,
  gantryOk,
  IMAGE,
  type LabHost,
  live,
  ps,
  sleepers,
  startClusterLab,
  stopClusterLab,
  summary,
  until,
} from '../helpers/lab.ts';

const HTTPD = ['sh', '-c', 'mkdir -p /tmp/www && hostname > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www'];

async function httpGet(h: LabHost, url: string): Promise<string | undefined> {
  const r = await h.exec(['timeout', '5', '/bin/busybox', 'wget', '-qO-', url], { timeoutMs: 8000 });
  return r.code === 0 ? r.stdout.trim() : undefined;
}

/** Runs busybox inside the container running `sleep mark` (its net, mount, uts namespaces). */
async function inContainer(c: ClusterLab, mark: string, args: string[]): Promise<{ code: number; out: string }> {
  for (const h of c.lab.hosts) {
    const [pid] = sleepers(h, mark);
    if (!pid) continue;
    const r = await run('timeout', ['8', 'nsenter', '-t', String(pid), '-n', '-m', '-u', '/bin/busybox', ...args], { timeoutMs: 10_000 });
    return { code: r.code, out: `${r.stdout}${r.stderr}`.trim() };
  }
  throw new Error(`no container runs "sleep ${mark}"`);
}

function addresses(nslookup: string, name: string): string[] {
  const after = nslookup.split(/Name:\s+/).slice(1).filter((b) => b.startsWith(name));
  return after.flatMap((b) => [...b.matchAll(/Address:\s+(\d+\.\d+\.\d+\.\d+)/g)].map((m) => m[1])).sort();
}

async function waitRunning(c: ClusterLab, service: string, want: number): Promise<void> {
  await until(async () => {
    const t = await ps(c.manager, service);
    return live(t).length === want || `${live(t).length}/${want} running: ${summary(t)}`;
  }, 90_000);
}

describe('networking', { skip: clusterSkipReason(), concurrency: 1, timeout: 900_000 }, () => {
  let c: ClusterLab;
  let noTask: LabHost;
  before(async () => {
    c = await startClusterLab({ hosts: 3 });
    noTask = c.lab.hosts[2];
    await gantryOk(c.manager, ['network', 'create', '--driver', 'overlay', 'front']);
    await gantryOk(c.manager, ['service', 'create', '-d', '--name', 'web', '--replicas', '3', '--network', 'front', '--publish', '8080:80',
      '--constraint', `node.hostname!=${noTask.name}`, IMAGE, ...HTTPD]);
    // the client runs on host 0, the host the restart test restarts (its containers must stay reachable)
    await gantryOk(c.manager, ['service', 'create', '-d', '--name', 'client', '--network', 'front', '--constraint', `node.hostname==${c.lab.hosts[0].name}`, IMAGE, 'sleep', '86501']);
    await waitRunning(c, 'web', 3);
    await waitRunning(c, 'client', 1);
  });
  after(async () => {
    await stopClusterLab(c);
  });

  test('networking: a published port answers on every host, including one without a task, and spreads over the replicas', async () => {
    const seen = new Set<string>();
    await until(async () => {
      for (const h of c.lab.hosts) {
        for (let i = 0; i < 8; i++) {
          const body = await httpGet(h, `http://${h.ip}:8080/`);
          if (!body) return `${h.name}:8080 did not answer`;
          seen.add(body);
        }
      }
      return seen.size === 3 || `answers came from ${seen.size} replicas: ${[...seen].join(', ')}`;
    }, 60_000, 500);
    assert.equal(seen.size, 3);
    const t = await ps(c.manager, 'web');
    assert.ok(!live(t).some((x) => x.node === noTask.name), `no web task on ${noTask.name}: ${summary(t)}`);
  });

  test('networking: a container resolves the service name to its VIP and tasks.NAME to every task, and reaches them', async () => {
    const svc = JSON.parse(await gantryOk(c.manager, ['service', 'inspect', 'web']))[0];
    const vips = (svc.endpoint?.virtualIps ?? svc.Endpoint?.VirtualIPs ?? []).map((v: { addr?: string; Addr?: string }) => (v.addr ?? v.Addr ?? '').split('/')[0]);
    await until(async () => {
      const vip = await inContainer(c, '86501', ['nslookup', 'web']);
      const got = addresses(vip.out, 'web');
      if (got.length !== 1 || !vips.includes(got[0])) return `web resolved to ${got.join(',') || vip.out}, want one of the VIPs ${vips.join(',')}`;
      const tasks = await inContainer(c, '86501', ['nslookup', 'tasks.web']);
      const all = addresses(tasks.out, 'tasks.web');
      return all.length === 3 || `tasks.web resolved to ${all.join(',') || tasks.out}`;
    }, 30_000, 500);
    const bodies = new Set<string>();
    for (let i = 0; i < 15; i++) {
      const r = await inContainer(c, '86501', ['wget', '-qO-', 'http://web/']);
      assert.equal(r.code, 0, `wget http://web/ from the client: ${r.out}`);
      bodies.add(r.out);
    }
    assert.ok(bodies.size >= 2, `the VIP spreads connections: answers from ${[...bodies].join(', ')}`);
    const direct = await inContainer(c, '86501', ['wget', '-qO-', 'http://tasks.web/']);
    assert.equal(direct.code, 0, direct.out);
  });

  test('networking: --endpoint-mode dnsrr resolves the name to the task addresses', async () => {
    await gantryOk(c.manager, ['service', 'create', '-d', '--name', 'rr', '--replicas', '2', '--network', 'front', '--endpoint-mode', 'dnsrr', IMAGE, ...HTTPD]);
    await waitRunning(c, 'rr', 2);
    await until(async () => {
      const r = await inContainer(c, '86501', ['nslookup', 'rr']);
      const got = addresses(r.out, 'rr');
      return got.length === 2 || `rr resolved to ${got.join(',') || r.out}`;
    }, 30_000, 500);
    await gantryOk(c.manager, ['service', 'rm', 'rr']);
  });

  test('networking: --publish 80 takes a port from 30000-32767 that answers on every host', async () => {
    await gantryOk(c.manager, ['service', 'create', '-d', '--name', 'dyn', '--publish', '80', IMAGE, ...HTTPD]);
    try {
      const svc = JSON.parse(await gantryOk(c.manager, ['service', 'inspect', 'dyn']))[0];
      const ports = (svc.endpoint?.ports ?? svc.Endpoint?.Ports ?? []) as { publishedPort?: number; PublishedPort?: number }[];
      const port = Number(ports[0]?.publishedPort ?? ports[0]?.PublishedPort);
      assert.ok(port >= 30000 && port <= 32767, `published port ${port} in 30000-32767: ${JSON.stringify(ports)}`);
      await waitRunning(c, 'dyn', 1);
      await until(async () => {
        for (const h of c.lab.hosts) if (!(await httpGet(h, `http://${h.ip}:${port}/`))) return `${h.name}:${port} does not answer`;
        return true;
      }, 60_000, 500);
    } finally {
      await gantryOk(c.manager, ['service', 'rm', 'dyn']);
    }
  });

  test('networking: a container resolves only the services that share a network with it', async () => {
    await gantryOk(c.manager, ['network', 'create', 'back']);
    await gantryOk(c.manager, ['service', 'create', '-d', '--name', 'other', '--network', 'back', IMAGE, 'sleep', '86506']);
    try {
      await waitRunning(c, 'other', 1);
      // the client (on front) resolves web; the container on back does not (the name goes to the host's resolvers)
      const mine = await inContainer(c, '86501', ['nslookup', 'web']);
      assert.equal(addresses(mine.out, 'web').length, 1, `the client on front resolves web: ${mine.out}`);
      await until(async () => {
        const r = await inContainer(c, '86506', ['nslookup', 'other']);
        return addresses(r.out, 'other').length === 1 || `other resolves its own name: ${r.out}`;
      }, 30_000, 500);
      const r = await inContainer(c, '86506', ['nslookup', 'web']);
      assert.deepEqual(addresses(r.out, 'web'), [], `a container on back must not resolve web (on front): ${r.out}`);
    } finally {
      await gantryOk(c.manager, ['service', 'rm', 'other']);
      await until(async () => (await c.manager.gantry(['network', 'rm', 'back'])).code === 0 || 'back still in use', 60_000, 500);
    }
  });

  test('networking: --network host shares the host stack, --network none has only loopback', async () => {
    await gantryOk(c.manager, ['service', 'create', '-d', '--name', 'onhost', '--network', 'host', '--constraint', `node.hostname==${c.lab.hosts[1].name}`, IMAGE, 'sleep', '86504']);
    await gantryOk(c.manager, ['service', 'create', '-d', '--name', 'nonet', '--network', 'none', IMAGE, 'sleep', '86505']);
    await waitRunning(c, 'onhost', 1);
    await waitRunning(c, 'nonet', 1);
    const host = await inContainer(c, '86504', ['ip', '-o', '-4', 'addr']);
    assert.match(host.out, new RegExp(c.lab.hosts[1].ip.replaceAll('.', '\\.')), host.out);
    const none = await inContainer(c, '86505', ['ip', '-o', 'link']);
    assert.deepEqual(none.out.split('\n').map((l) => l.split(/:\s+/)[1]), ['lo'], none.out);
    await gantryOk(c.manager, ['service', 'rm', 'onhost', 'nonet']);
  });

  test('networking: a container reaches a server on another lab host through NAT', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-net-egress-'));
    fs.writeFileSync(path.join(dir, 'index.html'), 'egress-ok\n');
    const server = c.lab.hosts[1];
    const port = 20000 + Math.floor(Math.random() * 9000);
    const started = await server.exec(['/bin/busybox', 'httpd', '-p', `${server.ip}:${port}`, '-h', dir]);
    assert.equal(started.code, 0, started.stderr);
    try {
      let last = '';
      await until(async () => {
        const r = await inContainer(c, '86501', ['wget', '-qO-', `http://${server.ip}:${port}/`]);
        last = `exit ${r.code}: ${r.out}`;
        return r.out === 'egress-ok' || last;
      }, 30_000, 500);
    } finally {
      for (const p of server.processes((argv) => argv.includes(`${server.ip}:${port}`))) process.kill(p.pid, 'SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('networking: host-mode ports answer only where a task runs, and two such tasks never share a host', async () => {
    const port = String(21000 + Math.floor(Math.random() * 9000));
    await gantryOk(c.manager, ['service', 'create', '-d', '--name', 'hp', '--replicas', '2', '--publish', `mode=host,published=${port},target=80`, IMAGE, ...HTTPD]);
    await waitRunning(c, 'hp', 2);
    const t = live(await ps(c.manager, 'hp'));
    const hosts = new Set(t.map((x) => x.node));
    assert.equal(hosts.size, 2, `one task per host: ${summary(t)}`);
    for (const h of c.lab.hosts) {
      const body = await httpGet(h, `http://${h.ip}:${port}/`);
      if (hosts.has(h.name)) assert.ok(body, `${h.name} runs a task and answers on ${port}`);
      else assert.equal(body, undefined, `${h.name} runs no task: nothing answers on ${port}`);
    }
    await gantryOk(c.manager, ['service', 'scale', '-d', 'hp=4']);
    await until(async () => {
      const all = await ps(c.manager, 'hp');
      const pending = all.filter((x) => x.desired === 'running' && x.state === 'pending');
      return (live(all).length === 3 && pending.length === 1) || `want 3 running + 1 pending: ${summary(all)}`;
    }, 60_000);
    await gantryOk(c.manager, ['service', 'rm', 'hp']);
  });

  test('networking: publishing a port another service holds is refused, naming the port and the service', async () => {
    const r = await c.manager.gantry(['service', 'create', '-d', '--name', 'dup', '--publish', '8080:80', IMAGE, 'sleep', '86502']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /8080.*already published by service "web"/);
  });

  test('networking: a full network holds the extra tasks with a message naming it and its size; inspect shows the use', async () => {
    await gantryOk(c.manager, ['network', 'create', '--subnet', '10.99.0.0/29', 'tiny']);
    await gantryOk(c.manager, ['service', 'create', '-d', '--name', 'crowd', '--replicas', '6', '--network', 'tiny', IMAGE, 'sleep', '86503']);
    await until(async () => {
      const t = await ps(c.manager, 'crowd');
      const held = t.filter((x) => x.state === 'new' || x.state === 'pending');
      if (live(t).length !== 4 || held.length !== 2) return `want 4 running + 2 waiting: ${summary(t)}`;
      const why = held.map((x) => `${x.message} ${x.error} ${x.current}`);
      return why.every((w) => /network "tiny" has no free address in 10\.99\.0\.0\/29 \(5 addresses/.test(w)) || `waiting tasks say: ${why.join(' | ')}`;
    }, 60_000);
    const usage = JSON.parse(await gantryOk(c.manager, ['network', 'inspect', 'tiny']))[0];
    assert.equal(Number(usage.used), 5);
    assert.equal(Number(usage.free), 0);
    await gantryOk(c.manager, ['service', 'rm', 'crowd']);
    await until(async () => (await c.manager.gantry(['network', 'rm', 'tiny'])).code === 0 || 'tiny still in use', 60_000, 500);
  });

  // The client container runs on the restarted host. busybox wget here has no -T (it dies of SIGSEGV
  // on it, which run() once reported as exit 124, like a timeout): bound requests with `timeout` only.
  test('networking: a restarted gantryd keeps its containers reachable and removes namespaces and rules it does not own', async () => {
    const h = c.lab.hosts[0];
    assert.ok(sleepers(h, '86501').length === 1, `the client container runs on ${h.name}, the host that restarts`);
    const looked = await inContainer(c, '86501', ['nslookup', 'web']);
    const [vip] = addresses(looked.out, 'web');
    assert.ok(vip, `web resolves to its VIP on front: ${looked.out}`);
    const nsDir = path.join(h.runDir, 'netns');
    const prefix = fs.readdirSync(nsDir)[0]?.split('-').slice(0, 2).join('-');
    assert.ok(prefix, `${h.name} has container namespaces`);
    await h.stop();
    // gantryd down: the container's VIP rules and the overlay's entries are kernel state and stay
    const down = await inContainer(c, '86501', ['wget', '-qO-', `http://${vip}/`]);
    assert.equal(down.code, 0, `wget http://${vip}/ (web's VIP) from the client while gantryd is down: ${down.out}`);
    const stray = path.join(nsDir, `${prefix}-strayaaaaaaaaaaaaaaaaaaaaa`);
    fs.writeFileSync(stray, '');
    assert.equal((await run('unshare', [`--net=${stray}`, 'true'])).code, 0);
    assert.equal((await h.exec(['iptables', '-w', '-t', 'nat', '-N', 'GANTRY-S-STRAY0000000'])).code, 0);
    await h.start();
    await until(async () => {
      if (fs.existsSync(stray)) return 'the stray namespace is still there';
      const nat = (await h.exec(['iptables-save', '-t', 'nat'])).stdout;
      if (/GANTRY-S-STRAY/.test(nat)) return 'the stray chain is still there';
      for (const x of c.lab.hosts) if (!(await httpGet(x, `http://${x.ip}:8080/`))) return `${x.name}:8080 does not answer`;
      return true;
    }, 60_000, 500);
    // names are answered by gantryd's resolver: after its restart it answers once the manager has
    // sent it the network state again (the mesh above does not need that)
    await until(async () => {
      const r = await inContainer(c, '86501', ['wget', '-qO-', 'http://web/']);
      return r.code === 0 || `wget http://web/ from a container exited ${r.code}: ${r.out}`;
    }, 60_000, 500);
  });

  test('networking: removing services and leaving removes every veth, namespace, overlay, bridge and rule', async () => {
    for (const s of ['web', 'client']) await gantryOk(c.manager, ['service', 'rm', s]);
    await until(async () => {
      for (const h of c.lab.hosts) {
        const links = (await h.exec(['ip', '-o', 'link', 'show'])).stdout;
        if (/: gv[0-9a-f]+\d@/.test(links)) return `${h.name} still has container veths`;
        const ns = path.join(h.runDir, 'netns');
        if (fs.existsSync(ns) && fs.readdirSync(ns).length) return `${h.name} still has namespaces ${fs.readdirSync(ns).join(',')}`;
        const nat = (await h.exec(['iptables-save', '-t', 'nat'])).stdout;
        if (/GANTRY-S-/.test(nat)) return `${h.name} still has port rules`;
      }
      return true;
    }, 60_000, 500);
    await gantryOk(c.manager, ['network', 'rm', 'front']);
    const leaver = c.lab.hosts[1];
    await gantryOk(leaver, ['leave']);
    const links = (await leaver.exec(['ip', '-o', 'link', 'show'])).stdout;
    assert.doesNotMatch(links, /gantry0|gbr\d|gvx\d|: gv[0-9a-f]/, `interfaces left on ${leaver.name}`);
    for (const table of ['nat', 'filter']) {
      const saved = (await leaver.exec(['iptables-save', '-t', table])).stdout;
      assert.doesNotMatch(saved, /GANTRY/, `${table} rules left on ${leaver.name}`);
    }
  });
});
