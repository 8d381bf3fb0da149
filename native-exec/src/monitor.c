/* monitor.c — `gantry-exec monitor`: forks a detached monitor that runs `RUNTIME create`, becomes
 * the subreaper of the container's init, logs its output (Docker json-file) and records its exit.
 *
 *  caller (foreground)         intermediate           monitor                    runtime
 *    | pipe(status) fork ------> setsid, fork ----------> |                          |
 *    |                           exit(0)                  | subreaper, monitor.pid   |
 *    |                                                    | fork+exec create ------> | create --pid-file ...
 *    |                                                    | <-- console fd (tty) --- |
 *    |                                                    | <------- SIGCHLD (exit) -|
 *    | <------------- {"pid":N} or "E<error>" + EOF ------ |                          |
 *    | print, exit 0/1                                    | log loop until init exits
 *                                                         | exit.json (tmp+rename), exit
 */
#include "monitor.h"

#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "util.h"

#define MAX_CLIENTS 16
#define ERRBUF_SIZE 4096

struct mon_opts {
  const char *runtime, *runtime_root, *bundle, *state_dir, *log_dir, *id;
  long long log_max_size;
  int log_max_files;
  bool tty, stdin_;
};

struct mon {
  struct mon_opts o;
  int status_fd;            /* to the caller until create is reported */
  int sigfd, out_fd, err_fd, in_fd, console_listen, attach_listen;
  int clients[MAX_CLIENTS];
  int nclients;
  int log_fd;
  long long log_size;
  strbuf line;              /* reused JSON line buffer */
  char errbuf[ERRBUF_SIZE]; /* runtime output while create runs */
  size_t errlen;
  pid_t create_pid, ctr_pid;
  int oom_fd;               /* memory.oom_control (v1) or memory.events (v2) of the container */
  bool oom_v2;
  struct { pid_t pid; int status; } early[8]; /* reaped before the container pid was known */
  int nearly;
};

static const char *stale_files[] = {"exit.json", "exit.json.tmp", "container.pid", "create-error.txt",
                                    "attach.sock", "console.sock", "monitor.pid", NULL};

static void remove_state_files(bool keep_error) {
  for (const char **f = stale_files; *f; f++)
    if (!keep_error || strcmp(*f, "create-error.txt")) unlink(*f);
}

static int listen_unix(const char *name, gx_err *err) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(name) >= sizeof sa.sun_path) return gx_fail(err, ENAMETOOLONG, "socket path `%s`", name);
  strcpy(sa.sun_path, name);
  unlink(name);
  cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return gx_fail(err, errno, "socket for `%s`", name);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) return gx_fail(err, errno, "bind `%s`", name);
  if (listen(fd, 16) < 0) return gx_fail(err, errno, "listen `%s`", name);
  return steal_fd(&fd);
}

/* Close client i; the last client takes its slot (so indices above i change, none below). */
static void drop_client(struct mon *m, int i) {
  close(m->clients[i]);
  m->clients[i] = m->clients[--m->nclients];
}

/* ---- log writing ---------------------------------------------------------------------- */

/* <log dir>/ctr.log, or ctr.log.<i> for i > 0 (the rotated ones) */
static void log_name(const struct mon *m, int i, char *out, size_t n) {
  if (i == 0) snprintf(out, n, "%s/ctr.log", m->o.log_dir);
  else snprintf(out, n, "%s/ctr.log.%d", m->o.log_dir, i);
}

static int log_open(struct mon *m) {
  char path[PATH_MAX];
  log_name(m, 0, path, sizeof path);
  m->log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  struct stat st;
  m->log_size = (m->log_fd >= 0 && fstat(m->log_fd, &st) == 0) ? st.st_size : 0;
  return m->log_fd;
}

static void log_rotate(struct mon *m) {
  if (m->log_fd >= 0) close(m->log_fd);
  char from[PATH_MAX], to[PATH_MAX];
  if (m->o.log_max_files <= 1) {
    log_name(m, 0, from, sizeof from);
    unlink(from);
  } else {
    for (int i = m->o.log_max_files - 1; i >= 1; i--) {
      log_name(m, i, to, sizeof to);
      log_name(m, i - 1, from, sizeof from);
      rename(from, to);
    }
  }
  log_open(m);
}

