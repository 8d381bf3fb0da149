// Unit tests for SimRuntime on a ManualClock: scripted exits, stop grace, SIGKILL, failures, logs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from './clock.ts';
import { parseSimDuration, SimRuntime } from './runtime-sim.ts';
import type { ContainerConfig, ContainerState } from './types.ts';

function cfg(id: string, args: string[]): ContainerConfig {
  return { id, rootfs: { kind: 'dir', path: '/' }, args, env: [], cwd: '/', user: '', hostname: '', tty: false, readOnlyRootfs: false, capAdd: [], capDrop: [], limits: {}, mounts: [], network: { mode: 'none' }, stopSignal: 'SIGTERM', labels: {} };
}

const flush = () => new Promise((r) => setImmediate(r));

test('runtime-sim: durations parse like the convention says', () => {
  const cases: [string | undefined, number | undefined][] = [[undefined, 0], ['2s', 2000], ['500ms', 500], ['1m', 60000], ['3', 3000], ['x', undefined]];
  for (const [s, want] of cases) assert.equal(parseSimDuration(s), want, String(s));
});

test('runtime-sim: sim-exit exits on the clock with its code; others run until stopped', async () => {
  const clock = new ManualClock();
  const rt = new SimRuntime({ clock });
  await rt.create(cfg('a', ['sim-exit', '3', '2s']));
  await rt.create(cfg('b', ['server']));
  await rt.start('a');
  await rt.start('b');
  const got: { done?: ContainerState } = {};
  void rt.wait('a').then((s) => {
    got.done = s;
  });
  clock.advance(1999);
  await flush();
  assert.ok(got.done === undefined, 'not exited yet');
  clock.advance(1);
  await flush();
  assert.equal((got as { done?: ContainerState }).done?.exitCode, 3);
  assert.equal((await rt.state('b')).status, 'running');
  assert.equal((await rt.stop('b', 10_000)).exitCode, 143);
  const logs = [];
  for await (const e of rt.logs('b', { follow: false, tail: -1, sinceMs: 0 })) logs.push(e.data.toString());
  assert.deepEqual(logs, ['sim: server\n']);
});

test('runtime-sim: a container ignoring the stop signal is killed after the grace', async () => {
  const clock = new ManualClock();
  const rt = new SimRuntime({ clock });
  await rt.create(cfg('s', ['sim-ignore-stop']));
  await rt.start('s');
  const got: { st?: ContainerState } = {};
  void rt.stop('s', 5000).then((x) => {
    got.st = x;
  });
  await flush();
  clock.advance(4999);
  await flush();
  assert.ok(got.st === undefined, 'not killed yet');
  clock.advance(1);
  await flush();
  assert.equal((got as { st?: ContainerState }).st?.exitCode, 137);
  await rt.remove('s');
  assert.equal((await rt.state('s')).status, 'unknown');
});

test('runtime-sim: scripted failures say what failed', async () => {
  const rt = new SimRuntime({ clock: new ManualClock() });
  await assert.rejects(rt.create(cfg('f', ['sim-fail-create', 'no', 'space'])), /create container f: no space/);
  await rt.create(cfg('g', ['sim-fail-start', 'bad', 'exec']));
  await assert.rejects(rt.start('g'), /start container g: bad exec/);
  await assert.rejects(rt.create(cfg('h', ['sim-exit', 'x'])), /sim-exit wants CODE and DELAY/);
  await rt.create(cfg('g2', ['x']));
  await assert.rejects(rt.create(cfg('g2', ['x'])), /already exists/);
});
