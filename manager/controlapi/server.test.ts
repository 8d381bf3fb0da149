// The control API through the real wire: grpc-js server on a temp unix socket, MemoryStore, generated client.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { ControlClient, type LogMessage } from '../../proto/gen/gantry/v1/control.ts';
import { Cluster, ServiceSpec } from '../../proto/gen/gantry/v1/objects.ts';
import { fixtures } from '../store/fixtures.ts';
import { MemoryStore } from '../store/memory.ts';
import type { Store } from '../store/types.ts';
import type { LogBroker } from './logs.ts';
import { controlApi } from './server.ts';
import { call, startTestServer, type TestServer } from './test-server.ts';

/** A full ServiceSpec message (ts-proto's encoder needs every map and list) with only what is given set. */
function spec(over: Partial<ServiceSpec> & { image?: string; replicas?: number } = {}): ServiceSpec {
  const { image, replicas, ...rest } = over;
  const out = ServiceSpec.fromPartial({ name: 'web', task: { container: { image: image ?? 'busybox:1.36' } } });
  if (replicas !== undefined) out.mode = { $case: 'replicated', value: { replicas } };
  return Object.assign(out, rest);
}

async function expectStatus(p: Promise<unknown>, code: grpc.status, details: string | RegExp): Promise<void> {
  await assert.rejects(p, (err: grpc.ServiceError) => {
    assert.equal(err.code, code, `code ${err.code} (${err.details})`);
    if (typeof details === 'string') assert.equal(err.details, details);
    else assert.match(err.details, details);
    return true;
  });
}

