/* container.c — the OCI lifecycle commands: create and run (parent half of sync.c's ladder),
 * start, state, kill, delete, list, ps; a failed create removes everything it made. */
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "runtime.h"

struct create_opts {
  const char *id, *bundle, *pid_file, *console_socket;
  bool run, detach;
};

struct created {
  struct oci_config c;
  struct cgroup cg;
  struct gx_state st;
  pid_t pid;
  int sync_fd;
};

static void make_state(struct created *cr, const char *id) {
  static char ts[40];
  rfc3339_now(ts);
  cr->st.id = (char *)id;
  cr->st.bundle = cr->c.bundle;
  cr->st.rootfs = cr->c.rootfs;
  cr->st.created = ts;
  cr->st.cgroup_mode = cr->cg.mode;
  cr->st.cgroup_root = cr->cg.root;
  cr->st.cgroup_path = cr->cg.path;
  strbuf sb = {0};
  json_write(&sb, jget(cr->c.root, "annotations") ? jget(cr->c.root, "annotations") : NULL);
  cr->st.annotations = jget(cr->c.root, "annotations") ? sb.buf : xstrdup("{}");
}

static char *hook_state(struct created *cr, const char *status) {
  strbuf sb = {0};
  state_json(&sb, &cr->st, status);
  return sb.buf;
}

static int write_pid_file(const char *path, pid_t pid, gx_err *err) {
  if (!path) return 0;
  char b[32];
  int n = snprintf(b, sizeof b, "%d", pid);
  return write_file_atomic(path, b, n, err);
}

/* Remove what a failed or finished container left: processes, cgroup, state dir. */
static void teardown(struct created *cr, const char *id, bool made_dir) {
  if (cr->pid > 0) {
    kill(cr->pid, SIGKILL);
    while (waitpid(cr->pid, NULL, 0) < 0 && errno == EINTR) {}
  }
  if (cr->cg.path) cgroup_destroy(&cr->cg, NULL);
  if (made_dir) state_remove(id);
}