static void emit_line(struct mon *m, const char *stream, const char *data, size_t n) {
  char ts[40];
  rfc3339_now(ts);
  m->line.len = 0;
  sb_puts(&m->line, "{\"log\":");
  sb_json_string(&m->line, data, n);
  sb_printf(&m->line, ",\"stream\":\"%s\",\"time\":\"%s\"}\n", stream, ts);
  if (m->log_size > 0 && m->log_size + (long long)m->line.len > m->o.log_max_size) log_rotate(m);
  if (m->log_fd >= 0 && write_all(m->log_fd, m->line.buf, m->line.len) == 0) m->log_size += m->line.len;
  for (int i = 0; i < m->nclients;) {
    ssize_t w = send(m->clients[i], m->line.buf, m->line.len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w != (ssize_t)m->line.len) { /* slow or gone: drop rather than buffer */
      drop_client(m, i);
      continue;
    }
    i++;
  }
}

/* One entry per line; a trailing partial line is its own entry (readers concatenate). */
static void emit(struct mon *m, const char *stream, const char *data, size_t n) {
  while (n) {
    const char *nl = memchr(data, '\n', n);
    size_t l = nl ? (size_t)(nl - data) + 1 : n;
    emit_line(m, stream, data, l);
    data += l;
    n -= l;
  }
}

/* Read what is available on fd; returns bytes read, 0 on EOF/EIO (fd closed and set to -1). */
static ssize_t pump(struct mon *m, int *fd, const char *stream) {
  char buf[4096];
  ssize_t r = read(*fd, buf, sizeof buf);
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return -1;
  if (r <= 0) {
    close(*fd);
    *fd = -1;
    return 0;
  }
  if (m->ctr_pid > 0) {
    emit(m, stream, buf, r);
  } else { /* create still running: this is the runtime talking; keep the tail */
    if ((size_t)r >= ERRBUF_SIZE - 1) {
      memcpy(m->errbuf, buf + r - (ERRBUF_SIZE - 1), ERRBUF_SIZE - 1);
      m->errlen = ERRBUF_SIZE - 1;
    } else {
      if (m->errlen + r > ERRBUF_SIZE - 1) {
        size_t drop = m->errlen + r - (ERRBUF_SIZE - 1);
        memmove(m->errbuf, m->errbuf + drop, m->errlen - drop);
        m->errlen -= drop;
      }
      memcpy(m->errbuf + m->errlen, buf, r);
      m->errlen += r;
    }
  }
  return r;
}

/* Read what is queued on fd after the writer we care about exited, without ever waiting.
 * Complete: a pipe write has copied its bytes into the pipe before write(2) returns, so all the
 * init wrote is queued before it can exit and before we reap it; on a pty master n_tty_read
 * flushes the slave's pending input before it answers EAGAIN (or EIO once the slave is closed).
 * Bounded: we stop at EAGAIN, not at EOF (a grandchild that escaped the container's pid namespace
 * may hold the write end for ever), and after the pipe's capacity in bytes (the init's bytes are
 * first in the pipe and at most a capacity's worth is unread), or DRAIN_MAX_TTY on a pty, so a
 * survivor that keeps writing cannot keep the monitor from writing exit.json. */
#define DRAIN_MAX_TTY (1 << 20)
static void drain_fd(struct mon *m, int *fd, const char *stream) {
  if (*fd < 0) return;
  int fl = fcntl(*fd, F_GETFL);
  if (fl >= 0) fcntl(*fd, F_SETFL, fl | O_NONBLOCK);
  int cap = fcntl(*fd, F_GETPIPE_SZ);
  long long left = cap > 0 ? cap : DRAIN_MAX_TTY;
  while (*fd >= 0 && left > 0) {
    ssize_t r = pump(m, fd, stream);
    if (r > 0) left -= r;
    else if (r < 0 && errno == EINTR) continue;
    else break;
  }
}

static void drain(struct mon *m) {
  drain_fd(m, &m->out_fd, "stdout");
  drain_fd(m, &m->err_fd, "stderr");
}

/* ---- runtime invocation --------------------------------------------------------------- */

