/* exec.c — `exec`: run another process in a running container, joining its namespaces (user
 * first, pid through the parent so the child lands in it) and cgroup, with or without a tty. */
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "runtime.h"

static const struct {
  const char *name;
  int type;
} ns_files[] = {{"user", CLONE_NEWUSER}, {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS}, {"net", CLONE_NEWNET},
                {"cgroup", CLONE_NEWCGROUP}, {"mnt", CLONE_NEWNS}};

static bool same_ns(pid_t pid, const char *name) {
  char a[64], b[64];
  struct stat sa, sb;
  snprintf(a, sizeof a, "/proc/%d/ns/%s", pid, name);
  snprintf(b, sizeof b, "/proc/self/ns/%s", name);
  return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev;
}

static pid_t child_pid;
static void forward_signal(int sig) {
  if (child_pid > 0) kill(child_pid, sig);
}

static char **append_env(char **env, const char *kv) {
  size_t n = 0, kl = strcspn(kv, "=");
  for (; env && env[n]; n++)
    if (!strncmp(env[n], kv, kl) && env[n][kl] == '=') {
      env[n] = xstrdup(kv);
      return env;
    }
  env = xrealloc(env, (n + 2) * sizeof *env);
  env[n] = xstrdup(kv);
  env[n + 1] = NULL;
  return env;
}

