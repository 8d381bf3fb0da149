/* util.h — errors (crun style: out-parameter, negative return), cleanup attributes and small
 * file helpers shared by every gantry-exec source file. */
#ifndef GX_UTIL_H
#define GX_UTIL_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

typedef struct gx_err {
  int code;       /* errno, 0 when the message needs no errno */
  char msg[768];  /* "mount proc on `/x/proc`: EPERM" */
} gx_err;

/* Record an error ("<fmt>: ENAME" when errnum != 0) and return -1. */
int gx_fail(gx_err *err, int errnum, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prefix an existing error with context. */
int gx_wrap(gx_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *gx_errname(int errnum);

static inline void gx_closep(int *fd) {
  if (*fd >= 0) close(*fd);
}
static inline void gx_freep(void *p) { free(*(void **)p); }
static inline void gx_fclosep(FILE **f) {
  if (*f) fclose(*f);
}
#define cleanup_close __attribute__((cleanup(gx_closep)))
#define cleanup_free __attribute__((cleanup(gx_freep)))
#define cleanup_file __attribute__((cleanup(gx_fclosep)))

static inline int steal_fd(int *fd) {
  int r = *fd;
  *fd = -1;
  return r;
}
#define steal_ptr(p) ({ __typeof__(p) _r = (p); (p) = NULL; _r; })

char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *xcalloc(size_t n, size_t sz);
void *xrealloc(void *p, size_t sz);

/* Whole-file I/O. read_file returns a NUL-terminated buffer and its length. */
int read_file(const char *path, char **out, size_t *len, gx_err *err);
int read_file_at(int dirfd, const char *path, char **out, size_t *len, gx_err *err);
int write_file(const char *path, const char *data, size_t len, gx_err *err);
int write_file_at(int dirfd, const char *path, const char *data, size_t len, gx_err *err);
/* Write to tmp file then rename over path (atomic for readers). */
int write_file_atomic(const char *path, const char *data, size_t len, gx_err *err);
int mkdir_p(const char *path, mode_t mode, gx_err *err);
int write_all(int fd, const void *buf, size_t len);
ssize_t read_all(int fd, void *buf, size_t len);
/* RFC3339 with nanoseconds, UTC: 2026-11-23T03:15:12.123456789Z */
void rfc3339_now(char out[40]);
/* Append s to a growing JSON string, escaped (invalid UTF-8 becomes U+FFFD). */
typedef struct strbuf {
  char *buf;
  size_t len, cap;
} strbuf;
void sb_append(strbuf *sb, const char *s, size_t n);
void sb_puts(strbuf *sb, const char *s);
void sb_printf(strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_json_string(strbuf *sb, const char *s, size_t n);
static inline void sb_freep(strbuf *sb) { free(sb->buf); }
#define cleanup_sb __attribute__((cleanup(sb_freep)))

#endif
/* GANTRY_EXEC_TRACE=1: print "<ms since start> <pid> <what>" to stderr (profiling). */
void gx_trace(const char *what);
