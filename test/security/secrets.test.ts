// Secrets and configs on in-process daemons (sim runtime): created from a file or stdin, never shown
// by inspect or ls, sealed in the store, sent only to the node that runs a task using them, kept
// there on a tmpfs, refused for removal while used, size limits.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { initCluster, type LocalHost, runningRows, SIM_IMAGE, startHost, until, waitReady } from './local-cluster.ts';

const VALUE = 'correct-horse-battery-staple-7f3a91';

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name));
}

function secretsDirOf(h: LocalHost): string {
  const worker = (h.daemon as unknown as { worker: { secrets: { dir: string } } }).worker;
  return worker.secrets.dir;
}

test('secrets: only the node running a task that uses a secret receives it; never in clear in the store, logs or inspect', async (t) => {
  const m = await startHost(t, 'm1');
  const w1 = await startHost(t, 'w1');
  const w2 = await startHost(t, 'w2');
  const { worker, addr } = await initCluster(m);
  for (const w of [w1, w2]) assert.equal((await w.gantry(['join', '--token', worker, addr])).code, 0);
  await waitReady(m, 'w1');
  await waitReady(m, 'w2');
  // keep tasks off the manager: only the workers may run them
  assert.equal((await m.gantry(['node', 'update', '--availability', 'drain', 'm1'])).code, 0);

  const file = path.join(m.dir, 'pw.txt');
  await writeFile(file, VALUE);
  const created = await m.gantry(['secret', 'create', 'db-password', file]);
  assert.equal(created.code, 0, created.err);
  const again = await m.gantry(['secret', 'create', 'db-password', file]);
  assert.match(again.err, /secret "db-password" already exists/);

  const big = path.join(m.dir, 'big');
  await writeFile(big, Buffer.alloc(500 * 1024 + 1, 1));
  assert.match((await m.gantry(['secret', 'create', 'too-big', big])).err, /the limit is 500 KB/);
  assert.equal((await m.gantry(['config', 'create', 'big-config', big])).code, 0, 'configs may be up to 1000 KB');

  const svc = await m.gantry(['service', 'create', '-d', '--name', 'app', '--replicas', '1', '--secret', 'db-password,mode=0400', SIM_IMAGE, 'sleep', '1000']);
  assert.equal(svc.code, 0, svc.err);
  const runsOn = await until(async () => {
    const ps = (await m.gantry(['service', 'ps', 'app'])).out;
    const [row] = runningRows(ps);
    return row ? (/\bw1\b/.test(row) ? w1 : /\bw2\b/.test(row) ? w2 : `on ${row}`) : `not running: ${ps}`;
  });
  const idle = runsOn === w1 ? w2 : w1;

  const onRunner = filesUnder(secretsDirOf(runsOn));
  assert.equal(onRunner.length, 1, `one secret file on ${runsOn.name}`);
  assert.equal(readFileSync(onRunner[0], 'utf8'), VALUE);
  assert.equal((readFileSync(onRunner[0]) && (await import('node:fs')).statSync(onRunner[0]).mode) & 0o777, 0o400);
  assert.deepEqual(filesUnder(secretsDirOf(idle)), [], `${idle.name} runs no task using it and holds nothing`);
  for (const h of [runsOn, idle]) {
    const onDisk = filesUnder(path.join(h.dir, 'data')).filter((f) => readFileSync(f).includes(VALUE));
    assert.deepEqual(onDisk, [], `${h.name}'s data dir never holds the value`);
  }
  // the idle worker's agent never had it in memory either
  const idleValues = (idle.daemon as unknown as { worker: { secrets: { values: Map<string, Buffer> } } }).worker.secrets.values;
  assert.equal(idleValues.size, 0);

  const inspect = await m.gantry(['secret', 'inspect', 'db-password']);
  assert.ok(!inspect.out.includes(VALUE));
  assert.deepEqual(JSON.parse(inspect.out)[0].usedBy, ['app']);
  const rm = await m.gantry(['secret', 'rm', 'db-password']);
  assert.match(rm.err, /secret "db-password" is used by service app: remove it from them first/);

  const backup = path.join(m.dir, 'state.backup');
  assert.equal((await m.gantry(['cluster', 'backup', backup])).code, 0);
  assert.ok(!(await readFile(backup)).includes(VALUE), 'the store holds the value sealed');
  for (const h of [m, w1, w2]) assert.ok(!h.logs.some((l) => l.includes(VALUE)), `${h.name}'s log never shows it`);

  assert.equal((await m.gantry(['service', 'rm', 'app'])).code, 0);
  await until(async () => ((await m.gantry(['secret', 'rm', 'db-password'])).code === 0 ? true : 'still refused'));
  assert.equal((await m.gantry(['secret', 'ls', '-q'])).out.trim(), '');
});
