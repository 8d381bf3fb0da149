/* proc.c — the commands gantry-spawn runs: fork + execvp with stdin/stdout/stderr on pipes, output
 * captured up to maxBuffer, a deadline (SIGTERM), exit reaped through a SIGCHLD signalfd. */
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "spawn.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static proc *procs;
static size_t nprocs;

size_t proc_count(void) { return nprocs; }

int proc_init(gx_err *err) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) return gx_fail(err, errno, "block SIGCHLD");
  int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) return gx_fail(err, errno, "signalfd SIGCHLD");
  return fd;
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

/* execFile's error text: "Command failed: FILE ARGS\n" + stderr; plus why, when it was a signal. */
static void reply_exec(long long id, int code, const char *out, size_t out_len, const char *err_s, size_t err_len, const char *error) {
  cleanup_sb strbuf sb = {0};
  sb_printf(&sb, "{\"id\":%lld,\"op\":\"exec\",\"code\":%d,\"stdout\":", id, code);
  sb_json_string(&sb, out ? out : "", out_len);
  sb_puts(&sb, ",\"stderr\":");
  sb_json_string(&sb, err_s ? err_s : "", err_len);
  if (error) {
    sb_puts(&sb, ",\"error\":");
    sb_json_string(&sb, error, strlen(error));
  }
  sb_puts(&sb, "}\n");
  reply_line(&sb);
}

static char *command_text(const exec_req *r) {
  strbuf sb = {0};
  sb_puts(&sb, r->file);
  for (size_t i = 1; i < r->argc; i++) {
    sb_puts(&sb, " ");
    sb_puts(&sb, r->argv[i]);
  }
  return sb.buf;
}

/* In the child: a clean signal state, the pipes on 0/1/2, every other fd closed at exec. */
static __attribute__((noreturn)) void child(const exec_req *r, int in, int out, int errfd, int report) {
  sigset_t none;
  sigemptyset(&none);
  for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
  sigprocmask(SIG_SETMASK, &none, NULL);
  int stage = 0;
  if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(errfd, 2) < 0) goto fail;
  syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC); /* ours are O_CLOEXEC already; this is for inherited ones */
  stage = 1;
  if (r->cwd && chdir(r->cwd) < 0) goto fail;
  stage = 2;
  execvp(r->file, (char *const *)r->argv);
fail:;
  int msg[2] = {stage, errno};
  (void)!write(report, msg, sizeof msg);
  _exit(127);
}

void proc_start(const exec_req *r) {
  int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1}, rep[2] = {-1, -1};
  cleanup_free char *cmd = command_text(r);
  if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0) {
    int e = errno;
    for (int i = 0; i < 2; i++) close_fd(&in[i]), close_fd(&out[i]), close_fd(&errp[i]), close_fd(&rep[i]);
    cleanup_free char *msg = xasprintf("spawn %s %s", r->file, gx_errname(e)); /* execFile's text: callers match it */
    reply_exec(r->id, 1, "", 0, "", 0, msg);
    return;
  }
  pid_t pid = fork();
  if (pid == 0) child(r, in[0], out[1], errp[1], rep[1]);
  int fork_errno = errno;
  close_fd(&in[0]);
  close_fd(&out[1]);
  close_fd(&errp[1]);
  close_fd(&rep[1]);
  if (pid < 0) {
    close_fd(&in[1]);
    close_fd(&out[0]);
    close_fd(&errp[0]);
    close_fd(&rep[0]);
    cleanup_free char *text = xasprintf("spawn %s %s", r->file, gx_errname(fork_errno)); /* execFile's text: callers match it */
    reply_exec(r->id, 1, "", 0, "", 0, text);
    return;
  }
  proc *p = xcalloc(1, sizeof *p);
  p->id = r->id;
  p->pid = pid;
  p->out = out[0];
  p->err = errp[0];
  p->in = in[1];
  p->rep = rep[0]; /* read when it is ready: the loop does not wait for the exec */
  p->cwd = r->cwd ? xstrdup(r->cwd) : NULL;
  p->file = xstrdup(r->file);
  p->max_buffer = r->max_buffer;
  p->timeout_ms = r->timeout_ms;
  p->deadline = r->timeout_ms > 0 ? now_ms() + (double)r->timeout_ms : 0;
  p->cmd = steal_ptr(cmd);
  size_t ilen = r->input ? strlen(r->input) : 0;
  if (ilen) {
    p->input = xstrdup(r->input);
    p->input_len = ilen;
    fcntl(p->in, F_SETFL, O_NONBLOCK);
  } else close_fd(&p->in); /* no input: the command reads EOF at once, as with execFile */
  fcntl(p->rep, F_SETFL, O_NONBLOCK);
  fcntl(p->out, F_SETFL, O_NONBLOCK);
  fcntl(p->err, F_SETFL, O_NONBLOCK);
  p->next = procs;
  procs = p;
  nprocs++;
}

