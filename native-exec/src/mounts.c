/* mounts.c — one OCI mount inside the new root: resolve the destination with openat2
 * (RESOLVE_IN_ROOT, so `..` and symlinks cannot leave the rootfs), create it, mount through
 * /proc/self/fd/N, then apply read-only/nosuid/... remounts and propagation. */
#include <fcntl.h>
#include <limits.h>
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

/* Resolve path as if rootfd were "/" (symlinks followed, absolute ones restart at the root, `..`
 * stops at the root) into a symlink-free relative path whose tail may not exist yet. */
static int secure_join(int rootfd, const char *path, char *out, size_t outsz, gx_err *err) {
  char rest[PATH_MAX * 2], tmp[PATH_MAX * 2], target[PATH_MAX];
  snprintf(rest, sizeof rest, "%s", path);
  out[0] = 0;
  int links = 0;
  char *p = rest;
  while (*p) {
    while (*p == '/') p++;
    if (!*p) break;
    char *end = strchrnul(p, '/');
    size_t len = end - p;
    if (len == 1 && p[0] == '.') {
      p = end;
      continue;
    }
    if (len == 2 && p[0] == '.' && p[1] == '.') {
      char *slash = strrchr(out, '/');
      if (slash) *slash = 0;
      else out[0] = 0;
      p = end;
      continue;
    }
    size_t ol = strlen(out);
    if (ol + len + 2 >= outsz) return gx_fail(err, ENAMETOOLONG, "resolve `%s` in rootfs", path);
    snprintf(out + ol, outsz - ol, "%s%.*s", ol ? "/" : "", (int)len, p);
    ssize_t n = readlinkat(rootfd, out, target, sizeof target - 1);
    if (n < 0) { /* not a symlink, or not there yet: keep the component */
      p = end;
      continue;
    }
    if (++links > 40) return gx_fail(err, ELOOP, "resolve `%s` in rootfs", path);
    target[n] = 0;
    out[ol] = 0; /* drop the link itself */
    if (target[0] == '/') out[0] = 0;
    snprintf(tmp, sizeof tmp, "%s/%s", target, end);
    snprintf(rest, sizeof rest, "%s", tmp);
    p = rest;
  }
  return 0;
}

/* An O_PATH fd for path inside rootfd; with create, missing directories along the (symlink-
 * resolved, root-confined) path are made and the leaf becomes a dir (dir) or an empty file. */
int open_in_root(int rootfd, const char *path, bool create, bool dir, gx_err *err) {
  char rel[PATH_MAX];
  if (secure_join(rootfd, path, rel, sizeof rel, err) < 0) return -1;
  int fd = openat2_in_root(rootfd, rel, O_PATH);
  if (fd >= 0) return fd;
  if (errno != ENOENT || !create) return gx_fail(err, errno, "open `%s` in rootfs", path);
  cleanup_close int cur = dup(rootfd);
  if (cur < 0) return gx_fail(err, errno, "dup rootfs fd");
  for (char *c = rel; *c;) {
    char *end = strchrnul(c, '/');
    bool last = !*end;
    *end = 0;
    if (!last || dir) {
      if (mkdirat(cur, c, 0755) < 0 && errno != EEXIST) return gx_fail(err, errno, "mkdir `%s` in rootfs", path);
    } else {
      int f = openat(cur, c, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
      if (f < 0 && errno != EEXIST) return gx_fail(err, errno, "create `%s` in rootfs", path);
      if (f >= 0) close(f);
    }
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS};
    int next = syscall(SYS_openat2, cur, c, &how, sizeof how);
    if (next < 0) return gx_fail(err, errno, "open `%s` in rootfs", path);
    close(cur);
    cur = next;
    if (last) break;
    c = end + 1;
  }
  return steal_fd(&cur);
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
  /* `top` names the new mount (not the one below); it stays open while `target` points at it */
  cleanup_close int top = -1;
  if (extra || m->recursive_ro || m->clear) {
    top = open_in_root(rootfd, m->dest, false, false, err);
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
