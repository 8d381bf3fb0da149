/* config.c — parse and validate the OCI config.json into struct oci_config: process, root,
 * mounts (option table), namespaces, id maps, devices, resources, hooks, sysctl, masks. */
#include "config.h"

#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

static const char *cap_names[] = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"};

int cap_from_name(const char *name) {
  for (size_t i = 0; i < sizeof cap_names / sizeof *cap_names; i++)
    if (!strcasecmp(name, cap_names[i]) || !strcasecmp(name, cap_names[i] + 4)) return i;
  return -1;
}

int signal_from_name(const char *name) {
  char *end;
  long n = strtol(name, &end, 10);
  if (*name && !*end) return n > 0 && n < NSIG ? (int)n : -1;
  if (!strncasecmp(name, "SIG", 3)) name += 3;
  for (int s = 1; s < NSIG; s++) {
    const char *a = sigabbrev_np(s);
    if (a && !strcasecmp(a, name)) return s;
  }
  if (!strncasecmp(name, "RTMIN+", 6)) return SIGRTMIN + atoi(name + 6);
  return -1;
}

static const struct {
  const char *name;
  int res;
} rlimit_names[] = {{"RLIMIT_AS", RLIMIT_AS},         {"RLIMIT_CORE", RLIMIT_CORE},
                    {"RLIMIT_CPU", RLIMIT_CPU},       {"RLIMIT_DATA", RLIMIT_DATA},
                    {"RLIMIT_FSIZE", RLIMIT_FSIZE},   {"RLIMIT_LOCKS", RLIMIT_LOCKS},
                    {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK}, {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE},
                    {"RLIMIT_NICE", RLIMIT_NICE},     {"RLIMIT_NOFILE", RLIMIT_NOFILE},
                    {"RLIMIT_NPROC", RLIMIT_NPROC},   {"RLIMIT_RSS", RLIMIT_RSS},
                    {"RLIMIT_RTPRIO", RLIMIT_RTPRIO}, {"RLIMIT_RTTIME", RLIMIT_RTTIME},
                    {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING}, {"RLIMIT_STACK", RLIMIT_STACK}};

const char *rlimit_name(int res) {
  for (size_t k = 0; k < sizeof rlimit_names / sizeof *rlimit_names; k++)
    if (rlimit_names[k].res == res) return rlimit_names[k].name;
  return "RLIMIT_?";
}

static const struct {
  const char *name;
  int flag;
} ns_names[] = {{"pid", CLONE_NEWPID},   {"network", CLONE_NEWNET}, {"mount", CLONE_NEWNS},
                {"ipc", CLONE_NEWIPC},   {"uts", CLONE_NEWUTS},     {"user", CLONE_NEWUSER},
                {"cgroup", CLONE_NEWCGROUP}, {"time", CLONE_NEWTIME}};

static const struct {
  const char *name;
  bool clear;
  unsigned long flag;
  int kind; /* 0 flag, 1 propagation, 2 bind, 3 rbind, 4 rro */
} mount_opts[] = {
    {"ro", 0, MS_RDONLY, 0},          {"rw", 1, MS_RDONLY, 0},          {"nosuid", 0, MS_NOSUID, 0},
    {"suid", 1, MS_NOSUID, 0},        {"nodev", 0, MS_NODEV, 0},        {"dev", 1, MS_NODEV, 0},
    {"noexec", 0, MS_NOEXEC, 0},      {"exec", 1, MS_NOEXEC, 0},        {"sync", 0, MS_SYNCHRONOUS, 0},
    {"async", 1, MS_SYNCHRONOUS, 0},  {"dirsync", 0, MS_DIRSYNC, 0},    {"remount", 0, MS_REMOUNT, 0},
    {"mand", 0, MS_MANDLOCK, 0},      {"nomand", 1, MS_MANDLOCK, 0},    {"atime", 1, MS_NOATIME, 0},
    {"noatime", 0, MS_NOATIME, 0},    {"diratime", 1, MS_NODIRATIME, 0}, {"nodiratime", 0, MS_NODIRATIME, 0},
    {"relatime", 0, MS_RELATIME, 0},  {"norelatime", 1, MS_RELATIME, 0}, {"strictatime", 0, MS_STRICTATIME, 0},
    {"nostrictatime", 1, MS_STRICTATIME, 0}, {"nosymfollow", 0, MS_NOSYMFOLLOW, 0},
    {"private", 0, MS_PRIVATE, 1},    {"rprivate", 0, MS_PRIVATE | MS_REC, 1},
    {"shared", 0, MS_SHARED, 1},      {"rshared", 0, MS_SHARED | MS_REC, 1},
    {"slave", 0, MS_SLAVE, 1},        {"rslave", 0, MS_SLAVE | MS_REC, 1},
    {"unbindable", 0, MS_UNBINDABLE, 1}, {"runbindable", 0, MS_UNBINDABLE | MS_REC, 1},
    {"bind", 0, MS_BIND, 2},          {"rbind", 0, MS_BIND | MS_REC, 3}, {"rro", 0, MS_RDONLY, 4},
    {"tmpcopyup", 0, 0, 0}};