int cmd_exec(int argc, char **argv) {
  static const struct option opts[] = {
      {"process", required_argument, 0, 'p'}, {"tty", no_argument, 0, 't'},     {"console-socket", required_argument, 0, 'c'},
      {"pid-file", required_argument, 0, 'P'}, {"detach", no_argument, 0, 'd'}, {"cwd", required_argument, 0, 'w'},
      {"env", required_argument, 0, 'e'},      {"user", required_argument, 0, 'u'}, {"no-new-privs", no_argument, 0, 'n'},
      {0, 0, 0, 0}};
  gx_err err = {0};
  const char *process_file = NULL, *console_socket = NULL, *pid_file = NULL, *cwd = NULL, *user = NULL;
  char *envs[64];
  int nenv = 0;
  bool tty = false, detach = false, nnp = false;
  optind = 1;
  int ch;
  while ((ch = getopt_long(argc, argv, "+p:tde:u:w:", opts, NULL)) != -1) {
    switch (ch) {
    case 'p': process_file = optarg; break;
    case 't': tty = true; break;
    case 'c': console_socket = optarg; break;
    case 'P': pid_file = optarg; break;
    case 'd': detach = true; break;
    case 'w': cwd = optarg; break;
    case 'e': if (nenv < 64) envs[nenv++] = optarg; break;
    case 'u': user = optarg; break;
    case 'n': nnp = true; break;
    default:
      gx_fail(&err, 0, "usage: exec [--process FILE] [--tty] [--console-socket SOCK] [-e K=V] [-u UID[:GID]] ID [ARGS...]");
      return report_error(&err);
    }
  }
  if (optind >= argc || (!process_file && optind + 1 >= argc)) {
    gx_fail(&err, 0, "usage: exec [--process FILE] ID | exec ID ARGS...");
    return report_error(&err);
  }
  const char *id = argv[optind];
  struct gx_state s = {0};
  if (state_read(id, &s, &err) < 0) return report_error(&err);
  const char *status = state_status(&s);
  if (!strcmp(status, "stopped")) {
    gx_fail(&err, 0, "container `%s` is not running: cannot exec", id);
    return report_error(&err);
  }
  struct oci_config c = {0};
  cleanup_free char *cfg = xasprintf("%s/%s/config.json", G.root, id);
  if (config_load_file(cfg, s.bundle, false, &c, &err) < 0) return report_error(&err);
  struct oci_process p = c.proc;
  if (process_file) {
    cleanup_free char *text = NULL;
    if (read_file(process_file, &text, NULL, &err) < 0) return report_error(&err);
    cleanup_json json *j = json_parse(text, process_file, &err);
    memset(&p, 0, sizeof p);
    if (!j || config_parse_process(j, &p, &err) < 0) return report_error(&err);
  } else {
    p.args = argv + optind + 1;
    p.terminal = tty;
  }
  for (int i = 0; i < nenv; i++) p.env = append_env(p.env, envs[i]);
  if (cwd) p.cwd = (char *)cwd;
  if (user) {
    p.uid = strtoul(user, NULL, 10);
    const char *colon = strchr(user, ':');
    if (colon) p.gid = strtoul(colon + 1, NULL, 10);
  }
  if (nnp) p.nnp = true;
  gx_seccomp sc = NULL;
  if (seccomp_compile(c.seccomp, &sc, &err) < 0) return report_error(&err);
  if (p.terminal && !console_socket) {
    gx_fail(&err, 0, "exec with a terminal needs --console-socket");
    return report_error(&err);
  }
  cleanup_close int console = -1;
  if (p.terminal && (console = console_connect(console_socket, &err)) < 0) return report_error(&err);
  int nsfd[6];
  int nns = 0;
  for (size_t i = 0; i < sizeof ns_files / sizeof *ns_files; i++) {
    if (same_ns(s.pid, ns_files[i].name)) continue;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/%s", s.pid, ns_files[i].name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      gx_fail(&err, errno, "open `%s`", path);
      return report_error(&err);
    }
    nsfd[nns++] = fd;
  }
  if (!same_ns(s.pid, "pid")) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/pid", s.pid);
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWPID) < 0) { /* only our children enter it */
      gx_fail(&err, errno, "setns `%s`", path);
      return report_error(&err);
    }
  }
  if (proc_starttime(s.pid) != s.starttime) {
    gx_fail(&err, 0, "container `%s` exited", id);
    return report_error(&err);
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
    gx_fail(&err, errno, "socketpair");
    return report_error(&err);
  }
  pid_t pid = clone_child(0);
  if (pid < 0) {
    gx_fail(&err, errno, "fork");
    return report_error(&err);
  }
  if (pid == 0) {
    close(sv[0]);
    if (sync_wait(sv[1], SYNC_GO, "GO", &err) < 0) _exit(1);
    for (int i = 0; i < nns; i++)
      if (setns(nsfd[i], 0) < 0) {
        gx_fail(&err, errno, "setns into container `%s`", id);
        goto fail;
      }
    char exe[PATH_MAX];
    int slave = -1;
    if (setsid() < 0) {
      gx_fail(&err, errno, "setsid");
      goto fail;
    }
    if (p.terminal && (pty_create(console, &p, &slave, &err) < 0 || pty_make_stdio(slave, &err) < 0)) goto fail;
    if (chdir(p.cwd) < 0) {
      gx_fail(&err, errno, "chdir to cwd `%s`", p.cwd);
      goto fail;
    }
    if (find_executable(&p, exe, sizeof exe, &err) < 0) goto fail;
    finalize_and_exec(&p, sc, sv[1], exe, true);
  fail:
    sync_send(sv[1], SYNC_ERROR, err.msg);
    _exit(127);
  }
  close(sv[1]);
  for (int i = 0; i < nns; i++) close(nsfd[i]);
  struct cgroup cg = {.mode = s.cgroup_mode, .root = s.cgroup_root, .path = s.cgroup_path};
  if (cgroup_enter(&cg, pid, &err) < 0 || sync_send(sv[0], SYNC_GO, NULL) < 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return report_error(&err);
  }
  if (sync_wait(sv[0], SYNC_READY, "execve", &err) < 0 && strncmp(err.msg, "sync: peer exited", 17)) {
    waitpid(pid, NULL, 0);
    return report_error(&err);
  }
  close(sv[0]);
  if (pid_file) {
    char b[32];
    int n = snprintf(b, sizeof b, "%d", pid);
    if (write_file_atomic(pid_file, b, n, &err) < 0) return report_error(&err);
  }
  if (detach) return 0;
  child_pid = pid;
  int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
  for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) signal(sigs[i], forward_signal);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
