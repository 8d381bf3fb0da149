// gantry-exec's `start`, done in gantryd. A created container's init waits for one byte on
// <root>/<id>/exec.fifo, which it holds open, so opening the fifo to write without blocking
// succeeds only while init waits there. `gantry-exec start` writes that byte and removes the fifo
// (its absence is what makes the container "running": native-exec/src/container.c cmd_start,
// state.c). The command would also run postStart hooks, which gantryd's specs never have
// (bundle.ts). Writing the byte here spares a fork and exec of gantry-exec per container.
import { closeSync, constants, openSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Releases the waiting init of container id under gantry-exec's root. False when nothing waits
 * (no fifo, or init gone or already released): the caller asks `gantry-exec start`, whose error says why.
 */
export function startThroughFifo(root: string, id: string): boolean {
  const fifo = join(root, id, 'exec.fifo');
  let fd: number;
  try {
    fd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK); // libuv adds O_CLOEXEC
  } catch {
    return false; // ENOENT: not created by gantry-exec, or started; ENXIO: no init reads it
  }
  try {
    if (writeSync(fd, '0') !== 1) return false;
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
  try {
    unlinkSync(fifo);
  } catch {
    /* a concurrent start removed it */
  }
  return true;
}
