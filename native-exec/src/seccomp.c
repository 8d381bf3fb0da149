/* seccomp.c — linux.seccomp to a loaded seccomp filter: compiled with libseccomp (default action,
 * architectures, flags, per-syscall actions with argument conditions) or taken from the program
 * cache (seccomp_cache.c), before clone so errors leave nothing; loaded with seccomp_load's semantics.
 *
 * What libseccomp 2.5.4 (Debian 12) seccomp_load() does for the contexts built here (read from its
 * src/api.c and src/system.c sys_filter_load()), which seccomp_apply() repeats on the exported program:
 *  - seccomp_init() runs the API-level probe (_seccomp_api_update): seccomp(2) present and
 *    TSYNC (2), LOG flag + LOG/KILL_PROCESS actions (3), SPEC_ALLOW (4), NEW_LISTENER + NOTIFY (5),
 *    TSYNC_ESRCH (6). Only level 5 probes TSYNC_ESRCH, so "TSYNC_ESRCH supported" == level >= 6;
 *    we ask seccomp_api_get(), which runs the same probe once per process.
 *  - the program is gen_bpf_generate()'s, the same bytes seccomp_export_bpf() writes (we export
 *    at compile time; a program libseccomp cannot generate fails the compile in the parent now,
 *    before anything is created, instead of seccomp_load in the child).
 *  - SCMP_FLTATR_CTL_NNP defaults to 1 (prctl(PR_SET_NO_NEW_PRIVS, 1) before every load); we set
 *    it to 0, as runc does: no_new_privs follows process.noNewPrivileges alone (caps.c), so setuid
 *    binaries work in a container with the default profile, as with Docker. Without no_new_privs
 *    the kernel wants CAP_SYS_ADMIN at load: finalize_and_exec (init.c) loads before dropping caps.
 *  - if seccomp(2) exists (seccomp(SECCOMP_SET_MODE_STRICT, 1, NULL) fails with EINVAL):
 *    flags = TSYNC|TSYNC_ESRCH when TSYNC is asked and level >= 6, TSYNC alone when asked below
 *    that; | LOG (SCMP_FLTATR_CTL_LOG) | SPEC_ALLOW (SCMP_FLTATR_CTL_SSB); never NEW_LISTENER (no
 *    SCMP_ACT_NOTIFY here); seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog). Without seccomp(2):
 *    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), the flags silently dropped.
 *  - results: a positive return with TSYNC (and no TSYNC_ESRCH: a thread could not sync) is
 *    -ESRCH; any other failure, of the prctl or the load, is -ECANCELED (SCMP_FLTATR_API_SYSRAWRC
 *    is 0). We report the same code and name the kernel's errno in the message.
 * libseccomp's attributes are not read back on a cache hit: they follow from the spec's flags
 * (load_attrs below); on a miss compile() checks that the context agrees with load_attrs. */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "runtime.h"

#ifndef SECCOMP_FILTER_FLAG_TSYNC_ESRCH
#define SECCOMP_FILTER_FLAG_TSYNC_ESRCH (1UL << 4)
#endif

/* A compiled filter and how to load it (the values seccomp_load would use, see above). */
struct gx_seccomp_prog {
  struct sock_filter *insns;
  size_t count;
  bool nnp;          /* SCMP_FLTATR_CTL_NNP */
  bool tsync;        /* SCMP_FLTATR_CTL_TSYNC */
  bool tsync_esrch;  /* API level >= 6 */
  bool has_syscall;  /* seccomp(2) is there; else prctl(PR_SET_SECCOMP) */
  unsigned int flags; /* SECCOMP_FILTER_FLAG_* for seccomp(2) */
};

/* The build in the cache key: this file's compile time and the running binary's identity (a
 * relink, e.g. against an updated libseccomp.a, gets a new inode), so a changed compile path never
 * reuses programs an older build cached. Without /proc only the compile time is there. */