static char **str_array(const json *a, size_t *n) {
  size_t cnt = 0;
  char **r = xcalloc(jlen(a) + 1, sizeof *r);
  for (size_t i = 0; i < jlen(a); i++)
    if (a->t == J_ARR && a->v[i]->t == J_STR) r[cnt++] = xstrdup(a->v[i]->s);
  if (n) *n = cnt;
  return r;
}

static int parse_caps(const json *caps, struct oci_process *p, gx_err *err) {
  static const char *sets[] = {"bounding", "effective", "inheritable", "permitted", "ambient"};
  p->has_caps = caps != NULL;
  for (int s = 0; s < 5; s++) {
    const json *a = jget(caps, sets[s]);
    for (size_t i = 0; i < jlen(a); i++) {
      int c = cap_from_name(jstr(a->v[i], ""));
      if (c < 0) return gx_fail(err, 0, "unknown capability `%s` in process.capabilities.%s", jstr(a->v[i], "?"), sets[s]);
      p->caps[s] |= 1ULL << c;
    }
  }
  return 0;
}

int config_parse_process(const json *j, struct oci_process *p, gx_err *err) {
  if (!j || j->t != J_OBJ) return gx_fail(err, 0, "config: process must be an object");
  size_t n;
  p->args = str_array(jget(j, "args"), &n);
  if (n == 0) return gx_fail(err, 0, "config: process.args must not be empty");
  p->env = str_array(jget(j, "env"), NULL);
  p->cwd = xstrdup(jstr(jget(j, "cwd"), "/"));
  if (p->cwd[0] != '/') return gx_fail(err, 0, "config: process.cwd `%s` must be absolute", p->cwd);
  const json *u = jget(j, "user");
  p->uid = jint(jget(u, "uid"), 0);
  p->gid = jint(jget(u, "gid"), 0);
  const json *ag = jget(u, "additionalGids");
  p->gids = xcalloc(jlen(ag) + 1, sizeof *p->gids);
  for (size_t i = 0; i < jlen(ag); i++) p->gids[p->ngids++] = jint(ag->v[i], 0);
  p->terminal = jbool(jget(j, "terminal"), false);
  const json *cs = jget(j, "consoleSize");
  p->rows = jint(jget(cs, "height"), 0);
  p->cols = jint(jget(cs, "width"), 0);
  p->nnp = jbool(jget(j, "noNewPrivileges"), false);
  const json *oom = jget(j, "oomScoreAdj");
  p->has_oom_score_adj = oom != NULL;
  p->oom_score_adj = jint(oom, 0);
  if (parse_caps(jget(j, "capabilities"), p, err) < 0) return -1;
  const json *rl = jget(j, "rlimits");
  p->rlimits = xcalloc(jlen(rl) + 1, sizeof *p->rlimits);
  for (size_t i = 0; i < jlen(rl); i++) {
    const char *t = jstr(jget(rl->v[i], "type"), "");
    size_t k;
    for (k = 0; k < sizeof rlimit_names / sizeof *rlimit_names; k++)
      if (!strcmp(t, rlimit_names[k].name)) break;
    if (k == sizeof rlimit_names / sizeof *rlimit_names) return gx_fail(err, 0, "config: unknown rlimit `%s`", t);
    p->rlimits[p->nrlimits++] = (struct oci_rlimit){rlimit_names[k].res, (uint64_t)jint(jget(rl->v[i], "soft"), 0),
                                                    (uint64_t)jint(jget(rl->v[i], "hard"), 0)};
  }
  return 0;
}

