// tests/monitor.test.ts — the per-container monitor driven against real runtimes (runc, and
// gantry-exec itself): logs, exit.json, attach.sock, tty, rotation, failed create, killed caller.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  GANTRY_EXEC, RUNC, baseSpec, cgroupsContaining, rmdirQuietly, ensureBuilt, killQuietly, makeBundle, pidAlive, processesContaining, rmrf, run,
  type Spec, tempDir, unique, waitFor, writeSpec,
} from './helpers.ts';

// crun 1.8 refuses this hybrid cgroup host unless the cgroup2 mount is gone from its mount namespace
const crunDir = tempDir('gx-crun');
const CRUN = join(crunDir, 'crun');
writeFileSync(CRUN, `#!/bin/sh\nexec unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun "$@"' crun "$@"\n`, { mode: 0o755 });
process.on('exit', () => rmrf(crunDir));
const RUNTIMES = [RUNC, CRUN, GANTRY_EXEC].filter((r) => r !== GANTRY_EXEC || process.env.GX_MONITOR_ONLY_RUNC !== '1');

before(() => ensureBuilt());

type Exit = { exitCode: number; signal: number | null; oomKilled: boolean; finishedAt: string };

for (const runtime of RUNTIMES) {
  const name = runtime === RUNC ? 'runc' : runtime === CRUN ? 'crun' : 'gantry-exec';
  describe(`monitor with ${name}`, () => {
    const dirs: string[] = [];
    const ids: string[] = [];
    let root = '';
    before(() => {
      root = tempDir('gx-mon-root');
      dirs.push(root);
    });
    after(() => {
      for (const id of ids) run(runtime, ['--root', root, 'delete', '--force', id]);
      for (const id of ids) for (const p of processesContaining(id)) killQuietly(p);
      for (const d of dirs) rmrf(d);
      for (const d of cgroupsContaining('gantry-test-mon')) rmdirQuietly(d);
    });

    function setup(args: string[], edit: (s: Spec) => void = () => {}) {
      const id = unique('mon');
      ids.push(id);
      const bundle = tempDir('gx-mon-bundle');
      const sdir = tempDir('gx-mon-state');
      dirs.push(bundle, sdir);
      const spec = baseSpec(args);
      edit(spec);
      makeBundle(bundle, spec);
      return { id, bundle, sdir };
    }
    const monitorArgs = (c: { id: string; bundle: string; sdir: string }, extra: string[] = []) => [
      'monitor', '--runtime', runtime, '--runtime-root', root, '--bundle', c.bundle, '--state-dir', c.sdir, ...extra, c.id,
    ];
    const exitOf = async (sdir: string): Promise<Exit> => {
      const f = join(sdir, 'exit.json');
      await waitFor(() => (existsSync(f) ? null : 'no exit.json yet'));
      return JSON.parse(readFileSync(f, 'utf8'));
    };
    const logLines = (sdir: string, file = 'ctr.log') =>
      readFileSync(join(sdir, file), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));

    test('monitor: create reports the pid, logs both streams in json-file format and records the exit code', async () => {
      const c = setup(['sh', '-c', 'echo hello; echo oops >&2; exit 3']);
      const r = run(GANTRY_EXEC, monitorArgs(c));
      assert.equal(r.status, 0, r.stderr);
      const pid = JSON.parse(r.stdout).pid;
      assert.ok(pid > 0);
      assert.equal(Number(readFileSync(join(c.sdir, 'container.pid'), 'utf8')), pid);
      const monPid = Number(readFileSync(join(c.sdir, 'monitor.pid'), 'utf8'));
      assert.ok(pidAlive(monPid), 'monitor runs while the container exists');
      assert.equal(run(runtime, ['--root', root, 'start', c.id]).status, 0);
      const ex = await exitOf(c.sdir);
      assert.equal(ex.exitCode, 3);
      assert.equal(ex.signal, null);
      assert.equal(ex.oomKilled, false);
      assert.match(ex.finishedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
      const lines = logLines(c.sdir);
      assert.deepEqual(lines.map((l) => `${l.stream}:${l.log}`).sort(), ['stderr:oops\n', 'stdout:hello\n']);
      for (const l of lines) assert.match(l.time, /Z$/);
      await waitFor(() => (pidAlive(monPid) ? 'monitor still running after exit' : null));
      assert.equal(run(runtime, ['--root', root, 'state', c.id]).status, 0, 'monitor does not delete the container');
    });

    test('monitor: a container killed by a signal reports 128+signal', async () => {
      const c = setup(['sleep', '100']);
      const r = run(GANTRY_EXEC, monitorArgs(c));
      assert.equal(r.status, 0, r.stderr);
      assert.equal(run(runtime, ['--root', root, 'start', c.id]).status, 0);
      assert.equal(run(runtime, ['--root', root, 'kill', c.id, 'KILL']).status, 0);
      const ex = await exitOf(c.sdir);
      assert.equal(ex.exitCode, 137);
      assert.equal(ex.signal, 9);
    });

    test('monitor: failed create exits 1 with the runtime error and leaves only create-error.txt', async () => {
      const c = setup(['/no/such/binary']);
      const r = run(GANTRY_EXEC, monitorArgs(c));
      assert.equal(r.status, 1);
      assert.match(r.stderr.trim(), /no\/such\/binary/);
      assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
      assert.deepEqual(readdirSync(c.sdir), ['create-error.txt']);
      assert.notEqual(run(runtime, ['--root', root, 'state', c.id]).status, 0, 'no runtime state left');
      await waitFor(() => (processesContaining(c.sdir).length ? `processes left: ${processesContaining(c.sdir)}` : null));
    });

    test('monitor: attach.sock streams live output and forwards stdin with --stdin', async () => {
      const c = setup(['sh', '-c', 'read line; echo "got $line"; sleep 0.2; echo bye']);
      const r = run(GANTRY_EXEC, monitorArgs(c, ['--stdin']));
      assert.equal(r.status, 0, r.stderr);
      const sock = createConnection(join(c.sdir, 'attach.sock'));
      let got = '';
      const closed = new Promise<void>((res) => sock.on('close', () => res()));
      sock.on('data', (d) => { got += d; });
      await new Promise<void>((res) => sock.on('connect', () => res()));
      assert.equal(run(runtime, ['--root', root, 'start', c.id]).status, 0);
      sock.write('ping\n');
      await closed;
      const lines = got.split('\n').filter(Boolean).map((l) => JSON.parse(l));
      assert.deepEqual(lines.map((l) => l.log), ['got ping\n', 'bye\n']);
      assert.equal((await exitOf(c.sdir)).exitCode, 0);
    });

    test('monitor: --tty receives the console and logs the terminal output', async () => {
      const c = setup(['sh', '-c', 'test -t 0 && echo is-a-tty'], (s) => { s.process.terminal = true; });
      const r = run(GANTRY_EXEC, monitorArgs(c, ['--tty']));
      assert.equal(r.status, 0, r.stderr);
      assert.ok(!existsSync(join(c.sdir, 'console.sock')), 'console socket removed once used');
      assert.equal(run(runtime, ['--root', root, 'start', c.id]).status, 0);
      assert.equal((await exitOf(c.sdir)).exitCode, 0);
      assert.equal(logLines(c.sdir).map((l) => l.log).join(''), 'is-a-tty\r\n');
    });

    test('monitor: a state dir path longer than a unix socket path still gets the console', async () => {
      const c = setup(['sh', '-c', 'test -t 1 && echo tty'], (s) => { s.process.terminal = true; });
      const deep = join(c.sdir, 'x'.repeat(60), 'y'.repeat(60));
      const r = run(GANTRY_EXEC, monitorArgs({ ...c, sdir: deep }, ['--tty']));
      assert.equal(r.status, 0, r.stderr);
      assert.equal(run(runtime, ['--root', root, 'start', c.id]).status, 0);
      assert.equal((await exitOf(deep)).exitCode, 0);
      assert.equal(logLines(deep).map((l) => l.log).join(''), 'tty\r\n');
    });

    test('monitor: rotates ctr.log at --log-max-size keeping --log-max-files', async () => {
      const c = setup(['sh', '-c', 'i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done']);
      const r = run(GANTRY_EXEC, monitorArgs(c, ['--log-max-size', '2000', '--log-max-files', '3']));
      assert.equal(r.status, 0, r.stderr);
      assert.equal(run(runtime, ['--root', root, 'start', c.id]).status, 0);
      await exitOf(c.sdir);
      const files = readdirSync(c.sdir).filter((f) => f.startsWith('ctr.log')).sort();
      assert.deepEqual(files, ['ctr.log', 'ctr.log.1', 'ctr.log.2']);
      for (const f of files) assert.ok(statSync(join(c.sdir, f)).size <= 2000, `${f} within max size`);
      const last = logLines(c.sdir).map((l) => l.log).join('');
      assert.match(last, /line-399\n$/);
    });

    test('monitor: survives its caller being SIGKILLed and still records the exit', async () => {
      const c = setup(['sh', '-c', 'sleep 0.3; exit 7']);
      const caller = spawn('sh', ['-c', `"$0" "$@"; sleep 100`, GANTRY_EXEC, ...monitorArgs(c)], {
        stdio: ['ignore', 'pipe', 'inherit'],
        detached: true,
      });
      const killCaller = () => killQuietly(-(caller.pid as number));
      try {
        await new Promise<void>((res) => caller.stdout.once('data', () => res()));
        killCaller();
        assert.equal(run(runtime, ['--root', root, 'start', c.id]).status, 0);
        assert.equal((await exitOf(c.sdir)).exitCode, 7);
      } finally {
        killCaller();
        caller.stdout.destroy();
      }
    });

    test('monitor: a killed monitor leaves the container running under the runtime', async () => {
      const c = setup(['sleep', '100']);
      const r = run(GANTRY_EXEC, monitorArgs(c));
      assert.equal(r.status, 0, r.stderr);
      const pid = JSON.parse(r.stdout).pid;
      assert.equal(run(runtime, ['--root', root, 'start', c.id]).status, 0);
      killQuietly(Number(readFileSync(join(c.sdir, 'monitor.pid'), 'utf8')));
      await new Promise((res) => setTimeout(res, 100));
      assert.ok(pidAlive(pid), 'container init still alive');
      assert.equal(JSON.parse(run(runtime, ['--root', root, 'state', c.id]).stdout).status, 'running');
      run(runtime, ['--root', root, 'kill', c.id, 'KILL']);
    });

    test('monitor: oomKilled is true when the memory limit kills the container', async () => {
      const c = setup(['sh', '-c', 'x=0123456789abcdef; while :; do x=$x$x; done'], (s) => {
        s.linux.resources.memory = { limit: 16 * 1024 * 1024, swap: 16 * 1024 * 1024 };
        s.linux.cgroupsPath = `/gantry-test-mon/${unique('oom')}`;
      });
      const r = run(GANTRY_EXEC, monitorArgs(c));
      assert.equal(r.status, 0, r.stderr);
      assert.equal(run(runtime, ['--root', root, 'start', c.id]).status, 0);
      const ex = await exitOf(c.sdir);
      assert.equal(ex.exitCode, 137);
      assert.equal(ex.oomKilled, true);
    });
  });
}

test('monitor: usage errors exit 2 and name the missing flag', () => {
  ensureBuilt();
  const r = run(GANTRY_EXEC, ['monitor', '--runtime', RUNC, 'x']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--bundle/);
});
void writeSpec;