static void build_stamp(char *out, size_t n) {
  struct stat st;
  if (stat("/proc/self/exe", &st) == 0)
    snprintf(out, n, "%s %s exe=%llu:%llu:%lld:%lld.%09ld", __DATE__, __TIME__, (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino, (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  else
    snprintf(out, n, "%s %s", __DATE__, __TIME__);
}

static int parse_action(const char *name, long long errno_ret, uint32_t *out, gx_err *err) {
  int e = errno_ret >= 0 ? (int)errno_ret : EPERM;
  if (!strcmp(name, "SCMP_ACT_KILL") || !strcmp(name, "SCMP_ACT_KILL_THREAD")) *out = SCMP_ACT_KILL_THREAD;
  else if (!strcmp(name, "SCMP_ACT_KILL_PROCESS")) *out = SCMP_ACT_KILL_PROCESS;
  else if (!strcmp(name, "SCMP_ACT_TRAP")) *out = SCMP_ACT_TRAP;
  else if (!strcmp(name, "SCMP_ACT_ERRNO")) *out = SCMP_ACT_ERRNO(e);
  else if (!strcmp(name, "SCMP_ACT_TRACE")) *out = SCMP_ACT_TRACE(e);
  else if (!strcmp(name, "SCMP_ACT_ALLOW")) *out = SCMP_ACT_ALLOW;
  else if (!strcmp(name, "SCMP_ACT_LOG")) *out = SCMP_ACT_LOG;
  else return gx_fail(err, 0, "seccomp: unknown action `%s`", name);
  return 0;
}

static int parse_op(const char *name, enum scmp_compare *out, gx_err *err) {
  static const struct {
    const char *n;
    enum scmp_compare op;
  } ops[] = {{"SCMP_CMP_NE", SCMP_CMP_NE}, {"SCMP_CMP_LT", SCMP_CMP_LT}, {"SCMP_CMP_LE", SCMP_CMP_LE},
             {"SCMP_CMP_EQ", SCMP_CMP_EQ}, {"SCMP_CMP_GE", SCMP_CMP_GE}, {"SCMP_CMP_GT", SCMP_CMP_GT},
             {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ}};
  for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
    if (!strcmp(name, ops[i].n)) return *out = ops[i].op, 0;
  return gx_fail(err, 0, "seccomp: unknown argument operator `%s`", name);
}

static int add_rule(scmp_filter_ctx ctx, const json *rule, uint32_t dflt, gx_err *err) {
  uint32_t action;
  if (parse_action(jstr(jget(rule, "action"), ""), jint(jget(rule, "errnoRet"), -1), &action, err) < 0) return -1;
  const json *names = jget(rule, "names"), *args = jget(rule, "args");
  if (!jlen(names) && jstr(jget(rule, "name"), NULL)) names = jget(rule, "name");
  struct scmp_arg_cmp cmps[6];
  size_t n = jlen(args);
  if (n > 6) return gx_fail(err, 0, "seccomp: more than 6 argument conditions");
  bool dup_index = false;
  for (size_t i = 0; i < n; i++) {
    const json *a = args->v[i];
    enum scmp_compare op = SCMP_CMP_EQ;
    if (parse_op(jstr(jget(a, "op"), ""), &op, err) < 0) return -1;
    long long idx = jint(jget(a, "index"), -1);
    if (idx < 0 || idx > 5) return gx_fail(err, 0, "seccomp: argument index %lld out of range 0..5", idx);
    cmps[i] = (struct scmp_arg_cmp){(unsigned)idx, op, (uint64_t)jint(jget(a, "value"), 0), (uint64_t)jint(jget(a, "valueTwo"), 0)};
    for (size_t k = 0; k < i; k++) dup_index |= cmps[k].arg == cmps[i].arg;
  }
  if (action == dflt) return 0; /* libseccomp rejects rules equal to the default */
  size_t count = names && names->t == J_ARR ? names->len : names ? 1 : 0;
  for (size_t i = 0; i < count; i++) {
    const char *name = names->t == J_ARR ? jstr(names->v[i], "") : jstr(names, "");
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue; /* not a syscall on this architecture: ignored, as runc */
    int r = 0;
    if (dup_index) { /* the same argument twice: one rule per condition, as runc */
      for (size_t k = 0; k < n && r >= 0; k++) r = seccomp_rule_add_array(ctx, action, nr, 1, &cmps[k]);
    } else {
      r = seccomp_rule_add_array(ctx, action, nr, n, cmps);
    }
    if (r < 0) return gx_fail(err, -r, "seccomp: add rule for `%s`", name);
  }
  return 0;
}

/* libseccomp: spec -> filter context (the errors today's users see, in the same order). */
static int compile_ctx(const json *spec, scmp_filter_ctx *out, gx_err *err) {
  *out = NULL;
  uint32_t dflt;
  if (parse_action(jstr(jget(spec, "defaultAction"), ""), jint(jget(spec, "defaultErrnoRet"), -1), &dflt, err) < 0) return -1;
  scmp_filter_ctx ctx = seccomp_init(dflt);
  if (!ctx) return gx_fail(err, 0, "seccomp: init with default action `%s` failed", jstr(jget(spec, "defaultAction"), ""));
  int nr = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0); /* no_new_privs is process.noNewPrivileges' business */
  if (nr < 0) {
    seccomp_release(ctx);
    return gx_fail(err, -nr, "seccomp: clear the no_new_privs attribute");
  }
  const json *archs = jget(spec, "architectures");
  for (size_t i = 0; i < jlen(archs); i++) {
    char name[32];
    const char *a = jstr(archs->v[i], "");
    if (!strncmp(a, "SCMP_ARCH_", 10)) a += 10;
    size_t k;
    for (k = 0; a[k] && k < sizeof name - 1; k++) name[k] = a[k] >= 'A' && a[k] <= 'Z' ? a[k] + 32 : a[k];
    name[k] = 0;
    uint32_t arch = seccomp_arch_resolve_name(name);
    if (!arch) {
      seccomp_release(ctx);
      return gx_fail(err, 0, "seccomp: unknown architecture `%s`", jstr(archs->v[i], ""));
    }
    int r = seccomp_arch_add(ctx, arch);
    if (r < 0 && r != -EEXIST) {
      seccomp_release(ctx);
      return gx_fail(err, -r, "seccomp: add architecture `%s`", name);
    }
  }
  const json *flags = jget(spec, "flags");
  for (size_t i = 0; i < jlen(flags); i++) {
    const char *f = jstr(flags->v[i], "");
    int r = 0;
    if (!strcmp(f, "SECCOMP_FILTER_FLAG_LOG")) r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_LOG, 1);
    else if (!strcmp(f, "SECCOMP_FILTER_FLAG_SPEC_ALLOW")) r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_SSB, 1);
    else if (!strcmp(f, "SECCOMP_FILTER_FLAG_TSYNC")) r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    else {
      seccomp_release(ctx);
      return gx_fail(err, 0, "seccomp: unknown flag `%s`", f);
    }
    if (r < 0) {
      seccomp_release(ctx);
      return gx_fail(err, -r, "seccomp: set flag `%s`", f);
    }
  }
  const json *sys = jget(spec, "syscalls");
  for (size_t i = 0; i < jlen(sys); i++)
    if (add_rule(ctx, sys->v[i], dflt, err) < 0) {
      seccomp_release(ctx);
      return -1;
    }
  *out = ctx;
  return 0;
}

