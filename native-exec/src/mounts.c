/* mounts.c — one OCI mount inside the new root: resolve the destination with openat2
 * (RESOLVE_IN_ROOT, so `..` and symlinks cannot leave the rootfs), create it, mount through
 * /proc/self/fd/N, then apply read-only/nosuid/... remounts and propagation. */
#include <fcntl.h>
#include <linux/openat2.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>

#include "runtime.h"

static int openat2_in_root(int rootfd, const char *rel, int flags) {
  struct open_how how = {.flags = flags | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
  return syscall(SYS_openat2, rootfd, *rel ? rel : ".", &how, sizeof how);
}

/* An O_PATH fd for path inside rootfd; with create, missing parents become dirs and the leaf a
 * dir (dir) or an empty file. */
int open_in_root(int rootfd, const char *path, bool create, bool dir, gx_err *err) {
  while (*path == '/') path++;
  int fd = openat2_in_root(rootfd, path, O_PATH);
  if (fd >= 0 || errno != ENOENT || !create) {
    if (fd < 0) return gx_fail(err, errno, "open `%s` in rootfs", path);
    return fd;
  }
  cleanup_free char *parent = xstrdup(path);
  char *slash = strrchr(parent, '/');
  const char *base = slash ? slash + 1 : parent;
  cleanup_close int pfd = -1;
  if (slash) {
    *slash = 0;
    pfd = open_in_root(rootfd, parent, true, true, err);
  } else {
    pfd = dup(rootfd);
  }
  if (pfd < 0) return -1;
  if (dir) {
    if (mkdirat(pfd, base, 0755) < 0 && errno != EEXIST) return gx_fail(err, errno, "mkdir `/%s` in rootfs", path);
  } else {
    int f = openat(pfd, base, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (f < 0 && errno != EEXIST) return gx_fail(err, errno, "create `/%s` in rootfs", path);
    if (f >= 0) close(f);
  }
  fd = openat2_in_root(rootfd, path, O_PATH);
  if (fd < 0) return gx_fail(err, errno, "open `/%s` in rootfs", path);
  return fd;
}

static unsigned long vfs_flags(const char *path) {
  struct statvfs s;
  if (statvfs(path, &s) < 0) return 0;
  unsigned long f = 0;
  if (s.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (s.f_flag & ST_NODEV) f |= MS_NODEV;
  if (s.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (s.f_flag & ST_RDONLY) f |= MS_RDONLY;
  if (s.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (s.f_flag & ST_RELATIME) f |= MS_RELATIME;
  if (s.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
  return f;
}

static int bind_mount(int rootfd, const struct oci_mount *m, gx_err *err) {
  struct stat st;
  if (stat(m->source, &st) < 0) return gx_fail(err, errno, "bind mount source `%s`", m->source);
  cleanup_close int fd = open_in_root(rootfd, m->dest, true, S_ISDIR(st.st_mode), err);
  if (fd < 0) return -1;
  char target[40];
  snprintf(target, sizeof target, "/proc/self/fd/%d", fd);
  if (mount(m->source, target, NULL, MS_BIND | (m->flags & MS_REC), NULL) < 0)
    return gx_fail(err, errno, "bind mount `%s` on `%s`", m->source, m->dest);
  unsigned long extra = m->flags & ~(MS_BIND | MS_REC | MS_REMOUNT);
  if (extra || m->recursive_ro || m->clear) {
    cleanup_close int top = open_in_root(rootfd, m->dest, false, false, err); /* the new mount, not the one below */
    if (top < 0) return -1;
    snprintf(target, sizeof target, "/proc/self/fd/%d", top);
    unsigned long f = ((vfs_flags(target) | extra) & ~m->clear) | (m->recursive_ro ? MS_RDONLY : 0);
    if (mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | f, NULL) < 0)
      return gx_fail(err, errno, "remount bind `%s` with options", m->dest);
  }
  if (m->propagation && mount(NULL, target, NULL, m->propagation, NULL) < 0)
    return gx_fail(err, errno, "set propagation of `%s`", m->dest);
  return 0;
}

int mount_one(int rootfd, const char *rootfs, const struct oci_mount *m, const struct cgroup *cg, bool userns, gx_err *err) {
  if (m->bind) return bind_mount(rootfd, m, err);
  cleanup_close int fd = open_in_root(rootfd, m->dest, true, true, err);
  if (fd < 0) return -1;
  char target[40];
  snprintf(target, sizeof target, "/proc/self/fd/%d", fd);
  if (!strcmp(m->type, "cgroup") || !strcmp(m->type, "cgroup2")) return cgroup_mount(cg, rootfd, m->dest, m->flags, err);
  unsigned long flags = m->flags & ~MS_REMOUNT;
  if (mount(m->source, target, m->type, flags, m->data) < 0) {
    int e = errno;
    if (!strcmp(m->type, "sysfs") && (e == EPERM || e == EBUSY)) { /* no own netns: bind the host's, read-only */
      struct oci_mount b = *m;
      b.source = "/sys", b.bind = true, b.flags = MS_BIND | MS_REC | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
      return bind_mount(rootfd, &b, err);
    }
    if (!strcmp(m->type, "mqueue") && e == EPERM && userns) { /* mqueue in a userns without own ipc ns */
      struct oci_mount b = *m;
      b.source = "/dev/mqueue", b.bind = true, b.flags = MS_BIND | MS_REC;
      return bind_mount(rootfd, &b, err);
    }
    return gx_fail(err, e, "mount %s on `%s`", m->type, m->dest);
  }
  if (m->propagation) {
    cleanup_close int top = open_in_root(rootfd, m->dest, false, false, err);
    if (top < 0) return -1;
    snprintf(target, sizeof target, "/proc/self/fd/%d", top);
    if (mount(NULL, target, NULL, m->propagation, NULL) < 0) return gx_fail(err, errno, "set propagation of `%s`", m->dest);
  }
  (void)rootfs;
  return 0;
}
