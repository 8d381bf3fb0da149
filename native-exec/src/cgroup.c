/* cgroup.c — picks cgroup v1 or v2 from what the host has (GANTRY_EXEC_CGROUP_ROOT forces v2 on
 * a fake tree, for tests), resolves cgroupsPath, and lists or mounts a container's cgroup. */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <linux/mount.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "runtime.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

int cgroup_detect(struct cgroup *cg) {
  const char *fake = getenv("GANTRY_EXEC_CGROUP_ROOT");
  if (fake && *fake) {
    cg->mode = 2;
    cg->root = xstrdup(fake);
    return 0;
  }
  struct statfs sf;
  cg->root = xstrdup("/sys/fs/cgroup");
  cg->mode = statfs("/sys/fs/cgroup", &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC ? 2 : 1;
  return 0;
}

/* "/a/b" stays; "a/b" -> "/a/b"; systemd "slice:prefix:name" -> "/slice/prefix-name.scope". */
char *cgroup_resolve_path(const char *p, const char *id) {
  if (!p) return xasprintf("/%s", id);
  const char *c1 = p[0] != '/' ? strchr(p, ':') : NULL;
  const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
  if (c2) return xasprintf("/%.*s/%.*s-%s.scope", (int)(c1 - p), p, (int)(c2 - c1 - 1), c1 + 1, c2 + 1);
  return p[0] == '/' ? xstrdup(p) : xasprintf("/%s", p);
}

int cgroup_create(struct cgroup *cg, const struct oci_config *c, gx_err *err) {
  return cg->mode == 2 ? cgroup_v2_create(cg, c, err) : cgroup_v1_create(cg, c, err);
}

int cgroup_enter(const struct cgroup *cg, pid_t pid, gx_err *err) {
  if (cg->mode == 1) return cgroup_v1_enter(cg, pid, err);
  cleanup_free char *p = xasprintf("%s%s/cgroup.procs", cg->root, cg->path);
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%d", pid);
  return write_file(p, buf, n, err);
}

int cgroup_destroy(const struct cgroup *cg, gx_err *err) {
  return cg->mode == 2 ? cgroup_v2_destroy(cg, err) : cgroup_v1_destroy(cg, err);
}

int cgroup_pids(const struct cgroup *cg, pid_t **pids, size_t *n) {
  cleanup_free char *p = cg->mode == 2 ? xasprintf("%s%s/cgroup.procs", cg->root, cg->path)
                                       : xasprintf("%s/pids%s/cgroup.procs", cg->root, cg->path);
  cleanup_free char *text = NULL;
  *n = 0;
  *pids = NULL;
  if (read_file(p, &text, NULL, NULL) < 0) return -1;
  size_t cap = 0;
  for (char *s = text; *s;) {
    long v = strtol(s, &s, 10);
    if (v > 0) {
      if (*n == cap) *pids = xrealloc(*pids, (cap = cap ? cap * 2 : 16) * sizeof **pids);
      (*pids)[(*n)++] = v;
    }
    while (*s == '\n') s++;
    if (*s && (*s < '0' || *s > '9')) break;
  }
  return 0;
}

/* v2: bind the container's own cgroup; v1: a tmpfs with each hierarchy's container dir bound in. */
int cgroup_mount(const struct cgroup *cg, int rootfd, const char *dest, unsigned long flags, gx_err *err) {
  cleanup_close int fd = open_in_root(rootfd, dest, true, true, err);
  if (fd < 0) return -1;
  char target[48];
  snprintf(target, sizeof target, "/proc/self/fd/%d", fd);
  if (cg->mode == 2) {
    cleanup_free char *src = xasprintf("%s%s", cg->root, cg->path);
    if (mount(src, target, NULL, MS_BIND | MS_REC, NULL) < 0) return gx_fail(err, errno, "bind mount `%s` on `%s`", src, dest);
    cleanup_close int top = open_in_root(rootfd, dest, false, true, err); /* the new mount, not the dir below */
    if (top < 0) return -1;
    snprintf(target, sizeof target, "/proc/self/fd/%d", top);
    if (mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | MS_NOEXEC | (flags & MS_RDONLY), NULL) < 0)
      return gx_fail(err, errno, "remount cgroup `%s` read-only", dest);
    return 0;
  }
  if (mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755") < 0)
    return gx_fail(err, errno, "mount tmpfs on cgroup dir `%s`", dest);
  cleanup_close int top = open_in_root(rootfd, dest, false, true, err); /* the tmpfs, not the dir below it */
  if (top < 0) return -1;
  snprintf(target, sizeof target, "/proc/self/fd/%d", top);
  DIR *d = opendir(cg->root);
  if (!d) return gx_fail(err, errno, "opendir `%s`", cg->root);
  struct dirent *e;
  int ret = 0;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.' || e->d_type != DT_DIR || !strcmp(e->d_name, "unified")) continue;
    cleanup_free char *src = xasprintf("%s/%s%s", cg->root, e->d_name, cg->path);
    cleanup_free char *dst = xasprintf("%s/%s", target, e->d_name);
    if (access(src, F_OK) < 0) continue;
    if (mkdir(dst, 0755) < 0 && errno != EEXIST) {
      ret = gx_fail(err, errno, "mkdir `%s/%s`", dest, e->d_name);
      break;
    }
    if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0) {
      ret = gx_fail(err, errno, "bind mount `%s` on `%s/%s`", src, dest, e->d_name);
      break;
    }
  }
  closedir(d);
  if (ret < 0) return ret;
  /* one recursive attribute change for the tmpfs and every hierarchy bound into it */
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC |
                                        ((flags & MS_RDONLY) ? MOUNT_ATTR_RDONLY : 0)};
  if (syscall(SYS_mount_setattr, top, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0)
    return gx_fail(err, errno, "mount_setattr read-only on cgroup dir `%s`", dest);
  return 0;
}
