// save/load against a real Docker engine: dockerd (Debian's docker.io) started in temp dirs with no networking;
// `docker load` + `docker run` of a gantry-saved image, and `docker save` loaded by gantry.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { Readable } from 'node:stream';
import { ImageStore } from '../../worker/image/store.ts';
import { busyboxRootfsTar } from '../helpers/busybox.ts';

const haveDockerd = fs.existsSync('/usr/sbin/dockerd') || fs.existsSync('/usr/bin/dockerd');

function docker(sock: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('docker', ['-H', `unix://${sock}`, ...args], { maxBuffer: 1 << 24 }, (e, out, err) => (e ? reject(new Error(`docker ${args.join(' ')}: ${err || e.message}`)) : resolve(out)));
  });
}

test('docker interop: docker loads and runs a gantry save; gantry loads a docker save', { skip: !haveDockerd && 'dockerd not installed' }, async (t) => {
  const dir = fs.mkdtempSync('/var/tmp/gantry-dockerd-');
  const sock = path.join(dir, 'docker.sock');
  const d = spawn('dockerd', [
    '--data-root', path.join(dir, 'data'), '--exec-root', path.join(dir, 'exec'), '--pidfile', path.join(dir, 'pid'),
    '-H', `unix://${sock}`, '--bridge=none', '--iptables=false', '--ip6tables=false', '--storage-driver', 'overlay2',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  d.stderr.on('data', (c) => {
    log += c;
  });
  t.after(async () => {
    if (d.exitCode === null) {
      d.kill('SIGTERM');
      await new Promise((r) => d.once('close', r));
    }
    const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m) => m?.startsWith(dir));
    for (const m of mounts.sort((a, b) => b.length - a.length)) await new Promise((r) => execFile('umount', ['-l', m], r));
    fs.rmSync(dir, { recursive: true, force: true });
  });
  for (let i = 0; ; i++) {
    try {
      await docker(sock, ['version']);
      break;
    } catch (e) {
      if (i > 60 || d.exitCode !== null) throw new Error(`dockerd did not start: ${(e as Error).message}\n${log.slice(-1500)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  const store = await ImageStore.open(path.join(dir, 'images'));
  const info = await store.importRootfs(Readable.from([busyboxRootfsTar()]), 'gantry/bb:1', { changes: ['CMD ["echo", "hello from gantry"]'] });
  const saved = path.join(dir, 'gantry-save.tar');
  await store.save(['gantry/bb:1'], fs.createWriteStream(saved), 'docker-archive');
  assert.match(await docker(sock, ['load', '-i', saved]), /Loaded image: gantry\/bb:1/);
  assert.equal(await docker(sock, ['run', '--rm', '--network', 'none', 'gantry/bb:1']), 'hello from gantry\n');
  assert.equal((await docker(sock, ['image', 'inspect', '--format', '{{.Id}}', 'gantry/bb:1'])).trim(), info.id, 'same image id in docker');

  await docker(sock, ['tag', 'gantry/bb:1', 'fromdocker/bb:2']);
  const out = path.join(dir, 'docker-save.tar');
  await docker(sock, ['save', '-o', out, 'fromdocker/bb:2']);
  const s2 = await ImageStore.open(path.join(dir, 'images2'));
  assert.deepEqual(await s2.load(out), ['Loaded image: fromdocker/bb:2']);
  const back = await s2.resolveLocal('fromdocker/bb:2');
  assert.equal(back?.id, info.id);
  assert.deepEqual((await s2.imageConfig(back as NonNullable<typeof back>)).Cmd, ['echo', 'hello from gantry']);
  assert.ok(fs.existsSync(path.join((await s2.snapshotDirs(back as NonNullable<typeof back>))[0], 'bin', 'busybox')));
});