describe('controlapi: services', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
  });
  after(() => s.close());
  const c = () => s.client;

  test('controlapi: create fills Swarm defaults and specVersion 1', async () => {
    const svc = await call(c().createService.bind(c()), { spec: spec({ name: 'defaults' }) as ServiceSpec, noResolveImage: false });
    assert.equal(svc.specVersion, 1);
    assert.ok(svc.meta!.version > 0);
    assert.deepEqual(svc.spec!.mode, { $case: 'replicated', value: { replicas: 1 } });
    assert.deepEqual(svc.spec!.task!.restart, { condition: 0, delayMs: 5000, maxAttempts: 0, windowMs: 0 });
    assert.equal(svc.spec!.task!.container!.stopGracePeriodMs, 10_000);
    const u = { parallelism: 1, delayMs: 0, failureAction: 0, monitorMs: 5000, maxFailureRatio: 0, order: 0 };
    assert.deepEqual(svc.spec!.update, u);
    assert.deepEqual(svc.spec!.rollback, u);
    assert.equal(s.store.view().serviceByName('defaults')?.id, svc.id);
  });

  test('controlapi: create keeps explicit sub-messages as written', async () => {
    const sp = spec({ name: 'explicit' });
    sp.task!.restart = { condition: 2, delayMs: 0, maxAttempts: 3, windowMs: 0 };
    sp.update = { parallelism: 0, delayMs: 1000, failureAction: 2, monitorMs: 0, maxFailureRatio: 0.5, order: 1 };
    const svc = await call(c().createService.bind(c()), { spec: sp as ServiceSpec, noResolveImage: false });
    assert.deepEqual(svc.spec!.task!.restart, { condition: 2, delayMs: 0, maxAttempts: 3, windowMs: 0 });
    assert.equal(svc.spec!.update!.parallelism, 0);
    assert.equal(svc.spec!.update!.order, 1);
  });

  test('controlapi: a second service with the same name is ALREADY_EXISTS', async () => {
    await call(c().createService.bind(c()), { spec: spec({ name: 'dup' }) as ServiceSpec, noResolveImage: false });
    await expectStatus(call(c().createService.bind(c()), { spec: spec({ name: 'dup' }) as ServiceSpec, noResolveImage: false }), grpc.status.ALREADY_EXISTS, 'service "dup" already exists');
  });

  test('controlapi: concurrent creates of one name leave exactly one service', async () => {
    // commits that take a moment, so every create passes the name check before any lands
    const mem = new MemoryStore();
    const slow: Store = {
      view: () => mem.view(),
      subscribe: (l) => mem.subscribe(l),
      commit: async (w) => {
        await new Promise((r) => setTimeout(r, 5));
        return mem.commit(w);
      },
      batch: (w) => mem.batch(w),
      waitFor: (r) => mem.waitFor(r),
    };
    const api = controlApi({ store: slow, clock: { now: () => 1000 }, logs: { async subscribe() {} } });
    const results = await Promise.allSettled([1, 2, 3, 4].map(() => api.createService({ spec: spec({ name: 'racy' }), noResolveImage: false })));
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    for (const r of results) {
      if (r.status === 'rejected') assert.equal((r.reason as Error).message, 'service "racy" already exists');
    }
    assert.equal(mem.view().list('services').filter((x) => x.spec?.name === 'racy').length, 1);
  });

  const bad: Array<[string, (sp: Partial<ServiceSpec>) => void, string]> = [
    ['negative replicas', (sp) => (sp.mode = { $case: 'replicated', value: { replicas: -1 } }), 'replicas must be a whole number ≥ 0, not -1'],
    ['fractional replicas', (sp) => (sp.mode = { $case: 'replicated', value: { replicas: 1.5 } }), 'replicas must be a whole number ≥ 0, not 1.5'],
    [
      'constraint with one =',
      (sp) => (sp.task!.placement = { constraints: ['node.labels.zone=a'], preferences: [], maxReplicas: 0, platforms: [] }),
      'constraint "node.labels.zone=a" is not of the form KEY==VALUE or KEY!=VALUE; keys: node.id, node.hostname, node.role, node.labels.*, engine.labels.*, node.platform.os, node.platform.arch',
    ],
    [
      'constraint with an unknown key',
      (sp) => (sp.task!.placement = { constraints: ['node.zone==a'], preferences: [], maxReplicas: 0, platforms: [] }),
      'constraint "node.zone==a" has an unknown key "node.zone"; keys: node.id, node.hostname, node.role, node.labels.*, engine.labels.*, node.platform.os, node.platform.arch',
    ],
    ['uppercase image', (sp) => (sp.task!.container!.image = 'BusyBox:1'), 'image "BusyBox:1" is not a valid reference: repository names must be lowercase'],
    ['image with a bad tag', (sp) => (sp.task!.container!.image = 'busybox:-x'), `image "busybox:-x" is not a valid reference: tag "-x" must be 1-128 of letters, digits, '_', '.', '-' (not starting with '.' or '-')`],
    ['no image', (sp) => (sp.task!.container!.image = ''), 'image is required (gantry service create [OPTIONS] IMAGE [CMD...])'],
    ['env without a name', (sp) => (sp.task!.container!.env = ['=x']), 'env "=x" has no name: write KEY=VALUE'],
    ['env without =', (sp) => (sp.task!.container!.env = ['FOO']), 'env "FOO" has no value: write KEY=VALUE'],
    [
      'limit below reservation',
      (sp) => (sp.task!.resources = { limits: { nanoCpus: 0, memoryBytes: 12 << 20 }, reservations: { nanoCpus: 0, memoryBytes: 512 << 20 } }),
      'memory limit 12MiB is below the memory reservation 512MiB',
    ],
    [
      'cpu limit below reservation',
      (sp) => (sp.task!.resources = { limits: { nanoCpus: 0.5e9, memoryBytes: 0 }, reservations: { nanoCpus: 1e9, memoryBytes: 0 } }),
      'CPU limit 0.5 is below the CPU reservation 1',
    ],
    ['bad restart condition', (sp) => (sp.task!.restart = { condition: 7 as never, delayMs: 0, maxAttempts: 0, windowMs: 0 }), 'restart condition 7 is unknown: use any, on-failure or none'],
    ['bad name', (sp) => (sp.name = 'web!'), `name "web!" is invalid: use at most 63 letters, digits, '-' and '_', starting and ending with a letter or digit`],
    ['relative workdir', (sp) => (sp.task!.container!.dir = 'app'), 'workdir "app" must be an absolute path'],
    ['bad stop signal', (sp) => (sp.task!.container!.stopSignal = 'SIGNOPE'), 'stop signal "SIGNOPE" is not a signal (e.g. SIGTERM, SIGINT, 15)'],
    [
      'max per node on global',
      (sp) => {
        sp.mode = { $case: 'global', value: {} };
        sp.task!.placement = { constraints: [], preferences: [], maxReplicas: 2, platforms: [] };
      },
      'replicas max per node can only be used with replicated mode',
    ],
    [
      'rollback config with failure action rollback',
      (sp) => (sp.rollback = { parallelism: 1, delayMs: 0, failureAction: 2, monitorMs: 0, maxFailureRatio: 0, order: 0 }),
      'rollback failure action 2 is unknown: use pause or continue',
    ],
    [
      'failure ratio above 1',
      (sp) => (sp.update = { parallelism: 1, delayMs: 0, failureAction: 0, monitorMs: 0, maxFailureRatio: 2, order: 0 }),
      'update max failure ratio must be between 0 and 1, not 2',
    ],
    [
      'a published port twice',
      (sp) =>
        (sp.endpoint = {
          mode: 0,
          ports: [
            { name: '', protocol: 'tcp', targetPort: 80, publishedPort: 8080, publishMode: 0 },
            { name: '', protocol: '', targetPort: 81, publishedPort: 8080, publishMode: 0 },
          ],
        }),
      'published port 8080/tcp is given twice',
    ],
  ];
  for (const [what, mutate, message] of bad) {
    test(`controlapi: create refuses ${what} with a message naming the field, and stores nothing`, async () => {
      const sp = spec({ name: 'bad' });
      mutate(sp);
      const before = s.store.view().list('services').length;
      // negative and fractional numbers cannot cross the wire as uint64: check the function layer too
      if (what.includes('replicas')) {
        const { controlApi } = await import('./server.ts');
        const api = controlApi({ store: s.store, clock: { now: () => 0 }, logs: { async subscribe() {} } });
        await assert.rejects(api.createService({ spec: sp as ServiceSpec, noResolveImage: false }), (e: Error) => e.name === 'ValidationError' && e.message === message);
      } else {
        await expectStatus(call(c().createService.bind(c()), { spec: sp as ServiceSpec, noResolveImage: false }), grpc.status.INVALID_ARGUMENT, message);
      }
      assert.equal(s.store.view().list('services').length, before);
    });
  }

  test('controlapi: several problems are reported together', async () => {
    const sp = spec({ name: 'multi' });
    sp.task!.container!.env = ['=x'];
    sp.task!.container!.dir = 'rel';
    await expectStatus(call(c().createService.bind(c()), { spec: sp as ServiceSpec, noResolveImage: false }), grpc.status.INVALID_ARGUMENT, /^2 problems: workdir "rel" must be an absolute path; env "=x" has no name|^2 problems: env "=x" has no name: write KEY=VALUE; workdir "rel"/);
  });

  test('controlapi: version conflict — one of two writers wins, the other is told to re-read', async (t) => {
    const created = await call(c().createService.bind(c()), { spec: spec({ name: 'race', replicas: 1 }) as ServiceSpec, noResolveImage: false });
    const other = new ControlClient(s.target, grpc.credentials.createInsecure());
    t.after(() => other.close());
    const a = await call(c().getService.bind(c()), { ref: 'race' });
    const b = await call(other.getService.bind(other), { ref: 'race' });
    const specA = { ...a.spec!, mode: { $case: 'replicated' as const, value: { replicas: 3 } } };
    const specB = { ...b.spec!, mode: { $case: 'replicated' as const, value: { replicas: 5 } } };
    const won = await call(c().updateService.bind(c()), { ref: 'race', version: a.meta!.version, spec: specA, rollback: '', noResolveImage: false });
    assert.equal(won.spec!.mode!.$case === 'replicated' && won.spec!.mode!.value.replicas, 3);
    await expectStatus(
      call(other.updateService.bind(other), { ref: created.id, version: b.meta!.version, spec: specB, rollback: '', noResolveImage: false }),
      grpc.status.ABORTED,
      `service "race" was updated by someone else since you read it (version ${won.meta!.version}, yours ${b.meta!.version}): read it again and retry`,
    );
    const now = s.store.view().serviceByName('race')!;
    assert.equal(now.spec!.mode!.$case === 'replicated' && now.spec!.mode!.value.replicas, 3);
  });

  test('controlapi: scaling keeps specVersion, a task change bumps it; rollback swaps spec and previousSpec', async () => {
    const v1 = await call(c().createService.bind(c()), { spec: spec({ name: 'versions', replicas: 1 }) as ServiceSpec, noResolveImage: false });
    const scaled = await call(c().updateService.bind(c()), {
      ref: 'versions',
      version: v1.meta!.version,
      spec: { ...v1.spec!, mode: { $case: 'replicated', value: { replicas: 4 } } },
      rollback: '',
      noResolveImage: false,
    });
    assert.equal(scaled.specVersion, 1);
    const newTask = { ...scaled.spec!.task!, container: { ...scaled.spec!.task!.container!, env: ['A=1'] } };
    const changed = await call(c().updateService.bind(c()), { ref: 'versions', version: scaled.meta!.version, spec: { ...scaled.spec!, task: newTask }, rollback: '', noResolveImage: false });
    assert.equal(changed.specVersion, 2);
    assert.deepEqual(changed.previousSpec!.task!.container!.env, []);
    const rolled = await call(c().updateService.bind(c()), { ref: 'versions', version: changed.meta!.version, rollback: 'previous', noResolveImage: false });
    assert.equal(rolled.specVersion, 3);
    assert.deepEqual(rolled.spec!.task!.container!.env, []);
    assert.deepEqual(rolled.previousSpec!.task!.container!.env, ['A=1']);
  });

  test('controlapi: rollback without a previous spec is refused', async () => {
    await call(c().createService.bind(c()), { spec: spec({ name: 'fresh' }) as ServiceSpec, noResolveImage: false });
    await expectStatus(call(c().updateService.bind(c()), { ref: 'fresh', version: 0, rollback: 'previous', noResolveImage: false }), grpc.status.FAILED_PRECONDITION, 'service "fresh" has no previous spec to roll back to');
  });

  test('controlapi: mode cannot change on update', async () => {
    const svc = await call(c().createService.bind(c()), { spec: spec({ name: 'moded' }) as ServiceSpec, noResolveImage: false });
    await expectStatus(
      call(c().updateService.bind(c()), { ref: 'moded', version: 0, spec: { ...svc.spec!, mode: { $case: 'global', value: {} } }, rollback: '', noResolveImage: false }),
      grpc.status.INVALID_ARGUMENT,
      'service "moded" is replicated: its mode cannot be changed to global (remove and create it)',
    );
  });

  test('controlapi: remove, then not found', async () => {
    await call(c().createService.bind(c()), { spec: spec({ name: 'gone' }) as ServiceSpec, noResolveImage: false });
    await call(c().removeService.bind(c()), { ref: 'gone' });
    await expectStatus(call(c().getService.bind(c()), { ref: 'gone' }), grpc.status.NOT_FOUND, 'service "gone" not found');
    await expectStatus(call(c().removeService.bind(c()), { ref: 'gone' }), grpc.status.NOT_FOUND, 'service "gone" not found');
  });
});

