// `gantry service ...` against the real control API over a unix socket, with a stand-in orchestrator
// writing tasks to the MemoryStore: printed output and exit codes.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import type { LogMessage } from '../../proto/gen/gantry/v1/control.ts';
import type { Service, Task } from '../../proto/gen/gantry/v1/objects.ts';
import { startTestServer, type TestServer } from '../../manager/controlapi/test-server.ts';
import { fixtures, type TaskOptions } from '../../manager/store/fixtures.ts';
import { MemoryStore } from '../../manager/store/memory.ts';
import type { Write } from '../../manager/store/types.ts';
import { progressTiming } from '../progress.ts';
import { runCli } from '../test-cli.ts';

progressTiming.pollMs = 10;
progressTiming.settleMs = 100;

type Behaviour = (service: Service, slot: number) => TaskOptions[];

/** Creates tasks for missing slots of replicated services the way `behave` says; shuts down extra slots. */
function fakeOrchestrator(store: MemoryStore, nodeId: string): { behave: Behaviour; stop: () => void } {
  const ctl = {
    behave: ((_s, _slot) => [{ state: 'running', nodeId }]) as Behaviour,
    stop: () => {},
  };
  let busy = Promise.resolve();
  const reconcile = async () => {
    const view = store.view();
    const writes: Write[] = [];
    for (const s of view.list('services')) {
      if (s.spec?.mode?.$case !== 'replicated') continue;
      const replicas = s.spec.mode.value.replicas;
      const tasks = view.tasksByService(s.id);
      for (let slot = 1; slot <= replicas; slot++) {
        if (tasks.some((t) => t.slot === slot)) continue;
        let at = Date.now();
        for (const o of ctl.behave(s, slot)) writes.push({ op: 'create', kind: 'tasks', object: fixtures.task({ service: s, slot, timestamp: at++, ...o }) });
      }
      for (const t of tasks) {
        if (t.slot > replicas && t.desiredState === 512) writes.push({ op: 'update', kind: 'tasks', object: { ...t, desiredState: 640, status: { ...t.status!, state: 640 } } });
      }
    }
    if (writes.length > 0) await store.batch(writes);
  };
  const unsubscribe = store.subscribe((events) => {
    if (events.some((e) => e.kind === 'services')) busy = busy.then(reconcile);
  });
  ctl.stop = unsubscribe;
  return ctl;
}

