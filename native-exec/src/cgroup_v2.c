/* cgroup_v2.c — the unified hierarchy: enable controllers down the path (cgroup.subtree_control),
 * create the leaf, write memory.max/low/swap.max, cpu.weight/max, cpuset, pids.max, io.weight. */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "runtime.h"

static int wr(const char *dir, const char *file, const char *val, gx_err *err) {
  cleanup_free char *p = xasprintf("%s/%s", dir, file);
  cleanup_close int fd = open(p, O_WRONLY | O_CLOEXEC | O_TRUNC | O_CREAT, 0644); /* O_CREAT: harmless on cgroupfs, needed on the test tree */
  if (fd < 0) return gx_fail(err, errno, "open `%s`", p);
  if (write(fd, val, strlen(val)) < 0) return gx_fail(err, errno, "write `%s` to `%s`", val, p);
  return 0;
}

static int wr_ll(const char *dir, const char *file, long long v, gx_err *err) {
  char b[32];
  snprintf(b, sizeof b, v < 0 ? "max" : "%lld", v);
  return wr(dir, file, b, err);
}

static bool has_word(const char *list, const char *w) {
  size_t l = strlen(w);
  for (const char *p = list; (p = strstr(p, w)); p += l)
    if ((p == list || p[-1] == ' ') && (!p[l] || p[l] == ' ' || p[l] == '\n')) return true;
  return false;
}

/* "+cpu +memory ..." for the controllers this level offers (all when cgroup.controllers is absent). */
static int enable_controllers(const char *dir, gx_err *err) {
  static const char *want[] = {"cpu", "cpuset", "io", "memory", "pids"};
  cleanup_free char *avail = NULL, *cf = xasprintf("%s/cgroup.controllers", dir);
  read_file(cf, &avail, NULL, NULL);
  char line[128] = "";
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    if (avail && !has_word(avail, want[i])) continue;
    strcat(line, *line ? " +" : "+");
    strcat(line, want[i]);
  }
  return *line ? wr(dir, "cgroup.subtree_control", line, err) : 0;
}

int cgroup_v2_create(const struct cgroup *cg, const struct oci_config *c, gx_err *err) {
  cleanup_free char *path = xstrdup(cg->path);
  cleanup_free char *dir = xstrdup(cg->root);
  for (char *s = strtok(path, "/"); s; s = strtok(NULL, "/")) {
    if (enable_controllers(dir, err) < 0) return -1;
    char *next = xasprintf("%s/%s", dir, s);
    free(dir);
    dir = next;
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) return gx_fail(err, errno, "mkdir cgroup `%s`", dir);
  }
  const struct oci_resources *r = &c->res;
  if (r->mem_limit > 0 && wr_ll(dir, "memory.max", r->mem_limit, err) < 0) return -1;
  if (r->mem_reservation > 0 && wr_ll(dir, "memory.low", r->mem_reservation, err) < 0) return -1;
  if (r->mem_swap) { /* spec swap = memory+swap; v2 wants the swap part alone */
    long long sw = r->mem_swap < 0 ? -1 : r->mem_limit > 0 ? r->mem_swap - r->mem_limit : r->mem_swap;
    if (wr_ll(dir, "memory.swap.max", r->mem_swap > 0 && sw < 0 ? 0 : sw, err) < 0) return -1;
  }
  if (r->cpu_shares && wr_ll(dir, "cpu.weight", 1 + ((long long)(r->cpu_shares - 2) * 9999) / 262142, err) < 0) return -1;
  if (r->cpu_quota || r->cpu_period) {
    char b[64];
    unsigned long long period = r->cpu_period ? r->cpu_period : 100000;
    if (r->cpu_quota > 0) snprintf(b, sizeof b, "%lld %llu", (long long)r->cpu_quota, period);
    else snprintf(b, sizeof b, "max %llu", period);
    if (wr(dir, "cpu.max", b, err) < 0) return -1;
  }
  if (r->cpus && *r->cpus && wr(dir, "cpuset.cpus", r->cpus, err) < 0) return -1;
  if (r->mems && *r->mems && wr(dir, "cpuset.mems", r->mems, err) < 0) return -1;
  if (r->pids_limit && wr_ll(dir, "pids.max", r->pids_limit, err) < 0) return -1;
  if (r->blkio_weight && wr_ll(dir, "io.weight", 1 + ((long long)(r->blkio_weight - 10) * 9999) / 990, err) < 0) return -1;
  return devices_bpf_attach(dir, c, err);
}

/* On real cgroupfs rmdir succeeds with the interface files present; a fake tree (tests) holds
 * regular files, removed here so the same code path cleans both. */
int cgroup_v2_destroy(const struct cgroup *cg, gx_err *err) {
  cleanup_free char *dir = xasprintf("%s%s", cg->root, cg->path);
  for (int tries = 0;; tries++) {
    if (rmdir(dir) == 0 || errno == ENOENT) return 0;
    if (errno == ENOTEMPTY) {
      DIR *d = opendir(dir);
      struct dirent *e;
      while (d && (e = readdir(d)))
        if (e->d_type == DT_REG) unlinkat(dirfd(d), e->d_name, 0);
      if (d) closedir(d);
    } else if (errno != EBUSY || tries > 500) {
      return gx_fail(err, errno, "rmdir cgroup `%s`", dir);
    } else {
      nanosleep(&(struct timespec){0, 2000000}, NULL);
    }
    if (tries > 500) return gx_fail(err, errno, "rmdir cgroup `%s`", dir);
  }
}
