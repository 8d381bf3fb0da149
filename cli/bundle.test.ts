// The bundled CLI (what `gantry` runs once installed) behaves like the source: same help, same
// version, same error when gantryd is not there (that path loads grpc-js and the generated protos).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { buildCli, REPO_ROOT } from './bundle.ts';

function cli(entry: string, args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [entry, ...args], {
    encoding: 'utf8',
    env: { ...process.env, GANTRY_HOST: 'unix:///nonexistent/gantry-bundle-test.sock' },
    timeout: 60_000,
  });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

test('cli bundle: the bundled CLI answers like the source', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gantry-bundle-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bundle = await buildCli(path.join(dir, 'gantry.cjs'));
  const source = path.join(REPO_ROOT, 'cli/gantry.ts');
  for (const args of [['version'], ['--help'], ['service', 'create', '--help'], ['node', 'ls'], ['service', 'create', '--replicas', '-1', 'x']]) {
    const want = cli(source, args);
    const got = cli(bundle, args);
    assert.equal(got.code, want.code, `exit status of gantry ${args.join(' ')}`);
    assert.equal(got.out, want.out, `output of gantry ${args.join(' ')}`);
    assert.ok(got.out.length > 0, `gantry ${args.join(' ')} printed something`);
  }
});
