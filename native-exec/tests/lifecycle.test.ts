// tests/lifecycle.test.ts — gantry-exec's OCI lifecycle end to end on real namespaces and
// cgroups: create/start/state/kill/delete, run exit codes, exec, signals, tty, hooks, list/ps.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GANTRY_EXEC, Harness, PROBE, pidAlive, tempDir, waitFor } from './helpers.ts';

describe('gantry-exec lifecycle', () => {
  const h = new Harness();
  after(() => h.cleanup());

  test('lifecycle: create, start, state, kill and delete move through created/running/stopped and leave nothing', async () => {
    const { id, bundle } = h.bundle(['sleep', '100'], (s) => { s.annotations = { 'gantry.task': 't1' }; });
    const pidFile = join(bundle, 'init.pid');
    const c = h.gx(['create', '--bundle', bundle, '--pid-file', pidFile, id]);
    assert.equal(c.status, 0, c.stderr);
    const st = h.state(id);
    assert.equal(st.status, 'created');
    assert.equal(st.id, id);
    assert.equal(st.bundle, bundle);
    assert.deepEqual(st.annotations, { 'gantry.task': 't1' });
    assert.equal(st.ociVersion, '1.0.2');
    assert.equal(Number(readFileSync(pidFile, 'utf8')), st.pid);
    assert.notEqual(h.gx(['create', '--bundle', bundle, id]).status, 0, 'a second create with the same id fails');
    assert.equal(h.gx(['start', id]).status, 0);
    assert.equal(h.state(id).status, 'running');
    const again = h.gx(['start', id]);
    assert.notEqual(again.status, 0);
    assert.match(again.stderr, /is running, not created/);
    assert.match(h.gx(['list']).stdout, new RegExp(`${id}\\t${st.pid}\\trunning`));
    assert.deepEqual(JSON.parse(h.gx(['ps', '--format', 'json', id]).stdout), [st.pid]);
    const del = h.gx(['delete', id]);
    assert.notEqual(del.status, 0, 'delete refuses a running container');
    assert.match(del.stderr, /is running/);
    assert.equal(h.gx(['kill', id, 'KILL']).status, 0);
    await waitFor(() => (h.state(id).status === 'stopped' ? null : 'still running'));
    assert.equal(h.gx(['delete', id]).status, 0);
    assert.deepEqual(h.leftovers(id, bundle), []);
    const gone = h.gx(['state', id]);
    assert.notEqual(gone.status, 0);
    assert.match(gone.stderr, /does not exist/);
  });

  test('lifecycle: run returns the exit code and removes the container', () => {
    const { id, bundle } = h.bundle(['sh', '-c', 'echo out; echo err >&2; exit 42']);
    const r = h.gx(['run', '--bundle', bundle, id]);
    assert.equal(r.status, 42);
    assert.equal(r.stdout, 'out\n');
    assert.equal(r.stderr, 'err\n');
    assert.deepEqual(h.leftovers(id, bundle), []);
  });

  test('lifecycle: the process sees its configured identity, cwd, env, rlimits and oom score', () => {
    const { id, bundle } = h.bundle(['/bin/probe'], (s) => {
      s.hostname = 'probe-host';
      s.process.user = { uid: 1000, gid: 1000, additionalGids: [10, 20] };
      s.process.cwd = '/tmp';
      s.process.rlimits = [{ type: 'RLIMIT_NOFILE', soft: 512, hard: 768 }];
      s.process.oomScoreAdj = 100;
    });
    const r = h.gx(['run', '--bundle', bundle, id]);
    assert.equal(r.status, 0, r.stderr);
    const p = JSON.parse(r.stdout);
    assert.equal(p.hostname, 'probe-host');
    assert.equal(p.uid, 1000);
    assert.equal(p.gid, 1000);
    assert.deepEqual(p.groups, [10, 20]);
    assert.equal(p.cwd, '/tmp');
    assert.deepEqual(p.nofile, [512, 768]);
    assert.equal(p.oomScoreAdj, '100');
    assert.equal(p.pid, 1);
    assert.equal(p.noNewPrivs, '1');
    // CAP_KILL(5), CAP_NET_BIND_SERVICE(10), CAP_AUDIT_WRITE(29): a non-root user keeps none effective unless ambient
    assert.equal(p.capBnd, '0000000020000420');
  });

  test('lifecycle: a non-root user keeps ambient capabilities, and only those in the sets', () => {
    const { id, bundle } = h.bundle(['/bin/probe'], (s) => {
      s.process.user = { uid: 1000, gid: 1000 };
      const caps = ['CAP_NET_BIND_SERVICE', 'CAP_KILL'];
      s.process.capabilities = { bounding: caps, effective: caps, permitted: caps, inheritable: ['CAP_NET_BIND_SERVICE'], ambient: ['CAP_NET_BIND_SERVICE'] };
    });
    const r = h.gx(['run', '--bundle', bundle, id]);
    assert.equal(r.status, 0, r.stderr);
    const p = JSON.parse(r.stdout);
    assert.equal(p.capBnd, '0000000000000420', 'CAP_KILL(5) and CAP_NET_BIND_SERVICE(10)');
    assert.equal(p.capAmb, '0000000000000400');
    assert.equal(p.capEff, '0000000000000400', 'after execve a non-root user keeps only the ambient set');
  });

  test('exec: runs in the container namespaces, returns its exit code and accepts --process', async () => {
    const { id, bundle } = h.bundle(['sleep', '100'], (s) => { s.hostname = 'exec-host'; });
    assert.equal(h.gx(['create', '--bundle', bundle, id]).status, 0);
    assert.equal(h.gx(['start', id]).status, 0);
    const r = h.gx(['exec', id, 'sh', '-c', 'hostname; cat /proc/1/cmdline | tr "\\0" " "; exit 5']);
    assert.equal(r.status, 5, r.stderr);
    assert.equal(r.stdout, 'exec-host\nsleep 100 ');
    const proc = join(bundle, 'process.json');
    writeFileSync(proc, JSON.stringify({ args: ['/bin/probe'], cwd: '/dev', env: ['PATH=/bin'], user: { uid: 7, gid: 8 } }));
    const p = h.gx(['exec', '--process', proc, id]);
    assert.equal(p.status, 0, p.stderr);
    const seen = JSON.parse(p.stdout);
    assert.equal(seen.uid, 7);
    assert.equal(seen.gid, 8);
    assert.equal(seen.cwd, '/dev');
    assert.equal(seen.hostname, 'exec-host');
    assert.deepEqual(JSON.parse(h.gx(['ps', '--format', 'json', id]).stdout).length, 1, 'exec processes have exited');
    const bad = h.gx(['exec', id, 'no-such-cmd']);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /no-such-cmd.*not found/);
    assert.equal(h.gx(['delete', '--force', id]).status, 0);
    assert.deepEqual(h.leftovers(id, bundle), []);
  });

  test('kill: signal names with and without SIG, numbers, and --all', async () => {
    for (const sig of ['TERM', 'SIGTERM', '15']) {
      const { id, bundle } = h.bundle(['sh', '-c', 'trap "exit 42" TERM; echo ready; while :; do sleep 0.05; done']);
      const running = h.gxAsync(['run', '--bundle', bundle, id]);
      await waitFor(() => {
        const r = h.gx(['state', id]);
        return r.status === 0 && JSON.parse(r.stdout).status === 'running' ? null : 'not running yet';
      });
      await new Promise((r) => setTimeout(r, 100)); // let the shell install its trap
      assert.equal(h.gx(['kill', id, sig]).status, 0);
      const res = await running;
      assert.equal(res.status, 42, `signal ${sig}: ${res.stderr}`);
      assert.deepEqual(h.leftovers(id, bundle), []);
    }
    const { id, bundle } = h.bundle(['sh', '-c', 'sleep 100 & sleep 100']);
    const running = h.gxAsync(['run', '--bundle', bundle, id]);
    await waitFor(() => {
      const r = h.gx(['ps', '--format', 'json', id]);
      return r.status === 0 && JSON.parse(r.stdout).length === 2 ? null : `ps: ${r.stdout}`;
    });
    const bad = h.gx(['kill', id, 'NOPE']);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /unknown signal `NOPE`/);
    assert.equal(h.gx(['kill', '--all', id, '9']).status, 0);
    assert.equal((await running).status, 137);
  });

  test('tty: the console socket receives a pty master and the process has a terminal', async () => {
    const { id, bundle } = h.bundle(['/bin/probe'], (s) => {
      s.process.terminal = true;
      s.process.consoleSize = { height: 30, width: 100 };
    });
    const sock = join(bundle, 'console.sock');
    const server = spawn(PROBE, ['--recv-console', sock], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    server.stdout.on('data', (d) => { out += d; });
    try {
      await waitFor(() => (out.includes('listening') ? null : 'console server not listening'));
      const c = h.gx(['create', '--bundle', bundle, '--console-socket', sock, id]);
      assert.equal(c.status, 0, c.stderr);
      assert.equal(h.gx(['start', id]).status, 0);
      await waitFor(() => (out.includes('"paths"') ? null : `no probe output yet: ${out}`));
      const seen = JSON.parse(out.slice(out.indexOf('{')).trim());
      assert.deepEqual(seen.isatty, [1, 1, 1]);
      assert.deepEqual(seen.winsize, [30, 100], 'consoleSize');
    } finally {
      server.kill('SIGKILL');
      h.gx(['delete', '--force', id]);
    }
    assert.deepEqual(h.leftovers(id, bundle), []);
  });

  test('hooks: each kind runs with the state on stdin, in order, and a failing prestart hook fails create cleanly', async () => {
    const out = tempDir('gx-hooks');
    h.dirs.push(out);
    const kinds = ['prestart', 'createRuntime', 'createContainer', 'poststart', 'poststop'];
    const { id, bundle } = h.bundle(['true'], (s) => {
      s.root.readonly = false;
      s.hooks = {};
      for (const k of kinds) s.hooks[k] = [{ path: '/bin/sh', args: ['sh', '-c', `cat > ${out}/${k}.json; date +%s%N >> ${out}/order; echo ${k} >> ${out}/order`] }];
      s.hooks.startContainer = [{ path: '/bin/sh', args: ['sh', '-c', 'cat > /tmp/startContainer.json'] }];
    });
    const r = h.gx(['run', '--bundle', bundle, id]);
    assert.equal(r.status, 0, r.stderr);
    for (const k of kinds) {
      const st = JSON.parse(readFileSync(join(out, `${k}.json`), 'utf8'));
      assert.equal(st.id, id, `${k} got the state`);
      assert.ok(st.pid > 0 || k === 'poststop');
    }
    assert.equal(JSON.parse(readFileSync(join(bundle, 'rootfs/tmp/startContainer.json'), 'utf8')).id, id);
    const order = readFileSync(join(out, 'order'), 'utf8').split('\n').filter((l) => /^[a-z]/i.test(l));
    assert.deepEqual(order, kinds);

    const slow = h.bundle(['true'], (s) => { s.hooks = { createRuntime: [{ path: '/bin/sleep', args: ['sleep', '30'], timeout: 1 }] }; });
    const t = h.gx(['create', '--bundle', slow.bundle, slow.id]);
    assert.equal(t.status, 1);
    assert.match(t.stderr, /createRuntime hook `\/bin\/sleep` timed out after 1s/);
    assert.deepEqual(h.leftovers(slow.id, slow.bundle), []);

    const failing = h.bundle(['true'], (s) => { s.hooks = { prestart: [{ path: '/bin/false' }] }; });
    const f = h.gx(['create', '--bundle', failing.bundle, failing.id]);
    assert.equal(f.status, 1);
    assert.match(f.stderr, /prestart hook `\/bin\/false` exited with status 1/);
    assert.deepEqual(h.leftovers(failing.id, failing.bundle), []);
  });

  test('lifecycle: a SIGKILLed run takes its container along; delete --force removes the rest', async () => {
    const { id, bundle } = h.bundle(['sleep', '100']);
    const caller = spawn(GANTRY_EXEC, ['--root', h.root, 'run', '--bundle', bundle, id], { stdio: 'ignore' });
    let pid = 0;
    await waitFor(() => {
      const r = h.gx(['state', id]);
      if (r.status !== 0) return 'no state yet';
      pid = JSON.parse(r.stdout).pid;
      return null;
    });
    caller.kill('SIGKILL');
    await waitFor(() => (pidAlive(pid) ? 'container init still alive' : null));
    assert.equal(h.gx(['state', id]).status, 0, 'state is left for delete');
    assert.equal(h.gx(['delete', '--force', id]).status, 0);
    assert.deepEqual(h.leftovers(id, bundle), []);
  });

  test('lifecycle: delete --force cleans a half-made container (state dir with only the config copy)', () => {
    const { id, bundle } = h.bundle(['true']);
    mkdirSync(join(h.root, id));
    writeFileSync(join(h.root, id, 'config.json'), readFileSync(join(bundle, 'config.json')));
    mkdirSync(`/sys/fs/cgroup/pids/${id}`);
    assert.equal(h.gx(['delete', '--force', id]).status, 0);
    assert.deepEqual(h.leftovers(id, bundle), []);
  });

  test('lifecycle: --log-format json reports an error as one JSON object', () => {
    const r = h.gx(['--log-format', 'json', 'state', 'no-such-container']);
    assert.equal(r.status, 1);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1);
    const e = JSON.parse(lines[0]);
    assert.equal(e.level, 'error');
    assert.match(e.msg, /container `no-such-container` does not exist/);
  });

  test('lifecycle: a pid file and state survive the caller; delete --force of an unknown id succeeds', () => {
    assert.equal(h.gx(['delete', '--force', 'never-existed']).status, 0);
    void existsSync;
  });
});
