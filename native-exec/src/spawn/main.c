/* main.c — gantry-spawn: runs gantryd's commands and rootfs mounts so that gantryd never forks
 * (worker/runtime/spawner.ts starts it); one poll(2) loop, many requests in flight, JSON lines.
 *
 *   gantryd (spawner.ts)                               gantry-spawn (this process, root)
 *   ── {"id":1,"op":"exec","file":F,"args":[..],  ──▶  pipes, fork, execvp(F) (PATH search, no
 *       "cwd":D,"timeoutMs":T,"maxBuffer":B,            shell); input written to its stdin, then
 *       "input":S}                                      closed; stdout/stderr read up to B each
 *   ── {"id":2,"op":"mount","opts":{"lowerDirs":[..],   mount(2) overlay at D/rootfs (overlay.c,
 *       "containerDir":D,["diskDir":W,]"volatile":true}} ──▶  as worker/rootfs/overlay.ts mountRootfs;
 *                                                    upper/ and work/ under W when given)
 *   ◀── {"id":2,"op":"mount","rootfs":"D/rootfs"}       answered at once (mount is synchronous)
 *   ── {"id":3,"op":"unmount","containerDir":D}    ──▶  umount2 each mount at/below D/rootfs
 *   ◀── {"id":3,"op":"unmount"}
 *   ◀── {"id":1,"op":"exec","code":0,"stdout":"..",     when F has exited and both pipes are at
 *        "stderr":".."}                                  EOF (or T passed: SIGTERM, pipes cut)
 *   failures: exec {"id","op":"exec","code":1|N|128+sig,"stdout","stderr","error":"Command failed: .."};
 *             mount/unmount {"id","op","error":"layer directory /x does not exist"};
 *             a request that is not valid: {"id":N|0,"op":"exec"|"mount"|"unmount"|"invalid","error":".."}
 *
 * Replies come in completion order, matched by id. EOF on stdin (gantryd gone, or `echo … |`): no
 * new requests; the commands in flight are answered, then it exits (at most 30 s later: commands
 * still running then lose their pipes). What they detached (the gantry-exec monitor) keeps running. */
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "spawn.h"

#define MAX_LINE (64u << 20)       /* a request line (its input included) */
#define DEFAULT_MAX_BUFFER (4u << 20) /* spawner.ts's default */
#define MAX_FDS 4096
#define EOF_GRACE_MS 30000.0 /* after EOF, commands in flight get this long to finish (GANTRY_SPAWN_EOF_GRACE_MS) */

double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

void reply_line(strbuf *sb) {
  size_t off = 0;
  while (off < sb->len) {
    ssize_t n = write(1, sb->buf + off, sb->len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      struct pollfd p = {.fd = 1, .events = POLLOUT};
      poll(&p, 1, -1);
      continue;
    }
    if (n < 0) return; /* gantryd is gone: nobody to answer (EOF on stdin ends us soon) */
    off += n;
  }
}

static void reply_error(long long id, const char *op, const char *msg) {
  cleanup_sb strbuf sb = {0};
  sb_printf(&sb, "{\"id\":%lld,\"op\":\"%s\",", id, op);
  if (!strcmp(op, "exec")) sb_puts(&sb, "\"code\":1,\"stdout\":\"\",\"stderr\":\"\",");
  sb_puts(&sb, "\"error\":");
  sb_json_string(&sb, msg, strlen(msg));
  sb_puts(&sb, "}\n");
  reply_line(&sb);
}

/* Strict checks: known fields only, each of its type. */
static int only_fields(const json *o, const char *what, const char *const *allowed, gx_err *err) {
  for (size_t i = 0; i < o->len; i++) {
    bool ok = false;
    for (const char *const *a = allowed; *a; a++) ok |= !strcmp(o->k[i], *a);
    if (!ok) return gx_fail(err, 0, "%s: unknown field \"%s\"", what, o->k[i]);
  }
  return 0;
}

static int want_string(const json *o, const char *key, bool required, bool nonempty, const char **out, gx_err *err) {
  const json *v = jget(o, key);
  *out = NULL;
  if (!v) return required ? gx_fail(err, 0, "\"%s\" is required", key) : 0;
  if (v->t != J_STR) return gx_fail(err, 0, "\"%s\" must be a string", key);
  if (nonempty && !*v->s) return gx_fail(err, 0, "\"%s\" must not be empty", key);
  *out = v->s;
  return 0;
}

static int want_count(const json *o, const char *key, long long min, long long *out, gx_err *err) {
  const json *v = jget(o, key);
  if (!v) return 0;
  if (v->t != J_NUM || !v->is_int || v->i < min || v->i > (1LL << 40)) return gx_fail(err, 0, "\"%s\" must be an integer from %lld", key, min);
  *out = v->i;
  return 0;
}

