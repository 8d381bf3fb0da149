/* cgroup_v1.c — one directory per v1 hierarchy under /sys/fs/cgroup/<ctrl>: create (cpuset
 * inherits cpus/mems), write memory/cpu/cpuset/pids/blkio/devices limits, enter, remove. */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "runtime.h"

static int hierarchies(const struct cgroup *cg, char names[][32], int max) {
  DIR *d = opendir(cg->root);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)) && n < max) {
    if (e->d_name[0] == '.' || e->d_type != DT_DIR || !strcmp(e->d_name, "unified") || strlen(e->d_name) >= 32) continue;
    strcpy(names[n++], e->d_name);
  }
  if (d) closedir(d);
  return n;
}

static int wr(const char *dir, const char *file, const char *val, gx_err *err) {
  cleanup_free char *p = xasprintf("%s/%s", dir, file);
  cleanup_close int fd = open(p, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return gx_fail(err, errno, "open `%s`", p);
  if (write(fd, val, strlen(val)) < 0) return gx_fail(err, errno, "write `%s` to `%s`", val, p);
  return 0;
}

static int wr_ll(const char *dir, const char *file, long long v, gx_err *err) {
  char b[32];
  snprintf(b, sizeof b, "%lld", v);
  return wr(dir, file, b, err);
}

static int blank(const char *s) {
  for (; *s; s++)
    if (*s != ' ' && *s != '\n' && *s != '\t') return 0;
  return 1;
}

/* Gives `dir` its parent's cpuset.cpus or .mems when it has none (a new cpuset is empty, and no
 * task can enter an empty one: ENOSPC). */
static int cpuset_inherit(const char *parent, const char *dir, const char *file, int is_new, gx_err *err) {
  if (!is_new) {
    cleanup_free char *own = NULL, *op = xasprintf("%s/%s", dir, file);
    if (read_file(op, &own, NULL, err) < 0) return -1;
    if (!blank(own)) return 0;
  }
  cleanup_free char *val = NULL, *pf = xasprintf("%s/%s", parent, file);
  if (read_file(pf, &val, NULL, err) < 0) return -1;
  return wr(dir, file, val, err);
}

/* cpuset children start empty: copy cpus and mems down each level that has none. A level that
 * exists already may be one another gantry-exec has just made and not filled yet, so it is
 * checked too (two containers starting together under a new parent: the second got ENOSPC). */
static int mkdir_cpuset(const char *root, const char *path, gx_err *err) {
  cleanup_free char *p = xstrdup(path);
  char *cur = xasprintf("%s", root);
  int ret = 0;
  for (char *s = strtok(p, "/"); s && ret == 0; s = strtok(NULL, "/")) {
    char *next = xasprintf("%s/%s", cur, s);
    int made = mkdir(next, 0755) == 0;
    if (!made && errno != EEXIST) ret = gx_fail(err, errno, "mkdir `%s`", next);
    if (ret == 0) ret = cpuset_inherit(cur, next, "cpuset.cpus", made, err);
    if (ret == 0) ret = cpuset_inherit(cur, next, "cpuset.mems", made, err);
    free(cur);
    cur = next;
  }
  free(cur);
  return ret;
}

/* One open fd per file: a rule is one write(2) each. */
static int dev_rule(int fd, const char *file, const char *rule, gx_err *err) {
  if (write(fd, rule, strlen(rule)) < 0) return gx_fail(err, errno, "write `%s` to devices.%s", rule, file);
  return 0;
}

static int apply_devices(const char *dir, const struct oci_config *c, gx_err *err) {
  static const char *defaults[] = {"c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm",
                                   "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm", NULL};
  cleanup_free char *ap = xasprintf("%s/devices.allow", dir), *dp = xasprintf("%s/devices.deny", dir);
  cleanup_close int allow = open(ap, O_WRONLY | O_CLOEXEC);
  if (allow < 0) return gx_fail(err, errno, "open `%s`", ap);
  cleanup_close int deny = open(dp, O_WRONLY | O_CLOEXEC);
  if (deny < 0) return gx_fail(err, errno, "open `%s`", dp);
  if (dev_rule(deny, "deny", "a", err) < 0) return -1;
  char rule[64], maj[24], min[24];
  for (size_t i = 0; i < c->res.ndevrules; i++) {
    const struct oci_devrule *r = &c->res.devrules[i];
    snprintf(maj, sizeof maj, r->major < 0 ? "*" : "%lld", (long long)r->major);
    snprintf(min, sizeof min, r->minor < 0 ? "*" : "%lld", (long long)r->minor);
    snprintf(rule, sizeof rule, "%c %s:%s %s", r->type, maj, min, r->access);
    if (r->type == 'a' && r->major < 0 && r->minor < 0) snprintf(rule, sizeof rule, "a");
    if (dev_rule(r->allow ? allow : deny, r->allow ? "allow" : "deny", rule, err) < 0) return -1;
  }
  for (const char **d = defaults; *d; d++)
    if (dev_rule(allow, "allow", *d, err) < 0) return -1;
  for (size_t i = 0; i < c->ndevices; i++) {
    snprintf(rule, sizeof rule, "%c %lld:%lld rwm", c->devices[i].type == 'u' ? 'c' : c->devices[i].type,
             (long long)c->devices[i].major, (long long)c->devices[i].minor);
    if (dev_rule(allow, "allow", rule, err) < 0) return -1;
  }
  return 0;
}

static int apply(const char *ctrl, const char *dir, const struct oci_config *c, gx_err *err) {
  const struct oci_resources *r = &c->res;
  if (!strcmp(ctrl, "memory")) {
    if (r->mem_limit > 0 && wr_ll(dir, "memory.limit_in_bytes", r->mem_limit, err) < 0) return -1;
    if (r->mem_reservation > 0 && wr_ll(dir, "memory.soft_limit_in_bytes", r->mem_reservation, err) < 0) return -1;
    if (r->mem_swap) {
      cleanup_free char *f = xasprintf("%s/memory.memsw.limit_in_bytes", dir);
      if (access(f, F_OK) == 0 && wr_ll(dir, "memory.memsw.limit_in_bytes", r->mem_swap, err) < 0) return -1;
    }
  } else if (!strcmp(ctrl, "cpu") || !strcmp(ctrl, "cpu,cpuacct")) {
    if (r->cpu_shares && wr_ll(dir, "cpu.shares", r->cpu_shares, err) < 0) return -1;
    if (r->cpu_period && wr_ll(dir, "cpu.cfs_period_us", r->cpu_period, err) < 0) return -1;
    if (r->cpu_quota && wr_ll(dir, "cpu.cfs_quota_us", r->cpu_quota, err) < 0) return -1;
  } else if (!strcmp(ctrl, "cpuset")) {
    if (r->cpus && *r->cpus && wr(dir, "cpuset.cpus", r->cpus, err) < 0) return -1;
    if (r->mems && *r->mems && wr(dir, "cpuset.mems", r->mems, err) < 0) return -1;
  } else if (!strcmp(ctrl, "pids")) {
    if (r->pids_limit > 0 && wr_ll(dir, "pids.max", r->pids_limit, err) < 0) return -1;
    if (r->pids_limit < 0 && wr(dir, "pids.max", "max", err) < 0) return -1;
  } else if (!strcmp(ctrl, "blkio")) {
    cleanup_free char *f = xasprintf("%s/blkio.weight", dir);
    if (r->blkio_weight && access(f, F_OK) == 0 && wr_ll(dir, "blkio.weight", r->blkio_weight, err) < 0) return -1;
  } else if (!strcmp(ctrl, "devices")) {
    return apply_devices(dir, c, err);
  }
  return 0;
}

int cgroup_v1_create(const struct cgroup *cg, const struct oci_config *c, gx_err *err) {
  char names[16][32];
  int n = hierarchies(cg, names, 16);
  for (int i = 0; i < n; i++) {
    cleanup_free char *dir = xasprintf("%s/%s%s", cg->root, names[i], cg->path);
    cleanup_free char *root = xasprintf("%s/%s", cg->root, names[i]);
    if (!strcmp(names[i], "cpuset")) {
      if (mkdir_cpuset(root, cg->path, err) < 0) return -1;
    } else if (mkdir(dir, 0755) < 0 && (errno != ENOENT || mkdir_p(dir, 0755, err) < 0) && errno != EEXIST) {
      return gx_fail(err, errno, "mkdir cgroup `%s`", dir);
    }
    if (apply(names[i], dir, c, err) < 0) return -1;
  }
  return 0;
}

int cgroup_v1_enter(const struct cgroup *cg, pid_t pid, gx_err *err) {
  char names[16][32];
  int n = hierarchies(cg, names, 16);
  for (int i = 0; i < n; i++) {
    cleanup_free char *dir = xasprintf("%s/%s%s", cg->root, names[i], cg->path);
    if (wr_ll(dir, "cgroup.procs", pid, err) < 0) return -1;
  }
  return 0;
}

/* rmdir each hierarchy's dir; processes of a dying pid namespace may linger for a moment. */
int cgroup_v1_destroy(const struct cgroup *cg, gx_err *err) {
  char names[16][32];
  int n = hierarchies(cg, names, 16), ret = 0;
  for (int i = 0; i < n; i++) {
    cleanup_free char *dir = xasprintf("%s/%s%s", cg->root, names[i], cg->path);
    for (int tries = 0;; tries++) {
      if (rmdir(dir) == 0 || errno == ENOENT) break;
      if (errno != EBUSY || tries > 500) {
        ret = gx_fail(err, errno, "rmdir cgroup `%s`", dir);
        break;
      }
      nanosleep(&(struct timespec){0, 2000000}, NULL);
    }
  }
  return ret;
}
