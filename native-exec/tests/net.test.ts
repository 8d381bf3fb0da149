// tests/net.test.ts — gantry-net (src/net): a container netns with veths, addresses, MAC, MTU,
// alias, default route and nat rules made in one request, undone on failure, and removed with nothing left.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EXEC_DIR, ensureBuilt, mountsContaining, run, tempDir, rmrf, unique, waitFor } from './helpers.ts';

const GANTRY_NET = join(EXEC_DIR, 'build', 'gantry-net');

type Answer = { id: number; ok: boolean; us?: number; error?: string; version?: number };

describe('gantry-net', () => {
  // everything happens inside a scratch netns (its own bridge), and netns files under a temp dir
  const scratch = unique('gxnet');
  let dir = '';
  let nsDir = '';

  /** Runs gantry-net in the scratch netns with one request per line; its answers. */
  function ask(...reqs: (Record<string, unknown> | string)[]): Answer[] {
    const input = `${reqs.map((r, i) => (typeof r === 'string' ? r : JSON.stringify({ id: i + 1, ...r }))).join('\n')}\n`;
    const r = run('nsenter', [`--net=/run/netns/${scratch}`, GANTRY_NET], { input });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Answer);
  }

  function inScratch(args: string[]): string {
    const r = run('ip', ['-n', scratch, ...args]);
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  }

  function inNs(path: string, args: string[]): string {
    const r = run('nsenter', [`--net=${path}`, ...args]);
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  }

  function hostLinks(): string[] {
    return (JSON.parse(inScratch(['-j', 'link', 'show'])) as { ifname: string }[]).map((l) => l.ifname).filter((n) => n.startsWith('gv'));
  }

  /** What a removed netns may have left: its mount, its file, host veth ends. */
  function leftovers(path: string): string {
    if (mountsContaining(path).length) return `${path} is still mounted`;
    if (existsSync(path)) return `${path} still exists`;
    const links = hostLinks();
    return links.length ? `host veths left: ${links.join(', ')}` : '';
  }

  before(() => {
    ensureBuilt();
    dir = tempDir('gxnet-');
    nsDir = join(dir, 'netns');
    mkdirSync(nsDir);
    assert.equal(run('ip', ['netns', 'add', scratch]).status, 0);
    inScratch(['link', 'add', 'br0', 'type', 'bridge']);
    inScratch(['addr', 'add', '10.77.0.1/24', 'dev', 'br0']);
    inScratch(['link', 'set', 'br0', 'up']);
  });

  after(() => {
    // netns mounts first (a failed test may leave some), then the scratch netns with every veth
    for (const m of mountsContaining(nsDir)) run('umount', ['-l', m]);
    run('ip', ['netns', 'del', scratch]);
    rmrf(dir);
  });

  const bridgeLink = (host: string, addr: string) => ({ host, peer: 'eth0', master: 'br0', alias: 'svc1', addr });

  test('net: create makes the netns with lo, veths (name, MAC, MTU, alias, address), bridge port and default route', async () => {
    const ns = join(nsDir, 'c1');
    const [a] = ask({
      op: 'create',
      netns: ns,
      gateway: '10.77.0.1',
      links: [bridgeLink('gvtest10', '10.77.0.2/24'), { host: 'gvtest11', peer: 'eth1', mtu: 1450, mac: '02:42:0a:fa:00:02', alias: 'net1', addr: '10.250.0.2/24' }],
    });
    assert.equal(a.ok, true, a.error);
    try {
      const links = JSON.parse(inNs(ns, ['ip', '-j', '-d', 'addr', 'show'])) as { ifname: string; operstate: string; flags: string[]; mtu: number; address: string; ifalias?: string; addr_info: { family: string; local: string; prefixlen: number }[] }[];
      const by = Object.fromEntries(links.map((l) => [l.ifname, l]));
      assert.deepEqual(Object.keys(by).sort(), ['eth0', 'eth1', 'lo']);
      assert.ok(by.lo.flags.includes('UP'), 'lo is up');
      assert.equal(by.eth0.operstate, 'UP');
      assert.deepEqual(by.eth0.addr_info.filter((x) => x.family === 'inet').map((x) => `${x.local}/${x.prefixlen}`), ['10.77.0.2/24']);
      assert.equal(by.eth1.mtu, 1450);
      assert.equal(by.eth1.address, '02:42:0a:fa:00:02');
      assert.deepEqual(by.eth1.addr_info.filter((x) => x.family === 'inet').map((x) => `${x.local}/${x.prefixlen}`), ['10.250.0.2/24']);
      const aliases = JSON.parse(inNs(ns, ['ip', '-j', 'link', 'show'])) as { ifname: string; ifalias?: string }[];
      assert.deepEqual(aliases.filter((l) => l.ifname !== 'lo').map((l) => `${l.ifname}=${l.ifalias}`).sort(), ['eth0=svc1', 'eth1=net1']);
      const route = JSON.parse(inNs(ns, ['ip', '-j', 'route', 'show', 'default'])) as { gateway: string; dev: string }[];
      assert.deepEqual(route.map((r) => `${r.gateway} ${r.dev}`), ['10.77.0.1 eth0']);
      const host = JSON.parse(inScratch(['-j', 'link', 'show', 'gvtest10'])) as { master?: string; operstate: string }[];
      assert.equal(host[0].master, 'br0');
      assert.equal(host[0].operstate, 'UP');
      const host1 = JSON.parse(inScratch(['-j', 'link', 'show', 'gvtest11'])) as { master?: string; mtu: number }[];
      assert.equal(host1[0].master, undefined);
      assert.equal(host1[0].mtu, 1450);
      // traffic: the container reaches its gateway on the bridge
      const ping = run('nsenter', [`--net=${ns}`, '/bin/busybox', 'ping', '-c1', '-W2', '10.77.0.1']);
      assert.equal(ping.status, 0, ping.stdout + ping.stderr);
    } finally {
      const [d] = ask({ op: 'delete', netns: ns });
      assert.equal(d.ok, true, d.error);
    }
    // the kernel removes the namespace and both veth ends in the background
    await waitFor(() => leftovers(ns) || null, 15_000);
  });

  test('net: delete with wait removes the veths before it answers; a second delete is a no-op', () => {
    const ns = join(nsDir, 'c2');
    const [a, d, again] = ask({ op: 'create', netns: ns, gateway: '10.77.0.1', links: [bridgeLink('gvtest20', '10.77.0.3/24')] }, { op: 'delete', netns: ns, wait: true }, { op: 'delete', netns: ns });
    assert.equal(a.ok, true, a.error);
    assert.equal(d.ok, true, d.error);
    assert.equal(again.ok, true, again.error);
    assert.equal(leftovers(ns), '');
  });

  test('net: a create that fails half-way (no such bridge for the second link) undoes everything and names the bridge', async () => {
    const ns = join(nsDir, 'c3');
    const [a] = ask({ op: 'create', netns: ns, links: [bridgeLink('gvtest30', '10.77.0.4/24'), { host: 'gvtest31', peer: 'eth1', master: 'nobr0' }] });
    assert.equal(a.ok, false);
    assert.match(a.error ?? '', /netns `.*\/c3`: bridge for veth `gvtest31`: find link `nobr0`: ENODEV/);
    await waitFor(() => leftovers(ns) || null, 15_000);
  });

  test('net: create refuses a netns path that exists, leaving it alone', () => {
    const ns = join(nsDir, 'c4');
    const [a, b] = ask({ op: 'create', netns: ns, links: [] }, { op: 'create', netns: ns, links: [] });
    try {
      assert.equal(a.ok, true, a.error);
      assert.equal(b.ok, false);
      assert.match(b.error ?? '', /create netns file `.*\/c4`: EEXIST/);
      assert.equal(mountsContaining(ns).length, 1, 'the first netns is still mounted');
    } finally {
      ask({ op: 'delete', netns: ns });
    }
    assert.equal(leftovers(ns), '');
  });

  test('net: a host veth left over under the same name is replaced', async () => {
    const ns = join(nsDir, 'c5');
    inScratch(['link', 'add', 'gvtest50', 'type', 'veth', 'peer', 'name', 'gvstray50']);
    const [a] = ask({ op: 'create', netns: ns, gateway: '10.77.0.1', links: [bridgeLink('gvtest50', '10.77.0.5/24')] });
    try {
      assert.equal(a.ok, true, a.error);
      assert.deepEqual(hostLinks(), ['gvtest50'], 'the stray pair is gone, the new host end is there');
      assert.match(inNs(ns, ['ip', '-br', 'addr', 'show', 'eth0']), /10\.77\.0\.5\/24/);
    } finally {
      ask({ op: 'delete', netns: ns, wait: true });
    }
    assert.equal(leftovers(ns), '');
  });

  test('net: rules given with create are the netns nat table; restore replaces them; a bad rule set is refused with its line', () => {
    const ns = join(nsDir, 'c6');
    const rules = (vip: string) => ['*nat', ':GANTRY-VIP - [0:0]', '-A OUTPUT -j GANTRY-VIP', `-A GANTRY-VIP -d ${vip}/32 -j DNAT --to-destination 10.250.0.9`, 'COMMIT', ''].join('\n');
    const [a] = ask({ op: 'create', netns: ns, links: [], rules: rules('10.250.0.100') });
    try {
      assert.equal(a.ok, true, a.error);
      assert.match(inNs(ns, ['iptables-save', '-t', 'nat']), /-A GANTRY-VIP -d 10\.250\.0\.100\/32 -j DNAT --to-destination 10\.250\.0\.9/);
      const [r, bad] = ask({ op: 'restore', netns: ns, input: rules('10.250.0.101') }, { op: 'restore', netns: ns, input: '*nat\n-A NOPE -j ACCEPT\nCOMMIT\n' });
      assert.equal(r.ok, true, r.error);
      const nat = inNs(ns, ['iptables-save', '-t', 'nat']);
      assert.match(nat, /-d 10\.250\.0\.101\/32/);
      assert.doesNotMatch(nat, /10\.250\.0\.100/);
      assert.equal(bad.ok, false);
      assert.match(bad.error ?? '', /netns `.*\/c6`: iptables-restore exited \d+: .*line 2 failed/s);
    } finally {
      ask({ op: 'delete', netns: ns });
    }
    assert.equal(leftovers(ns), '');
  });

  test('net: a create whose rules iptables-restore refuses fails with its message and leaves nothing', async () => {
    const ns = join(nsDir, 'c7');
    const [a] = ask({ op: 'create', netns: ns, gateway: '10.77.0.1', links: [bridgeLink('gvtest70', '10.77.0.7/24')], rules: '*nat\n-A NOPE -j ACCEPT\nCOMMIT\n' });
    assert.equal(a.ok, false);
    assert.match(a.error ?? '', /netns `.*\/c7`: iptables-restore exited \d+: .*line 2 failed/s);
    await waitFor(() => leftovers(ns) || null, 15_000);
  });

  test('net: bad requests are answered with an error naming what is wrong, and the helper keeps serving', () => {
    const answers = ask(
      'not json',
      { op: 'fly' },
      { op: 'create', netns: 'relative/path', links: [] },
      { op: 'create', netns: join(nsDir, 'x'), links: [{ host: 'a-name-much-too-long', peer: 'eth0' }] },
      { op: 'create', netns: join(nsDir, 'x'), links: [{ host: 'gvx0', peer: 'eth0', addr: '10.1.2.3' }] },
      { op: 'create', netns: join(nsDir, 'x'), links: [{ host: 'gvx0', peer: 'eth0', mac: '02:42:zz:00:00:01' }] },
      { op: 'create', netns: join(nsDir, 'x'), gateway: '10.1.2.300', links: [{ host: 'gvx0', peer: 'eth0' }] },
      { op: 'ping' },
    );
    assert.match(answers[0].error ?? '', /invalid JSON in request/);
    assert.match(answers[1].error ?? '', /unknown op "fly"/);
    assert.match(answers[2].error ?? '', /"netns" must be an absolute path/);
    assert.match(answers[3].error ?? '', /invalid interface name "a-name-much-too-long"/);
    assert.match(answers[4].error ?? '', /invalid address "10\.1\.2\.3" \(want a\.b\.c\.d\/n\)/);
    assert.match(answers[5].error ?? '', /invalid MAC "02:42:zz:00:00:01"/);
    assert.match(answers[6].error ?? '', /invalid IPv4 address "10\.1\.2\.300"/);
    assert.deepEqual(answers.slice(0, 7).map((x) => x.ok), [false, false, false, false, false, false, false]);
    assert.equal(answers[7].ok, true);
    assert.equal(answers[7].version, 1);
    assert.equal(leftovers(join(nsDir, 'x')), '');
    assert.equal(readFileSync('/proc/self/mountinfo', 'utf8').includes(nsDir), false);
  });
});
