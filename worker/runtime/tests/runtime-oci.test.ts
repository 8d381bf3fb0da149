// Integration tests for OciRuntime with real containers (runc, crun and gantry-exec): lifecycle,
// logs, exit codes, stop grace, exec, overlay rootfs, surviving gantryd.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { OciRuntime } from '../runtime-oci.ts';
import type { LogEntry } from '../types.ts';
import {
  busyboxRootfs, CRUN, cgroupsContaining, containerConfig, GANTRY_EXEC, mountsContaining, processesContaining, RUNC,
  removeCgroups, requireRuntimes, rmrf, tempDir, unique, waitFor,
} from './fixtures.ts';

requireRuntimes();
const runtimes: { name: string; binary: string }[] = [
  { name: 'runc', binary: RUNC },
  { name: 'crun', binary: CRUN },
  { name: 'native', binary: GANTRY_EXEC },
];

function setup(t: { after(fn: () => unknown): void }, name: string, binary: string, o: { diskDir?: boolean } = {}) {
  const tmp = tempDir(`gantry-rt-${name}`);
  const cgroupParent = unique('gantry-test');
  const rt = new OciRuntime({
    name, binary, root: join(tmp, 'runtime', name), stateDir: join(tmp, 'containers'), monitorBinary: GANTRY_EXEC, cgroupParent,
    diskDir: o.diskDir ? join(tmp, 'disk') : undefined,
  });
  const rootfs = busyboxRootfs(join(tmp, 'busybox'));
  const made: string[] = [];
  t.after(async () => {
    for (const id of made) await rt.remove(id).catch(() => {});
    for (const id of made) for (const p of processesContaining(id)) process.kill(p, 'SIGKILL');
    removeCgroups(cgroupParent);
    for (const m of mountsContaining(tmp).reverse()) spawnSync('umount', ['-l', m]);
    rmrf(tmp);
  });
  const id = (p: string) => {
    const v = unique(p);
    made.push(v);
    return v;
  };
  return { tmp, rt, rootfs, cgroupParent, id };
}

async function collect(it: AsyncIterable<LogEntry>): Promise<LogEntry[]> {
  const out: LogEntry[] = [];
  for await (const e of it) out.push(e);
  return out;
}

test('runtime-oci: with a disk dir, writes and logs go there and the rest to the state dir; remove and the sweep clear both', { timeout: 60_000 }, async (t) => {
  const { rt, rootfs, id, tmp } = setup(t, 'native', GANTRY_EXEC, { diskDir: true });
  const cid = id('split');
  await rt.create(containerConfig(cid, { kind: 'layers', lowerDirs: [rootfs] }, ['sh', '-c', 'echo x > /written; echo said-it'], { readOnlyRootfs: false }));
  await rt.start(cid);
  assert.equal((await rt.wait(cid)).exitCode, 0);
  const disk = join(tmp, 'disk', cid);
  const state = join(tmp, 'containers', cid);
  assert.equal(readFileSync(join(disk, 'upper', 'written'), 'utf8'), 'x\n', 'the upper dir is in the disk dir');
  assert.match(readFileSync(join(disk, 'ctr.log'), 'utf8'), /said-it/, 'the log is in the disk dir');
  assert.ok(existsSync(join(state, 'meta.json')) && existsSync(join(state, 'exit.json')) && !existsSync(join(state, 'upper')) && !existsSync(join(state, 'ctr.log')));
  assert.deepEqual((await collect(rt.logs(cid, { follow: true, tail: -1, sinceMs: 0 }))).map((e) => e.data.toString()), ['said-it\n']);
  await rt.remove(cid);
  assert.ok(!existsSync(disk) && !existsSync(state), 'remove takes both');

  // a disk dir whose state is gone (the exec root is a tmpfs and the host rebooted) goes at the next start
  const orphan = join(tmp, 'disk', 'orphan1');
  mkdirSync(join(orphan, 'upper'), { recursive: true });
  const again = new OciRuntime({
    name: 'native', binary: GANTRY_EXEC, root: join(tmp, 'runtime', 'native'), stateDir: join(tmp, 'containers'), diskDir: join(tmp, 'disk'),
    monitorBinary: GANTRY_EXEC, cgroupParent: unique('gantry-test'),
  });
  assert.deepEqual(await again.list(), []);
  assert.ok(!existsSync(orphan), 'the orphaned disk dir was swept');
});

