/* util.c — error formatting, allocation wrappers, whole-file I/O and the JSON string builder
 * used by state, log and error output. */
#include "util.h"

#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

const char *gx_errname(int errnum) {
  const char *n = strerrorname_np(errnum);
  return n ? n : strerror(errnum);
}

int gx_fail(gx_err *err, int errnum, const char *fmt, ...) {
  if (!err) return -1;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof err->msg) n = sizeof err->msg - 1;
  if (errnum) snprintf(err->msg + n, sizeof err->msg - n, ": %s", gx_errname(errnum));
  err->code = errnum;
  return -1;
}

int gx_wrap(gx_err *err, const char *fmt, ...) {
  if (!err) return -1;
  char prefix[256], old[sizeof err->msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, err->msg, sizeof old);
  snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
  return -1;
}

static void oom(void) {
  static const char m[] = "gantry-exec: out of memory\n";
  (void)!write(2, m, sizeof m - 1);
  _exit(1);
}
char *xstrdup(const char *s) {
  char *r = strdup(s ? s : "");
  if (!r) oom();
  return r;
}
void *xcalloc(size_t n, size_t sz) {
  void *r = calloc(n ? n : 1, sz ? sz : 1);
  if (!r) oom();
  return r;
}
void *xrealloc(void *p, size_t sz) {
  void *r = realloc(p, sz ? sz : 1);
  if (!r) oom();
  return r;
}
char *xasprintf(const char *fmt, ...) {
  char *r;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&r, fmt, ap);
  va_end(ap);
  if (n < 0) oom();
  return r;
}

int write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    p += w;
    len -= w;
  }
  return 0;
}

ssize_t read_all(int fd, void *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t r = read(fd, (char *)buf + got, len - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    got += r;
  }
  return got;
}

int read_file_at(int dirfd, const char *path, char **out, size_t *len, gx_err *err) {
  cleanup_close int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return gx_fail(err, errno, "open `%s`", path);
  size_t cap = 4096, n = 0;
  char *buf = xcalloc(1, cap);
  for (;;) {
    if (n + 1 >= cap) buf = xrealloc(buf, cap *= 2);
    ssize_t r = read(fd, buf + n, cap - n - 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      free(buf);
      return gx_fail(err, errno, "read `%s`", path);
    }
    if (r == 0) break;
    n += r;
  }
  buf[n] = 0;
  *out = buf;
  if (len) *len = n;
  return 0;
}
int read_file(const char *path, char **out, size_t *len, gx_err *err) {
  return read_file_at(AT_FDCWD, path, out, len, err);
}

int write_file_at(int dirfd, const char *path, const char *data, size_t len, gx_err *err) {
  cleanup_close int fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return gx_fail(err, errno, "open `%s`", path);
  if (write_all(fd, data, len) < 0) return gx_fail(err, errno, "write `%s`", path);
  return 0;
}
int write_file(const char *path, const char *data, size_t len, gx_err *err) {
  return write_file_at(AT_FDCWD, path, data, len, err);
}

int write_file_atomic(const char *path, const char *data, size_t len, gx_err *err) {
  cleanup_free char *tmp = xasprintf("%s.tmp", path);
  if (write_file(tmp, data, len, err) < 0) return -1;
  if (rename(tmp, path) < 0) {
    int e = errno;
    unlink(tmp);
    return gx_fail(err, e, "rename `%s` to `%s`", tmp, path);
  }
  return 0;
}

int mkdir_p(const char *path, mode_t mode, gx_err *err) {
  cleanup_free char *p = xstrdup(path);
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = 0;
    if (mkdir(p, mode) < 0 && errno != EEXIST) return gx_fail(err, errno, "mkdir `%s`", p);
    *s = '/';
  }
  if (mkdir(p, mode) < 0 && errno != EEXIST) return gx_fail(err, errno, "mkdir `%s`", p);
  return 0;
}

void rfc3339_now(char out[40]) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 40 - n, ".%09ldZ", ts.tv_nsec);
}

void sb_append(strbuf *sb, const char *s, size_t n) {
  if (sb->len + n + 1 > sb->cap) {
    size_t cap = sb->cap ? sb->cap : 256;
    while (cap < sb->len + n + 1) cap *= 2;
    sb->buf = xrealloc(sb->buf, cap);
    sb->cap = cap;
  }
  memcpy(sb->buf + sb->len, s, n);
  sb->len += n;
  sb->buf[sb->len] = 0;
}
void sb_puts(strbuf *sb, const char *s) { sb_append(sb, s, strlen(s)); }
void sb_printf(strbuf *sb, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof tmp) {
    sb_append(sb, tmp, n);
    return;
  }
  char *big = xcalloc(1, n + 1);
  va_start(ap, fmt);
  vsnprintf(big, n + 1, fmt, ap);
  va_end(ap);
  sb_append(sb, big, n);
  free(big);
}

/* Length of a valid UTF-8 sequence at s (max n bytes), or 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  size_t need;
  if (s[0] < 0x80) return 1;
  if ((s[0] & 0xe0) == 0xc0 && s[0] >= 0xc2) need = 2;
  else if ((s[0] & 0xf0) == 0xe0) need = 3;
  else if ((s[0] & 0xf8) == 0xf0 && s[0] <= 0xf4) need = 4;
  else return 0;
  if (need > n) return 0;
  for (size_t i = 1; i < need; i++)
    if ((s[i] & 0xc0) != 0x80) return 0;
  return need;
}

void sb_json_string(strbuf *sb, const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  sb_append(sb, "\"", 1);
  size_t i = 0, run = 0;
  while (i < n) {
    unsigned char c = s[i];
    const char *esc = NULL;
    char tmp[8];
    size_t l = 1;
    if (c == '"') esc = "\\\"";
    else if (c == '\\') esc = "\\\\";
    else if (c == '\n') esc = "\\n";
    else if (c == '\r') esc = "\\r";
    else if (c == '\t') esc = "\\t";
    else if (c < 0x20 || c == 0x7f) {
      snprintf(tmp, sizeof tmp, "\\u%04x", c);
      esc = tmp;
    } else if (c >= 0x80) {
      l = utf8_len(s + i, n - i);
      if (!l) {
        esc = "\\ufffd";
        l = 1;
      }
    }
    if (esc) {
      sb_append(sb, (const char *)s + i - run, run);
      run = 0;
      sb_puts(sb, esc);
      i += l;
    } else {
      run += l;
      i += l;
    }
  }
  sb_append(sb, (const char *)s + i - run, run);
  sb_append(sb, "\"", 1);
}

void gx_trace(const char *what) {
  static int on = -1;
  static struct timespec t0;
  if (on < 0) {
    on = getenv("GANTRY_EXEC_TRACE") != NULL;
    clock_gettime(CLOCK_MONOTONIC, &t0);
  }
  if (!on) return;
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  dprintf(2, "%8.3f %d %s\n", (t.tv_sec - t0.tv_sec) * 1e3 + (t.tv_nsec - t0.tv_nsec) / 1e6, getpid(), what);
}