static int do_create(struct create_opts *o, struct created *cr, gx_err *err) {
  char bundle[PATH_MAX];
  cr->pid = -1;
  cr->sync_fd = -1;
  if (state_check_id(o->id, err) < 0) return -1;
  if (!realpath(o->bundle ? o->bundle : ".", bundle)) return gx_fail(err, errno, "bundle `%s`", o->bundle ? o->bundle : ".");
  gx_trace("start");
  if (config_load(bundle, &cr->c, err) < 0) return -1;
  gx_trace("config loaded");
  struct oci_config *c = &cr->c;
  gx_seccomp sc = NULL;
  if (seccomp_compile(c->seccomp, &sc, err) < 0) return -1;
  if (c->proc.terminal && !o->console_socket && !o->run)
    return gx_fail(err, 0, "process.terminal is true but no --console-socket was given");
  if (!(c->clone_flags & CLONE_NEWNS)) {
    bool join_mnt = false;
    for (size_t i = 0; i < c->nns; i++) join_mnt |= c->ns[i].type == CLONE_NEWNS;
    if (!join_mnt) return gx_fail(err, 0, "config: a mount namespace is required");
  }
  cgroup_detect(&cr->cg);
  char *cgpath = cgroup_resolve_path(c->cgroups_path, o->id);
  if (state_create_dir(o->id, err) < 0) return -1;
  cleanup_close int console = -1, fifo = -1;
  int sv[2] = {-1, -1};
  cleanup_free char *dir = state_dir(o->id);
  int dfd = -1;
  make_state(cr, o->id);
  cr->st.cgroup_path = cgpath;
  {
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
      gx_fail(err, errno, "open state dir `%s`", dir);
      goto fail;
    }
    if (write_file_at(dfd, "config.json", c->text, strlen(c->text), err) < 0) goto fail;
    if (!o->run || o->detach) {
      if (mkfifoat(dfd, "exec.fifo", 0600) < 0) {
        gx_fail(err, errno, "mkfifo `%s/exec.fifo`", dir);
        goto fail;
      }
      fifo = openat(dfd, "exec.fifo", O_RDWR | O_CLOEXEC);
      if (fifo < 0) {
        gx_fail(err, errno, "open `%s/exec.fifo`", dir);
        goto fail;
      }
    }
  }
  cr->cg.path = cgpath;
  gx_trace("state dir");
  if (cgroup_create(&cr->cg, c, err) < 0) goto fail;
  gx_trace("cgroup created");
  if (c->proc.terminal && o->console_socket && (console = console_connect(o->console_socket, err)) < 0) goto fail;
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
    gx_fail(err, errno, "socketpair");
    goto fail;
  }
  if (ns_join(c, CLONE_NEWPID, err) < 0) goto fail; /* affects only our children */
  cr->pid = clone_child(c->clone_flags);
  if (cr->pid < 0) {
    gx_fail(err, errno, "clone3 with namespace flags 0x%x", c->clone_flags);
    goto fail;
  }
  if (cr->pid == 0) {
    close(sv[0]);
    struct init_args a = {.c = c, .cg = &cr->cg, .sync_fd = sv[1], .fifo_fd = fifo, .console_fd = console,
                          .seccomp = sc, .wait_fifo = !o->run || o->detach};
    init_main(&a);
  }
  close(sv[1]);
  cr->sync_fd = sv[0];
  gx_trace("cloned");
  cr->st.pid = cr->pid;
  if ((c->clone_flags & CLONE_NEWUSER) && ns_write_idmaps(cr->pid, c, err) < 0) goto fail;
  {
    cleanup_free char *sj = hook_state(cr, "creating");
    bool want_state = c->nhooks[HOOK_CREATE_CONTAINER] || c->nhooks[HOOK_START_CONTAINER];
    if (sync_send(cr->sync_fd, SYNC_GO, want_state ? sj : NULL) < 0) {
      gx_fail(err, errno, "sync: send GO");
      goto fail;
    }
    /* The child mounts meanwhile; it forks nothing (hooks) and execs nothing before we are done. */
    if (cgroup_enter(&cr->cg, cr->pid, err) < 0) {
      sync_take_error(cr->sync_fd, err); /* a child that failed first explains better than ESRCH */
      goto fail;
    }
    gx_trace("cgroup entered");
    if (sync_needs_hooks_step(c)) {
      if (sync_wait(cr->sync_fd, SYNC_HOOKS, "the container's mounts", err) < 0) goto fail;
      if (hooks_run(c, HOOK_PRESTART, sj, err) < 0 || hooks_run(c, HOOK_CREATE_RUNTIME, sj, err) < 0) goto fail;
      if (sync_send(cr->sync_fd, SYNC_HOOKS_DONE, NULL) < 0) {
        gx_fail(err, errno, "sync: send HOOKS_DONE");
        goto fail;
      }
    }
  }
  if (sync_wait(cr->sync_fd, SYNC_READY, "container setup", err) < 0) goto fail;
  gx_trace("child ready");
  cr->st.starttime = proc_starttime(cr->pid);
  if (state_write(&cr->st, err) < 0) goto fail;
  if (write_pid_file(o->pid_file, cr->pid, err) < 0) goto fail;
  if (dfd >= 0) close(dfd);
  return 0;
fail:
  if (dfd >= 0) close(dfd);
  if (cr->sync_fd >= 0) close(cr->sync_fd);
  if (sv[1] >= 0 && cr->pid < 0) close(sv[1]);
  teardown(cr, o->id, true);
  cr->pid = -1;
  return -1;
}

static int parse_create_opts(int argc, char **argv, struct create_opts *o, bool run) {
  static const struct option opts[] = {{"bundle", required_argument, 0, 'b'},    {"pid-file", required_argument, 0, 'p'},
                                        {"console-socket", required_argument, 0, 'c'}, {"detach", no_argument, 0, 'd'},
                                        {"no-pivot", no_argument, 0, 'N'},        {"no-new-keyring", no_argument, 0, 'K'},
                                        {"preserve-fds", required_argument, 0, 'P'}, {0, 0, 0, 0}};
  optind = 1;
  int ch;
  while ((ch = getopt_long(argc, argv, "+b:d", opts, NULL)) != -1) {
    switch (ch) {
    case 'b': o->bundle = optarg; break;
    case 'p': o->pid_file = optarg; break;
    case 'c': o->console_socket = optarg; break;
    case 'd': o->detach = true; break;
    case 'N': case 'K': case 'P': break;
    default: return -1;
    }
  }
  if (optind != argc - 1) return -1;
  o->id = argv[optind];
  o->run = run;
  return 0;
}

int cmd_create(int argc, char **argv) {
  struct create_opts o = {0};
  gx_err err = {0};
  if (parse_create_opts(argc, argv, &o, false) < 0) {
    gx_fail(&err, 0, "usage: create [--bundle DIR] [--pid-file FILE] [--console-socket SOCK] ID");
    return report_error(&err);
  }
  static struct created cr;
  if (do_create(&o, &cr, &err) < 0) return report_error(&err);
  return 0;
}

