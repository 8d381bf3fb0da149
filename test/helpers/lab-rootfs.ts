// A tiny busybox rootfs tarball (bin/busybox + applet symlinks, empty mount points) for the lab's
// end-to-end tests and the converge benchmark; built once per machine with the system's tar.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const APPLETS = ['sh', 'sleep', 'httpd', 'echo', 'cat', 'true', 'false', 'ls', 'ps', 'kill', 'wget', 'nc', 'hostname'];
export const BUSYBOX_TAR = '/tmp/gantry-test-rootfs/busybox-rootfs.tar';

/** Returns the path of the busybox rootfs tarball, building it when missing (atomic rename; safe in parallel). */
export function busyboxRootfsTar(busybox = '/bin/busybox'): string {
  if (fs.existsSync(BUSYBOX_TAR)) return BUSYBOX_TAR;
  if (!fs.existsSync(busybox)) throw new Error(`${busybox} not found: install busybox-static`);
  fs.mkdirSync(path.dirname(BUSYBOX_TAR), { recursive: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-rootfs-'));
  try {
    for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root', 'var/www']) fs.mkdirSync(path.join(dir, d), { recursive: true });
    fs.copyFileSync(busybox, path.join(dir, 'bin/busybox'));
    fs.chmodSync(path.join(dir, 'bin/busybox'), 0o755);
    for (const a of APPLETS) fs.symlinkSync('busybox', path.join(dir, 'bin', a));
    fs.writeFileSync(path.join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
    fs.writeFileSync(path.join(dir, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
    fs.writeFileSync(path.join(dir, 'var/www/index.html'), 'hello from gantry\n');
    fs.chmodSync(path.join(dir, 'tmp'), 0o1777);
    const tmp = `${BUSYBOX_TAR}.${process.pid}.tmp`;
    execFileSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', dir, '-cf', tmp, '.']);
    fs.renameSync(tmp, BUSYBOX_TAR);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return BUSYBOX_TAR;
}