static int want_strings(const json *o, const char *key, const char ***out, size_t *n, size_t extra, gx_err *err) {
  const json *v = jget(o, key);
  if (!v || v->t != J_ARR) return gx_fail(err, 0, "\"%s\" must be an array of strings", key);
  const char **l = xcalloc(v->len + extra + 1, sizeof *l);
  for (size_t i = 0; i < v->len; i++) {
    if (v->v[i]->t != J_STR) {
      free(l);
      return gx_fail(err, 0, "\"%s\" must be an array of strings (item %zu is not)", key, i);
    }
    l[i + extra] = v->v[i]->s;
  }
  *out = l;
  *n = v->len;
  return 0;
}

static int op_exec(long long id, const json *req, gx_err *err) {
  static const char *const fields[] = {"id", "op", "file", "args", "cwd", "timeoutMs", "maxBuffer", "input", NULL};
  exec_req r = {.id = id, .max_buffer = DEFAULT_MAX_BUFFER};
  long long max = DEFAULT_MAX_BUFFER;
  size_t nargs;
  if (only_fields(req, "exec", fields, err) < 0 || want_string(req, "file", true, true, &r.file, err) < 0 ||
      want_string(req, "cwd", false, true, &r.cwd, err) < 0 || want_string(req, "input", false, false, &r.input, err) < 0 ||
      want_count(req, "timeoutMs", 0, &r.timeout_ms, err) < 0 || want_count(req, "maxBuffer", 1, &max, err) < 0)
    return -1;
  cleanup_free const char **argv = NULL;
  if (want_strings(req, "args", &argv, &nargs, 1, err) < 0) return -1;
  argv[0] = r.file;
  r.argv = argv;
  r.argc = nargs + 1;
  r.max_buffer = (size_t)max;
  proc_start(&r);
  return 0;
}

static int op_mount(long long id, const json *req, gx_err *err) {
  static const char *const fields[] = {"id", "op", "opts", NULL};
  static const char *const opt_fields[] = {"lowerDirs", "containerDir", "diskDir", "volatile", "readOnly", NULL};
  if (only_fields(req, "mount", fields, err) < 0) return -1;
  const json *o = jget(req, "opts");
  if (!o || o->t != J_OBJ) return gx_fail(err, 0, "mount: \"opts\" must be an object");
  mount_req m = {0};
  if (only_fields(o, "mount opts", opt_fields, err) < 0 || want_string(o, "containerDir", true, true, &m.container_dir, err) < 0) return -1;
  if (m.container_dir[0] != '/') return gx_fail(err, 0, "mount: \"containerDir\" must be an absolute path");
  if (want_string(o, "diskDir", false, true, &m.disk_dir, err) < 0) return -1;
  if (m.disk_dir && m.disk_dir[0] != '/') return gx_fail(err, 0, "mount: \"diskDir\" must be an absolute path");
  for (const char *const *k = (const char *const[]){"volatile", "readOnly", NULL}; *k; k++) {
    const json *b = jget(o, *k);
    if (b && b->t != J_BOOL) return gx_fail(err, 0, "mount: \"%s\" must be a boolean", *k);
  }
  m.is_volatile = jbool(jget(o, "volatile"), false);
  m.read_only = jbool(jget(o, "readOnly"), false);
  cleanup_free const char **lowers = NULL;
  if (want_strings(o, "lowerDirs", &lowers, &m.lowers, 0, err) < 0) return -1;
  for (size_t i = 0; i < m.lowers; i++)
    if (lowers[i][0] != '/') return gx_fail(err, 0, "mount: lower dir \"%s\" must be an absolute path", lowers[i]);
  m.lower_dirs = lowers;
  cleanup_free char *rootfs = NULL;
  if (overlay_mount(&m, &rootfs, err) < 0) return -1;
  cleanup_sb strbuf sb = {0};
  sb_printf(&sb, "{\"id\":%lld,\"op\":\"mount\",\"rootfs\":", id);
  sb_json_string(&sb, rootfs, strlen(rootfs));
  sb_puts(&sb, "}\n");
  reply_line(&sb);
  return 0;
}

static int op_unmount(long long id, const json *req, gx_err *err) {
  static const char *const fields[] = {"id", "op", "containerDir", NULL};
  const char *dir;
  if (only_fields(req, "unmount", fields, err) < 0 || want_string(req, "containerDir", true, true, &dir, err) < 0) return -1;
  if (dir[0] != '/') return gx_fail(err, 0, "unmount: \"containerDir\" must be an absolute path");
  if (overlay_unmount(dir, err) < 0) return -1;
  cleanup_sb strbuf sb = {0};
  sb_printf(&sb, "{\"id\":%lld,\"op\":\"unmount\"}\n", id);
  reply_line(&sb);
  return 0;
}