for (const r of runtimes) {
  test(`runtime-oci(${r.name}): create, start, logs, exit code, remove leaves nothing`, { timeout: 60_000 }, async (t) => {
    const { rt, rootfs, cgroupParent, id, tmp } = setup(t, r.name, r.binary);
    const cid = id('life');
    await rt.create(containerConfig(cid, { kind: 'dir', path: rootfs }, ['sh', '-c', 'echo out-$HOSTNAME; echo err >&2; exit 3'], { hostname: 'box1' }));
    assert.equal((await rt.state(cid)).status, 'created');
    assert.ok(cgroupsContaining(cgroupParent).length > 0, 'container cgroup exists');
    await rt.start(cid);
    const st = await rt.wait(cid);
    assert.equal(st.status, 'stopped');
    assert.equal(st.exitCode, 3);
    const logs = await collect(rt.logs(cid, { follow: false, tail: -1, sinceMs: 0 }));
    assert.deepEqual(logs.map((l) => [l.stream, l.data.toString()]).sort(), [['stderr', 'err\n'], ['stdout', 'out-box1\n']]);
    const tail = await collect(rt.logs(cid, { follow: false, tail: 1, sinceMs: 0 }));
    assert.equal(tail.length, 1);
    assert.deepEqual((await rt.list()).map((s) => [s.id, s.status, s.exitCode]), [[cid, 'stopped', 3]]);
    await rt.remove(cid);
    await rt.remove(cid); // idempotent
    assert.equal((await rt.state(cid)).status, 'unknown');
    assert.deepEqual(mountsContaining(tmp), []);
    assert.deepEqual(cgroupsContaining(cid), []);
    assert.deepEqual(processesContaining(cid), []);
    assert.ok(!existsSync(join(tmp, 'containers', cid)));
  });

  test(`runtime-oci(${r.name}): stop sends the stop signal, then SIGKILL after the grace`, { timeout: 60_000 }, async (t) => {
    const { rt, rootfs, id } = setup(t, r.name, r.binary);
    const polite = id('polite');
    const stubborn = id('stubborn');
    await rt.create(containerConfig(polite, { kind: 'dir', path: rootfs }, ['sh', '-c', "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.05; done"]));
    await rt.create(containerConfig(stubborn, { kind: 'dir', path: rootfs }, ['sh', '-c', "trap '' TERM; echo ready; while true; do sleep 0.05; done"]));
    await rt.start(polite);
    await rt.start(stubborn);
    for (const c of [polite, stubborn]) {
      await waitFor(async () => ((await collect(rt.logs(c, { follow: false, tail: -1, sinceMs: 0 }))).length ? null : `${c} not ready`));
      assert.equal((await rt.state(c)).status, 'running');
    }
    const a = await rt.stop(polite, 20_000);
    assert.equal(a.exitCode, 0, 'exited on SIGTERM by itself');
    const b = await rt.stop(stubborn, 300);
    assert.equal(b.exitCode, 137, 'killed after the grace');
    const logs = await collect(rt.logs(polite, { follow: false, tail: -1, sinceMs: 0 }));
    assert.deepEqual(logs.map((l) => l.data.toString()), ['ready\n', 'bye\n']);
  });

  test(`runtime-oci(${r.name}): follow streams live lines; exec runs in the container`, { timeout: 60_000 }, async (t) => {
    const { rt, rootfs, id } = setup(t, r.name, r.binary);
    const cid = id('follow');
    await rt.create(containerConfig(cid, { kind: 'dir', path: rootfs }, ['sh', '-c', 'echo first; read x < /dev/null; sleep 0.3; for i in 1 2 3; do echo line$i; sleep 0.1; done; sleep 1000']));
    await rt.start(cid);
    const ac = new AbortController();
    const got: string[] = [];
    for await (const e of rt.logs(cid, { follow: true, tail: -1, sinceMs: 0, signal: ac.signal })) {
      got.push(e.data.toString());
      if (got.length === 4) ac.abort();
    }
    assert.deepEqual(got, ['first\n', 'line1\n', 'line2\n', 'line3\n']);
    const ex = await rt.exec(cid, ['sh', '-c', 'echo in-$(hostname); exit 2'], 10_000);
    assert.equal(ex.exitCode, 2);
    assert.match(ex.output, /in-/);
    const st = await rt.stop(cid, 200);
    assert.equal(st.status, 'stopped');
  });

  test(`runtime-oci(${r.name}): overlay rootfs over layers keeps the lower dir clean`, { timeout: 60_000 }, async (t) => {
    const { rt, rootfs, id, tmp } = setup(t, r.name, r.binary);
    const cid = id('layers');
    await rt.create(containerConfig(cid, { kind: 'layers', lowerDirs: [rootfs] }, ['sh', '-c', 'echo x > /written; cat /etc/hosts /made/by/gantry.txt'], {
      // the second target is in no image: the runtime (or gantryd, for runc/crun) makes it in the upper dir
      files: [{ path: '/etc/hosts', content: '127.0.0.1 gantry-test\n' }, { path: '/made/by/gantry.txt', content: 'made-target\n' }], user: 'nobody', readOnlyRootfs: false,
    }));
    await rt.start(cid);
    const st = await rt.wait(cid);
    const logs = (await collect(rt.logs(cid, { follow: false, tail: -1, sinceMs: 0 }))).map((l) => l.data.toString()).join('');
    assert.match(logs, /127\.0\.0\.1 gantry-test/);
    assert.match(logs, /made-target/, 'a file bound where the image has none');
    assert.ok(!existsSync(join(rootfs, 'made')), 'the missing target was made in the container, not in the image');
    assert.ok(!existsSync(join(tmp, 'containers', cid, 'upper', 'made')), 'the target came from the shared targets layer, not the upper dir');
    assert.match(logs, /Permission denied/, 'runs as nobody, cannot write /');
    assert.equal(st.exitCode, 0);
    assert.ok(!existsSync(join(rootfs, 'written')));
    assert.ok(!existsSync(join(rootfs, 'etc', 'hosts')) || !readFileSync(join(rootfs, 'etc', 'hosts'), 'utf8').includes('gantry-test'));
    await rt.remove(cid);
    assert.deepEqual(mountsContaining(tmp), []);
  });

  test(`runtime-oci(${r.name}): logs rotate at the size limit; reading and following span the rotated files`, { timeout: 60_000 }, async (t) => {
    const { rt, rootfs, id, tmp } = setup(t, r.name, r.binary);
    const cid = id('rotate');
    // 150 lines of ~75 bytes of JSON into 4 KiB files, 5 kept: two or more rotations, nothing dropped.
    await rt.create(containerConfig(cid, { kind: 'dir', path: rootfs }, ['sh', '-c', 'sleep 0.3; i=0; while [ $i -lt 150 ]; do echo line$i; i=$((i+1)); done; sleep 0.2; echo last'], { logMaxBytes: 4096, logMaxFiles: 5 }));
    const followed: string[] = [];
    await rt.start(cid);
    for await (const e of rt.logs(cid, { follow: true, tail: -1, sinceMs: 0 })) followed.push(e.data.toString().trim());
    const st = await rt.wait(cid);
    assert.equal(st.exitCode, 0);
    const want = [...Array.from({ length: 150 }, (_, i) => `line${i}`), 'last'];
    assert.deepEqual(followed, want, 'follow saw every line once, in order, and ended with the container');
    assert.ok(existsSync(join(tmp, 'containers', cid, 'ctr.log.2')), 'the log rotated at least twice');
    const all = (await collect(rt.logs(cid, { follow: false, tail: -1, sinceMs: 0 }))).map((e) => e.data.toString().trim());
    assert.deepEqual(all, want);
    const tail = (await collect(rt.logs(cid, { follow: false, tail: 3, sinceMs: 0 }))).map((e) => e.data.toString().trim());
    assert.deepEqual(tail, ['line148', 'line149', 'last']);
  });

  test(`runtime-oci(${r.name}): limits land in the container's cgroup; kill delivers a signal`, { timeout: 60_000 }, async (t) => {
    const { rt, rootfs, id, cgroupParent } = setup(t, r.name, r.binary);
    const cid = id('limits');
    await rt.create(containerConfig(cid, { kind: 'dir', path: rootfs }, ['sh', '-c', "trap 'echo got-usr1' USR1; echo ready; while true; do sleep 0.05; done"], {
      limits: { memoryBytes: 48 << 20, nanoCpus: 5e8, pidsLimit: 77 },
    }));
    const cg = (ctrl: string, file: string) => readFileSync(join('/sys/fs/cgroup', ctrl, cgroupParent, cid, file), 'utf8').trim();
    if (existsSync('/sys/fs/cgroup/memory')) { // cgroup v1 (or hybrid)
      assert.equal(cg('memory', 'memory.limit_in_bytes'), String(48 << 20));
      assert.equal(cg('pids', 'pids.max'), '77');
      assert.equal(cg('cpu', 'cpu.cfs_quota_us'), '50000');
      assert.equal(cg('cpu', 'cpu.cfs_period_us'), '100000');
    } else { // unified
      assert.equal(cg('', 'memory.max'), String(48 << 20));
      assert.equal(cg('', 'pids.max'), '77');
      assert.equal(cg('', 'cpu.max'), '50000 100000');
    }
    await rt.start(cid);
    const lines = async () => (await collect(rt.logs(cid, { follow: false, tail: -1, sinceMs: 0 }))).map((e) => e.data.toString());
    await waitFor(async () => ((await lines()).includes('ready\n') ? null : 'not ready'));
    await rt.kill(cid, 'SIGUSR1');
    await waitFor(async () => ((await lines()).includes('got-usr1\n') ? null : `logs: ${(await lines()).join('|')}`));
    assert.equal((await rt.state(cid)).status, 'running');
    await rt.kill(cid, 'SIGKILL');
    assert.equal((await rt.wait(cid)).exitCode, 137);
  });

  test(`runtime-oci(${r.name}): a tty container logs its terminal output`, { timeout: 60_000 }, async (t) => {
    const { rt, rootfs, id } = setup(t, r.name, r.binary);
    const cid = id('tty');
    await rt.create(containerConfig(cid, { kind: 'dir', path: rootfs }, ['sh', '-c', 'test -t 1 && echo on-a-tty $TERM'], { tty: true }));
    await rt.start(cid);
    assert.equal((await rt.wait(cid)).exitCode, 0);
    const out = (await collect(rt.logs(cid, { follow: false, tail: -1, sinceMs: 0 }))).map((e) => e.data.toString()).join('');
    assert.equal(out.replace(/\r/g, ''), 'on-a-tty xterm\n');
  });

  test(`runtime-oci(${r.name}): Docker's confinement: default caps, a seccomp filter, no unshare, masked and read-only /proc`, { timeout: 60_000 }, async (t) => {
    const { rt, rootfs, id } = setup(t, r.name, r.binary);
    const cid = id('confine');
    const script = [
      'grep -E "CapEff|Seccomp:" /proc/self/status',
      'unshare -n true 2>/dev/null && echo unshare=allowed || echo unshare=denied',
      'echo kcore=$(head -c 1 /proc/kcore | wc -c)',
      '(echo 1 > /proc/sys/kernel/domainname) 2>/dev/null && echo procsys=writable || echo procsys=readonly',
      'echo nofile=$(ulimit -n)',
    ].join('; ');
    await rt.create(containerConfig(cid, { kind: 'dir', path: rootfs }, ['sh', '-c', script]));
    await rt.start(cid);
    await rt.wait(cid);
    const out = (await collect(rt.logs(cid, { follow: false, tail: -1, sinceMs: 0 }))).map((e) => e.data.toString()).join('');
    assert.match(out, /CapEff:\s+00000000a80425fb/, "Docker's default capability set");
    assert.match(out, /Seccomp:\s+2/, 'a seccomp filter is installed');
    assert.match(out, /unshare=denied/);
    assert.match(out, /kcore=0/);
    assert.match(out, /procsys=readonly/);
    assert.match(out, /nofile=\d+/);
  });

  test(`runtime-oci(${r.name}): a failed create says why and leaves nothing`, { timeout: 60_000 }, async (t) => {
    const { rt, rootfs, id, tmp, cgroupParent } = setup(t, r.name, r.binary);
    const cid = id('bad');
    await assert.rejects(rt.create(containerConfig(cid, { kind: 'dir', path: rootfs }, ['/no/such/binary'])), (e: Error) => {
      assert.match(e.message, new RegExp(`create container ${cid}.*no/such/binary|no such file`, 'i'));
      return true;
    });
    assert.ok(!existsSync(join(tmp, 'containers', cid)));
    assert.deepEqual(cgroupsContaining(cgroupParent).filter((c) => c.includes(cid)), []);
    assert.deepEqual(await rt.list(), []);
  });
}

