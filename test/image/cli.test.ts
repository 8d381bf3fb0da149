// The image CLI end to end: gantry commands over gRPC to the Images service on a unix socket, a real registry,
// login credentials from the 0600 auth file; progress bars on a terminal, plain lines otherwise.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { run } from '../../cli/gantry.ts';
import { ImagesService } from '../../proto/gen/gantry/v1/images.ts';
import { imagesService } from '../../worker/image/service.ts';
import { ImageStore } from '../../worker/image/store.ts';
import { busyboxRootfsTar } from '../helpers/busybox.ts';
import { type Registry, startRegistry } from '../helpers/registry.ts';

let work: string;
let server: grpc.Server;
let reg: Registry;
let env: NodeJS.ProcessEnv;

before(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-imgcli-'));
  reg = await startRegistry({ auth: 'basic', users: { bob: 'builder' } });
  const store = await ImageStore.open(path.join(work, 'images'));
  server = new grpc.Server();
  server.addService(ImagesService, imagesService(store));
  const sock = path.join(work, 'gantry.sock');
  await new Promise<void>((r, j) => server.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? j(e) : r())));
  env = { GANTRY_HOST: `unix://${sock}`, GANTRY_AUTH_FILE: path.join(work, 'cfg', 'auth.json'), HOME: work };
  fs.writeFileSync(path.join(work, 'rootfs.tar'), busyboxRootfsTar());
});
after(async () => {
  await new Promise<void>((r) => (server ? server.tryShutdown(() => r()) : r()));
  await reg?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

async function gantry(args: string[], opts: { tty?: boolean } = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const sink = (f: (s: string) => void) =>
    new Writable({
      write: (c, _e, cb) => {
        f(String(c));
        cb();
      },
    });
  const code = await run(args, { out: sink((s) => (out += s)), err: sink((s) => (err += s)), env, isTTY: opts.tty ?? false });
  return { code, out, err };
}

test('image cli: import, images, tag, inspect, push and pull with login, save and load, rmi, prune', async () => {
  let r = await gantry(['import', '-c', 'CMD ["sh"]', '-c', 'ENV HELLO=world', path.join(work, 'rootfs.tar'), 'bb:1']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^sha256:[a-f0-9]{64}\n$/);
  const id = r.out.trim();

  r = await gantry(['images']);
  assert.match(r.out, /^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE\nbb\s+1\s+[a-f0-9]{12}\s+(Less than a second|\d+ seconds?) ago\s+\d/);

  const target = `${reg.addr}/team/bb:1`;
  assert.equal((await gantry(['tag', 'bb:1', target])).code, 0);
  r = await gantry(['image', 'inspect', target]);
  const [insp] = JSON.parse(r.out) as Array<{ Id: string; Config: { Env: string[]; Cmd: string[] }; RepoTags: string[] }>;
  assert.equal(insp.Id, id);
  assert.deepEqual(insp.Config.Env, ['HELLO=world']);
  assert.deepEqual(insp.RepoTags.sort(), ['bb:1', target].sort());

  r = await gantry(['push', target]);
  assert.equal(r.code, 1);
  assert.match(r.err, /^Error: .*401.*check credentials \(gantry login 127\.0\.0\.1:\d+\)/);

  r = await gantry(['login', '-u', 'bob', '-p', 'builder', reg.addr]);
  assert.equal(r.code, 0, r.err);
  assert.equal(fs.statSync(env.GANTRY_AUTH_FILE as string).mode & 0o777, 0o600);
  r = await gantry(['push', target]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /: Pushed\n/);
  assert.match(r.out, /bb: digest: sha256:[a-f0-9]{64} size: \d+\n$/);

  assert.equal((await gantry(['rmi', target, 'bb:1'])).code, 0);
  r = await gantry(['images', '--format', 'json']);
  assert.deepEqual(JSON.parse(r.out), []);

  r = await gantry(['pull', target], { tty: true });
  assert.equal(r.code, 0, r.err);
  assert.ok(r.out.includes('\x1b['), 'redraws in place on a terminal');
  assert.match(r.out, /Status: Downloaded newer image for 127\.0\.0\.1:\d+\/team\/bb:1\n$/);

  const file = path.join(work, 'saved.tar');
  r = await gantry(['save', '-o', file, target]);
  assert.equal(r.code, 0, r.err);
  assert.ok(fs.statSync(file).size > 500_000);
  assert.equal((await gantry(['rmi', target])).code, 0);
  r = await gantry(['load', '-i', file]);
  assert.equal(r.out, `Loaded image: ${target}\n`);

  r = await gantry(['logout', reg.addr]);
  assert.match(r.out, /Removing login credentials/);
  r = await gantry(['pull', `${reg.addr}/team/bb:nope`]);
  assert.equal(r.code, 1);

  r = await gantry(['image', 'rm', 'nope:1']);
  assert.equal(r.code, 1);
  assert.match(r.err, /image "nope:1" not found locally/);
  r = await gantry(['pull', 'Not/Valid']);
  assert.match(r.err, /invalid reference "Not\/Valid": repository name must be lowercase/);
  r = await gantry(['image', 'prune', '-a']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /Total reclaimed space: [\d.]+[KM]iB \(3 blobs, 1 layers\)/);
});