static pid_t spawn_runtime(struct mon *m, const char *cmd, bool create, int in, int out, int errfd) {
  const char *argv[16];
  int n = 0;
  char pidfile[PATH_MAX + 32], console[PATH_MAX + 32];
  argv[n++] = m->o.runtime;
  if (m->o.runtime_root) {
    argv[n++] = "--root";
    argv[n++] = m->o.runtime_root;
  }
  argv[n++] = cmd;
  if (create) {
    snprintf(pidfile, sizeof pidfile, "%s/container.pid", m->o.state_dir);
    snprintf(console, sizeof console, "%s/console.sock", m->o.state_dir);
    if (strlen(console) >= sizeof(((struct sockaddr_un *)0)->sun_path)) /* too long for sun_path: same file via our cwd */
      snprintf(console, sizeof console, "/proc/%d/cwd/console.sock", getpid());
    argv[n++] = "--bundle";
    argv[n++] = m->o.bundle;
    argv[n++] = "--pid-file";
    argv[n++] = pidfile;
    if (m->o.tty) {
      argv[n++] = "--console-socket";
      argv[n++] = console;
    }
  } else {
    argv[n++] = "--force";
  }
  argv[n++] = m->o.id;
  argv[n] = NULL;
  pid_t pid = fork();
  if (pid != 0) return pid;
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
  signal(SIGPIPE, SIG_DFL);
  if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(errfd, 2) < 0) _exit(127);
  execvp(argv[0], (char **)argv);
  dprintf(2, "exec runtime `%s`: %s\n", argv[0], gx_errname(errno));
  _exit(127);
}