static pid_t fwd_pid;
static void forward_signal(int sig) {
  if (fwd_pid > 0) kill(fwd_pid, sig);
}

int cmd_run(int argc, char **argv) {
  struct create_opts o = {0};
  gx_err err = {0};
  if (parse_create_opts(argc, argv, &o, true) < 0) {
    gx_fail(&err, 0, "usage: run [--bundle DIR] [--pid-file FILE] [--console-socket SOCK] [--detach] ID");
    return report_error(&err);
  }
  static struct created cr;
  if (do_create(&o, &cr, &err) < 0) return report_error(&err);
  if (o.detach) { /* created with a fifo: start it like `start` would */
    cleanup_free char *fifo = xasprintf("%s/%s/exec.fifo", G.root, o.id);
    cleanup_close int fd = open(fifo, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) {
      gx_fail(&err, errno, "start `%s` through `%s`", o.id, fifo);
      return report_error(&err);
    }
    unlink(fifo);
    return 0;
  }
  fwd_pid = cr.pid;
  int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
  for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) signal(sigs[i], forward_signal);
  int ret = 0;
  if (sync_send(cr.sync_fd, SYNC_START, NULL) < 0) {
    gx_fail(&err, errno, "sync: send START");
    ret = -1;
  }
  /* EOF means execve succeeded (the socket is close-on-exec); a message means it failed. */
  if (ret == 0 && sync_wait(cr.sync_fd, SYNC_READY, "execve", &err) < 0 && strncmp(err.msg, "sync: peer exited", 17)) ret = -1;
  close(cr.sync_fd);
  gx_trace("child exec'd");
  cleanup_free char *sj = hook_state(&cr, "running");
  if (ret == 0 && hooks_run(&cr.c, HOOK_POSTSTART, sj, &err) < 0) ret = -1;
  int status = 0;
  while (waitpid(cr.pid, &status, 0) < 0 && errno == EINTR) {}
  cr.pid = -1;
  gx_trace("child exited");
  pid_t *pids;
  size_t n;
  if (cgroup_pids(&cr.cg, &pids, &n) == 0) { /* no pid namespace: leftovers die with the container */
    for (size_t i = 0; i < n; i++) kill(pids[i], SIGKILL);
    free(pids);
  }
  gx_err perr = {0};
  free(sj);
  sj = hook_state(&cr, "stopped");
  hooks_run(&cr.c, HOOK_POSTSTOP, sj, &perr);
  teardown(&cr, o.id, true);
  gx_trace("torn down");
  if (ret < 0) return report_error(&err);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int load_running(const char *id, struct gx_state *s, const char **status, gx_err *err) {
  if (state_read(id, s, err) < 0) return -1;
  *status = state_status(s);
  return 0;
}

static int load_saved_config(const struct gx_state *s, struct oci_config *c, gx_err *err) {
  cleanup_free char *p = xasprintf("%s/%s/config.json", G.root, s->id);
  return config_load_file(p, s->bundle, false, c, err);
}

static int one_id(int argc, char **argv, const char *usage, gx_err *err) {
  if (argc - optind != 1) return gx_fail(err, 0, "usage: %s", usage);
  return 0;
}

/* gantryd does the same itself for the containers it made (worker/runtime/exec-fifo.ts: one byte to
 * exec.fifo, then unlink): a change to this protocol must change that file too. */
int cmd_start(int argc, char **argv) {
  gx_err err = {0};
  optind = 1;
  if (one_id(argc, argv, "start ID", &err) < 0) return report_error(&err);
  const char *id = argv[optind], *status;
  struct gx_state s = {0};
  if (load_running(id, &s, &status, &err) < 0) return report_error(&err);
  if (strcmp(status, "created")) {
    gx_fail(&err, 0, "container `%s` is %s, not created: cannot start it", id, status);
    return report_error(&err);
  }
  cleanup_free char *fifo = xasprintf("%s/%s/exec.fifo", G.root, id);
  cleanup_close int fd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    gx_fail(&err, errno, "open `%s` (is the container's init still waiting?)", fifo);
    return report_error(&err);
  }
  if (write(fd, "0", 1) != 1) {
    gx_fail(&err, errno, "write `%s`", fifo);
    return report_error(&err);
  }
  unlink(fifo);
  struct oci_config c = {0};
  if (load_saved_config(&s, &c, &err) < 0) return report_error(&err);
  if (c.nhooks[HOOK_POSTSTART]) {
    strbuf sb = {0};
    state_json(&sb, &s, "running");
    if (hooks_run(&c, HOOK_POSTSTART, sb.buf, &err) < 0) return report_error(&err);
  }
  return 0;
}

