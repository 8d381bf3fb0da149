// GantryNet (sys.ts), the client of the gantry-net helper, against a stand-in helper script:
// answers matched by id, failures as values, a helper that dies fails what it held and is restarted.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { GantryNet, realSys } from './sys.ts';

// answers "ok" with us = its own pid (so a restart shows), "fail" for netns /fail, exits 3 for netns /die
const FAKE = `#!/bin/sh
while read -r line; do
  id=$(printf '%s\\n' "$line" | sed 's/.*"id":\\([0-9]*\\).*/\\1/')
  case "$line" in
    *'"/die"'*) echo "dying" >&2; exit 3;;
    *'"/garbled"'*) echo '{"id":0,"ok":false,"error":"invalid JSON in request"}';;
    *'"/fail"'*) echo "{\\"id\\":$id,\\"ok\\":false,\\"error\\":\\"netns /fail: EPERM\\"}";;
    *) echo "{\\"id\\":$id,\\"ok\\":true,\\"us\\":$$}";;
  esac
done
`;

test('network sys: GantryNet matches answers to requests, gives failures as values, and restarts a helper that died', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-net-fake-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bin = path.join(dir, 'gantry-net');
  writeFileSync(bin, FAKE);
  chmodSync(bin, 0o755);
  const net = new GantryNet(bin);
  t.after(() => net.close());

  const [a, b, c] = await Promise.all([net.create({ netns: '/ok1', links: [] }), net.restore('/fail', '*nat\nCOMMIT\n'), net.remove('/ok2')]);
  assert.equal(a.ok, true);
  assert.deepEqual(b, { ok: false, error: 'netns /fail: EPERM' });
  assert.equal(c.ok, true);
  const pid1 = a.ok ? a.us : 0;

  const garbled = await net.remove('/garbled');
  assert.deepEqual(garbled, { ok: false, error: 'invalid JSON in request' }, 'an answer without a known id goes to the oldest request');

  const died = await net.remove('/die');
  assert.equal(died.ok, false);
  assert.match(died.ok ? '' : died.error, /gantry-net \(.*\) exited \(3\): dying/);

  const again = await net.create({ netns: '/ok3', links: [] });
  assert.equal(again.ok, true);
  assert.notEqual(again.ok ? again.us : 0, pid1, 'a new helper process answered');
});

test('network sys: a missing gantry-net is reported with where it was looked for and how to build it', () => {
  const before = process.env.GANTRY_NET_HELPER;
  process.env.GANTRY_NET_HELPER = '/nonexistent/gantry-net';
  try {
    const h = realSys.netHelper?.();
    assert.ok(h && 'missing' in h, 'no helper');
    assert.match(h.missing, /gantry-net not found at \/nonexistent\/gantry-net \(build it: make -C native-exec/);
  } finally {
    if (before === undefined) delete process.env.GANTRY_NET_HELPER;
    else process.env.GANTRY_NET_HELPER = before;
  }
});

test('network sys: run goes through the spawner helper: output, exit status, stdin, and a missing binary is an error even with allowFail', async () => {
  const r = await realSys.run('sh', ['-c', 'cat; echo err >&2; exit 3'], { input: 'fed\n', allowFail: true });
  assert.deepEqual(r, { ok: false, out: 'fed\n', err: 'err\n' });
  await assert.rejects(realSys.run('sh', ['-c', 'echo err >&2; exit 3']), (e: Error) => e.name === 'CommandError' && /sh -c .*: exit 3: err/.test(e.message));
  assert.deepEqual(await realSys.run('sh', ['-c', 'echo ok']), { ok: true, out: 'ok\n', err: '' });
  await assert.rejects(realSys.run('/nonexistent/gantry-no-such-bin', [], { allowFail: true }), /nonexistent\/gantry-no-such-bin ?: exit 1: spawn \/nonexistent\/gantry-no-such-bin ENOENT/);
});