test('runtime-oci(runc): the container outlives the process that created it, and is re-adopted', { timeout: 60_000 }, async (t) => {
  const { rt, rootfs, id, tmp, cgroupParent } = setup(t, 'runc', RUNC);
  const cid = id('survive');
  const script = `
    import { OciRuntime } from ${JSON.stringify(new URL('../runtime-oci.ts', import.meta.url).pathname)};
    const rt = new OciRuntime({ name: 'runc', binary: ${JSON.stringify(RUNC)}, root: ${JSON.stringify(join(tmp, 'runtime', 'runc'))},
      stateDir: ${JSON.stringify(join(tmp, 'containers'))}, monitorBinary: ${JSON.stringify(GANTRY_EXEC)}, cgroupParent: ${JSON.stringify(cgroupParent)} });
    await rt.create({ id: ${JSON.stringify(cid)}, rootfs: { kind: 'dir', path: ${JSON.stringify(rootfs)} },
      args: ['sh', '-c', "trap 'echo term; exit 7' TERM; echo alive; while true; do sleep 0.05; done"], env: [], cwd: '/', user: '',
      hostname: 'h', tty: false, readOnlyRootfs: false, capAdd: [], capDrop: [], limits: {}, mounts: [], network: { mode: 'none' },
      stopSignal: 'SIGTERM', labels: { task: 't1' } });
    await rt.start(${JSON.stringify(cid)});
    process.stdout.write('started\\n');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => child.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d) => String(d).includes('started') && resolve());
    child.on('exit', (c) => reject(new Error(`creator exited ${c}`)));
  });
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  const list = await rt.list();
  assert.deepEqual(list.map((s) => [s.id, s.status]), [[cid, 'running']]);
  assert.deepEqual((await rt.meta(cid))?.labels, { task: 't1' });
  const waited = rt.wait(cid);
  const st = await rt.stop(cid, 10_000);
  assert.equal(st.exitCode, 7);
  assert.equal((await waited).exitCode, 7);
  const logs = (await collect(rt.logs(cid, { follow: false, tail: -1, sinceMs: 0 }))).map((l) => l.data.toString());
  assert.deepEqual(logs, ['alive\n', 'term\n']);
});

test('runtime-oci(runc): wait still ends when the monitor was killed (exit code lost)', { timeout: 60_000 }, async (t) => {
  const { rt, rootfs, id, tmp } = setup(t, 'runc', RUNC);
  const cid = id('nomon');
  await rt.create(containerConfig(cid, { kind: 'dir', path: rootfs }, ['sleep', '1000']));
  await rt.start(cid);
  const monPid = Number(readFileSync(join(tmp, 'containers', cid, 'monitor.pid'), 'utf8'));
  process.kill(monPid, 'SIGKILL');
  await waitFor(() => (processesContaining(String(monPid)).length === 0 && !existsSync(`/proc/${monPid}/stat`) ? null : 'monitor alive'));
  assert.equal((await rt.state(cid)).status, 'running');
  const waited = rt.wait(cid);
  await rt.kill(cid, 'SIGKILL');
  const st = await waited;
  assert.equal(st.status, 'stopped');
  assert.equal(st.exitCode, undefined);
  await rt.remove(cid);
  assert.deepEqual(mountsContaining(tmp), []);
});

test('runtime-oci: after switching runtimes, containers of the old one are still listed, stopped and removed through it', { timeout: 60_000 }, async (t) => {
  const { rt, rootfs, id, tmp, cgroupParent } = setup(t, 'runc', RUNC);
  const cid = id('switch');
  await rt.create(containerConfig(cid, { kind: 'dir', path: rootfs }, ['sh', '-c', "trap 'exit 5' TERM; while true; do sleep 0.05; done"]));
  await rt.start(cid);
  const other = new OciRuntime({ name: 'crun', binary: CRUN, root: join(tmp, 'runtime', 'crun'), stateDir: join(tmp, 'containers'), monitorBinary: GANTRY_EXEC, cgroupParent });
  assert.deepEqual((await other.list()).map((s) => [s.id, s.status]), [[cid, 'running']]);
  assert.equal((await other.exec(cid, ['true'], 10_000)).exitCode, 0);
  assert.equal((await other.stop(cid, 10_000)).exitCode, 5);
  await other.remove(cid);
  assert.deepEqual(await rt.list(), []);
  assert.deepEqual(cgroupsContaining(cid), []);
});