static int parse_mount(const json *m, struct oci_mount *om, gx_err *err) {
  om->dest = xstrdup(jstr(jget(m, "destination"), ""));
  if (om->dest[0] != '/') return gx_fail(err, 0, "config: mount destination `%s` must be absolute", om->dest);
  om->type = xstrdup(jstr(jget(m, "type"), ""));
  om->source = xstrdup(jstr(jget(m, "source"), om->type));
  strbuf data = {0};
  const json *opts = jget(m, "options");
  for (size_t i = 0; i < jlen(opts); i++) {
    const char *o = jstr(opts->v[i], "");
    size_t k;
    for (k = 0; k < sizeof mount_opts / sizeof *mount_opts; k++)
      if (!strcmp(o, mount_opts[k].name)) break;
    if (k == sizeof mount_opts / sizeof *mount_opts) {
      if (data.len) sb_puts(&data, ",");
      sb_puts(&data, o);
      continue;
    }
    switch (mount_opts[k].kind) {
    case 0:
      if (mount_opts[k].clear) om->flags &= ~mount_opts[k].flag, om->clear |= mount_opts[k].flag;
      else om->flags |= mount_opts[k].flag;
      break;
    case 1: om->propagation = mount_opts[k].flag; break;
    case 2:
    case 3: om->bind = true, om->flags |= mount_opts[k].flag; break;
    case 4: om->recursive_ro = true; break;
    }
  }
  if (!strcmp(om->type, "bind")) om->bind = true, om->flags |= MS_BIND;
  if (om->bind && om->source[0] != '/') return gx_fail(err, 0, "config: bind mount source `%s` must be absolute", om->source);
  om->data = data.buf;
  return 0;
}

static int parse_devrule(const json *d, struct oci_devrule *r) {
  r->allow = jbool(jget(d, "allow"), false);
  r->type = jstr(jget(d, "type"), "a")[0];
  r->major = jint(jget(d, "major"), -1);
  r->minor = jint(jget(d, "minor"), -1);
  snprintf(r->access, sizeof r->access, "%s", jstr(jget(d, "access"), "rwm"));
  return 0;
}

