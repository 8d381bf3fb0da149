/* runtime.h — interfaces between gantry-exec's kernel-concept files (state, sync, namespaces,
 * mounts/rootfs, cgroups, caps, seccomp, pty, hooks) and the lifecycle commands. */
#ifndef GX_RUNTIME_H
#define GX_RUNTIME_H
#include "config.h"

/* ---- global options (main.c) ---- */
struct gx_globals {
  const char *root;      /* --root, default /run/gantry-exec */
  const char *log_file;  /* --log */
  bool log_json;         /* --log-format json */
};
extern struct gx_globals G;

/* ---- state.c: /run/gantry-exec/<id>/{state.json,config.json,exec.fifo} ---- */
struct gx_state {
  char *id, *bundle, *rootfs, *created, *cgroup_path, *annotations; /* annotations: raw JSON object */
  pid_t pid;
  unsigned long long starttime;
  int cgroup_mode; /* 1, 2 */
  char *cgroup_root;
};
int state_check_id(const char *id, gx_err *err);
char *state_dir(const char *id);
int state_create_dir(const char *id, gx_err *err);
int state_write(const struct gx_state *s, gx_err *err);
int state_read(const char *id, struct gx_state *s, gx_err *err);
const char *state_status(const struct gx_state *s);
/* The OCI state object (what `state` prints and hooks read on stdin). */
void state_json(strbuf *sb, const struct gx_state *s, const char *status);
int state_remove(const char *id);
unsigned long long proc_starttime(pid_t pid);

/* ---- cgroup.c / cgroup_v1.c / cgroup_v2.c ---- */
struct cgroup {
  int mode;   /* 1 = v1 controllers (hybrid allowed), 2 = unified */
  char *root; /* /sys/fs/cgroup or GANTRY_EXEC_CGROUP_ROOT (tests: a fake v2 tree) */
  char *path; /* e.g. /gx-abc */
};
int cgroup_detect(struct cgroup *cg);
char *cgroup_resolve_path(const char *cgroups_path, const char *id);
int cgroup_create(struct cgroup *cg, const struct oci_config *c, gx_err *err);
int cgroup_enter(const struct cgroup *cg, pid_t pid, gx_err *err);
int cgroup_destroy(const struct cgroup *cg, gx_err *err);
int cgroup_pids(const struct cgroup *cg, pid_t **pids, size_t *n);
int cgroup_v1_create(const struct cgroup *cg, const struct oci_config *c, gx_err *err);
int cgroup_v1_enter(const struct cgroup *cg, pid_t pid, gx_err *err);
int cgroup_v1_destroy(const struct cgroup *cg, gx_err *err);
int cgroup_v2_create(const struct cgroup *cg, const struct oci_config *c, gx_err *err);
int cgroup_v2_destroy(const struct cgroup *cg, gx_err *err);
/* devices_bpf.c: the v2 device filter (skipped when dir is not on cgroup2, i.e. the test tree). */
int devices_bpf_attach(const char *cgroup_dir, const struct oci_config *c, gx_err *err);
/* Mount the container's view of cgroups at target (an fd path inside the new root). */
int cgroup_mount(const struct cgroup *cg, int rootfd, const char *dest, unsigned long flags, gx_err *err);

/* ---- namespaces.c ---- */
int ns_join(const struct oci_config *c, int only_type, gx_err *err); /* setns for entries with a path */
int ns_write_idmaps(pid_t pid, const struct oci_config *c, gx_err *err);
pid_t clone_child(int flags); /* fork-like clone3; 0 in the child */

/* ---- mounts.c / rootfs.c ---- */
int open_in_root(int rootfd, const char *path, bool create, bool dir, gx_err *err);
int mount_one(int rootfd, const char *rootfs, const struct oci_mount *m, const struct cgroup *cg, bool userns, gx_err *err);
int rootfs_prepare(const struct oci_config *c, const struct cgroup *cg, int *rootfd, gx_err *err);
int rootfs_finish(const struct oci_config *c, int rootfd, int console_slave, gx_err *err);
int rootfs_readonly(gx_err *err);