describe('controlapi: resolution and summaries', () => {
  const servers: TestServer[] = [];
  let s: TestServer;
  after(async () => {
    for (const x of servers) await x.close();
  });

  test('controlapi: full id, name, unique prefix; ambiguous prefixes list the candidates', async () => {
    const store = new MemoryStore();
    const a = fixtures.service({ id: 'abcde1xxxxxxxxxxxxxxxxxxx', name: 'alpha' });
    const b = fixtures.service({ id: 'abcde2xxxxxxxxxxxxxxxxxxx', name: 'beta' });
    await fixtures.seed(store, { services: [a, b] });
    s = await startTestServer({ store });
    servers.push(s);
    const c = s.client;
    assert.equal((await call(c.getService.bind(c), { ref: a.id })).id, a.id);
    assert.equal((await call(c.getService.bind(c), { ref: 'beta' })).id, b.id);
    assert.equal((await call(c.getService.bind(c), { ref: 'abcde1' })).id, a.id);
    await expectStatus(
      call(c.getService.bind(c), { ref: 'abcde' }),
      grpc.status.INVALID_ARGUMENT,
      `service id prefix "abcde" is ambiguous: it matches ${a.id} (alpha), ${b.id} (beta); use more characters or the name`,
    );
    await expectStatus(call(c.getService.bind(c), { ref: 'web' }), grpc.status.NOT_FOUND, 'service "web" not found');
  });

  test('controlapi: ListServices counts running (observed and desired), desired (replicas or eligible nodes) and completed', async () => {
    const store = new MemoryStore();
    const n1 = fixtures.node({ hostname: 'n1', labels: { zone: 'a' } });
    const n2 = fixtures.node({ hostname: 'n2', labels: { zone: 'b' } });
    const n3 = fixtures.node({ hostname: 'n3', labels: { zone: 'a' }, availability: 'drain' });
    const n4 = fixtures.node({ hostname: 'n4', labels: { zone: 'a' }, state: 'down' });
    const web = fixtures.service({ name: 'web', replicas: 3 });
    const agent = fixtures.service({ name: 'agent', mode: 'global', constraints: ['node.labels.zone==a'] });
    const job = fixtures.service({ name: 'job', mode: 'replicated-job', replicas: 4 });
    const tasks = [
      fixtures.task({ service: web, slot: 1, nodeId: n1.id, state: 'running' }),
      fixtures.task({ service: web, slot: 2, nodeId: n2.id, state: 'running' }),
      fixtures.task({ service: web, slot: 3, nodeId: n2.id, state: 'running', desiredState: 'shutdown' }),
      fixtures.task({ service: web, slot: 3, state: 'pending' }),
      fixtures.task({ service: agent, nodeId: n1.id, state: 'running' }),
      fixtures.task({ service: job, slot: 1, nodeId: n1.id, state: 'complete', desiredState: 'complete' }),
      fixtures.task({ service: job, slot: 2, nodeId: n2.id, state: 'running' }),
    ];
    await fixtures.seed(store, { nodes: [n1, n2, n3, n4], services: [web, agent, job], tasks });
    s = await startTestServer({ store });
    servers.push(s);
    const res = await call(s.client.listServices.bind(s.client), {});
    const by = new Map(res.services.map((x) => [x.service!.spec!.name, x]));
    assert.deepEqual([by.get('web')!.running, by.get('web')!.desired, by.get('web')!.completed], [2, 3, 0]);
    assert.deepEqual([by.get('agent')!.running, by.get('agent')!.desired], [1, 1]);
    assert.deepEqual([by.get('job')!.running, by.get('job')!.desired, by.get('job')!.completed], [1, 4, 1]);
  });
});

