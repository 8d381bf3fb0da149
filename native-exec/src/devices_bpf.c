/* devices_bpf.c — cgroup v2 device control: compile the OCI device rules (plus the default
 * device set) into a BPF_PROG_TYPE_CGROUP_DEVICE program and attach it to the container cgroup. */
#include <fcntl.h>
#include <linux/bpf.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/vfs.h>

#include "runtime.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

#define MAX_INSNS 4096

struct prog {
  struct bpf_insn insn[MAX_INSNS];
  int n;
};

static void emit(struct prog *p, uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  if (p->n < MAX_INSNS) p->insn[p->n++] = (struct bpf_insn){.code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm};
}

static int access_mask(const char *a) {
  int m = 0;
  for (; *a; a++) m |= *a == 'r' ? BPF_DEVCG_ACC_READ : *a == 'w' ? BPF_DEVCG_ACC_WRITE : *a == 'm' ? BPF_DEVCG_ACC_MKNOD : 0;
  return m;
}

/* One rule: every failed condition jumps past the rule's own "return allow". Returns true when
 * the rule had no condition: what would follow it is unreachable (the verifier refuses that). */
static bool emit_rule(struct prog *p, char type, int64_t major, int64_t minor, const char *access, bool allow) {
  int jumps[4], nj = 0, acc = access_mask(access);
  if (type == 'c' || type == 'b') {
    jumps[nj++] = p->n;
    emit(p, BPF_JMP | BPF_JNE | BPF_K, BPF_REG_2, 0, 0, type == 'c' ? BPF_DEVCG_DEV_CHAR : BPF_DEVCG_DEV_BLOCK);
  }
  if (acc != (BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD)) { /* requested ⊆ rule */
    emit(p, BPF_ALU | BPF_MOV | BPF_X, BPF_REG_1, BPF_REG_3, 0, 0);
    emit(p, BPF_ALU | BPF_AND | BPF_K, BPF_REG_1, 0, 0, ~acc & 7);
    jumps[nj++] = p->n;
    emit(p, BPF_JMP | BPF_JNE | BPF_K, BPF_REG_1, 0, 0, 0);
  }
  if (major >= 0) {
    jumps[nj++] = p->n;
    emit(p, BPF_JMP | BPF_JNE | BPF_K, BPF_REG_4, 0, 0, (int32_t)major);
  }
  if (minor >= 0) {
    jumps[nj++] = p->n;
    emit(p, BPF_JMP | BPF_JNE | BPF_K, BPF_REG_5, 0, 0, (int32_t)minor);
  }
  emit(p, BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, allow ? 1 : 0);
  emit(p, BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
  for (int i = 0; i < nj; i++) p->insn[jumps[i]].off = p->n - jumps[i] - 1;
  return nj == 0;
}

static const struct {
  char type;
  int major, minor;
} default_allow[] = {{'c', 1, 3}, {'c', 1, 5}, {'c', 1, 7}, {'c', 1, 8}, {'c', 1, 9}, {'c', 5, 0},
                     {'c', 5, 1}, {'c', 5, 2}, {'c', 136, -1}, {'c', 10, 200}};

/* Rules are emitted last-first so that, as with v1's allow/deny lists, the last match wins. */
static void build(struct prog *p, const struct oci_config *c) {
  emit(p, BPF_LDX | BPF_MEM | BPF_W, BPF_REG_2, BPF_REG_1, 0, 0); /* access_type */
  emit(p, BPF_ALU | BPF_AND | BPF_K, BPF_REG_2, 0, 0, 0xffff);    /* device type */
  emit(p, BPF_LDX | BPF_MEM | BPF_W, BPF_REG_3, BPF_REG_1, 0, 0);
  emit(p, BPF_ALU | BPF_RSH | BPF_K, BPF_REG_3, 0, 0, 16);         /* access */
  emit(p, BPF_LDX | BPF_MEM | BPF_W, BPF_REG_4, BPF_REG_1, 4, 0); /* major */
  emit(p, BPF_LDX | BPF_MEM | BPF_W, BPF_REG_5, BPF_REG_1, 8, 0); /* minor */
  for (size_t i = c->ndevices; i-- > 0;)
    if (emit_rule(p, c->devices[i].type == 'u' ? 'c' : c->devices[i].type, c->devices[i].major, c->devices[i].minor, "rwm", true)) return;
  for (size_t i = sizeof default_allow / sizeof *default_allow; i-- > 0;)
    emit_rule(p, default_allow[i].type, default_allow[i].major, default_allow[i].minor, "rwm", true);
  for (size_t i = c->res.ndevrules; i-- > 0;) {
    const struct oci_devrule *r = &c->res.devrules[i];
    if (emit_rule(p, r->type, r->major, r->minor, r->access, r->allow)) return;
  }
  emit(p, BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0); /* nothing matched: deny */
  emit(p, BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
}

int devices_bpf_attach(const char *cgroup_dir, const struct oci_config *c, gx_err *err) {
  struct statfs sf;
  if (statfs(cgroup_dir, &sf) < 0) return gx_fail(err, errno, "statfs `%s`", cgroup_dir);
  if (sf.f_type != CGROUP2_SUPER_MAGIC) return 0; /* the fake tree of the tests: nothing to attach to */
  static struct prog p;
  p.n = 0;
  build(&p, c);
  if (p.n >= MAX_INSNS) return gx_fail(err, E2BIG, "device rules: more than %d BPF instructions", MAX_INSNS);
  static char log[65536];
  union bpf_attr load;
  memset(&load, 0, sizeof load);
  load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  load.insns = (uint64_t)(uintptr_t)p.insn;
  load.insn_cnt = p.n;
  load.license = (uint64_t)(uintptr_t) "Apache";
  cleanup_close int prog = syscall(SYS_bpf, BPF_PROG_LOAD, &load, sizeof load);
  if (prog < 0) { /* load again with the verifier log, only to say why */
    int e = errno;
    load.log_buf = (uint64_t)(uintptr_t)log;
    load.log_size = sizeof log;
    load.log_level = 1;
    log[0] = 0;
    if (syscall(SYS_bpf, BPF_PROG_LOAD, &load, sizeof load) < 0) e = errno == ENOSPC ? e : errno;
    log[strcspn(log, "\n")] = 0;
    return gx_fail(err, e, "bpf load device filter (%d insns)%s%s", p.n, *log ? ": " : "", log);
  }
  cleanup_close int cg = open(cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cg < 0) return gx_fail(err, errno, "open cgroup `%s`", cgroup_dir);
  union bpf_attr att;
  memset(&att, 0, sizeof att);
  att.target_fd = cg;
  att.attach_bpf_fd = prog;
  att.attach_type = BPF_CGROUP_DEVICE;
  att.attach_flags = BPF_F_ALLOW_MULTI;
  if (syscall(SYS_bpf, BPF_PROG_ATTACH, &att, sizeof att) < 0) return gx_fail(err, errno, "bpf attach device filter to `%s`", cgroup_dir);
  return 0;
}
