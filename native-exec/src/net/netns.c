/* netns.c — persistent network namespaces for gantry-net: unshare, bind /proc/thread-self/ns/net
 * onto the path, return to the caller's netns; open, remove, and exec inside one. */
#include "netns.h"

#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <linux/netlink.h>

static int orig_ns = -1;

int netns_init(gx_err *err) {
  if (orig_ns >= 0) return 0;
  orig_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (orig_ns < 0) return gx_fail(err, errno, "open our own netns (/proc/thread-self/ns/net)");
  return 0;
}

static int back_home(gx_err *err) {
  /* failing here would leave every later request in the wrong namespace: stop */
  if (setns(orig_ns, CLONE_NEWNET) < 0) {
    fprintf(stderr, "gantry-net: cannot return to our own netns: %s\n", strerror(errno));
    _exit(70);
  }
  return 0;
}

static int nl_socket_here(gx_err *err) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return gx_fail(err, errno, "open a netlink socket in the new netns");
  return fd;
}

int netns_create(const char *path, int *nl_fd, gx_err *err) {
  *nl_fd = -1;
  if (netns_init(err) < 0) return -1;
  cleanup_close int f = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (f < 0) return gx_fail(err, errno, "create netns file `%s`", path);
  if (unshare(CLONE_NEWNET) < 0) {
    int e = errno;
    unlink(path);
    return gx_fail(err, e, "unshare a network namespace for `%s`", path);
  }
  int nsfd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  int e = errno;
  int sock = nsfd >= 0 ? nl_socket_here(err) : -1;
  int m = nsfd >= 0 && sock >= 0 ? mount("/proc/thread-self/ns/net", path, NULL, MS_BIND, NULL) : -1;
  int me = errno;
  back_home(err);
  if (nsfd < 0 || sock < 0 || m < 0) {
    if (nsfd >= 0) close(nsfd);
    if (sock >= 0) close(sock);
    unlink(path);
    if (nsfd < 0) return gx_fail(err, e, "open the new netns for `%s`", path);
    if (sock < 0) return -1;
    return gx_fail(err, me, "bind the new netns onto `%s`", path);
  }
  *nl_fd = sock;
  return nsfd;
}

int netns_open(const char *path, int *nl_fd, gx_err *err) {
  *nl_fd = -1;
  if (netns_init(err) < 0) return -1;
  int nsfd = open(path, O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) return gx_fail(err, errno, "open netns `%s`", path);
  if (setns(nsfd, CLONE_NEWNET) < 0) {
    int e = errno;
    close(nsfd);
    return gx_fail(err, e, "enter netns `%s` (not a network namespace?)", path);
  }
  int sock = nl_socket_here(err);
  back_home(err);
  if (sock < 0) {
    close(nsfd);
    return -1;
  }
  *nl_fd = sock;
  return nsfd;
}

int netns_remove(const char *path, gx_err *err) {
  /* a path bound twice (a crash between two attempts) needs as many unmounts */
  for (int i = 0; i < 8; i++) {
    if (umount2(path, MNT_DETACH) == 0) continue;
    if (errno == EINVAL || errno == ENOENT) break;
    return gx_fail(err, errno, "unmount netns `%s`", path);
  }
  if (unlink(path) < 0 && errno != ENOENT) return gx_fail(err, errno, "remove netns file `%s`", path);
  return 0;
}

int netns_spawn(int nsfd, char *const argv[], const char *input, netns_child *c, gx_err *err) {
  c->pid = -1;
  c->out = -1;
  cleanup_close int in = memfd_create("gantry-net-input", MFD_CLOEXEC);
  if (in < 0) return gx_fail(err, errno, "memfd for %s's input", argv[0]);
  size_t len = strlen(input);
  if (write_all(in, input, len) < 0 || lseek(in, 0, SEEK_SET) < 0) return gx_fail(err, errno, "write %s's input", argv[0]);
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return gx_fail(err, errno, "pipe for %s", argv[0]);
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(p[0]);
    close(p[1]);
    return gx_fail(err, e, "fork for %s", argv[0]);
  }
  if (pid == 0) {
    if (setns(nsfd, CLONE_NEWNET) < 0) {
      dprintf(p[1], "enter the netns: %s", strerror(errno));
      _exit(127);
    }
    dup2(in, 0);
    dup2(p[1], 1);
    dup2(p[1], 2);
    execvp(argv[0], argv);
    dprintf(p[1], "exec %s: %s", argv[0], strerror(errno));
    _exit(127);
  }
  close(p[1]);
  c->pid = pid;
  c->out = p[0];
  c->name = argv[0];
  return 0;
}

int netns_wait(netns_child *c, gx_err *err) {
  if (c->pid < 0) return 0;
  char out[600];
  size_t n = 0;
  for (;;) {
    ssize_t r = read(c->out, out + n, sizeof out - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += (size_t)r;
    if (n == sizeof out - 1) {
      char sink[4096]; /* keep draining so the child never blocks on a full pipe */
      while (read(c->out, sink, sizeof sink) > 0) {}
      break;
    }
  }
  out[n] = 0;
  close(c->out);
  c->out = -1;
  int st;
  pid_t pid = c->pid;
  c->pid = -1;
  while (waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) return gx_fail(err, errno, "wait for %s", c->name);
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
  while (n && (out[n - 1] == '\n' || out[n - 1] == ' ')) out[--n] = 0;
  if (WIFEXITED(st)) return gx_fail(err, 0, "%s exited %d: %s", c->name, WEXITSTATUS(st), out);
  return gx_fail(err, 0, "%s killed by signal %d", c->name, WTERMSIG(st));
}

int netns_exec(int nsfd, char *const argv[], const char *input, gx_err *err) {
  netns_child c;
  if (netns_spawn(nsfd, argv, input, &c, err) < 0) return -1;
  return netns_wait(&c, err);
}