describe('controlapi: nodes', () => {
  let s: TestServer;
  const mgr = fixtures.node({ hostname: 'm1', role: 'manager' });
  const ready = fixtures.node({ hostname: 'h2' });
  const down = fixtures.node({ hostname: 'h3', state: 'down' });
  before(async () => {
    const store = new MemoryStore();
    await fixtures.seed(store, { nodes: [mgr, ready, down] });
    s = await startTestServer({
      store,
      leadership: { isLeader: () => true, onChange: () => () => {}, leader: async () => mgr.id, resign: async () => {} },
    });
  });
  after(() => s.close());

  test('controlapi: ListNodes marks the leader from the election', async () => {
    const res = await call(s.client.listNodes.bind(s.client), {});
    assert.equal(res.nodes.find((n) => n.id === mgr.id)!.managerStatus!.leader, true);
  });

  test('controlapi: UpdateNode sets availability and labels by hostname', async () => {
    const n = await call(s.client.getNode.bind(s.client), { ref: 'h2' });
    const updated = await call(s.client.updateNode.bind(s.client), {
      ref: 'h2',
      version: n.meta!.version,
      spec: { ...n.spec!, availability: 2, labels: { zone: 'a' } },
      force: false,
    });
    assert.equal(updated.spec!.availability, 2);
    assert.deepEqual(updated.spec!.labels, { zone: 'a' });
    await expectStatus(
      call(s.client.updateNode.bind(s.client), { ref: 'h2', version: n.meta!.version, spec: n.spec!, force: false }),
      grpc.status.ABORTED,
      `node "h2" was updated by someone else since you read it (version ${updated.meta!.version}, yours ${n.meta!.version}): read it again and retry`,
    );
  });

  test('controlapi: demoting the last manager is refused', async () => {
    await expectStatus(
      call(s.client.updateNode.bind(s.client), { ref: 'm1', version: 0, spec: { ...mgr.spec!, desiredRole: 0 }, force: false }),
      grpc.status.FAILED_PRECONDITION,
      'node "m1" is the last manager: promote another node first (gantry node promote NODE)',
    );
  });

  test('controlapi: RemoveNode refuses a ready node without force, and the last manager always', async () => {
    await expectStatus(call(s.client.removeNode.bind(s.client), { ref: 'h2', force: false }), grpc.status.FAILED_PRECONDITION, 'node "h2" is ready: drain it and stop its gantryd first, or use --force');
    await expectStatus(
      call(s.client.removeNode.bind(s.client), { ref: 'm1', force: true }),
      grpc.status.FAILED_PRECONDITION,
      'node "m1" is the last manager: removing it would destroy the cluster (use gantry leave --force on it to dissolve the cluster)',
    );
    await call(s.client.removeNode.bind(s.client), { ref: 'h3', force: false });
    await call(s.client.removeNode.bind(s.client), { ref: 'h2', force: true });
    assert.deepEqual(s.store.view().list('nodes').map((n) => n.id), [mgr.id]);
    await expectStatus(call(s.client.getNode.bind(s.client), { ref: 'h3' }), grpc.status.NOT_FOUND, 'node "h3" not found');
  });
});

