// tests/monitor-last-line.test.ts — the monitor's promise that every byte a container wrote before
// its exit is in ctr.log before exit.json appears, under attach clients coming and going and rotation.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  GANTRY_EXEC, RUNC, baseSpec, cgroupsContaining, ensureBuilt, killQuietly, makeBundle, processesContaining, rmdirQuietly, rmrf, run,
  type Spec, tempDir, unique, waitFor,
} from './helpers.ts';

type LogEntry = { log: string; stream: string; time: string };

before(() => ensureBuilt());

for (const runtime of [GANTRY_EXEC, RUNC]) {
  const name = runtime === RUNC ? 'runc' : 'gantry-exec';
  describe(`monitor with ${name}: the last line`, () => {
    const dirs: string[] = [];
    const ids: string[] = [];
    const stopped: number[] = [];
    let root = '';
    before(() => {
      root = tempDir('gx-mll-root');
      dirs.push(root);
    });
    after(() => {
      for (const p of stopped) killQuietly(p, 'SIGCONT');
      for (const id of ids) run(runtime, ['--root', root, 'delete', '--force', id]);
      for (const id of ids) for (const p of processesContaining(id)) killQuietly(p);
      for (const d of dirs) rmrf(d);
      for (const id of ids) for (const d of cgroupsContaining(id)) rmdirQuietly(d);
    });

    /** A container (bundle + state dir) whose /tmp is a host dir the test can signal through. */
    function setup(script: string, edit: (s: Spec) => void = () => {}) {
      const id = unique('mll');
      ids.push(id);
      const bundle = tempDir('gx-mll-bundle');
      const sdir = tempDir('gx-mll-state');
      const sync = tempDir('gx-mll-sync');
      dirs.push(bundle, sdir, sync);
      const spec = baseSpec(['sh', '-c', script]);
      spec.mounts.push({ destination: '/tmp', type: 'bind', source: sync, options: ['rbind', 'rw'] });
      edit(spec);
      makeBundle(bundle, spec);
      return { id, bundle, sdir, sync };
    }
    function startMonitor(c: { id: string; bundle: string; sdir: string }, extra: string[]): number {
      const r = run(GANTRY_EXEC, ['monitor', '--runtime', runtime, '--runtime-root', root, '--bundle', c.bundle, '--state-dir', c.sdir, ...extra, c.id]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(run(runtime, ['--root', root, 'start', c.id]).status, 0);
      return Number(readFileSync(join(c.sdir, 'monitor.pid'), 'utf8'));
    }
    const readLog = (path: string): string => {
      try {
        return readFileSync(path, 'utf8');
      } catch {
        return ''; // renamed by a rotation between the listing and the read (only while it runs)
      }
    };
    /** Every entry of ctr.log and its rotated files, oldest first (exact once the monitor exited). */
    const entries = (sdir: string): LogEntry[] =>
      readdirSync(sdir)
        .filter((f) => /^ctr\.log(\.\d+)?$/.test(f))
        .sort((a, b) => Number(b.slice(8) || 0) - Number(a.slice(8) || 0))
        .flatMap((f) => readLog(join(sdir, f)).split('\n').filter(Boolean).map((l) => JSON.parse(l) as LogEntry));
    const lines = (sdir: string) => entries(sdir).map((e) => e.log.trimEnd());
    const exited = (sdir: string) => () => (existsSync(join(sdir, 'exit.json')) ? null : 'no exit.json yet');
    const sockets = (pid: number) => readdirSync(`/proc/${pid}/fd`).filter((f) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${f}`).startsWith('socket:');
      } catch {
        return false;
      }
    }).length;

    test('monitor: an attach client hanging up in the same wakeup as output that rotates the log loses no later line', async () => {
      // The monitor is stopped while the client hangs up and the container writes a burst, so one
      // poll wakeup sees both: pumping the burst drops the client and reopens the log on a rotation.
      for (let round = 0; round < 4; round++) {
        const burst = 10 + round * 7;
        const c = setup(`until [ -e /tmp/go ]; do sleep 0.02; done; i=0; while [ $i -lt ${burst} ]; do echo line$i; i=$((i+1)); done; touch /tmp/burst; until [ -e /tmp/go2 ]; do sleep 0.02; done; echo last`);
        const mon = startMonitor(c, ['--log-max-size', '500', '--log-max-files', '20']);
        const client = createConnection(join(c.sdir, 'attach.sock'));
        client.on('error', () => {});
        await new Promise<void>((res) => client.once('connect', () => res()));
        await waitFor(() => (sockets(mon) >= 2 ? null : 'client not accepted yet'));
        process.kill(mon, 'SIGSTOP');
        stopped.push(mon);
        try {
          client.destroy();
          writeFileSync(join(c.sync, 'go'), '');
          await waitFor(() => (existsSync(join(c.sync, 'burst')) ? null : 'burst not written yet'));
        } finally {
          process.kill(mon, 'SIGCONT');
        }
        const want = Array.from({ length: burst }, (_, i) => `line${i}`);
        await waitFor(() => (lines(c.sdir).includes(want[burst - 1]) ? null : `round ${round}: burst not logged: ${lines(c.sdir).join(' ')}`));
        writeFileSync(join(c.sync, 'go2'), ''); // the container's last line comes after a pause
        await waitFor(exited(c.sdir));
        assert.deepEqual(lines(c.sdir), [...want, 'last'], `round ${round} (burst ${burst}): every line, the last one included`);
      }
    });

    test('monitor: every short-lived container has its last line, printed after a pause, in ctr.log when exit.json appears', async () => {
      // What worker/runtime's follow does: attach clients that connect, take a line and hang up.
      for (let round = 0; round < 6; round++) {
        const c = setup('i=0; while [ $i -lt 150 ]; do echo line$i; i=$((i+1)); done; sleep 0.2; echo last');
        const socks = new Set<Socket>();
        let churning = true;
        const churn = () => {
          if (!churning) return;
          const s = createConnection(join(c.sdir, 'attach.sock'));
          socks.add(s);
          const again = () => {
            if (!socks.delete(s)) return;
            s.destroy();
            setImmediate(churn);
          };
          s.on('data', again).on('error', again).on('close', again);
        };
        startMonitor(c, ['--log-max-size', '4096', '--log-max-files', '5']);
        for (let i = 0; i < 4; i++) churn();
        try {
          await waitFor(exited(c.sdir));
        } finally {
          churning = false;
          for (const s of socks) s.destroy();
        }
        const want = [...Array.from({ length: 150 }, (_, i) => `line${i}`), 'last'];
        assert.deepEqual(lines(c.sdir), want, `round ${round}: every line in order, the last one included`);
        assert.equal(JSON.parse(readFileSync(join(c.sdir, 'exit.json'), 'utf8')).exitCode, 0);
      }
    });

    test('monitor: a writer that outlives the init neither keeps exit.json from appearing nor hides the last line', async () => {
      // No pid namespace: `yes` survives the init and keeps the pipe full; draining until the pipe
      // is empty (or until EOF) would never end.
      const token = unique('spam');
      const c = setup(`yes ${token} & sleep 0.2; echo LAST-LINE`, (s) => {
        s.linux.namespaces = s.linux.namespaces.filter((n: { type: string }) => n.type !== 'pid');
      });
      try {
        const mon = startMonitor(c, ['--log-max-size', '4000000', '--log-max-files', '3']);
        await waitFor(exited(c.sdir), 20000);
        await waitFor(() => (processesContaining(token).length ? `${token} still running` : null), 20000);
        await waitFor(() => (existsSync(`/proc/${mon}`) ? `monitor ${mon} still running` : null));
        const text = entries(c.sdir).map((e) => e.log).join('');
        assert.ok(text.includes('LAST-LINE\n'), 'the init\'s last line is logged');
        assert.equal(JSON.parse(readFileSync(join(c.sdir, 'exit.json'), 'utf8')).exitCode, 0);
      } finally {
        for (const p of processesContaining(token)) killQuietly(p);
      }
    });
  });
}
