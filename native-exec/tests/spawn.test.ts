// gantry-spawn (src/spawn) spoken to directly over its JSON lines: strict request checks (an error
// reply, never a crash), what a command inherits (fds, signal state), EOF ending the process.
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { EXEC_DIR, ensureBuilt } from './helpers.ts';

const SPAWN = join(EXEC_DIR, 'build', 'gantry-spawn');

type Reply = { id: number; op: string; code?: number; stdout?: string; stderr?: string; error?: string; rootfs?: string };

/** One gantry-spawn; send() writes a raw line, next() is the next reply line. */
function start(t: { after(fn: () => void): void }, env: NodeJS.ProcessEnv = {}) {
  ensureBuilt();
  const p: ChildProcessWithoutNullStreams = spawn(SPAWN, [], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  t.after(() => p.kill('SIGKILL'));
  const queue: Reply[] = [];
  const waiters: ((r: Reply) => void)[] = [];
  createInterface({ input: p.stdout }).on('line', (l) => {
    const r = JSON.parse(l) as Reply;
    const w = waiters.shift();
    if (w) w(r);
    else queue.push(r);
  });
  const exited = new Promise<{ code: number | null; signal: string | null }>((res) => p.on('exit', (code, signal) => res({ code, signal })));
  return {
    p,
    exited,
    send: (line: string) => p.stdin.write(`${line}\n`),
    next: () => new Promise<Reply>((res) => (queue.length ? res(queue.shift() as Reply) : waiters.push(res))),
  };
}

test('gantry-spawn: a malformed request gets an error reply naming the problem, and the helper keeps serving', async (t) => {
  const h = start(t);
  const cases: [string, Partial<Reply>, RegExp][] = [
    ['not json', { id: 0, op: 'invalid' }, /invalid JSON in request/],
    ['[1,2]', { id: 0, op: 'invalid' }, /want a JSON object/],
    ['{"op":"exec","file":"/bin/true","args":[]}', { id: 0, op: 'exec' }, /"id" must be a non-negative integer/],
    ['{"id":1.5,"op":"exec","file":"/bin/true","args":[]}', { id: 0, op: 'exec' }, /"id" must be/],
    ['{"id":2,"op":"fork-bomb"}', { id: 2, op: 'invalid' }, /unknown op "fork-bomb" \(exec, mount, unmount\)/],
    ['{"id":3,"op":"exec","file":"/bin/true"}', { id: 3, op: 'exec', code: 1 }, /"args" must be an array of strings/],
    ['{"id":4,"op":"exec","file":"/bin/true","args":["a",2]}', { id: 4, op: 'exec', code: 1 }, /item 1 is not/],
    ['{"id":5,"op":"exec","file":"","args":[]}', { id: 5, op: 'exec' }, /"file" must not be empty/],
    ['{"id":6,"op":"exec","file":"/bin/true","args":[],"shell":true}', { id: 6, op: 'exec' }, /unknown field "shell"/],
    ['{"id":7,"op":"exec","file":"/bin/true","args":[],"timeoutMs":-1}', { id: 7, op: 'exec' }, /"timeoutMs" must be an integer/],
    ['{"id":8,"op":"exec","file":"/bin/true","args":[],"maxBuffer":0}', { id: 8, op: 'exec' }, /"maxBuffer" must be an integer from 1/],
    ['{"id":9,"op":"exec","file":"/bin/echo","args":["a\\u0000b"]}', { id: 9, op: 'exec' }, /\\u0000 in a string is not allowed/],
    ['{"id":10,"op":"mount","opts":{"lowerDirs":["/x"],"containerDir":"rel/dir","volatile":true}}', { id: 10, op: 'mount' }, /"containerDir" must be an absolute path/],
    ['{"id":11,"op":"mount","opts":{"lowerDirs":["x"],"containerDir":"/nonexistent-gs","volatile":true}}', { id: 11, op: 'mount' }, /lower dir "x" must be an absolute path/],
    ['{"id":12,"op":"mount","opts":{"lowerDirs":[],"containerDir":"/nonexistent-gs","volatile":"yes"}}', { id: 12, op: 'mount' }, /"volatile" must be a boolean/],
    ['{"id":13,"op":"unmount"}', { id: 13, op: 'unmount' }, /"containerDir" is required/],
    ['{"id":14,"op":"mount","opts":{"lowerDirs":[],"containerDir":"/nonexistent-gs","extra":1}}', { id: 14, op: 'mount' }, /unknown field "extra"/],
    ['{"id":15,"op":"mount","opts":{"lowerDirs":[],"containerDir":"/nonexistent-gs","diskDir":"rel"}}', { id: 15, op: 'mount' }, /"diskDir" must be an absolute path/],
  ];
  for (const [line, want, error] of cases) {
    h.send(line);
    const r = await h.next();
    assert.match(r.error ?? '', error, line);
    for (const [k, v] of Object.entries(want)) assert.equal(r[k as keyof Reply], v, `${line}: ${k}`);
  }
  h.send('{"id":99,"op":"exec","file":"/bin/echo","args":["still here"]}');
  assert.deepEqual(await h.next(), { id: 99, op: 'exec', code: 0, stdout: 'still here\n', stderr: '' });
});

test('gantry-spawn: a command gets only fds 0-2, no blocked or ignored signals, and arguments as given (no shell)', async (t) => {
  const h = start(t);
  h.send(JSON.stringify({ id: 1, op: 'exec', file: '/bin/sh', args: ['-c', 'cd /proc/self/fd && echo *; exec grep -E "^Sig(Blk|Ign)" /proc/self/status'] }));
  const r = await h.next();
  assert.equal(r.code, 0, r.error);
  // 3 is the glob's own directory fd; the helper's pipes, signalfd, stdin/stdout must not show
  assert.equal(r.stdout, '0 1 2 3\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n');
  h.send(JSON.stringify({ id: 2, op: 'exec', file: '/bin/echo', args: ['$HOME', '`id`', 'a b', ';true'] }));
  assert.equal((await h.next()).stdout, '$HOME `id` a b ;true\n');
});

test('gantry-spawn: EOF on stdin: what is in flight is answered, then it exits (a command still running after the grace is left)', async (t) => {
  const h = start(t, { GANTRY_SPAWN_EOF_GRACE_MS: '1500' });
  const dir = mkdtempSync(join(tmpdir(), 'gantry-spawn-eof-'));
  t.after(() => {
    const pid = Number(readFileSync(join(dir, 'pid'), { encoding: 'utf8', flag: 'a+' }));
    if (pid) process.kill(pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  h.send(JSON.stringify({ id: 1, op: 'exec', file: '/bin/sh', args: ['-c', `echo $$ > ${dir}/pid; exec sleep 30`] }));
  h.send(JSON.stringify({ id: 2, op: 'exec', file: '/bin/sh', args: ['-c', 'sleep 0.3; echo late'] }));
  h.p.stdin.end();
  assert.deepEqual(await h.next(), { id: 2, op: 'exec', code: 0, stdout: 'late\n', stderr: '' });
  assert.deepEqual(await h.exited, { code: 0, signal: null });
  const pid = Number(readFileSync(join(dir, 'pid'), 'utf8'));
  assert.ok(pid > 0 && existsSync(`/proc/${pid}`), 'the command still running was not killed');
});

test('gantry-spawn: a request split across writes and several requests in one write are each answered', async (t) => {
  const h = start(t);
  const a = JSON.stringify({ id: 1, op: 'exec', file: '/bin/echo', args: ['one'] });
  h.p.stdin.write(a.slice(0, 10));
  await new Promise((r) => setTimeout(r, 50));
  h.p.stdin.write(`${a.slice(10)}\n${JSON.stringify({ id: 2, op: 'exec', file: '/bin/echo', args: ['two'] })}\n`);
  const got = [await h.next(), await h.next()].sort((x, y) => x.id - y.id);
  assert.deepEqual(got.map((r) => r.stdout), ['one\n', 'two\n']);
});

test('gantry-spawn: a read-only mount has no upper dir; more than 500 layers are refused before anything is made', async (t) => {
  const h = start(t);
  const dir = mkdtempSync(join(tmpdir(), 'gantry-spawn-ro-'));
  const containerDir = join(dir, 'c');
  t.after(() => {
    spawnSync('umount', ['-l', join(containerDir, 'rootfs')]);
    rmSync(dir, { recursive: true, force: true });
  });
  mkdirSync(join(dir, 'lower'));
  writeFileSync(join(dir, 'lower', 'f'), 'image\n');
  h.send(JSON.stringify({ id: 1, op: 'mount', opts: { lowerDirs: Array(501).fill(join(dir, 'lower')), containerDir, volatile: false } }));
  assert.deepEqual(await h.next(), { id: 1, op: 'mount', error: 'image has 501 layers; overlayfs stacks at most 500' });
  assert.ok(!existsSync(containerDir));
  h.send(JSON.stringify({ id: 2, op: 'mount', opts: { lowerDirs: [join(dir, 'lower')], containerDir, volatile: false, readOnly: true } }));
  assert.deepEqual(await h.next(), { id: 2, op: 'mount', rootfs: join(containerDir, 'rootfs') });
  assert.equal(readFileSync(join(containerDir, 'rootfs', 'f'), 'utf8'), 'image\n');
  assert.ok(!existsSync(join(containerDir, 'upper')));
  assert.throws(() => writeFileSync(join(containerDir, 'rootfs', 'g'), 'x'), /EROFS/);
  h.send(JSON.stringify({ id: 3, op: 'unmount', containerDir }));
  assert.deepEqual(await h.next(), { id: 3, op: 'unmount' });
  assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(containerDir));
});

test('gantry-spawn: with diskDir, upper/ and work/ are made there and the overlay writes there', async (t) => {
  const h = start(t);
  const dir = mkdtempSync(join(tmpdir(), 'gantry-spawn-disk-'));
  const containerDir = join(dir, 'state', 'c');
  const diskDir = join(dir, 'disk', 'c');
  t.after(() => {
    spawnSync('umount', ['-l', join(containerDir, 'rootfs')]);
    rmSync(dir, { recursive: true, force: true });
  });
  mkdirSync(join(dir, 'lower'));
  writeFileSync(join(dir, 'lower', 'f'), 'image\n');
  h.send(JSON.stringify({ id: 1, op: 'mount', opts: { lowerDirs: [join(dir, 'lower')], containerDir, diskDir, volatile: true } }));
  assert.deepEqual(await h.next(), { id: 1, op: 'mount', rootfs: join(containerDir, 'rootfs') });
  writeFileSync(join(containerDir, 'rootfs', 'g'), 'written\n');
  assert.equal(readFileSync(join(diskDir, 'upper', 'g'), 'utf8'), 'written\n');
  assert.ok(!existsSync(join(containerDir, 'upper')) && !existsSync(join(containerDir, 'work')));
  h.send(JSON.stringify({ id: 2, op: 'unmount', containerDir }));
  assert.deepEqual(await h.next(), { id: 2, op: 'unmount' });
  assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(containerDir));
});