int cmd_state(int argc, char **argv) {
  gx_err err = {0};
  optind = 1;
  if (one_id(argc, argv, "state ID", &err) < 0) return report_error(&err);
  struct gx_state s = {0};
  const char *status;
  if (load_running(argv[optind], &s, &status, &err) < 0) return report_error(&err);
  strbuf sb = {0};
  state_json(&sb, &s, status);
  printf("%s\n", sb.buf);
  return 0;
}

static struct cgroup state_cgroup(const struct gx_state *s) {
  return (struct cgroup){.mode = s->cgroup_mode, .root = s->cgroup_root, .path = s->cgroup_path};
}

static int signal_pid(const struct gx_state *s, int sig, gx_err *err) {
  cleanup_close int pfd = syscall(SYS_pidfd_open, s->pid, 0);
  if (pfd < 0) return gx_fail(err, errno, "pidfd_open %d", s->pid);
  if (proc_starttime(s->pid) != s->starttime) return gx_fail(err, ESRCH, "container `%s` init %d has exited", s->id, s->pid);
  if (syscall(SYS_pidfd_send_signal, pfd, sig, NULL, 0) < 0) return gx_fail(err, errno, "kill %d with signal %d", s->pid, sig);
  return 0;
}

static int signal_all(const struct gx_state *s, int sig) {
  struct cgroup cg = state_cgroup(s);
  pid_t *pids;
  size_t n;
  if (cgroup_pids(&cg, &pids, &n) < 0) return -1;
  for (size_t i = 0; i < n; i++) kill(pids[i], sig);
  free(pids);
  return 0;
}

int cmd_kill(int argc, char **argv) {
  gx_err err = {0};
  static const struct option opts[] = {{"all", no_argument, 0, 'a'}, {0, 0, 0, 0}};
  bool all = false;
  optind = 1;
  int ch;
  while ((ch = getopt_long(argc, argv, "+a", opts, NULL)) != -1) {
    if (ch == 'a') all = true;
    else {
      gx_fail(&err, 0, "usage: kill [--all] ID [SIGNAL]");
      return report_error(&err);
    }
  }
  if (argc - optind < 1 || argc - optind > 2) {
    gx_fail(&err, 0, "usage: kill [--all] ID [SIGNAL]");
    return report_error(&err);
  }
  const char *id = argv[optind], *signame = argc - optind == 2 ? argv[optind + 1] : "TERM", *status;
  int sig = signal_from_name(signame);
  if (sig < 0) {
    gx_fail(&err, 0, "unknown signal `%s`", signame);
    return report_error(&err);
  }
  struct gx_state s = {0};
  if (load_running(id, &s, &status, &err) < 0) return report_error(&err);
  if (!strcmp(status, "stopped")) {
    gx_fail(&err, 0, "container `%s` is not running", id);
    return report_error(&err);
  }
  if (all) signal_all(&s, sig);
  else if (signal_pid(&s, sig, &err) < 0) return report_error(&err);
  return 0;
}

static void wait_exit(pid_t pid) {
  cleanup_close int pfd = syscall(SYS_pidfd_open, pid, 0);
  if (pfd < 0) return;
  struct pollfd p = {.fd = pfd, .events = POLLIN};
  while (poll(&p, 1, 10000) < 0 && errno == EINTR) {}
}