/* The load attributes for spec: libseccomp's defaults plus the spec's flags (compile_ctx has
 * rejected unknown flags before any program for this spec was made or cached). */
static void load_attrs(const json *spec, struct gx_seccomp_prog *p) {
  bool log = false, ssb = false;
  p->nnp = false; /* SCMP_FLTATR_CTL_NNP, cleared in compile_ctx */
  p->tsync = false;
  const json *flags = jget(spec, "flags");
  for (size_t i = 0; i < jlen(flags); i++) {
    const char *f = jstr(flags->v[i], "");
    if (!strcmp(f, "SECCOMP_FILTER_FLAG_LOG")) log = true;
    else if (!strcmp(f, "SECCOMP_FILTER_FLAG_SPEC_ALLOW")) ssb = true;
    else if (!strcmp(f, "SECCOMP_FILTER_FLAG_TSYNC")) p->tsync = true;
  }
  errno = 0;
  p->has_syscall = syscall(SYS_seccomp, SECCOMP_SET_MODE_STRICT, 1, NULL) < 0 && errno == EINVAL;
  p->tsync_esrch = seccomp_api_get() >= 6;
  p->flags = 0;
  if (p->tsync) p->flags |= SECCOMP_FILTER_FLAG_TSYNC | (p->tsync_esrch ? SECCOMP_FILTER_FLAG_TSYNC_ESRCH : 0);
  if (log) p->flags |= SECCOMP_FILTER_FLAG_LOG;
  if (ssb) p->flags |= SECCOMP_FILTER_FLAG_SPEC_ALLOW;
}

