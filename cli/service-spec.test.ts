// Flags → ServiceSpec for create and update.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseArgs, UsageError } from './args.ts';
import { commands } from './commands/service.ts';
import { createSpec, modeFromFlags, updatedSpec } from './service-spec.ts';

const create = commands.find((c) => c.path.join(' ') === 'service create')!;
const update = commands.find((c) => c.path.join(' ') === 'service update')!;
const parse = (argv: string[], c = create) => parseArgs(argv, c.flags, { stopAtPositional: c.stopAtPositional });

test('service-spec: create flags fill only what was given; CMD keeps its own flags', () => {
  const args = parse([
    '--name', 'web', '--replicas', '3', '--constraint', 'node.labels.zone==a', '--constraint', 'node.role==worker',
    '--placement-pref', 'spread=node.labels.zone', '--env', 'A=1', '--env', 'HOME_FROM_ENV', '--env', 'UNSET_VAR',
    '--reserve-cpu', '0.5', '--reserve-memory', '512MiB', '--limit-memory', '1g', '--restart-condition', 'on-failure',
    '--restart-delay', '1m30s', '--update-parallelism', '2', '--update-order', 'start-first', '--label', 'team=x',
    '--stop-grace-period', '30s', '--replicas-max-per-node', '1', '--cap-add', 'NET_ADMIN', '-t',
    'busybox:1.36', 'sh', '-c', 'echo --not-a-flag',
  ]);
  const mode = modeFromFlags(undefined, '3', undefined);
  const spec = createSpec(args, { HOME_FROM_ENV: '/root' }, 'web', mode);
  assert.deepEqual(spec.mode, { $case: 'replicated', value: { replicas: 3 } });
  const t = spec.task!;
  assert.equal(t.container!.image, 'busybox:1.36');
  assert.deepEqual(t.container!.args, ['sh', '-c', 'echo --not-a-flag']);
  assert.deepEqual(t.container!.env, ['A=1', 'HOME_FROM_ENV=/root']);
  assert.equal(t.container!.stopGracePeriodMs, 30_000);
  assert.equal(t.container!.tty, true);
  assert.deepEqual(t.container!.capAdd, ['NET_ADMIN']);
  assert.deepEqual(t.placement!.constraints, ['node.labels.zone==a', 'node.role==worker']);
  assert.deepEqual(t.placement!.preferences, [{ spread: 'node.labels.zone' }]);
  assert.equal(t.placement!.maxReplicas, 1);
  assert.deepEqual(t.resources, { reservations: { nanoCpus: 5e8, memoryBytes: 512 << 20 }, limits: { nanoCpus: 0, memoryBytes: 1 << 30 } });
  assert.deepEqual(t.restart, { condition: 1, delayMs: 90_000, maxAttempts: 0, windowMs: 0 });
  assert.deepEqual(spec.update, { parallelism: 2, delayMs: 0, failureAction: 0, monitorMs: 5000, maxFailureRatio: 0, order: 1 });
  assert.equal(spec.rollback, undefined, 'untouched sub-messages stay absent so the server applies its defaults');
  assert.deepEqual(spec.labels, { team: 'x' });
});

test('service-spec: bad values are usage errors naming the flag', () => {
  const cases: Array<[string[], string]> = [
    [['--reserve-memory', 'lots', 'img'], '--reserve-memory: "lots" is not a size: write a number with an optional unit (b, k, m, g, t; e.g. 512MiB, 1.5g)'],
    [['--restart-condition', 'always', 'img'], '--restart-condition "always" is not one of: any, on-failure, none'],
    [['--restart-delay', '5', 'img'], '--restart-delay: "5" is not a duration: write a number with a unit (ns, us, ms, s, m, h), e.g. 10s or 1m30s'],
    [['--placement-pref', 'pack=x', 'img'], '--placement-pref "pack=x" must be spread=NODE_ATTRIBUTE (e.g. spread=node.labels.zone)'],
    [['--update-max-failure-ratio', '2', 'img'], '--update-max-failure-ratio must be a number between 0 and 1, not "2"'],
  ];
  for (const [argv, message] of cases) {
    assert.throws(() => createSpec(parse(argv), {}, 'x', undefined), (e: Error) => e instanceof UsageError && e.message === message, argv.join(' '));
  }
  assert.throws(() => createSpec(parse([]), {}, 'x', undefined), /an IMAGE is required/);
  assert.throws(() => modeFromFlags('global', '3', undefined), /--replicas cannot be used with --mode global/);
  assert.throws(() => modeFromFlags(undefined, '-1', undefined), /--replicas must be a whole number ≥ 0, not "-1"/);
  assert.throws(() => modeFromFlags('daemonset', undefined, undefined), /--mode "daemonset" is not one of/);
  assert.deepEqual(modeFromFlags('replicated-job', '5', '2'), { $case: 'replicatedJob', value: { totalCompletions: 5, maxConcurrent: 2 } });
});