describe('cli service', () => {
  let s: TestServer;
  let orch: ReturnType<typeof fakeOrchestrator>;
  const host1 = fixtures.node({ hostname: 'host1', role: 'manager' });
  const logLines: LogMessage[] = [];
  before(async () => {
    const store = new MemoryStore();
    await fixtures.seed(store, { nodes: [host1] });
    s = await startTestServer({
      store,
      logs: {
        async subscribe(tasks, _opts, onMessage) {
          for (const m of logLines) onMessage({ ...m, taskId: m.taskId || tasks[0].id });
        },
      },
    });
    orch = fakeOrchestrator(store, host1.id);
  });
  after(async () => {
    orch.stop();
    await s.close();
  });
  afterEach(async () => {
    orch.behave = () => [{ state: 'running', nodeId: host1.id }];
    for (const svc of s.store.view().list('services')) await runCli(s.target, ['service', 'rm', svc.id]);
  });
  const cli = (...argv: string[]) => runCli(s.target, argv);

  test('cli service: create waits until every task runs, prints the id and exits 0', async () => {
    const r = await cli('service', 'create', '--name', 'web', '--replicas', '2', 'busybox:1.36', 'sleep', '3600');
    assert.equal(r.code, 0, r.err);
    const id = s.store.view().serviceByName('web')!.id;
    const lines = r.out.split('\n');
    assert.equal(lines[0], id);
    assert.ok(lines.includes('web: 2/2 running'), r.out);
    assert.ok(lines.includes('  web.1: running on host1'), r.out);
    assert.ok(r.out.endsWith('verify: Service converged\n'), r.out);
    assert.match(r.err, /^warning: image "busybox:1\.36" was not pinned to a digest/);
  });

  test('cli service: create exits 1 when tasks stay pending with a reason, and says the service stays', async () => {
    orch.behave = () => [{ state: 'pending', message: 'no suitable node (1 node lacks 512MiB memory)' }];
    const r = await cli('service', 'create', '--name', 'big', '--reserve-memory', '512MiB', 'busybox');
    assert.equal(r.code, 1);
    assert.ok(r.out.includes('  big.1: pending: no suitable node (1 node lacks 512MiB memory)'), r.out);
    assert.match(
      r.err,
      /Error: service "big": 1 of 1 tasks cannot be placed yet \(big\.1: no suitable node \(1 node lacks 512MiB memory\)\); the service stays and they will be placed when a node fits \(gantry service ps big\)\n$/,
    );
    assert.ok(s.store.view().serviceByName('big'), 'the service is kept');
  });

  test('cli service: create exits 1 with the error of tasks that keep failing', async () => {
    orch.behave = () => [
      { state: 'rejected', nodeId: host1.id, desiredState: 'shutdown', err: 'image "nope:1" not found in 127.0.0.1:5000' },
      { state: 'rejected', nodeId: host1.id, desiredState: 'shutdown', err: 'image "nope:1" not found in 127.0.0.1:5000' },
      { state: 'pending' },
    ];
    const r = await cli('service', 'create', '--name', 'broken', 'nope:1');
    assert.equal(r.code, 1);
    assert.match(r.err, /Error: service "broken" does not converge: broken\.1 ×2 failed: image "nope:1" not found in 127\.0\.0\.1:5000\. The service stays/);
  });

  test('cli service: create -d prints only the id; bad flags exit 2; invalid specs exit 1 with the server message', async () => {
    const d = await cli('service', 'create', '-d', '--name', 'quick', 'busybox');
    assert.equal(d.code, 0);
    assert.equal(d.out, `${s.store.view().serviceByName('quick')!.id}\n`);
    const bad = await cli('service', 'create', '--replicas', 'three', 'busybox');
    assert.equal(bad.code, 2);
    assert.equal(bad.err, 'gantry service create: --replicas must be a whole number ≥ 0, not "three"\n');
    const unknown = await cli('service', 'create', '--no-such-flag', 'busybox');
    assert.equal(unknown.code, 2);
    const invalid = await cli('service', 'create', '-d', '--name', 'zoned', '--constraint', 'node.labels.zone=a', 'busybox');
    assert.equal(invalid.code, 1);
    assert.equal(
      invalid.err,
      'Error: constraint "node.labels.zone=a" is not of the form KEY==VALUE or KEY!=VALUE; keys: node.id, node.hostname, node.role, node.labels.*, engine.labels.*, node.platform.os, node.platform.arch\n',
    );
    assert.equal(s.store.view().serviceByName('zoned'), undefined);
  });

  test('cli service: ls shows replicas as running/desired; --format json and -q', async () => {
    await cli('service', 'create', '--name', 'web', '--replicas', '2', 'busybox:1.36');
    const r = await cli('service', 'ls');
    assert.equal(r.code, 0);
    const id = s.store.view().serviceByName('web')!.id;
    assert.match(r.out, /^ID +NAME +MODE +REPLICAS +IMAGE +PORTS\n/);
    assert.match(r.out, new RegExp(`\\n${id.slice(0, 12)} +web +replicated +2/2 +busybox:1\\.36\\n`));
    const j = JSON.parse((await cli('service', 'ls', '--format', 'json')).out);
    assert.equal(j[0].service.spec.name, 'web');
    assert.equal(j[0].running, 2);
    assert.equal((await cli('service', 'ls', '-q')).out, `${id}\n`);
  });

  test('cli service: ps lists tasks with node hostname, state age and the reason of a pending task', async () => {
    await cli('service', 'create', '--name', 'web', '--replicas', '2', 'busybox:1.36');
    const svc = s.store.view().serviceByName('web')!;
    const pending = fixtures.task({ service: svc, slot: 3, state: 'pending', message: 'no suitable node (1 node draining)', timestamp: Date.now() });
    await s.store.commit([{ op: 'create', kind: 'tasks', object: pending }]);
    const r = await cli('service', 'ps', 'web');
    assert.equal(r.code, 0, r.err);
    const lines = r.out.trimEnd().split('\n');
    assert.match(lines[0], /^ID +NAME +IMAGE +NODE +DESIRED STATE +CURRENT STATE +ERROR$/);
    assert.match(lines[1], /^\w{12} +web\.1 +busybox:1\.36 +host1 +Running +Running (less than a second|\d+ seconds?) ago$/);
    assert.match(lines[3], /^\w{12} +web\.3 +busybox:1\.36 +Running +Pending .* ago +"no suitable node \(1 node draining\)"$/);
    const shut = await cli('service', 'ps', '--filter', 'desired-state=shutdown', 'web');
    assert.equal(shut.out.trimEnd().split('\n').length, 1);
    assert.equal((await cli('service', 'ps', '--filter', 'colour=red', 'web')).code, 2);
  });

  test('cli service: unknown services exit 1 with the server message', async () => {
    for (const argv of [['service', 'inspect', 'nope'], ['service', 'ps', 'nope'], ['service', 'update', '--replicas', '2', 'nope'], ['service', 'logs', 'nope']]) {
      const r = await cli(...argv);
      assert.equal(r.code, 1, argv.join(' '));
      assert.match(r.err, /Error: (service|service or task) "nope" not found\n/, argv.join(' '));
    }
  });

  test('cli service: inspect prints JSON by default and text with --pretty', async () => {
    await cli('service', 'create', '-d', '--name', 'web', '--restart-condition', 'on-failure', 'busybox:1.36');
    const j = JSON.parse((await cli('service', 'inspect', 'web')).out);
    assert.equal(j[0].spec.name, 'web');
    const p = await cli('service', 'inspect', '--pretty', 'web');
    assert.match(p.out, /Name:\t\tweb\n/);
    assert.match(p.out, /Restart Policy:\n Condition:\ton-failure\n Delay:\t\t5s\n/);
  });

  test('cli service: scale changes replicas without a new spec version and waits', async () => {
    await cli('service', 'create', '--name', 'web', 'busybox:1.36');
    const r = await cli('service', 'scale', 'web=3');
    assert.equal(r.code, 0, r.err);
    assert.ok(r.out.startsWith('web scaled to 3\n'), r.out);
    assert.ok(r.out.includes('web: 3/3 running'), r.out);
    const svc = s.store.view().serviceByName('web')!;
    assert.equal(svc.specVersion, 1);
    assert.deepEqual(svc.spec!.mode, { $case: 'replicated', value: { replicas: 3 } });
    const bad = await cli('service', 'scale', 'web');
    assert.equal(bad.code, 2);
    const missing = await cli('service', 'scale', '-d', 'web=1', 'nope=2');
    assert.equal(missing.code, 1);
    assert.equal(missing.out, 'web scaled to 1\n');
    assert.equal(missing.err, 'Error: service "nope" not found\n');
  });

  test('cli service: update --replicas and --env-add; rollback restores the previous spec', async () => {
    await cli('service', 'create', '-d', '--name', 'web', 'busybox:1.36');
    const u = await cli('service', 'update', '-d', '--replicas', '2', '--env-add', 'A=1', 'web');
    assert.equal(u.code, 0, u.err);
    assert.equal(u.out, 'web\n');
    let svc = s.store.view().serviceByName('web')!;
    assert.deepEqual(svc.spec!.task!.container!.env, ['A=1']);
    assert.equal(svc.specVersion, 2);
    const rb = await cli('service', 'rollback', '-d', 'web');
    assert.equal(rb.code, 0, rb.err);
    svc = s.store.view().serviceByName('web')!;
    assert.deepEqual(svc.spec!.task!.container!.env, []);
    assert.deepEqual(svc.spec!.mode, { $case: 'replicated', value: { replicas: 1 } });
  });

  test('cli service: rm removes what it can and exits 1 naming what it could not', async () => {
    await cli('service', 'create', '-d', '--name', 'web', 'busybox');
    const r = await cli('service', 'rm', 'web', 'nope');
    assert.equal(r.code, 1);
    assert.equal(r.out, 'web\n');
    assert.equal(r.err, 'Error: service "nope" not found\n');
    assert.equal(s.store.view().serviceByName('web'), undefined);
  });

  test('cli service: logs prefix lines with task and host; an unreadable node is reported and exits 1', async () => {
    await cli('service', 'create', '--name', 'web', 'busybox');
    const t: Task = s.store.view().tasksByService(s.store.view().serviceByName('web')!.id)[0];
    logLines.splice(0, logLines.length, {
      taskId: t.id,
      nodeId: host1.id,
      serviceName: '',
      slot: 0,
      stream: 'stdout',
      timeMs: 0,
      data: Buffer.from('hello\nworld\n'),
      nodeHostname: '',
      error: '',
    });
    const r = await cli('service', 'logs', 'web');
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, `web.1.${t.id.slice(0, 12)}@host1    | hello\nweb.1.${t.id.slice(0, 12)}@host1    | world\n`);
    logLines.push({ ...logLines[0], nodeId: 'n2', nodeHostname: 'host2', data: Buffer.alloc(0), error: 'host2 unreachable (connection refused)' });
    const e = await cli('service', 'logs', '--no-task-ids', 'web');
    assert.equal(e.code, 1);
    assert.equal(e.out, 'web.1@host1    | hello\nweb.1@host1    | world\n');
    assert.equal(e.err, 'error: host2: host2 unreachable (connection refused)\nError: logs are incomplete: 1 node could not be read\n');
    logLines.splice(0);
  });
});

test('cli service: --since takes a duration ago, an RFC 3339 time or Unix seconds', async () => {
  const { parseSince } = await import('./service.ts');
  assert.equal(parseSince('10m', 1_000_000_000), 1_000_000_000 - 600_000);
  assert.equal(parseSince('2026-01-02T15:04:05Z', 0), Date.parse('2026-01-02T15:04:05Z'));
  assert.equal(parseSince('1700000000', 0), 1_700_000_000_000);
  assert.throws(() => parseSince('yesterday', 0), /--since "yesterday" is neither a duration/);
});