static int parse_linux(const json *l, struct oci_config *c, gx_err *err) {
  const json *ns = jget(l, "namespaces");
  c->ns = xcalloc(jlen(ns) + 1, sizeof *c->ns);
  for (size_t i = 0; i < jlen(ns); i++) {
    const char *t = jstr(jget(ns->v[i], "type"), "");
    size_t k;
    for (k = 0; k < sizeof ns_names / sizeof *ns_names; k++)
      if (!strcmp(t, ns_names[k].name)) break;
    if (k == sizeof ns_names / sizeof *ns_names) return gx_fail(err, 0, "config: unknown namespace type `%s`", t);
    const char *path = jstr(jget(ns->v[i], "path"), NULL);
    c->ns[c->nns++] = (struct oci_ns){ns_names[k].flag, path && *path ? xstrdup(path) : NULL};
    if (!path || !*path) c->clone_flags |= ns_names[k].flag;
  }
  const json *maps[2] = {jget(l, "uidMappings"), jget(l, "gidMappings")};
  struct oci_idmap **out[2] = {&c->uidmap, &c->gidmap};
  size_t *nout[2] = {&c->nuidmap, &c->ngidmap};
  for (int m = 0; m < 2; m++) {
    *out[m] = xcalloc(jlen(maps[m]) + 1, sizeof **out[m]);
    for (size_t i = 0; i < jlen(maps[m]); i++)
      (*out[m])[(*nout[m])++] = (struct oci_idmap){jint(jget(maps[m]->v[i], "containerID"), 0),
                                                   jint(jget(maps[m]->v[i], "hostID"), 0), jint(jget(maps[m]->v[i], "size"), 0)};
  }
  bool userns = false;
  for (size_t i = 0; i < c->nns; i++) userns |= c->ns[i].type == CLONE_NEWUSER;
  if ((c->clone_flags & CLONE_NEWUSER) && (!c->nuidmap || !c->ngidmap))
    return gx_fail(err, 0, "config: a new user namespace needs linux.uidMappings and linux.gidMappings");
  if (!userns && (c->nuidmap || c->ngidmap)) return gx_fail(err, 0, "config: uid/gid mappings given without a user namespace");
  const json *devs = jget(l, "devices");
  c->devices = xcalloc(jlen(devs) + 1, sizeof *c->devices);
  for (size_t i = 0; i < jlen(devs); i++) {
    const json *d = devs->v[i];
    struct oci_device *od = &c->devices[c->ndevices++];
    od->path = xstrdup(jstr(jget(d, "path"), ""));
    od->type = jstr(jget(d, "type"), "c")[0];
    od->major = jint(jget(d, "major"), 0);
    od->minor = jint(jget(d, "minor"), 0);
    od->mode = jint(jget(d, "fileMode"), 0666);
    od->uid = jint(jget(d, "uid"), 0);
    od->gid = jint(jget(d, "gid"), 0);
    if (od->path[0] != '/') return gx_fail(err, 0, "config: device path `%s` must be absolute", od->path);
  }
  const char *cg = jstr(jget(l, "cgroupsPath"), NULL);
  c->cgroups_path = cg && *cg ? xstrdup(cg) : NULL;
  const json *r = jget(l, "resources");
  struct oci_resources *res = &c->res;
  const json *mem = jget(r, "memory"), *cpu = jget(r, "cpu");
  res->mem_limit = jint(jget(mem, "limit"), -1);
  res->mem_reservation = jint(jget(mem, "reservation"), -1);
  res->mem_swap = jint(jget(mem, "swap"), 0);
  res->cpu_shares = jint(jget(cpu, "shares"), 0);
  res->cpu_quota = jint(jget(cpu, "quota"), 0);
  res->cpu_period = jint(jget(cpu, "period"), 0);
  res->cpus = jstr(jget(cpu, "cpus"), NULL) ? xstrdup(jstr(jget(cpu, "cpus"), NULL)) : NULL;
  res->mems = jstr(jget(cpu, "mems"), NULL) ? xstrdup(jstr(jget(cpu, "mems"), NULL)) : NULL;
  res->pids_limit = jint(jget(jget(r, "pids"), "limit"), 0);
  res->blkio_weight = jint(jget(jget(r, "blockIO"), "weight"), 0);
  const json *dr = jget(r, "devices");
  res->devrules = xcalloc(jlen(dr) + 1, sizeof *res->devrules);
  for (size_t i = 0; i < jlen(dr); i++) parse_devrule(dr->v[i], &res->devrules[res->ndevrules++]);
  const json *sc = jget(l, "sysctl");
  c->sysctl = xcalloc(jlen(sc) + 1, sizeof *c->sysctl);
  for (size_t i = 0; i < jlen(sc) && sc->t == J_OBJ; i++) c->sysctl[c->nsysctl++] = xasprintf("%s=%s", sc->k[i], jstr(sc->v[i], ""));
  c->seccomp = jget(l, "seccomp");
  c->masked = str_array(jget(l, "maskedPaths"), &c->nmasked);
  c->readonly = str_array(jget(l, "readonlyPaths"), &c->nreadonly);
  const char *prop = jstr(jget(l, "rootfsPropagation"), NULL);
  c->rootfs_propagation = MS_SLAVE | MS_REC;
  if (prop) {
    size_t k;
    for (k = 0; k < sizeof mount_opts / sizeof *mount_opts; k++)
      if (mount_opts[k].kind == 1 && !strcmp(prop, mount_opts[k].name)) break;
    if (k == sizeof mount_opts / sizeof *mount_opts) return gx_fail(err, 0, "config: unknown rootfsPropagation `%s`", prop);
    c->rootfs_propagation = mount_opts[k].flag;
  }
  return 0;
}

