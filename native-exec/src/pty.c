/* pty.c — terminals: connect to the caller's --console-socket, open a pty from the container's
 * own devpts, send the master over SCM_RIGHTS (as runc), and make the slave the controlling tty. */
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>

#include "runtime.h"

int console_connect(const char *path, gx_err *err) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof sa.sun_path) return gx_fail(err, ENAMETOOLONG, "console socket `%s`", path);
  strcpy(sa.sun_path, path);
  cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return gx_fail(err, errno, "socket for console `%s`", path);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) return gx_fail(err, errno, "connect console socket `%s`", path);
  return steal_fd(&fd);
}

static int send_fd(int sock, int fd, const char *name, gx_err *err) {
  struct iovec iov = {.iov_base = (void *)name, .iov_len = strlen(name)};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof u);
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  if (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0) return gx_fail(err, errno, "send pty master over console socket");
  return 0;
}

/* Called after pivot_root, so /dev/ptmx is the container's devpts instance. */
int pty_create(int console_sock, const struct oci_process *p, int *slave, gx_err *err) {
  cleanup_close int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) return gx_fail(err, errno, "open `/dev/ptmx` in the container");
  if (unlockpt(master) < 0) return gx_fail(err, errno, "unlockpt");
  char name[64];
  if (ptsname_r(master, name, sizeof name) != 0) return gx_fail(err, errno, "ptsname");
  *slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (*slave < 0) return gx_fail(err, errno, "open pty slave `%s`", name);
  if (p->rows && p->cols) {
    struct winsize ws = {.ws_row = p->rows, .ws_col = p->cols};
    if (ioctl(*slave, TIOCSWINSZ, &ws) < 0) return gx_fail(err, errno, "set console size %ux%u", p->cols, p->rows);
  }
  if (access("/dev/console", F_OK) == 0 && mount(name, "/dev/console", NULL, MS_BIND, NULL) < 0)
    return gx_fail(err, errno, "bind `%s` on `/dev/console`", name);
  return send_fd(console_sock, master, name, err);
}

int pty_make_stdio(int slave, gx_err *err) {
  if (ioctl(slave, TIOCSCTTY, 0) < 0) return gx_fail(err, errno, "make the pty the controlling terminal");
  for (int i = 0; i < 3; i++)
    if (dup2(slave, i) < 0) return gx_fail(err, errno, "dup2 pty slave to %d", i);
  return 0;
}
