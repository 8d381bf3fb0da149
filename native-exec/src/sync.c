/* sync.c — the parent/child handshake of `create`/`run` over a SOCK_SEQPACKET socketpair.
 *
 *  gantry-exec (parent)                            container init (child)
 *    | parse config, compile seccomp, mkdir state
 *    | cgroup mkdir + limits, open exec.fifo, console socket
 *    | clone3(CLONE_NEW*) ----------------------------> | PDEATHSIG=KILL until READY; waits GO
 *    | [user ns: write uid_map, gid_map]                 |
 *    | SYNC_GO ----------------------------------------> | [join ns by path] setsid, become root in userns
 *    | cgroup.procs <- pid (while the child mounts)      | mounts inside rootfs (before pivot_root)
 *    | <------------------------------ SYNC_HOOKS ------ | (only with prestart/createRuntime/createContainer
 *    | run prestart + createRuntime hooks                |  hooks: the child forks nothing before this)
 *    | SYNC_HOOKS_DONE --------------------------------> | createContainer hooks
 *    |                                                   | pivot_root, devices, masks, ro paths,
 *    |                                                   | hostname, sysctl, pty -> console socket,
 *    |                                                   | resolve argv[0], rlimits
 *    | <------------------------------ SYNC_READY ------ |   (or SYNC_ERROR "<call> <path>: EXXX", exit)
 *    | write state.json, --pid-file                      |
 *  create: exit 0                                        | read(exec.fifo) blocks until `start` writes
 *  run:    SYNC_START -------------------------------> | startContainer hooks, user, caps,
 *    | poststart hooks; waitpid                          | no_new_privs, seccomp, execve
 *    | <------------------ EOF (CLOEXEC) or SYNC_ERROR - |
 *
 * Any error on either side ends the child (SIGKILL from the parent, or exit) and the parent removes
 * the cgroup and state dir, so a failed create leaves nothing behind.
 */
#include <string.h>
#include <sys/socket.h>

#include "runtime.h"

struct sync_packet {
  int type;
  char msg[8192];
};

int sync_send(int fd, enum sync_msg t, const char *msg) {
  struct sync_packet p = {.type = t};
  if (msg) snprintf(p.msg, sizeof p.msg, "%s", msg);
  size_t len = offsetof(struct sync_packet, msg) + (msg ? strlen(p.msg) + 1 : 0);
  for (;;) {
    ssize_t w = send(fd, &p, len, MSG_NOSIGNAL);
    if (w >= 0) return 0;
    if (errno != EINTR) return -1;
  }
}

int sync_wait(int fd, enum sync_msg want, const char *stage, gx_err *err) {
  struct sync_packet p;
  ssize_t r;
  memset(&p, 0, sizeof p);
  do r = recv(fd, &p, sizeof p, 0);
  while (r < 0 && errno == EINTR);
  if (r < 0) return gx_fail(err, errno, "sync: read while waiting for %s", stage);
  if (r == 0) return gx_fail(err, 0, "sync: peer exited while waiting for %s", stage);
  if (p.type == SYNC_ERROR) {
    p.msg[sizeof p.msg - 1] = 0;
    return gx_fail(err, 0, "%s", p.msg);
  }
  if (p.type != (int)want) return gx_fail(err, 0, "sync: got message %d while waiting for %s", p.type, stage);
  return 0;
}

int sync_take_error(int fd, gx_err *err) {
  struct sync_packet p;
  memset(&p, 0, sizeof p);
  ssize_t r = recv(fd, &p, sizeof p, MSG_DONTWAIT);
  if (r <= 0 || p.type != SYNC_ERROR) return -1;
  p.msg[sizeof p.msg - 1] = 0;
  gx_fail(err, 0, "%s", p.msg);
  return 0;
}