/* ---- caps.c ---- */
int caps_and_user_apply(const struct oci_process *p, gx_err *err);
int rlimits_apply(const struct oci_process *p, gx_err *err);

/* ---- seccomp.c: compile (or take from the cache) before clone; apply in the child ---- */
typedef struct gx_seccomp_prog *gx_seccomp; /* NULL: no linux.seccomp */
int seccomp_compile(const json *spec, gx_seccomp *out, gx_err *err);
int seccomp_apply(gx_seccomp prog, gx_err *err); /* seccomp_load's semantics; no file I/O */
void seccomp_free(gx_seccomp prog);
/* seccomp_cache.c: compiled programs under <root>/.seccomp@cache, keyed by SHA-256 (see the file) */
#define GX_SECCOMP_CACHE_FORMAT 2 /* 2: no_new_privs no longer forced by the filter */
#define GX_SECCOMP_CACHE_MAX 128
struct sock_filter;
void seccomp_canon(strbuf *sb, const json *spec);
void seccomp_sha256_hex(const void *data, size_t len, char hex[65]);
void seccomp_cache_key(const json *spec, const char *build, char hex[65]);
bool seccomp_prog_valid(const void *insns, size_t bytes);
int seccomp_cache_get(const char *hex, struct sock_filter **insns, size_t *count); /* 0 = hit */
void seccomp_cache_put(const char *hex, const struct sock_filter *insns, size_t count);

/* ---- pty.c ---- */
int console_connect(const char *path, gx_err *err);
int pty_create(int console_sock, const struct oci_process *p, int *slave, gx_err *err);
int pty_make_stdio(int slave, gx_err *err);

/* ---- hooks.c ---- */
int hooks_run(const struct oci_config *c, enum hook_kind k, const char *state_json, gx_err *err);

/* ---- sync.c ---- */
enum sync_msg { SYNC_GO = 1, SYNC_HOOKS, SYNC_HOOKS_DONE, SYNC_READY, SYNC_START, SYNC_ERROR };
int sync_send(int fd, enum sync_msg t, const char *msg);
/* Wait for `want`; a SYNC_ERROR fills err with the peer's message; EOF is an error naming `stage`. */
int sync_wait(int fd, enum sync_msg want, const char *stage, gx_err *err);
/* If the peer already sent SYNC_ERROR, put its message in err and return 0; else -1. */
int sync_take_error(int fd, gx_err *err);
/* Whether the HOOKS/HOOKS_DONE step runs: prestart, createRuntime or createContainer hooks. */
static inline bool sync_needs_hooks_step(const struct oci_config *c) {
  return c->nhooks[HOOK_PRESTART] || c->nhooks[HOOK_CREATE_RUNTIME] || c->nhooks[HOOK_CREATE_CONTAINER];
}

/* ---- init.c: the container's first process, from clone to execve ---- */
struct init_args {
  const struct oci_config *c;
  const struct cgroup *cg;
  int sync_fd, fifo_fd, console_fd;
  gx_seccomp seccomp;
  bool wait_fifo; /* create: block on exec.fifo; run: wait for SYNC_START */
};
_Noreturn void init_main(struct init_args *a);
/* Shared with exec: find argv[0] in the process PATH, set creds/caps/seccomp and execve. */
int find_executable(const struct oci_process *p, char *out, size_t outsz, gx_err *err);
_Noreturn void finalize_and_exec(const struct oci_process *p, gx_seccomp sc, int sync_fd, const char *exe, bool rlimits);

/* ---- container.c: lifecycle commands; exec.c ---- */
int cmd_create(int argc, char **argv);
int cmd_start(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_state(int argc, char **argv);
int cmd_kill(int argc, char **argv);
int cmd_delete(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_ps(int argc, char **argv);
int cmd_exec(int argc, char **argv);
/* Print err (text or JSON per --log-format) to stderr and the --log file; returns exit code 1. */
int report_error(const gx_err *err);
#endif