describe('controlapi: images, cluster, store, logs', () => {
  test('controlapi: image digests — pinned when resolved, "not found" fails, unreachable keeps the tag', async () => {
    const s = await startTestServer({
      resolveImage: async (ref) => {
        if (ref.startsWith('missing')) throw Object.assign(new Error('manifest unknown (404) in 127.0.0.1:5000'), { name: 'ImageNotFoundError' });
        if (ref.startsWith('offline')) throw new Error('connect ECONNREFUSED 127.0.0.1:5000');
        return 'sha256:1111111111111111111111111111111111111111111111111111111111111111';
      },
    });
    try {
      const c = s.client;
      const pinned = await call(c.createService.bind(c), { spec: spec({ name: 'pinned' }) as ServiceSpec, noResolveImage: false });
      assert.equal(pinned.spec!.task!.container!.imageDigest, 'sha256:1111111111111111111111111111111111111111111111111111111111111111');
      await expectStatus(
        call(c.createService.bind(c), { spec: spec({ name: 'missing', image: 'missing:1' }) as ServiceSpec, noResolveImage: false }),
        grpc.status.FAILED_PRECONDITION,
        'image "missing:1" not found: manifest unknown (404) in 127.0.0.1:5000 (check the name and tag, or push it first)',
      );
      assert.equal(s.store.view().serviceByName('missing'), undefined);
      // --no-resolve-image: the registry is not asked, even for a tag it does not have
      const kept = await call(c.createService.bind(c), { spec: spec({ name: 'kept', image: 'missing:2' }) as ServiceSpec, noResolveImage: true });
      assert.equal(kept.spec!.task!.container!.imageDigest, '');
      const offline = await call(c.createService.bind(c), { spec: spec({ name: 'offline', image: 'offline:1' }) as ServiceSpec, noResolveImage: false });
      assert.equal(offline.spec!.task!.container!.imageDigest, '');
      assert.match(s.logs.join('\n'), /image "offline:1" could not be resolved to a digest \(connect ECONNREFUSED/);
    } finally {
      await s.close();
    }
  });

  test('controlapi: update keeps the pinned digest unless the client clears it; a failed re-resolve keeps the old pin', async () => {
    let digest = 'sha256:' + 'a'.repeat(64);
    let offline = false;
    const s = await startTestServer({
      resolveImage: async () => {
        if (offline) throw new Error('connect ECONNREFUSED');
        return digest;
      },
    });
    try {
      const c = s.client;
      const v1 = await call(c.createService.bind(c), { spec: spec({ name: 'app', image: 'app:latest' }) as ServiceSpec, noResolveImage: false });
      digest = 'sha256:' + 'b'.repeat(64);
      const scaled = await call(c.updateService.bind(c), { ref: 'app', version: 0, spec: { ...v1.spec!, mode: { $case: 'replicated', value: { replicas: 2 } } }, rollback: '', noResolveImage: false });
      assert.equal(scaled.spec!.task!.container!.imageDigest, 'sha256:' + 'a'.repeat(64));
      assert.equal(scaled.specVersion, 1);
      const cleared = structuredClone(scaled.spec!);
      cleared.task!.container!.imageDigest = '';
      offline = true;
      const kept = await call(c.updateService.bind(c), { ref: 'app', version: 0, spec: cleared, rollback: '', noResolveImage: false });
      assert.equal(kept.spec!.task!.container!.imageDigest, 'sha256:' + 'a'.repeat(64));
      assert.equal(kept.specVersion, 1);
      offline = false;
      const repinned = await call(c.updateService.bind(c), { ref: 'app', version: 0, spec: cleared, rollback: '', noResolveImage: false });
      assert.equal(repinned.spec!.task!.container!.imageDigest, 'sha256:' + 'b'.repeat(64));
      assert.equal(repinned.specVersion, 2);
    } finally {
      await s.close();
    }
  });

  test('controlapi: RotateJoinToken replaces only the asked token', async () => {
    const store = new MemoryStore();
    await fixtures.seed(store, { clusters: [fixtures.cluster()] });
    const s = await startTestServer({ store });
    try {
      const before = await call(s.client.getCluster.bind(s.client), {});
      const after = await call(s.client.rotateJoinToken.bind(s.client), { worker: true, manager: false });
      assert.notEqual(after.joinTokens!.worker, before.joinTokens!.worker);
      assert.match(after.joinTokens!.worker, /^GNTRY-1-.+-w$/);
      assert.equal(after.joinTokens!.manager, before.joinTokens!.manager);
    } finally {
      await s.close();
    }
  });

  test('controlapi: handlers of other components take precedence over ours', async () => {
    const s = await startTestServer({ handlers: { getCluster: (_call, cb) => cb(null, Cluster.fromPartial({ id: 'from-handler' })) } });
    try {
      assert.equal((await call(s.client.getCluster.bind(s.client), {})).id, 'from-handler');
    } finally {
      await s.close();
    }
  });

  test('controlapi: store unavailable → UNAVAILABLE saying what to check', async () => {
    const s = await startTestServer();
    try {
      s.store.setUnavailable();
      await expectStatus(call(s.client.createService.bind(s.client), { spec: spec({ name: 'x' }) as ServiceSpec, noResolveImage: false }), grpc.status.UNAVAILABLE, /cluster store \(etcd\) is unavailable: .*majority of managers/);
      await assert.rejects(call(s.client.createService.bind(s.client), { spec: spec({ name: 'x' }) as ServiceSpec, noResolveImage: false }), (e: grpc.ServiceError) => {
        assert.deepEqual(e.metadata.get('gantry-error-origin'), ['controlapi']);
        return true;
      });
    } finally {
      await s.close();
    }
  });

  test('controlapi: ServiceLogs --follow also follows tasks placed later, and ends when the service is removed', async () => {
    const store = new MemoryStore();
    const n1 = fixtures.node({ hostname: 'host1' });
    const web = fixtures.service({ name: 'web', replicas: 1 });
    const t1 = fixtures.task({ service: web, slot: 1, nodeId: n1.id });
    await fixtures.seed(store, { nodes: [n1], services: [web], tasks: [t1] });
    const calls: Array<{ ids: string[]; tail: number }> = [];
    const broker: LogBroker = {
      subscribe(tasks, opts, onMessage, signal) {
        calls.push({ ids: tasks.map((t) => t.id), tail: opts.tail });
        for (const t of tasks) onMessage({ taskId: t.id, nodeId: t.nodeId, data: Buffer.from(`from ${t.slot}\n`) } as LogMessage);
        return new Promise((resolve) => signal.addEventListener('abort', () => resolve()));
      },
    };
    const s = await startTestServer({ store, logs: broker });
    try {
      const got: string[] = [];
      const ended = new Promise<void>((resolve, reject) => {
        const stream = s.client.serviceLogs({ ref: 'web', follow: true, tail: 5, sinceMs: 0, timestamps: false });
        stream.on('data', (m: LogMessage) => {
          got.push(`${m.nodeHostname}:${m.data.toString().trim()}`);
          if (got.length === 1) {
            const t2 = fixtures.task({ service: web, slot: 2, nodeId: n1.id });
            void store.commit([{ op: 'create', kind: 'tasks', object: t2 }]);
          }
          if (got.length === 2) void store.commit([{ op: 'delete', kind: 'services', id: web.id }]);
        });
        stream.on('end', resolve);
        stream.on('error', reject);
      });
      await ended;
      assert.deepEqual(got, ['host1:from 1', 'host1:from 2']);
      assert.equal(calls.length, 2);
      assert.deepEqual([calls[0].tail, calls[1].tail], [5, -1]);
    } finally {
      await s.close();
    }
  });

  test('controlapi: ServiceLogs streams every task, a failing node arrives as a message and the rest continue', async () => {
    const store = new MemoryStore();
    const n1 = fixtures.node({ hostname: 'host1' });
    const n2 = fixtures.node({ hostname: 'host2' });
    const web = fixtures.service({ name: 'web', replicas: 2 });
    const t1 = fixtures.task({ service: web, slot: 1, nodeId: n1.id });
    const t2 = fixtures.task({ service: web, slot: 2, nodeId: n2.id });
    await fixtures.seed(store, { nodes: [n1, n2], services: [web], tasks: [t1, t2] });
    let seen: string[] = [];
    const broker: LogBroker = {
      async subscribe(tasks, opts, onMessage) {
        seen = tasks.map((t) => t.id);
        assert.equal(opts.tail, 10);
        onMessage({ taskId: t2.id, nodeId: n2.id, error: 'node host2 is unreachable', data: Buffer.alloc(0) } as LogMessage);
        onMessage({ taskId: t1.id, nodeId: n1.id, stream: 'stdout', timeMs: 1, data: Buffer.from('hello\n') } as LogMessage);
      },
    };
    const s = await startTestServer({ store, logs: broker });
    try {
      const got: LogMessage[] = [];
      await new Promise<void>((resolve, reject) => {
        const stream = s.client.serviceLogs({ ref: 'web', follow: false, tail: 10, sinceMs: 0, timestamps: false });
        stream.on('data', (m: LogMessage) => got.push(m));
        stream.on('end', resolve);
        stream.on('error', reject);
      });
      assert.deepEqual(seen.sort(), [t1.id, t2.id].sort());
      assert.equal(got.length, 2);
      assert.equal(got[0].error, 'node host2 is unreachable');
      assert.equal(got[1].data.toString(), 'hello\n');
      assert.equal(got[1].serviceName, 'web');
      assert.equal(got[1].slot, 1);
      assert.equal(got[1].nodeHostname, 'host1');
      await assert.rejects(
        new Promise((resolve, reject) => {
          const stream = s.client.serviceLogs({ ref: 'nope', follow: false, tail: -1, sinceMs: 0, timestamps: false });
          stream.on('data', () => {});
          stream.on('end', resolve);
          stream.on('error', reject);
        }),
        (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND && err.details === 'service or task "nope" not found',
      );
    } finally {
      await s.close();
    }
  });
});