/* The runtime's error, one line: the last non-empty line, or the msg="..." of a logrus line. */
static void runtime_error_line(struct mon *m, char *out, size_t outsz, int status) {
  m->errbuf[m->errlen] = 0;
  char *end = m->errbuf + m->errlen;
  while (end > m->errbuf && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ')) *--end = 0;
  char *start = end;
  while (start > m->errbuf && start[-1] != '\n') start--;
  char *msg = strstr(start, "msg=\"");
  if (msg) {
    size_t o = 0;
    for (char *p = msg + 5; *p && *p != '"' && o + 1 < outsz; p++) {
      if (*p == '\\' && p[1]) p++;
      out[o++] = *p;
    }
    out[o] = 0;
  } else if (*start) {
    snprintf(out, outsz, "%s", start);
  } else if (WIFEXITED(status)) {
    snprintf(out, outsz, "%s create %s: exit status %d", m->o.runtime, m->o.id, WEXITSTATUS(status));
  } else {
    snprintf(out, outsz, "%s create %s: killed by signal %d", m->o.runtime, m->o.id, WTERMSIG(status));
  }
}

static int recv_console(struct mon *m) {
  cleanup_close int c = accept4(m->console_listen, NULL, NULL, SOCK_CLOEXEC);
  if (c < 0) return -1;
  char data[256];
  struct iovec iov = {.iov_base = data, .iov_len = sizeof data};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
  if (recvmsg(c, &msg, MSG_CMSG_CLOEXEC) < 0) return -1;
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  if (!cm || cm->cmsg_type != SCM_RIGHTS) return -1;
  int fd;
  memcpy(&fd, CMSG_DATA(cm), sizeof fd);
  m->out_fd = fd;
  m->in_fd = m->o.stdin_ ? fd : -1;
  close(m->console_listen);
  m->console_listen = -1;
  unlink("console.sock");
  return 0;
}

/* Find the container's memory cgroup and keep its OOM counter file open. */
static void open_oom_counter(struct mon *m) {
  char path[64], *data = NULL;
  snprintf(path, sizeof path, "/proc/%d/cgroup", m->ctr_pid);
  if (read_file(path, &data, NULL, NULL) < 0) return;
  char *save = NULL, *v2 = NULL;
  for (char *l = strtok_r(data, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
    char *c1 = strchr(l, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) continue;
    *c2 = 0;
    if (!strcmp(c1 + 1, "memory") || strstr(c1 + 1, ",memory")) {
      char *p = xasprintf("/sys/fs/cgroup/memory%s/memory.oom_control", c2 + 1);
      m->oom_fd = open(p, O_RDONLY | O_CLOEXEC);
      free(p);
    } else if (c1[1] == 0 && l[0] == '0') {
      v2 = c2 + 1;
    }
  }
  if (m->oom_fd < 0 && v2) {
    const char *roots[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
    for (int i = 0; i < 2 && m->oom_fd < 0; i++) {
      char *p = xasprintf("%s%s/memory.events", roots[i], v2);
      m->oom_fd = open(p, O_RDONLY | O_CLOEXEC);
      m->oom_v2 = true;
      free(p);
    }
  }
  free(data);
}

static bool oom_killed(struct mon *m) {
  char buf[1024];
  if (m->oom_fd < 0) return false;
  ssize_t r = pread(m->oom_fd, buf, sizeof buf - 1, 0);
  if (r <= 0) return false;
  buf[r] = 0;
  char *p = strstr(buf, "oom_kill ");
  return p && atoll(p + 9) > 0;
}

static void write_exit(struct mon *m, int status) {
  char ts[40], buf[256], sig[16] = "null";
  int code = 255;
  if (WIFEXITED(status)) code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status)) {
    code = 128 + WTERMSIG(status);
    snprintf(sig, sizeof sig, "%d", WTERMSIG(status));
  }
  rfc3339_now(ts);
  int n = snprintf(buf, sizeof buf, "{\"exitCode\":%d,\"signal\":%s,\"oomKilled\":%s,\"finishedAt\":\"%s\"}\n",
                   code, sig, oom_killed(m) ? "true" : "false", ts);
  write_file_atomic("exit.json", buf, n, NULL);
}

/* On failure the status pipe stays open until _exit, so the caller's EOF means the monitor is gone. */
static void report(struct mon *m, const char *msg, bool close_it) {
  if (m->status_fd < 0) return;
  write_all(m->status_fd, msg, strlen(msg));
  if (!close_it) return;
  close(m->status_fd);
  m->status_fd = -1;
}

static _Noreturn void create_failed(struct mon *m, int status) {
  char line[1024], msg[1100];
  runtime_error_line(m, line, sizeof line, status);
  cleanup_close int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  pid_t d = spawn_runtime(m, "delete", false, devnull, devnull, devnull);
  int st;
  while (d > 0 && waitpid(d, &st, 0) < 0 && errno == EINTR) {}
  remove_state_files(false);
  char log[PATH_MAX];
  log_name(m, 0, log, sizeof log);
  unlink(log);
  size_t n = strlen(line);
  line[n] = '\n';
  write_file("create-error.txt", line, n + 1, NULL);
  line[n] = 0;
  snprintf(msg, sizeof msg, "E%s", line);
  report(m, msg, false);
  _exit(1);
}

static int read_pid_file(void) {
  char *data = NULL;
  if (read_file("container.pid", &data, NULL, NULL) < 0) return -1;
  int pid = atoi(data);
  free(data);
  return pid > 0 ? pid : -1;
}

static void created(struct mon *m) {
  m->ctr_pid = read_pid_file();
  if (m->ctr_pid <= 0) {
    m->errlen = snprintf(m->errbuf, ERRBUF_SIZE, "monitor: runtime wrote no pid to container.pid\n");
    create_failed(m, 0);
  }
  if (m->o.tty && m->out_fd < 0 && recv_console(m) < 0) {
    m->errlen = snprintf(m->errbuf, ERRBUF_SIZE, "monitor: runtime sent no console on console.sock\n");
    m->ctr_pid = 0;
    create_failed(m, 0);
  }
  if (m->o.tty) fcntl(m->out_fd, F_SETFL, O_NONBLOCK);
  open_oom_counter(m);
  char msg[64];
  snprintf(msg, sizeof msg, "{\"pid\":%d}", m->ctr_pid);
  report(m, msg, true);
}

static _Noreturn void container_exited(struct mon *m, int status) {
  drain(m);
  write_exit(m, status);
  for (int i = 0; i < m->nclients; i++) close(m->clients[i]);
  unlink("attach.sock");
  _exit(0);
}

static void on_sigchld(struct mon *m) {
  struct signalfd_siginfo si;
  while (read(m->sigfd, &si, sizeof si) > 0) {}
  int status;
  pid_t p;
  while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
    if (p == m->create_pid) {
      m->create_pid = 0;
      if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        drain(m);
        create_failed(m, status);
      }
      created(m);
      for (int i = 0; i < m->nearly; i++)
        if (m->early[i].pid == m->ctr_pid) container_exited(m, m->early[i].status);
    } else if (m->ctr_pid > 0 && p == m->ctr_pid) {
      container_exited(m, status);
    } else if (m->ctr_pid == 0 && m->nearly < 8) {
      m->early[m->nearly].pid = p;
      m->early[m->nearly++].status = status;
    }
  }
}

static void on_client_data(struct mon *m, int i) {
  char buf[4096];
  ssize_t r = read(m->clients[i], buf, sizeof buf);
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (r <= 0) {
    drop_client(m, i);
    return;
  }
  if (m->in_fd >= 0) write_all(m->in_fd, buf, r);
}