test('service-spec: update edits a copy of the current spec', () => {
  const current = createSpec(parse(['--env', 'A=1', '--env', 'B=2', '--label', 'x=1', 'busybox']), {}, 'web', { $case: 'replicated', value: { replicas: 1 } });
  const next = updatedSpec(current, parse(['--replicas', '4', '--env-add', 'A=9', '--env-rm', 'B', '--label-rm', 'x', '--image', 'busybox:2', '--force', 'web'], update), {});
  assert.deepEqual(next.mode, { $case: 'replicated', value: { replicas: 4 } });
  assert.deepEqual(next.task!.container!.env, ['A=9']);
  assert.deepEqual(next.labels, {});
  assert.equal(next.task!.container!.image, 'busybox:2');
  assert.equal(next.task!.forceUpdate, 1);
  assert.deepEqual(current.task!.container!.env, ['A=1', 'B=2'], 'the current spec is not changed');
  const global = { ...current, mode: { $case: 'global' as const, value: {} } };
  assert.throws(() => updatedSpec(global, parse(['--replicas', '2', 'web'], update), {}), /--replicas works only on replicated services; "web" is global/);
});

test('service-spec: --publish, --mount, health and network flags', async () => {
  const { parsePublish, parseMount } = await import('./service-spec.ts');
  assert.deepEqual(parsePublish('8080:80'), { name: '', protocol: 'tcp', targetPort: 80, publishedPort: 8080, publishMode: 0 });
  assert.deepEqual(parsePublish('53:53/udp'), { name: '', protocol: 'udp', targetPort: 53, publishedPort: 53, publishMode: 0 });
  assert.deepEqual(parsePublish('80'), { name: '', protocol: 'tcp', targetPort: 80, publishedPort: 0, publishMode: 0 });
  assert.deepEqual(parsePublish('published=8080,target=80,mode=host'), { name: '', protocol: 'tcp', targetPort: 80, publishedPort: 8080, publishMode: 1 });
  for (const bad of ['x:80', '8080:', '70000:80', 'published=1,target=2,mode=mesh', 'target=80,colour=red']) assert.throws(() => parsePublish(bad), UsageError, bad);
  assert.deepEqual(parseMount('type=bind,source=/srv,target=/data,readonly'), { type: 'bind', source: '/srv', target: '/data', readOnly: true });
  assert.deepEqual(parseMount('type=tmpfs,dst=/tmp'), { type: 'tmpfs', source: '', target: '/tmp', readOnly: false });
  assert.throws(() => parseMount('type=bind,source=/x'), /needs target=PATH/);
  const spec = createSpec(
    parse(['-p', '8080:80', '--mount', 'type=volume,source=data,target=/data', '--network', 'backend', '--health-cmd', 'wget -q localhost', '--health-interval', '10s', '--health-retries', '3', 'nginx']),
    {},
    'web',
    undefined,
  );
  assert.deepEqual(spec.endpoint!.ports.map((p) => `${p.publishedPort}:${p.targetPort}`), ['8080:80']);
  assert.deepEqual(spec.task!.container!.mounts, [{ type: 'volume', source: 'data', target: '/data', readOnly: false }]);
  assert.deepEqual(spec.task!.networks, [{ target: 'backend', aliases: [] }]);
  assert.deepEqual(spec.task!.container!.healthcheck, { test: ['CMD-SHELL', 'wget -q localhost'], intervalMs: 10_000, timeoutMs: 0, retries: 3, startPeriodMs: 0 });
  const next = updatedSpec(spec, parse(['--publish-rm', '8080', '--publish-add', '9090:90', '--mount-rm', '/data', '--network-rm', 'backend', 'web'], update), {});
  assert.deepEqual(next.endpoint!.ports.map((p) => `${p.publishedPort}:${p.targetPort}`), ['9090:90']);
  assert.deepEqual(next.task!.container!.mounts, []);
  assert.deepEqual(next.task!.networks, []);
});

test('service spec: --args is split like a shell (quotes, backslashes)', async () => {
  const { shellWords } = await import('./service-spec.ts');
  assert.deepEqual(shellWords(`sh -c 'exit 3'`), ['sh', '-c', 'exit 3']);
  assert.deepEqual(shellWords(`a "b c" d\\ e ''`), ['a', 'b c', 'd e', '']);
});
