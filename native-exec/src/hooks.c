/* hooks.c — OCI hooks: run each hook of a kind with the container state JSON on stdin, honour
 * its timeout (pidfd + poll, no sleeping), and fail with the hook's path and exit status. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "runtime.h"

static const char *kind_names[] = {"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"};

static int run_one(const struct oci_hook *h, const char *kind, const char *state, gx_err *err) {
  int in[2];
  if (pipe2(in, O_CLOEXEC) < 0) return gx_fail(err, errno, "pipe for %s hook", kind);
  pid_t pid = fork();
  if (pid < 0) return gx_fail(err, errno, "fork %s hook `%s`", kind, h->path);
  if (pid == 0) {
    dup2(in[0], 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    char *dflt[] = {h->path, NULL};
    execve(h->path, h->args && h->args[0] ? h->args : dflt, h->env ? h->env : (char *[]){NULL});
    dprintf(2, "exec %s hook `%s`: %s\n", kind, h->path, gx_errname(errno));
    _exit(127);
  }
  close(in[0]);
  signal(SIGPIPE, SIG_IGN);
  write_all(in[1], state, strlen(state));
  close(in[1]);
  int status = 0;
  if (h->timeout > 0) {
    cleanup_close int pfd = syscall(SYS_pidfd_open, pid, 0);
    struct pollfd p = {.fd = pfd, .events = POLLIN};
    int r;
    do r = poll(&p, 1, h->timeout * 1000);
    while (r < 0 && errno == EINTR);
    if (r == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return gx_fail(err, 0, "%s hook `%s` timed out after %ds", kind, h->path, h->timeout);
    }
  }
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
  if (WIFEXITED(status)) return gx_fail(err, 0, "%s hook `%s` exited with status %d", kind, h->path, WEXITSTATUS(status));
  return gx_fail(err, 0, "%s hook `%s` killed by signal %d", kind, h->path, WTERMSIG(status));
}

int hooks_run(const struct oci_config *c, enum hook_kind k, const char *state_json, gx_err *err) {
  for (size_t i = 0; i < c->nhooks[k]; i++)
    if (run_one(&c->hooks[k][i], kind_names[k], state_json, err) < 0) return -1;
  return 0;
}