static int parse_hooks(const json *h, struct oci_config *c, gx_err *err) {
  static const char *kinds[] = {"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"};
  for (int k = 0; k < HOOK_KINDS; k++) {
    const json *a = jget(h, kinds[k]);
    c->hooks[k] = xcalloc(jlen(a) + 1, sizeof *c->hooks[k]);
    for (size_t i = 0; i < jlen(a); i++) {
      struct oci_hook *hk = &c->hooks[k][c->nhooks[k]++];
      hk->path = xstrdup(jstr(jget(a->v[i], "path"), ""));
      if (hk->path[0] != '/') return gx_fail(err, 0, "config: %s hook path `%s` must be absolute", kinds[k], hk->path);
      hk->args = str_array(jget(a->v[i], "args"), NULL);
      hk->env = str_array(jget(a->v[i], "env"), NULL);
      hk->timeout = jint(jget(a->v[i], "timeout"), 0);
    }
  }
  return 0;
}

int config_parse(json *root, const char *bundle, bool check_rootfs, struct oci_config *c, gx_err *err) {
  c->root = root;
  if (root->t != J_OBJ) return gx_fail(err, 0, "config: top level must be an object");
  c->bundle = xstrdup(bundle);
  const json *r = jget(root, "root");
  const char *rp = jstr(jget(r, "path"), NULL);
  if (!rp) return gx_fail(err, 0, "config: root.path is required");
  c->rootfs = rp[0] == '/' ? xstrdup(rp) : xasprintf("%s/%s", bundle, rp);
  c->root_ro = jbool(jget(r, "readonly"), false);
  struct stat st;
  if (!check_rootfs) st.st_mode = S_IFDIR;
  else if (stat(c->rootfs, &st) < 0) return gx_fail(err, errno, "rootfs `%s`", c->rootfs);
  if (!S_ISDIR(st.st_mode)) return gx_fail(err, ENOTDIR, "rootfs `%s`", c->rootfs);
  if (config_parse_process(jget(root, "process"), &c->proc, err) < 0) return -1;
  c->hostname = jstr(jget(root, "hostname"), NULL) ? xstrdup(jstr(jget(root, "hostname"), NULL)) : NULL;
  c->domainname = jstr(jget(root, "domainname"), NULL) ? xstrdup(jstr(jget(root, "domainname"), NULL)) : NULL;
  const json *m = jget(root, "mounts");
  c->mounts = xcalloc(jlen(m) + 1, sizeof *c->mounts);
  for (size_t i = 0; i < jlen(m); i++)
    if (parse_mount(m->v[i], &c->mounts[c->nmounts++], err) < 0) return -1;
  if (parse_linux(jget(root, "linux"), c, err) < 0) return -1;
  if (parse_hooks(jget(root, "hooks"), c, err) < 0) return -1;
  if (c->hostname && !(c->clone_flags & CLONE_NEWUTS))
    return gx_fail(err, 0, "config: hostname `%s` needs a new uts namespace", c->hostname);
  return 0;
}

int config_load_file(const char *path, const char *bundle, bool check_rootfs, struct oci_config *c, gx_err *err) {
  if (read_file(path, &c->text, NULL, err) < 0) return -1;
  json *root = json_parse(c->text, path, err);
  if (!root) return -1;
  return config_parse(root, bundle, check_rootfs, c, err);
}

int config_load(const char *bundle, struct oci_config *c, gx_err *err) {
  cleanup_free char *path = xasprintf("%s/config.json", bundle);
  return config_load_file(path, bundle, true, c, err);
}

/* Only the tree and text: the rest lives until exit (gantry-exec is a short-lived process). */
void config_free(struct oci_config *c) {
  json_free(c->root);
  free(c->text);
  c->root = NULL;
  c->text = NULL;
}