/* json.c keeps strings NUL-terminated: a \u0000 would silently cut an argument, so refuse it. */
static bool has_nul_escape(const char *s) {
  for (; *s; s++) {
    if (*s != '\\') continue;
    if (!strncmp(s + 1, "u0000", 5)) return true;
    if (s[1]) s++;
  }
  return false;
}

static void handle(const char *line, size_t len) {
  gx_err err = {0};
  if (memchr(line, 0, len)) {
    reply_error(0, "invalid", "request: NUL bytes are not allowed");
    return;
  }
  cleanup_json json *req = json_parse(line, "request", &err);
  if (!req) {
    reply_error(0, "invalid", err.msg);
    return;
  }
  const json *idj = jget(req, "id");
  long long id = idj && idj->t == J_NUM && idj->is_int && idj->i >= 0 ? idj->i : 0;
  const char *op = jstr(jget(req, "op"), "");
  const char *shown = !strcmp(op, "exec") || !strcmp(op, "mount") || !strcmp(op, "unmount") ? op : "invalid";
  int rc;
  if (has_nul_escape(line)) rc = gx_fail(&err, 0, "request: \\u0000 in a string is not allowed (it would cut the string)");
  else if (req->t != J_OBJ) rc = gx_fail(&err, 0, "request: want a JSON object");
  else if (!idj || id != jint(idj, -1)) rc = gx_fail(&err, 0, "request: \"id\" must be a non-negative integer");
  else if (!strcmp(op, "exec")) rc = op_exec(id, req, &err);
  else if (!strcmp(op, "mount")) rc = op_mount(id, req, &err);
  else if (!strcmp(op, "unmount")) rc = op_unmount(id, req, &err);
  else rc = gx_fail(&err, 0, "request: unknown op \"%s\" (exec, mount, unmount)", op);
  if (rc < 0) reply_error(id, shown, err.msg);
}

int main(int argc, char **argv) {
  if (argc > 1) {
    fprintf(stderr, "usage: gantry-spawn   (JSON requests on stdin, one per line; see src/spawn/main.c)\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  struct rlimit nofile; /* three fds per command in flight; Node raises its own limit the same way */
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  gx_err err;
  int sigfd = proc_init(&err);
  if (sigfd < 0) {
    fprintf(stderr, "gantry-spawn: %s\n", err.msg);
    return 1;
  }
  const char *g = getenv("GANTRY_SPAWN_EOF_GRACE_MS");
  double grace = g && *g ? atof(g) : EOF_GRACE_MS, eof_at = 0;
  strbuf in = {0};
  bool skipping = false; /* inside a line longer than MAX_LINE */
  static struct pollfd fds[MAX_FDS];
  static proc *owner[MAX_FDS];
  for (;;) {
    int timeout = proc_tick();
    if (eof_at) {
      double left = eof_at + grace - now_ms();
      if (proc_count() == 0 || left <= 0) return 0;
      if (timeout < 0 || left < timeout) timeout = (int)left + 1;
    }
    /* too busy: read later; after EOF: not at all */
    fds[0] = (struct pollfd){.fd = !eof_at && proc_count() * 4 + 2 < MAX_FDS ? 0 : -1, .events = POLLIN};
    fds[1] = (struct pollfd){.fd = sigfd, .events = POLLIN};
    size_t n = 2 + proc_pollfds(fds + 2, owner + 2, MAX_FDS - 2);
    if (poll(fds, n, timeout) < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "gantry-spawn: poll: %s\n", gx_errname(errno));
      return 1;
    }
    if (fds[1].revents) proc_reap(sigfd);
    for (size_t i = 2; i < n; i++) proc_io(owner[i], &fds[i]);
    if (fds[0].revents) {
      char buf[65536];
      ssize_t r = read(0, buf, sizeof buf);
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (r <= 0) { /* gantryd is gone: finish what runs (bounded), take nothing new */
        eof_at = now_ms();
        continue;
      }
      size_t start = in.len;
      sb_append(&in, buf, r);
      size_t from = 0;
      for (size_t i = start; i < in.len; i++) {
        if (in.buf[i] != '\n') continue;
        in.buf[i] = 0;
        size_t l = i - from;
        if (l && in.buf[i - 1] == '\r') in.buf[i - 1] = 0, l--;
        if (skipping) skipping = false;
        else if (l) handle(in.buf + from, l);
        from = i + 1;
      }
      memmove(in.buf, in.buf + from, in.len - from);
      in.len -= from;
      if (in.len == 0 && in.cap > (1u << 20)) { /* a big input went through: give the memory back */
        free(in.buf);
        in = (strbuf){0};
      }
      if (in.len > MAX_LINE) {
        reply_error(0, "invalid", "request: a line longer than 64 MiB");
        in.len = 0;
        skipping = true;
      }
    }
  }
}
