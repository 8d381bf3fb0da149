// `gantry cluster unlock|unlock-key|update --autolock` against a stand-in Autolock service on a
// unix socket: what is sent, what is printed, exit codes.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { AutolockService, type AutolockServer } from '../../proto/gen/gantry/v1/autolock.ts';
import { run } from '../gantry.ts';

const KEY = `GNTRYKEY-1-${'k'.repeat(43)}`;

describe('cli autolock', () => {
  let dir: string;
  let server: grpc.Server;
  const calls: string[] = [];
  let autolockOn = true;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'gantry-cli-unlock-'));
    server = new grpc.Server();
    const impl: AutolockServer = {
      unlock: (call, cb) => {
        calls.push(`unlock ${call.request.key}`);
        if (call.request.key === KEY) cb(null, { nodeId: 'n1' });
        else cb({ code: grpc.status.PERMISSION_DENIED, details: 'the unlock key is wrong' } as grpc.ServiceError, null);
      },
      unlockKey: (call, cb) => {
        calls.push(`unlock-key rotate=${call.request.rotate}`);
        cb(null, autolockOn ? { key: KEY, autolock: true } : { key: '', autolock: false });
      },
      setAutolock: (call, cb) => {
        calls.push(`set ${call.request.enabled}`);
        cb(null, call.request.enabled ? { key: KEY, autolock: true } : { key: '', autolock: false });
      },
    };
    server.addService(AutolockService, impl as unknown as grpc.UntypedServiceImplementation);
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${path.join(dir, 'sock')}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
  });
  after(async () => {
    server.forceShutdown();
    await rm(dir, { recursive: true, force: true });
  });

  async function gantry(args: string[]): Promise<{ code: number; out: string; err: string }> {
    const parts = { out: '', err: '' };
    const sink = (k: 'out' | 'err') =>
      new Writable({
        write: (c, _e, cb) => {
          parts[k] += String(c);
          cb();
        },
      });
    calls.length = 0;
    const code = await run(args, { out: sink('out'), err: sink('err'), isTTY: false, env: { GANTRY_HOST: `unix://${path.join(dir, 'sock')}` } });
    return { code, ...parts };
  }

  test('cli autolock: unlock sends the key from --key-file (trimmed); a refusal is printed with exit 1', async () => {
    const good = path.join(dir, 'good');
    await writeFile(good, `  ${KEY}\n`);
    const ok = await gantry(['cluster', 'unlock', '--key-file', good]);
    assert.equal(ok.code, 0, ok.err);
    assert.deepEqual(calls, [`unlock ${KEY}`]);
    assert.match(ok.out, /unlocked/);
    const bad = path.join(dir, 'bad');
    await writeFile(bad, 'GNTRYKEY-1-nope\n');
    const refused = await gantry(['cluster', 'unlock', '--key-file', bad]);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /Error: the unlock key is wrong/);
    const empty = path.join(dir, 'empty');
    await writeFile(empty, '\n');
    assert.equal((await gantry(['cluster', 'unlock', '--key-file', empty])).code, 2);
  });

  test('cli autolock: unlock-key prints the key with instructions, -q only the key, --rotate asks for a new one', async () => {
    autolockOn = true;
    const full = await gantry(['cluster', 'unlock-key']);
    assert.match(full.out, /gantry cluster unlock/);
    assert.ok(full.out.includes(KEY));
    assert.equal((await gantry(['cluster', 'unlock-key', '-q'])).out, `${KEY}\n`);
    const rot = await gantry(['cluster', 'unlock-key', '--rotate']);
    assert.deepEqual(calls, ['unlock-key rotate=true']);
    assert.match(rot.out, /Successfully rotated manager unlock key/);
    autolockOn = false;
    const off = await gantry(['cluster', 'unlock-key']);
    assert.equal(off.code, 1);
    assert.match(off.err, /autolock is off for this cluster: turn it on with `gantry cluster update --autolock=true`/);
  });

  test('cli autolock: cluster update --autolock=true|false; without the flag it is a usage error', async () => {
    const on = await gantry(['cluster', 'update', '--autolock=true']);
    assert.deepEqual(calls, ['set true']);
    assert.ok(on.out.includes(KEY));
    const off = await gantry(['cluster', 'update', '--autolock=false']);
    assert.deepEqual(calls, ['set false']);
    assert.ok(!off.out.includes('GNTRYKEY'));
    const none = await gantry(['cluster', 'update']);
    assert.equal(none.code, 2);
    assert.match(none.err, /--autolock=true or --autolock=false/);
  });
});