/* On a miss: check the context's attributes are the ones load_attrs assumed. */
static int check_attrs(scmp_filter_ctx ctx, const struct gx_seccomp_prog *p, gx_err *err) {
  uint32_t nnp = 0, tsync = 0, log = 0, ssb = 0;
  if (seccomp_attr_get(ctx, SCMP_FLTATR_CTL_NNP, &nnp) < 0 || seccomp_attr_get(ctx, SCMP_FLTATR_CTL_TSYNC, &tsync) < 0 ||
      seccomp_attr_get(ctx, SCMP_FLTATR_CTL_LOG, &log) < 0 || seccomp_attr_get(ctx, SCMP_FLTATR_CTL_SSB, &ssb) < 0)
    return gx_fail(err, 0, "seccomp: read filter attributes from libseccomp");
  if (!!nnp != p->nnp || !!tsync != p->tsync || !!log != !!(p->flags & SECCOMP_FILTER_FLAG_LOG) ||
      !!ssb != !!(p->flags & SECCOMP_FILTER_FLAG_SPEC_ALLOW))
    return gx_fail(err, 0, "seccomp: libseccomp attributes (nnp=%u tsync=%u log=%u ssb=%u) differ from the spec's flags; report this gantry-exec bug",
                   nnp, tsync, log, ssb);
  return 0;
}

/* The program libseccomp generated for ctx (seccomp_export_bpf into a memfd). */
static int export_prog(scmp_filter_ctx ctx, struct gx_seccomp_prog *p, gx_err *err) {
  cleanup_close int fd = memfd_create("gantry-exec-seccomp", MFD_CLOEXEC);
  if (fd < 0) return gx_fail(err, errno, "seccomp: memfd_create for the exported filter");
  int r = seccomp_export_bpf(ctx, fd);
  if (r < 0) return gx_fail(err, -r, "seccomp: export filter");
  off_t size = lseek(fd, 0, SEEK_END);
  if (size <= 0 || size % sizeof(struct sock_filter) || size / sizeof(struct sock_filter) > 0xffff)
    return gx_fail(err, 0, "seccomp: exported filter has an unusable size of %lld bytes", (long long)size);
  p->count = (size_t)size / sizeof(struct sock_filter);
  p->insns = xcalloc(p->count, sizeof *p->insns);
  if (pread(fd, p->insns, (size_t)size, 0) != size) return gx_fail(err, errno, "seccomp: read exported filter");
  return 0;
}

void seccomp_free(gx_seccomp p) {
  if (!p) return;
  free(p->insns);
  free(p);
}

int seccomp_compile(const json *spec, gx_seccomp *out, gx_err *err) {
  *out = NULL;
  if (!spec) return 0;
  struct gx_seccomp_prog *p = xcalloc(1, sizeof *p);
  char key[65], build[160];
  build_stamp(build, sizeof build);
  seccomp_cache_key(spec, build, key);
  if (seccomp_cache_get(key, &p->insns, &p->count) == 0) {
    gx_trace("seccomp cache hit");
    load_attrs(spec, p);
    *out = p;
    return 0;
  }
  gx_trace("seccomp cache miss");
  scmp_filter_ctx ctx = NULL;
  if (compile_ctx(spec, &ctx, err) < 0) {
    free(p);
    return -1;
  }
  load_attrs(spec, p);
  int r = check_attrs(ctx, p, err);
  if (r == 0) r = export_prog(ctx, p, err);
  seccomp_release(ctx);
  if (r < 0) {
    seccomp_free(p);
    return -1;
  }
  seccomp_cache_put(key, p->insns, p->count); /* best effort, silent */
  gx_trace("seccomp compiled");
  *out = p;
  return 0;
}

/* seccomp_load's steps (see the top of this file) on the program we hold. */
int seccomp_apply(gx_seccomp p, gx_err *err) {
  if (!p) return 0;
  struct sock_fprog prog = {.len = (unsigned short)p->count, .filter = p->insns};
  if (p->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    return gx_fail(err, ECANCELED, "seccomp: load filter (prctl PR_SET_NO_NEW_PRIVS: %s)", gx_errname(errno));
  long rc;
  if (p->has_syscall) {
    rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, p->flags, &prog);
    if (rc > 0 && p->tsync && !p->tsync_esrch)
      return gx_fail(err, ESRCH, "seccomp: load filter (thread %ld could not be synchronised)", rc);
  } else {
    rc = prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
  }
  if (rc < 0) return gx_fail(err, ECANCELED, "seccomp: load filter (%s from the kernel)", gx_errname(errno));
  return 0;
}