static _Noreturn void monitor_run(struct mon *m) {
  gx_err err = {0};
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  prctl(PR_SET_NAME, "gantry-monitor");
  char pidbuf[32];
  int n = snprintf(pidbuf, sizeof pidbuf, "%d\n", getpid());
  write_file("monitor.pid", pidbuf, n, NULL);

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  signal(SIGPIPE, SIG_IGN);
  m->sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

  int outp[2] = {-1, -1}, errp[2] = {-1, -1}, inp[2] = {-1, -1};
  cleanup_close int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (m->o.tty) {
    m->console_listen = listen_unix("console.sock", &err);
    if (m->console_listen < 0) goto fail;
  }
  if (pipe2(errp, O_CLOEXEC) < 0) {
    gx_fail(&err, errno, "pipe");
    goto fail;
  }
  if (!m->o.tty && pipe2(outp, O_CLOEXEC) < 0) {
    gx_fail(&err, errno, "pipe");
    goto fail;
  }
  if (!m->o.tty && m->o.stdin_ && pipe2(inp, O_CLOEXEC) < 0) {
    gx_fail(&err, errno, "pipe");
    goto fail;
  }
  m->attach_listen = listen_unix("attach.sock", &err);
  if (m->attach_listen < 0) goto fail;
  log_open(m);

  m->create_pid = spawn_runtime(m, "create", true, inp[0] >= 0 ? inp[0] : devnull,
                                outp[1] >= 0 ? outp[1] : errp[1], errp[1]);
  if (m->create_pid < 0) {
    gx_fail(&err, errno, "fork runtime");
    goto fail;
  }
  close(errp[1]);
  if (outp[1] >= 0) close(outp[1]);
  if (inp[0] >= 0) close(inp[0]);
  m->err_fd = errp[0];
  m->out_fd = outp[0];
  m->in_fd = inp[1];
  if (m->in_fd >= 0) fcntl(m->in_fd, F_SETFL, O_NONBLOCK);

  for (;;) {
    struct pollfd p[5 + MAX_CLIENTS];
    int np = 0;
    p[np++] = (struct pollfd){.fd = m->sigfd, .events = POLLIN};
    p[np++] = (struct pollfd){.fd = m->out_fd, .events = POLLIN};
    p[np++] = (struct pollfd){.fd = m->err_fd, .events = POLLIN};
    p[np++] = (struct pollfd){.fd = m->console_listen, .events = POLLIN};
    p[np++] = (struct pollfd){.fd = m->attach_listen, .events = POLLIN};
    for (int i = 0; i < m->nclients; i++) p[np++] = (struct pollfd){.fd = m->clients[i], .events = POLLIN};
    if (poll(p, np, -1) < 0) {
      if (errno == EINTR) continue;
      _exit(1);
    }
    /* Clients first, while p[5 + i] is still m->clients[i] (going down, a drop only moves an
     * already handled client). Pumping output drops clients that hung up (emit_line), which
     * reorders the array and frees their fd numbers for the log that a rotation reopens: read
     * after that, a stale index read the log fd (EBADF) and closed it, and every later line,
     * the container's last one included, was lost while exit.json still appeared. */
    for (int i = np - 1; i >= 5; i--)
      if (p[i].revents) on_client_data(m, i - 5);
    if (p[1].revents && m->out_fd >= 0) pump(m, &m->out_fd, "stdout");
    if (p[2].revents && m->err_fd >= 0) pump(m, &m->err_fd, "stderr");
    if (p[3].revents && m->console_listen >= 0) recv_console(m);
    if (p[4].revents) {
      int c = accept4(m->attach_listen, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c >= 0 && m->nclients < MAX_CLIENTS) m->clients[m->nclients++] = c;
      else if (c >= 0) close(c);
    }
    if (p[0].revents) on_sigchld(m);
  }
fail:
  m->errlen = snprintf(m->errbuf, ERRBUF_SIZE, "monitor: %s\n", err.msg);
  create_failed(m, 0);
}

static int usage(const char *why) {
  fprintf(stderr,
          "gantry-exec monitor: %s\nusage: gantry-exec monitor --runtime BIN [--runtime-root DIR] --bundle DIR "
          "--state-dir SDIR [--log-dir LDIR] [--log-max-size BYTES] [--log-max-files N] [--tty] [--stdin] ID\n",
          why);
  return 2;
}

