/* spawn.h — gantry-spawn's parts: the request checks (main.c), the child processes it runs and
 * watches (proc.c) and the overlay rootfs mounts (overlay.c). */
#ifndef GX_SPAWN_H
#define GX_SPAWN_H
#include <poll.h>
#include <stdbool.h>

#include "../json.h"
#include "../util.h"

/* One command in flight: its pipes, what it has written so far and why it may have been killed. */
typedef struct proc {
  long long id;
  pid_t pid;
  int out, err, in;      /* read ends of stdout/stderr, write end of stdin; -1 once closed */
  int rep;               /* the child's exec report: EOF when it exec'd, else {stage, errno} */
  int start_stage, start_errno;
  bool start_failed;
  strbuf sout, serr;
  char *input;
  size_t input_len, input_off;
  size_t max_buffer;
  long long timeout_ms;  /* 0: none */
  double deadline;       /* monotonic ms; 0: none */
  bool exited, timed_out;
  const char *overflow;  /* "stdout" / "stderr" when maxBuffer was exceeded */
  int status;            /* from waitpid */
  char *cmd;             /* "file arg ..." for error texts, as execFile writes them */
  char *file, *cwd;
  struct proc *next;
} proc;

typedef struct exec_req {
  long long id;
  const char *file, *cwd, *input;
  const char **argv;     /* file, args..., NULL */
  size_t argc;
  long long timeout_ms;
  size_t max_buffer;
} exec_req;

double now_ms(void);
/* Writes one reply line to stdout (blocking; gantryd reads continuously). */
void reply_line(strbuf *sb);

/* proc.c */
int proc_init(gx_err *err);                 /* SIGCHLD → signalfd; returns the fd to poll */
/* Starts a command; on a failure to start, replies at once (execFile's "spawn FILE ENOENT"). */
void proc_start(const exec_req *r);
/* Appends the pollfds of every command in flight; records which proc each belongs to. */
size_t proc_pollfds(struct pollfd *fds, proc **owner, size_t max);
size_t proc_count(void);
void proc_io(proc *p, const struct pollfd *pfd);
void proc_reap(int sigfd);
/* Kills what is over its deadline, replies for what has finished; returns ms to the next deadline (-1: none). */
int proc_tick(void);

/* overlay.c */
typedef struct mount_req {
  const char *container_dir;  /* absolute */
  const char *disk_dir;       /* absolute, holds upper/ and work/ (what the container writes); NULL: container_dir */
  const char **lower_dirs;    /* lowest first, absolute */
  size_t lowers;
  bool is_volatile, read_only;
} mount_req;
/* Mounts <containerDir>/rootfs as worker/rootfs/overlay.ts mountRootfs does; rootfs_out gets the path. */
int overlay_mount(const mount_req *r, char **rootfs_out, gx_err *err);
/* Unmounts everything at or below realpath(<containerDir>/rootfs), deepest first; no-op when nothing is mounted. */
int overlay_unmount(const char *container_dir, gx_err *err);
#endif
