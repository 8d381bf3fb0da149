// The state dir's files: the same results whether made with synchronous calls (tmpfs) or through
// the thread pool (disk), and which of the two a file system gets.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { StateFiles, syncIsCheap } from './state-files.ts';

test('state files: synchronous calls on a tmpfs or ramfs only', () => {
  assert.equal(syncIsCheap(0x01021994), true, 'tmpfs');
  assert.equal(syncIsCheap(0x858458f6), true, 'ramfs');
  assert.equal(syncIsCheap(0xef53), false, 'ext4');
  assert.equal(syncIsCheap(0x9123683e), false, 'btrfs');
  assert.equal(new StateFiles('/dev/shm').synchronous, true, '/dev/shm is a tmpfs');
});

for (const sync of [true, false]) {
  test(`state files (${sync ? 'synchronous' : 'thread pool'}): write, atomic write, rewrite in place, read, remove`, async (t) => {
    const d = mkdtempSync(join(tmpdir(), 'gantry-state-files-'));
    t.after(() => rmSync(d, { recursive: true, force: true }));
    const f = new StateFiles(join(d, 'state'), sync);
    assert.equal(f.synchronous, sync);
    const c = join(d, 'state', 'c1');
    await f.mkdir(join(c, 'files'), 0o700);
    await f.write(join(c, 'files', 'hosts'), '127.0.0.1 localhost\n', 0o600);
    assert.equal(statSync(join(c, 'files', 'hosts')).mode & 0o777, 0o600);
    await f.writeAtomic(join(c, 'meta.json'), JSON.stringify({ id: 'c1', startedAt: 1234567890 }));
    assert.deepEqual(readdirSync(c).sort(), ['files', 'meta.json'], 'no .tmp left');
    const ino = statSync(join(c, 'meta.json')).ino;
    await f.rewriteInPlace(join(c, 'meta.json'), JSON.stringify({ id: 'c1' }));
    assert.equal(readFileSync(join(c, 'meta.json'), 'utf8'), '{"id":"c1"}', 'the shorter content is not followed by the old tail');
    assert.equal(statSync(join(c, 'meta.json')).ino, ino, 'same inode');
    await f.rewriteInPlace(join(c, 'new.json'), '{"a":1}');
    assert.deepEqual(await f.readJson(join(c, 'new.json')), { a: 1 }, 'a missing file is made');
    writeFileSync(join(c, 'torn.json'), '{"a":');
    assert.equal(await f.readJson(join(c, 'torn.json')), undefined);
    assert.equal(await f.readJson(join(c, 'missing.json')), undefined);
    await f.rmTree(c);
    await f.rmTree(c);
    assert.deepEqual(readdirSync(join(d, 'state')), []);
  });
}