int monitor_main(int argc, char **argv) {
  static const struct option opts[] = {
      {"runtime", required_argument, 0, 'r'},      {"runtime-root", required_argument, 0, 'R'},
      {"bundle", required_argument, 0, 'b'},       {"state-dir", required_argument, 0, 's'},
      {"log-dir", required_argument, 0, 'L'},
      {"log-max-size", required_argument, 0, 'm'}, {"log-max-files", required_argument, 0, 'f'},
      {"tty", no_argument, 0, 't'},                {"stdin", no_argument, 0, 'i'},
      {0, 0, 0, 0}};
  static struct mon m = {.status_fd = -1, .sigfd = -1, .out_fd = -1, .err_fd = -1, .in_fd = -1,
                         .console_listen = -1, .attach_listen = -1, .log_fd = -1, .oom_fd = -1};
  m.o.log_max_size = 10485760;
  m.o.log_max_files = 3;
  static char bundle[PATH_MAX], sdir[PATH_MAX], ldir[PATH_MAX], rroot[PATH_MAX];
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
    switch (c) {
    case 'r': m.o.runtime = optarg; break;
    case 'R': m.o.runtime_root = optarg; break;
    case 'b': m.o.bundle = optarg; break;
    case 's': m.o.state_dir = optarg; break;
    case 'L': m.o.log_dir = optarg; break;
    case 'm': m.o.log_max_size = atoll(optarg); break;
    case 'f': m.o.log_max_files = atoi(optarg); break;
    case 't': m.o.tty = true; break;
    case 'i': m.o.stdin_ = true; break;
    default: return usage("unknown option");
    }
  }
  if (optind != argc - 1) return usage("exactly one container ID expected");
  m.o.id = argv[optind];
  if (!m.o.runtime || !m.o.bundle || !m.o.state_dir) return usage("--runtime, --bundle and --state-dir are required");
  if (m.o.log_max_size <= 0 || m.o.log_max_files <= 0) return usage("--log-max-size and --log-max-files must be positive");
  gx_err err = {0};
  if (mkdir_p(m.o.state_dir, 0700, &err) < 0) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  if (!realpath(m.o.bundle, bundle)) {
    fprintf(stderr, "bundle `%s`: %s\n", m.o.bundle, gx_errname(errno));
    return 1;
  }
  if (!realpath(m.o.state_dir, sdir)) {
    fprintf(stderr, "state dir `%s`: %s\n", m.o.state_dir, gx_errname(errno));
    return 1;
  }
  m.o.bundle = bundle;
  m.o.state_dir = sdir;
  /* the container's output goes to the log dir (on disk), its state files to the state dir (often a tmpfs) */
  if (!m.o.log_dir) m.o.log_dir = sdir;
  else if (mkdir_p(m.o.log_dir, 0700, &err) < 0 || !realpath(m.o.log_dir, ldir)) {
    fprintf(stderr, "log dir `%s`: %s\n", m.o.log_dir, err.msg[0] ? err.msg : gx_errname(errno));
    return 1;
  } else {
    m.o.log_dir = ldir;
  }
  if (m.o.runtime_root) {
    mkdir_p(m.o.runtime_root, 0700, NULL);
    if (realpath(m.o.runtime_root, rroot)) m.o.runtime_root = rroot;
  }
  if (chdir(sdir) < 0) {
    fprintf(stderr, "chdir `%s`: %s\n", sdir, gx_errname(errno));
    return 1;
  }
  remove_state_files(false);

  int st[2];
  if (pipe2(st, O_CLOEXEC) < 0) {
    fprintf(stderr, "pipe: %s\n", gx_errname(errno));
    return 1;
  }
  fflush(NULL);
  pid_t mid = fork();
  if (mid < 0) {
    fprintf(stderr, "fork monitor: %s\n", gx_errname(errno));
    return 1;
  }
  if (mid == 0) {
    close(st[0]);
    setsid();
    pid_t mon = fork();
    if (mon != 0) _exit(mon < 0 ? 1 : 0);
    /* The monitor holds none of the caller's stdio, so the caller sees EOF when we report. */
    int dn = open("/dev/null", O_RDWR);
    dup2(dn, 0);
    dup2(dn, 1);
    dup2(dn, 2);
    if (dn > 2) close(dn);
    m.status_fd = st[1];
    monitor_run(&m);
  }
  close(st[1]);
  int ws;
  while (waitpid(mid, &ws, 0) < 0 && errno == EINTR) {}
  char buf[1200];
  ssize_t r = read_all(st[0], buf, sizeof buf - 1);
  close(st[0]);
  if (r <= 0) {
    fprintf(stderr, "monitor for `%s` exited before reporting create\n", m.o.id);
    return 1;
  }
  buf[r] = 0;
  if (buf[0] == '{') {
    printf("%s\n", buf);
    return 0;
  }
  fprintf(stderr, "%s\n", buf + 1);
  return 1;
}
