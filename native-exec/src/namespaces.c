/* namespaces.c — creating namespaces (clone3 with CLONE_NEW* flags), joining them by path
 * (setns), and writing the user namespace's uid/gid maps from the parent. */
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>

#include "runtime.h"

pid_t clone_child(int flags) {
  struct clone_args args = {.flags = (unsigned)flags, .exit_signal = SIGCHLD};
  return syscall(SYS_clone3, &args, sizeof args);
}

/* Join namespaces given by path; only_type 0 = all except user and those handled elsewhere. */
int ns_join(const struct oci_config *c, int only_type, gx_err *err) {
  for (size_t i = 0; i < c->nns; i++) {
    const struct oci_ns *n = &c->ns[i];
    if (!n->path || (only_type && n->type != only_type) || (!only_type && n->type == CLONE_NEWUSER)) continue;
    cleanup_close int fd = open(n->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return gx_fail(err, errno, "open namespace `%s`", n->path);
    if (setns(fd, n->type) < 0) return gx_fail(err, errno, "setns `%s`", n->path);
  }
  return 0;
}

static int write_map(pid_t pid, const char *file, const struct oci_idmap *m, size_t n, gx_err *err) {
  cleanup_sb strbuf sb = {0};
  for (size_t i = 0; i < n; i++) sb_printf(&sb, "%u %u %u\n", m[i].container, m[i].host, m[i].size);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", pid, file);
  return write_file(path, sb.buf, sb.len, err);
}

int ns_write_idmaps(pid_t pid, const struct oci_config *c, gx_err *err) {
  if (write_map(pid, "uid_map", c->uidmap, c->nuidmap, err) < 0) return -1;
  return write_map(pid, "gid_map", c->gidmap, c->ngidmap, err);
}