int cmd_delete(int argc, char **argv) {
  gx_err err = {0};
  static const struct option opts[] = {{"force", no_argument, 0, 'f'}, {0, 0, 0, 0}};
  bool force = false;
  optind = 1;
  int ch;
  while ((ch = getopt_long(argc, argv, "+f", opts, NULL)) != -1) {
    if (ch == 'f') force = true;
    else {
      gx_fail(&err, 0, "usage: delete [--force] ID");
      return report_error(&err);
    }
  }
  if (one_id(argc, argv, "delete [--force] ID", &err) < 0) return report_error(&err);
  const char *id = argv[optind], *status;
  struct gx_state s = {0};
  if (load_running(id, &s, &status, &err) < 0) {
    cleanup_free char *d = state_dir(id);
    if (force && state_check_id(id, NULL) == 0 && access(d, F_OK) < 0) return 0;
    if (force) { /* a create killed before writing state.json: its config copy names the cgroup */
      cleanup_free char *cfg = xasprintf("%s/config.json", d);
      struct oci_config c = {0};
      struct cgroup cg = {0};
      if (state_check_id(id, NULL) == 0 && config_load_file(cfg, d, false, &c, NULL) == 0) {
        cgroup_detect(&cg);
        cg.path = cgroup_resolve_path(c.cgroups_path, id);
        s.cgroup_mode = cg.mode, s.cgroup_root = cg.root, s.cgroup_path = cg.path, s.id = (char *)id;
        signal_all(&s, SIGKILL);
        cgroup_destroy(&cg, NULL);
      }
      state_remove(id);
      return 0;
    }
    return report_error(&err);
  }
  if (!strcmp(status, "running") && !force) {
    gx_fail(&err, 0, "container `%s` is running: stop it first or use --force", id);
    return report_error(&err);
  }
  if (strcmp(status, "stopped")) {
    signal_pid(&s, SIGKILL, NULL);
    wait_exit(s.pid);
  }
  if (force) signal_all(&s, SIGKILL);
  struct oci_config c = {0};
  if (load_saved_config(&s, &c, NULL) == 0 && c.nhooks[HOOK_POSTSTOP]) {
    strbuf sb = {0};
    state_json(&sb, &s, "stopped");
    hooks_run(&c, HOOK_POSTSTOP, sb.buf, NULL); /* as runc: a failing poststop hook is only logged */
  }
  struct cgroup cg = state_cgroup(&s);
  if (cgroup_destroy(&cg, &err) < 0) return report_error(&err);
  if (state_remove(id) < 0) {
    gx_fail(&err, errno, "remove state dir of `%s`", id);
    return report_error(&err);
  }
  return 0;
}

int cmd_list(int argc, char **argv) {
  static const struct option opts[] = {{"format", required_argument, 0, 'f'}, {"quiet", no_argument, 0, 'q'}, {0, 0, 0, 0}};
  bool json_out = false, quiet = false;
  optind = 1;
  int ch;
  while ((ch = getopt_long(argc, argv, "+f:q", opts, NULL)) != -1) {
    if (ch == 'f') json_out = !strcmp(optarg, "json");
    else if (ch == 'q') quiet = true;
  }
  DIR *d = opendir(G.root);
  strbuf sb = {0};
  if (json_out) sb_puts(&sb, "[");
  else if (!quiet) sb_puts(&sb, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\n");
  bool first = true;
  struct dirent *e;
  while (d && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    struct gx_state s = {0};
    if (state_read(e->d_name, &s, NULL) < 0) continue;
    const char *status = state_status(&s);
    if (json_out) {
      if (!first) sb_puts(&sb, ",");
      state_json(&sb, &s, status);
    } else if (quiet) {
      sb_printf(&sb, "%s\n", s.id);
    } else {
      sb_printf(&sb, "%s\t%d\t%s\t%s\t%s\n", s.id, strcmp(status, "stopped") ? s.pid : 0, status, s.bundle, s.created);
    }
    first = false;
  }
  if (d) closedir(d);
  if (json_out) sb_puts(&sb, "]\n");
  fputs(sb.buf ? sb.buf : "", stdout);
  return 0;
}

int cmd_ps(int argc, char **argv) {
  gx_err err = {0};
  static const struct option opts[] = {{"format", required_argument, 0, 'f'}, {0, 0, 0, 0}};
  bool json_out = false;
  optind = 1;
  int ch;
  while ((ch = getopt_long(argc, argv, "+f:", opts, NULL)) != -1)
    if (ch == 'f') json_out = !strcmp(optarg, "json");
  if (argc - optind < 1) {
    gx_fail(&err, 0, "usage: ps [--format table|json] ID");
    return report_error(&err);
  }
  struct gx_state s = {0};
  if (state_read(argv[optind], &s, &err) < 0) return report_error(&err);
  struct cgroup cg = state_cgroup(&s);
  pid_t *pids = NULL;
  size_t n = 0;
  cgroup_pids(&cg, &pids, &n);
  if (json_out) {
    printf("[");
    for (size_t i = 0; i < n; i++) printf("%s%d", i ? "," : "", pids[i]);
    printf("]\n");
  } else {
    printf("PID\tCMD\n");
    for (size_t i = 0; i < n; i++) {
      char p[64], *cmd = NULL;
      snprintf(p, sizeof p, "/proc/%d/comm", pids[i]);
      read_file(p, &cmd, NULL, NULL);
      if (cmd) cmd[strcspn(cmd, "\n")] = 0;
      printf("%d\t%s\n", pids[i], cmd ? cmd : "?");
      free(cmd);
    }
  }
  return 0;
}
