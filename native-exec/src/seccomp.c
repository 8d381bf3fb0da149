/* seccomp.c — linux.seccomp to a libseccomp filter: default action, architectures, flags, and
 * per-syscall actions with argument conditions; compiled before clone so errors leave nothing. */
#include <seccomp.h>
#include <string.h>

#include "runtime.h"

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

int seccomp_compile(const json *spec, gx_seccomp *out, gx_err *err) {
  *out = NULL;
  if (!spec) return 0;
  uint32_t dflt;
  if (parse_action(jstr(jget(spec, "defaultAction"), ""), jint(jget(spec, "defaultErrnoRet"), -1), &dflt, err) < 0) return -1;
  scmp_filter_ctx ctx = seccomp_init(dflt);
  if (!ctx) return gx_fail(err, 0, "seccomp: init with default action `%s` failed", jstr(jget(spec, "defaultAction"), ""));
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

int seccomp_apply(gx_seccomp ctx, gx_err *err) {
  if (!ctx) return 0;
  int r = seccomp_load(ctx);
  if (r < 0) return gx_fail(err, -r, "seccomp: load filter");
  return 0;
}
