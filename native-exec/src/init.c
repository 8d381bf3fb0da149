/* init.c — the container's first process from clone to execve (the child half of sync.c's
 * ladder), plus the credential/seccomp/execve tail shared with `exec`. */
#include <fcntl.h>
#include <limits.h>
#include <linux/close_range.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "runtime.h"

static const char *env_get(char **env, const char *key) {
  size_t l = strlen(key);
  for (char **e = env; e && *e; e++)
    if (!strncmp(*e, key, l) && (*e)[l] == '=') return *e + l + 1;
  return NULL;
}

static bool is_exec_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

int find_executable(const struct oci_process *p, char *out, size_t outsz, gx_err *err) {
  const char *a0 = p->args[0];
  if (strchr(a0, '/')) {
    if (!is_exec_file(a0)) return gx_fail(err, errno ? errno : EACCES, "exec `%s`", a0);
    snprintf(out, outsz, "%s", a0);
    return 0;
  }
  const char *path = env_get(p->env, "PATH");
  if (!path) path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (const char *s = path; *s;) {
    const char *e = strchrnul(s, ':');
    snprintf(out, outsz, "%.*s/%s", (int)(e - s), e == s ? "." : s, a0);
    if (is_exec_file(out)) return 0;
    s = *e ? e + 1 : e;
  }
  return gx_fail(err, 0, "exec `%s`: executable file not found in PATH `%s`", a0, path);
}

/* The tail shared by init and exec: rlimits, seccomp, user, caps, no_new_privs, execve. A failure
 * goes to sync_fd when someone listens, else to stderr (the container's log). */
_Noreturn void finalize_and_exec(const struct oci_process *p, gx_seccomp sc, int sync_fd, const char *exe, bool rlimits) {
  gx_err err = {0};
  if (rlimits && rlimits_apply(p, &err) < 0) goto fail;
  /* Without no_new_privs the filter must go in while we still hold CAP_SYS_ADMIN. */
  if (!p->nnp && seccomp_apply(sc, &err) < 0) goto fail;
  if (caps_and_user_apply(p, &err) < 0) goto fail;
  if (chdir(p->cwd) < 0) {
    gx_fail(&err, errno, "chdir to cwd `%s`", p->cwd);
    goto fail;
  }
  syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
  if (p->nnp && seccomp_apply(sc, &err) < 0) goto fail;
  execve(exe, p->args, p->env);
  gx_fail(&err, errno, "execve `%s`", exe);
fail:
  if (sync_fd < 0 || sync_send(sync_fd, SYNC_ERROR, err.msg) < 0) dprintf(2, "gantry-exec: %s\n", err.msg);
  _exit(127);
}

static int become_root_in_userns(gx_err *err) {
  if (setresgid(0, 0, 0) < 0) return gx_fail(err, errno, "setresgid 0 in the user namespace");
  if (setresuid(0, 0, 0) < 0) return gx_fail(err, errno, "setresuid 0 in the user namespace");
  return 0;
}

static int oom_score(const struct oci_process *p, gx_err *err) {
  if (!p->has_oom_score_adj) return 0;
  char b[16];
  int n = snprintf(b, sizeof b, "%d", p->oom_score_adj);
  return write_file("/proc/self/oom_score_adj", b, n, err);
}

_Noreturn void init_main(struct init_args *a) {
  gx_err err = {0};
  const struct oci_config *c = a->c;
  int rootfd = -1, slave = -1;
  char exe[PATH_MAX];
  bool userns = (c->clone_flags & CLONE_NEWUSER) != 0;
  /* GO carries the state JSON for createContainer/startContainer hooks. */
  static char state_json[8192];
  prctl(PR_SET_PDEATHSIG, SIGKILL); /* a caller killed mid-create takes the half-made container along */
  {
    struct {
      int type;
      char msg[8192];
    } pkt;
    ssize_t r;
    do r = recv(a->sync_fd, &pkt, sizeof pkt, 0);
    while (r < 0 && errno == EINTR);
    if (r <= 0 || pkt.type != SYNC_GO) _exit(1);
    if (r > (ssize_t)sizeof(int)) snprintf(state_json, sizeof state_json, "%s", pkt.msg);
  }
  gx_trace("child: go");
  bool join_user = false;
  for (size_t i = 0; i < c->nns; i++) join_user |= c->ns[i].type == CLONE_NEWUSER && c->ns[i].path;
  if (ns_join(a->c, CLONE_NEWUSER, &err) < 0) goto fail;
  if ((userns || join_user) && become_root_in_userns(&err) < 0) goto fail;
  if (ns_join(a->c, 0, &err) < 0) goto fail;
  if (setsid() < 0) {
    gx_fail(&err, errno, "setsid");
    goto fail;
  }
  if (oom_score(&c->proc, &err) < 0) goto fail;
  if (rootfs_prepare(c, a->cg, &rootfd, &err) < 0) goto fail;
  gx_trace("child: mounts done");
  if (sync_needs_hooks_step(c)) { /* also holds createContainer hooks until we are in the cgroup */
    if (sync_send(a->sync_fd, SYNC_HOOKS, NULL) < 0 || sync_wait(a->sync_fd, SYNC_HOOKS_DONE, "hooks", &err) < 0) goto fail;
  }
  if (hooks_run(c, HOOK_CREATE_CONTAINER, state_json, &err) < 0) goto fail;
  if (rootfs_finish(c, rootfd, -1, &err) < 0) goto fail;
  close(rootfd);
  gx_trace("child: pivoted, masked");
  if (c->proc.terminal && a->console_fd >= 0) {
    if (pty_create(a->console_fd, &c->proc, &slave, &err) < 0) goto fail;
    close(a->console_fd);
  }
  if (c->root_ro && rootfs_readonly(&err) < 0) goto fail;
  if (find_executable(&c->proc, exe, sizeof exe, &err) < 0) goto fail;
  if (rlimits_apply(&c->proc, &err) < 0) goto fail; /* before READY, so create reports it */
  if (a->wait_fifo) prctl(PR_SET_PDEATHSIG, 0); /* create exits after READY; the container stays */
  if (sync_send(a->sync_fd, SYNC_READY, NULL) < 0) _exit(1);
  if (a->wait_fifo) {
    close(a->sync_fd);
    a->sync_fd = -1;
    char b;
    ssize_t r;
    do r = read(a->fifo_fd, &b, 1);
    while (r < 0 && errno == EINTR);
    if (r != 1) _exit(1);
    close(a->fifo_fd);
  } else if (sync_wait(a->sync_fd, SYNC_START, "start", &err) < 0) {
    _exit(1);
  }
  if (hooks_run(c, HOOK_START_CONTAINER, state_json, &err) < 0) goto fail;
  if (slave >= 0 && pty_make_stdio(slave, &err) < 0) goto fail;
  if (slave > 2) close(slave);
  gx_trace("child: exec");
  finalize_and_exec(&c->proc, a->seccomp, a->sync_fd, exe, false);
fail:
  if (a->sync_fd < 0 || sync_send(a->sync_fd, SYNC_ERROR, err.msg) < 0) dprintf(2, "gantry-exec: %s\n", err.msg);
  _exit(1);
}
