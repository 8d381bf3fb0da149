// Container network setup by NetworkManager with the gantry-net helper and with the ip/nsenter
// fallback: the same netns, links, addresses, route and VIP rules, and nothing left after detach.
// Runs itself again inside a scratch netns (`--probe helper|ip`) so the host's network is untouched.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { run } from '../../deploy/lab/sys.ts';
import { ensureBuilt } from '../../native-exec/tests/helpers.ts';
import type { NetworkState } from '../../proto/gen/gantry/v1/network.ts';
import { EndpointMode, type Task } from '../../proto/gen/gantry/v1/objects.ts';
import { NetworkManager } from '../../worker/network/manager.ts';
import { netHelperPath } from '../../worker/network/sys.ts';

const TASK = 'setuptask0000000000000000001';
const VETH = /^gv[0-9a-f]{9}\d$/; // names.ts vethName

function state(taskIds: string[]): NetworkState {
  return {
    nodeId: 'setupnode',
    nodeAddr: '127.0.0.1',
    networks: [
      { id: 'br', name: 'bridge', driver: 'bridge', subnet: '172.16.0.0/12', vni: 0, ingress: false, nodeAddr: '172.31.251.0/24', peers: [] },
      { id: 'ov1', name: 'ov', driver: 'overlay', subnet: '10.251.0.0/24', vni: 9998, ingress: false, nodeAddr: '', peers: [] },
    ],
    services: [{ id: 'vipsvc', name: 'vip', mode: EndpointMode.ENDPOINT_MODE_VIP, vips: { ov1: '10.251.0.250' }, tasks: [{ taskId: 'other', nodeId: 'x', addrs: { ov1: '10.251.0.9' } }], ports: [] }],
    localTasks: taskIds,
  };
}

const task = { id: TASK, serviceId: 'svc1', networks: [{ networkId: 'ov1', addresses: ['10.251.0.7/24'], aliases: [] }], spec: { networks: [] } } as unknown as Task;

async function sh(cmd: string[]): Promise<string> {
  const r = await run(cmd[0], cmd.slice(1));
  if (r.code !== 0) throw new Error(`${cmd.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** In the scratch netns: attach, describe what was made, detach, list what is left; prints JSON. */
async function probe(helper: boolean): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-setup-test-'));
  const logs: string[] = [];
  const nm = new NetworkManager({ nodeId: 'setupnode', netnsDir: path.join(dir, 'netns'), dns: false, netHelper: helper, log: (m) => logs.push(m) });
  try {
    nm.setState(state([TASK]));
    const a = await nm.attach(task);
    if (a.network.mode !== 'path') throw new Error(`attach gave ${a.network.mode}`);
    const ns = a.network.path;
    const inNs = (args: string[]) => sh(['nsenter', `--net=${ns}`, ...args]);
    const links = (JSON.parse(await inNs(['ip', '-j', 'addr', 'show'])) as { ifname: string; operstate: string; mtu: number; address: string; addr_info: { family: string; local: string; prefixlen: number }[] }[]).map((l) => ({
      name: l.ifname,
      up: l.ifname === 'lo' ? undefined : l.operstate,
      mtu: l.mtu,
      mac: l.ifname === 'eth1' ? l.address : undefined, // eth0's is random
      inet: l.addr_info.filter((x) => x.family === 'inet').map((x) => `${x.local}/${x.prefixlen}`),
    }));
    const aliases = (JSON.parse(await inNs(['ip', '-j', 'link', 'show'])) as { ifname: string; ifalias?: string }[]).map((l) => `${l.ifname}=${l.ifalias ?? ''}`);
    const routes = (JSON.parse(await inNs(['ip', '-j', 'route', 'show'])) as { dst: string; gateway?: string; dev: string }[]).map((r) => `${r.dst} ${r.gateway ?? ''} ${r.dev}`);
    const nat = (await inNs(['iptables-save', '-t', 'nat'])).split('\n').filter((l) => l.startsWith('-A'));
    const host = (JSON.parse(await sh(['ip', '-j', 'link', 'show'])) as { ifname: string; master?: string; operstate: string; mtu: number }[])
      .filter((l) => VETH.test(l.ifname))
      .map((l) => `${l.ifname} ${l.master} ${l.operstate} ${l.mtu}`);
    await nm.detach(TASK);
    // the kernel removes the netns and its veths in the background: poll, never assert a duration
    let left: string[] = [];
    for (let i = 0; i < 100; i++) {
      const now = (JSON.parse(await sh(['ip', '-j', 'link', 'show'])) as { ifname: string }[]).map((l) => l.ifname).filter((n) => VETH.test(n));
      const mounts = (await sh(['cat', '/proc/self/mountinfo'])).split('\n').filter((l) => l.includes(dir));
      left = [...now, ...mounts];
      if (!left.length) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);
    process.stdout.write(JSON.stringify({ links: links.sort(byName), aliases: aliases.sort(), routes: routes.sort(), nat, host: host.sort(), left, logs }));
  } finally {
    await nm.teardown();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv.includes('--probe')) {
  await probe(process.argv[process.argv.indexOf('--probe') + 1] === 'helper');
} else {
  test('network setup: gantry-net and the ip/nsenter fallback make the same container network, and detach leaves nothing', { timeout: 120_000 }, async (t) => {
    ensureBuilt(); // gantry-net comes from the same make as gantry-exec
    const scratch = `gantry-setup-${process.pid}`;
    assert.equal((await run('ip', ['netns', 'add', scratch])).code, 0);
    t.after(() => run('ip', ['netns', 'del', scratch]));
    const probeIn = async (mode: string) => {
      const r = await run('nsenter', [`--net=/run/netns/${scratch}`, '--', process.execPath, import.meta.filename, '--probe', mode], { timeoutMs: 100_000 });
      assert.equal(r.code, 0, `probe ${mode}: ${r.stderr}`);
      return JSON.parse(r.stdout) as { links: unknown[]; aliases: string[]; routes: string[]; nat: string[]; host: string[]; left: string[]; logs: string[] };
    };
    const viaHelper = await probeIn('helper');
    const viaIp = await probeIn('ip');
    assert.ok(!viaHelper.logs.some((l) => l.includes('not found')), `the helper was used (${netHelperPath()}): ${viaHelper.logs.join('; ')}`);
    // what both must show
    assert.deepEqual(viaHelper.routes.filter((r) => r.startsWith('default')), ['default 172.31.251.1 eth0']);
    assert.ok(viaHelper.nat.some((r) => /-A GANTRY-VIP -d 10\.251\.0\.250\/32 -j GANTRY-V-/.test(r)), `VIP rules: ${viaHelper.nat.join(' | ')}`);
    assert.deepEqual(viaHelper.aliases, ['eth0=svc1', 'eth1=ov1', 'lo=']);
    assert.equal(viaHelper.host.length, 2, `two host veth ends: ${viaHelper.host.join(' | ')}`);
    assert.deepEqual(viaHelper.left, []);
    // and the fallback makes the same
    for (const k of ['links', 'aliases', 'routes', 'nat', 'host', 'left'] as const) assert.deepEqual(viaHelper[k], viaIp[k], `${k} differ between gantry-net and ip/nsenter`);
  });
}
