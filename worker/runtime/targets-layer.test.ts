// The shared mount-targets layer: which paths it takes, which images it may sit on (not over a
// symlinked /etc or a directory where a file target is), and that it is made once, whole.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ensureTargetsLayer, layerFits, layerPaths } from './targets-layer.ts';

const TARGETS = ['/etc/hosts', '/etc/resolv.conf', '/etc/hostname'];

test('targets layer: only absolute, normalized paths below a directory', () => {
  assert.deepEqual(layerPaths(TARGETS), ['/etc/hostname', '/etc/hosts', '/etc/resolv.conf']);
  assert.equal(layerPaths(['/etc/../x/y']), undefined);
  assert.equal(layerPaths(['etc/hosts']), undefined);
  assert.equal(layerPaths(['/hosts']), undefined, 'a file at the root would need the root directory in the layer');
});

test('targets layer: fits an image with a real /etc, not one whose /etc is a symlink or whose target is a directory', async (t) => {
  const d = mkdtempSync(join(tmpdir(), 'gantry-targets-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  const paths = layerPaths(TARGETS)!;
  const plain = join(d, 'plain');
  mkdirSync(join(plain, 'etc'), { recursive: true });
  writeFileSync(join(plain, 'etc', 'hosts'), '127.0.0.1 localhost\n');
  assert.equal(await layerFits([plain], paths), true);
  const linked = join(d, 'linked');
  mkdirSync(join(linked, 'usr', 'etc'), { recursive: true });
  symlinkSync('usr/etc', join(linked, 'etc'));
  assert.equal(await layerFits([linked], paths), false, '/etc is a symlink in the only layer');
  assert.equal(await layerFits([linked, plain], paths), true, 'a higher layer made /etc a directory again');
  assert.equal(await layerFits([plain, linked], paths), false, 'the topmost /etc is the symlink');
  const dirTarget = join(d, 'dirtarget');
  mkdirSync(join(dirTarget, 'etc', 'hostname'), { recursive: true });
  assert.equal(await layerFits([dirTarget], paths), false);
  assert.equal(await layerFits([join(d, 'empty-image')], paths), true, 'an image without /etc');
});

test('targets layer: made once, whole, with empty files; concurrent makers agree', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'gantry-targets-root-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const paths = layerPaths(TARGETS)!;
  const dirs = await Promise.all([1, 2, 3, 4].map(() => ensureTargetsLayer(root, paths)));
  assert.equal(new Set(dirs).size, 1);
  for (const p of paths) {
    const st = statSync(join(dirs[0], p));
    assert.ok(st.isFile() && st.size === 0 && (st.mode & 0o777) === 0o644, p);
  }
  assert.equal(statSync(join(dirs[0], 'etc')).mode & 0o777, 0o755);
  assert.deepEqual(readdirSync(join(root, 'targets')), [dirs[0].split('/').pop()], 'no tmp dirs left behind');
  assert.equal(await ensureTargetsLayer(root, paths), dirs[0]);
  assert.ok(existsSync(dirs[0]));
});