size_t proc_pollfds(struct pollfd *fds, proc **owner, size_t max) {
  size_t n = 0;
  for (proc *p = procs; p && n + 4 <= max; p = p->next) {
    if (p->rep >= 0) fds[n] = (struct pollfd){.fd = p->rep, .events = POLLIN}, owner[n++] = p;
    if (p->out >= 0) fds[n] = (struct pollfd){.fd = p->out, .events = POLLIN}, owner[n++] = p;
    if (p->err >= 0) fds[n] = (struct pollfd){.fd = p->err, .events = POLLIN}, owner[n++] = p;
    if (p->in >= 0) fds[n] = (struct pollfd){.fd = p->in, .events = POLLOUT}, owner[n++] = p;
  }
  return n;
}

/* Stops reading and writing (execFile destroys the streams when it kills). */
static void cut(proc *p) {
  close_fd(&p->rep);
  close_fd(&p->out);
  close_fd(&p->err);
  close_fd(&p->in);
}

static void kill_for(proc *p, const char *stream) {
  p->overflow = stream;
  if (!p->exited) kill(p->pid, SIGTERM);
  cut(p);
}

static void drain(proc *p, int *fd, strbuf *sb, const char *name) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(*fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      close_fd(fd);
      return;
    }
    size_t room = p->max_buffer - sb->len;
    if ((size_t)n > room) {
      sb_append(sb, buf, room);
      kill_for(p, name);
      return;
    }
    sb_append(sb, buf, n);
  }
}

void proc_io(proc *p, const struct pollfd *pfd) {
  if (!pfd->revents) return;
  if (pfd->fd == p->rep) {
    int msg[2];
    ssize_t n = read(p->rep, msg, sizeof msg);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n == (ssize_t)sizeof msg) {
      p->start_failed = true;
      p->start_stage = msg[0];
      p->start_errno = msg[1];
    }
    close_fd(&p->rep);
  } else if (pfd->fd == p->out) drain(p, &p->out, &p->sout, "stdout");
  else if (pfd->fd == p->err) drain(p, &p->err, &p->serr, "stderr");
  else if (pfd->fd == p->in) {
    while (p->input_off < p->input_len) {
      ssize_t n = write(p->in, p->input + p->input_off, p->input_len - p->input_off);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (n < 0) break; /* EPIPE: the command exited without reading its input */
      p->input_off += n;
    }
    close_fd(&p->in);
  }
}

void proc_reap(int sigfd) {
  struct signalfd_siginfo si;
  while (read(sigfd, &si, sizeof si) > 0) {}
  int st;
  pid_t pid;
  while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
    for (proc *p = procs; p; p = p->next) {
      if (p->pid == pid) {
        p->exited = true;
        p->status = st;
        break;
      }
    }
  }
}

static void finish(proc *p) {
  int code = 1;
  const char *sig = NULL;
  if (WIFEXITED(p->status)) code = WEXITSTATUS(p->status);
  else if (WIFSIGNALED(p->status)) {
    code = 128 + WTERMSIG(p->status);
    sig = sigabbrev_np(WTERMSIG(p->status));
  }
  cleanup_sb strbuf e = {0};
  if (p->start_failed) {
    /* execFile's "spawn FILE ENOENT" (worker/network matches it), plus the directory when chdir failed */
    sb_printf(&e, "spawn %s %s", p->file, gx_errname(p->start_errno));
    if (p->start_stage == 1) sb_printf(&e, ": chdir to the working directory `%s`", p->cwd);
    reply_exec(p->id, 1, "", 0, "", 0, e.buf);
    return;
  }
  if (p->overflow) {
    code = 1; /* as execFile: ERR_CHILD_PROCESS_STDIO_MAXBUFFER */
    sb_printf(&e, "%s maxBuffer length exceeded (%zu bytes): %s was killed (SIGTERM)", p->overflow, p->max_buffer, p->cmd);
  } else if (code != 0) {
    sb_printf(&e, "Command failed: %s\n", p->cmd);
    sb_append(&e, p->serr.buf ? p->serr.buf : "", p->serr.len);
    if (p->timed_out) sb_printf(&e, "timed out after %lld ms (SIGTERM sent)", p->timeout_ms);
    else if (sig) sb_printf(&e, "killed by SIG%s", sig);
  }
  reply_exec(p->id, code, p->sout.buf, p->sout.len, p->serr.buf, p->serr.len, e.buf);
}

static void proc_free(proc *p) {
  cut(p);
  free(p->sout.buf);
  free(p->serr.buf);
  free(p->input);
  free(p->cmd);
  free(p->cwd);
  free(p->file);
  free(p);
}

int proc_tick(void) {
  double now = now_ms(), next = -1;
  for (proc **pp = &procs; *pp;) {
    proc *p = *pp;
    if (p->deadline && !p->timed_out && now >= p->deadline) {
      p->timed_out = true;
      if (!p->exited) kill(p->pid, SIGTERM);
      cut(p); /* also frees a finished command whose pipes a detached grandchild still holds */
    }
    if (p->exited && p->out < 0 && p->err < 0 && p->rep < 0) {
      finish(p);
      *pp = p->next;
      nprocs--;
      proc_free(p);
      continue;
    }
    if (p->deadline && !p->timed_out && (next < 0 || p->deadline - now < next)) next = p->deadline - now;
    pp = &p->next;
  }
  return next < 0 ? -1 : (int)next + 1;
}
