// The bundled CLI (what `gantry` runs once installed) behaves like the source: same help, same
// version, same error when gantryd is not there (that path loads grpc-js and the generated protos);
// and over the local unary socket it stays without http2 and node:tls (cli/bundle.ts, LAZY).
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import { ControlService, type ListNodesResponse } from '../proto/gen/gantry/v1/control.ts';
import { Node } from '../proto/gen/gantry/v1/objects.ts';
import { buildCli, REPO_ROOT } from './bundle.ts';
import { serveUnarySocket, unaryMethods } from './daemon/unary-socket.ts';
import { unarySocketPath } from './unary-wire.ts';

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

test('cli bundle: a unary command over the local unary socket loads neither http2 nor node:tls', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gantry-bundle-'));
  const sock = path.join(dir, 'gantry.sock');
  const impl: grpc.UntypedServiceImplementation = {
    listNodes: (_call: unknown, cb: grpc.sendUnaryData<ListNodesResponse>) =>
      cb(null, { nodes: [Node.fromPartial({ id: 'n1node', role: 1, description: { hostname: 'host-one' } })] }),
  };
  const server = await serveUnarySocket(unarySocketPath(sock), unaryMethods([[ControlService, impl]]), () => {});
  t.after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const bundle = await buildCli(path.join(dir, 'gantry.cjs'));
  const probe = path.join(dir, 'modules.cjs');
  writeFileSync(probe, "process.on('exit', () => process.stderr.write(`loaded: ${process.moduleLoadList.filter((m) => /^NativeModule (http2|tls)$/.test(m)).join(',') || 'none'}\\n`));\n");
  const r = await new Promise<{ code: number | null; out: string; err: string }>((resolve) =>
    execFile(process.execPath, ['-r', probe, bundle, 'node', 'ls'], { env: { ...process.env, GANTRY_HOST: `unix://${sock}` }, timeout: 60_000 }, (e, out, err) =>
      resolve({ code: e ? (e.code as number) : 0, out, err }),
    ),
  );
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /n1node\s+host-one/);
  assert.match(r.err, /loaded: none/);
});
