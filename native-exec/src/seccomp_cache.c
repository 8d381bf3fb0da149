/* seccomp_cache.c — the on-disk cache of compiled seccomp programs: the cache key (a canonical
 * serialization of linux.seccomp plus what else decides the program, SHA-256) and <root>/.seccomp@cache I/O.
 *
 * Key: SHA-256 over
 *   "gantry-exec seccomp cache\nformat=<GX_SECCOMP_CACHE_FORMAT>\nbuild=<seccomp.c's build stamp>\n"
 *   "arch=<seccomp_arch_native()>\nlibseccomp=<seccomp_version()>\nkernel=<uname release, version, machine>\n"
 *   "spec=" <canonical linux.seccomp>
 * The build stamp (seccomp.c: its compile time and the binary's dev:inode:size:mtime) changes with
 * every rebuild or relink, so a fixed compile path or libseccomp never meets programs an old build
 * cached; the kernel is in the key because libseccomp checks actions and flags against it while
 * compiling (a kernel change only costs a miss).
 *
 * Canonical form (our json.c keeps object keys in document order; the key must not depend on it):
 *   null `n`, true `t`, false `f`, integer `i<decimal>;` (the value jint() returns), other number
 *   `d<%.17g>;`, string `s<byte length>:<raw bytes>` (no escaping, so nothing is lossy or ambiguous),
 *   array `[` items in order `]` (order is meaningful: rules, names), object `{` then for each member
 *   sorted by key (strcmp, stable: duplicate keys keep their document order, and jget() takes the
 *   first) the key as a string then the value, `}`. Different trees give different strings.
 *
 * Files: <root>/.seccomp@cache/<64 hex>.bpf holds the raw struct sock_filter array exactly as
 * seccomp_export_bpf writes it. The dir name cannot be a container id (`@` is not allowed in ids).
 * Writes go to a unique dot-tmp file (0600, O_EXCL), fsync, rename: a crash never leaves a half
 * file under the final name. A file that is not a regular file owned by us, whose size is 0, not a
 * multiple of sizeof(struct sock_filter) or over BPF_MAXINSNS instructions, or whose last
 * instruction is not a BPF_RET is ignored (and rebuilt by the caller). A dir that is not ours or is
 * group/world-writable is not used. Every failure here is silent: the caller compiles instead.
 * Bounded: after a miss, more than GX_SECCOMP_CACHE_MAX entries empties the dir but for the new one. */
#include <dirent.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <seccomp.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>

#include "runtime.h"

#define CACHE_DIR ".seccomp@cache"

/* ---- SHA-256 (FIPS 180-4) ---- */
struct sha256 {
  uint32_t h[8];
  uint64_t len;
  unsigned char buf[64];
  size_t n;
};

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be,
    0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa,
    0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85,
    0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
    0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
    0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static inline uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_block(struct sha256 *s, const unsigned char *p) {
  uint32_t w[64], a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
  for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
    uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
  }
  s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d, s->h[4] += e, s->h[5] += f, s->h[6] += g, s->h[7] += h;
}

static void sha256_init(struct sha256 *s) {
  static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(s->h, iv, sizeof iv);
  s->len = 0;
  s->n = 0;
}

static void sha256_update(struct sha256 *s, const void *data, size_t len) {
  const unsigned char *p = data;
  s->len += len;
  while (len) {
    size_t k = 64 - s->n < len ? 64 - s->n : len;
    memcpy(s->buf + s->n, p, k);
    s->n += k, p += k, len -= k;
    if (s->n == 64) {
      sha256_block(s, s->buf);
      s->n = 0;
    }
  }
}

static void sha256_final(struct sha256 *s, unsigned char out[32]) {
  uint64_t bits = s->len * 8;
  unsigned char pad = 0x80, zero = 0, lenbe[8];
  sha256_update(s, &pad, 1);
  while (s->n != 56) sha256_update(s, &zero, 1);
  for (int i = 0; i < 8; i++) lenbe[i] = (unsigned char)(bits >> (56 - 8 * i));
  sha256_update(s, lenbe, 8);
  for (int i = 0; i < 8; i++)
    for (int k = 0; k < 4; k++) out[4 * i + k] = (unsigned char)(s->h[i] >> (24 - 8 * k));
}

void seccomp_sha256_hex(const void *data, size_t len, char hex[65]) {
  struct sha256 s;
  unsigned char d[32];
  sha256_init(&s);
  sha256_update(&s, data, len);
  sha256_final(&s, d);
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

/* ---- canonical serialization ---- */
static void canon_str(strbuf *sb, const char *s) {
  size_t n = strlen(s);
  sb_printf(sb, "s%zu:", n);
  sb_append(sb, s, n);
}

void seccomp_canon(strbuf *sb, const json *j) {
  if (!j) {
    sb_puts(sb, "n");
    return;
  }
  switch (j->t) {
  case J_NULL: sb_puts(sb, "n"); break;
  case J_BOOL: sb_puts(sb, j->b ? "t" : "f"); break;
  case J_NUM:
    if (j->is_int) sb_printf(sb, "i%lld;", j->i);
    else sb_printf(sb, "d%.17g;", j->n);
    break;
  case J_STR: canon_str(sb, j->s); break;
  case J_ARR:
    sb_puts(sb, "[");
    for (size_t i = 0; i < j->len; i++) seccomp_canon(sb, j->v[i]);
    sb_puts(sb, "]");
    break;
  case J_OBJ: {
    /* insertion sort of member indexes by key: stable, and objects here are small */
    size_t *ix = xcalloc(j->len ? j->len : 1, sizeof *ix);
    for (size_t i = 0; i < j->len; i++) {
      size_t k = i;
      while (k > 0 && strcmp(j->k[ix[k - 1]], j->k[i]) > 0) {
        ix[k] = ix[k - 1];
        k--;
      }
      ix[k] = i;
    }
    sb_puts(sb, "{");
    for (size_t i = 0; i < j->len; i++) {
      canon_str(sb, j->k[ix[i]]);
      seccomp_canon(sb, j->v[ix[i]]);
    }
    sb_puts(sb, "}");
    free(ix);
    break;
  }
  }
}

void seccomp_cache_key(const json *spec, const char *build, char hex[65]) {
  cleanup_sb strbuf sb = {0};
  const struct scmp_version *v = seccomp_version();
  struct utsname u;
  if (uname(&u) < 0) memset(&u, 0, sizeof u);
  sb_printf(&sb, "gantry-exec seccomp cache\nformat=%d\nbuild=%s\narch=%u\nlibseccomp=%u.%u.%u\nkernel=%s %s %s\nspec=",
            GX_SECCOMP_CACHE_FORMAT, build, seccomp_arch_native(), v ? v->major : 0, v ? v->minor : 0, v ? v->micro : 0,
            u.release, u.version, u.machine);
  seccomp_canon(&sb, spec);
  seccomp_sha256_hex(sb.buf, sb.len, hex);
}

/* ---- files ---- */
static char *cache_dir_path(void) { return xasprintf("%s/" CACHE_DIR, G.root); }

/* The cache dir, if it is ours and not writable by others; create it (and the root) when asked. */
static int open_cache_dir(bool create) {
  cleanup_free char *dir = cache_dir_path();
  if (create) {
    if (mkdir(dir, 0700) < 0 && errno == ENOENT) {
      gx_err ignored;
      if (mkdir_p(G.root, 0700, &ignored) < 0) return -1;
      if (mkdir(dir, 0700) < 0 && errno != EEXIST) return -1;
    }
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat st;
  if (fstat(fd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 022)) {
    close(fd);
    return -1;
  }
  return fd;
}

bool seccomp_prog_valid(const void *insns, size_t bytes) {
  if (bytes == 0 || bytes % sizeof(struct sock_filter) || bytes / sizeof(struct sock_filter) > BPF_MAXINSNS) return false;
  const struct sock_filter *last = (const struct sock_filter *)insns + bytes / sizeof(struct sock_filter) - 1;
  return BPF_CLASS(last->code) == BPF_RET;
}

int seccomp_cache_get(const char *hex, struct sock_filter **insns, size_t *count) {
  *insns = NULL;
  *count = 0;
  cleanup_close int dfd = open_cache_dir(false);
  if (dfd < 0) return -1;
  char name[80];
  snprintf(name, sizeof name, "%s.bpf", hex);
  cleanup_close int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) return -1;
  size_t bytes = (size_t)st.st_size;
  if (bytes == 0 || bytes % sizeof(struct sock_filter) || bytes / sizeof(struct sock_filter) > BPF_MAXINSNS) return -1;
  struct sock_filter *buf = xcalloc(bytes / sizeof *buf, sizeof *buf);
  if (read_all(fd, buf, bytes) != (ssize_t)bytes || !seccomp_prog_valid(buf, bytes)) {
    free(buf);
    return -1;
  }
  char extra; /* a file that grew after fstat is refused */
  if (read(fd, &extra, 1) != 0) {
    free(buf);
    return -1;
  }
  *insns = buf;
  *count = bytes / sizeof *buf;
  return 0;
}

/* Keep the dir bounded (it outlives gantry-exec upgrades, whose build stamp retires every entry):
 * past GX_SECCOMP_CACHE_MAX entries all but `keep` go (each costs one compile when next needed);
 * tmp files a crash left (over an hour old) go too. Runs only after a miss. */
static void prune(int dfd, const char *keep) {
  int fd = dup(dfd);
  DIR *d = fd < 0 ? NULL : fdopendir(fd);
  if (!d) {
    if (fd >= 0) close(fd);
    return;
  }
  size_t n = 0;
  struct dirent *e;
  time_t now = time(NULL);
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    struct stat st;
    if (len > 4 && !strcmp(e->d_name + len - 4, ".bpf")) n++;
    else if (len > 4 && !strcmp(e->d_name + len - 4, ".tmp") && fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
             st.st_mtime < now - 3600)
      unlinkat(dfd, e->d_name, 0);
  }
  if (n > GX_SECCOMP_CACHE_MAX) {
    rewinddir(d);
    while ((e = readdir(d))) {
      size_t len = strlen(e->d_name);
      if (len > 4 && !strcmp(e->d_name + len - 4, ".bpf") && strcmp(e->d_name, keep)) unlinkat(dfd, e->d_name, 0);
    }
  }
  closedir(d);
}

void seccomp_cache_put(const char *hex, const struct sock_filter *insns, size_t count) {
  size_t bytes = count * sizeof *insns;
  if (!seccomp_prog_valid(insns, bytes)) return; /* e.g. over BPF_MAXINSNS: the kernel will say so at load */
  cleanup_close int dfd = open_cache_dir(true);
  if (dfd < 0) return;
  char name[80], tmp[120];
  snprintf(name, sizeof name, "%s.bpf", hex);
  snprintf(tmp, sizeof tmp, ".%s.%d.tmp", hex, (int)getpid());
  int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return;
  bool ok = write_all(fd, insns, bytes) == 0 && fsync(fd) == 0;
  ok = close(fd) == 0 && ok;
  if (!ok || renameat(dfd, tmp, dfd, name) < 0) {
    unlinkat(dfd, tmp, 0);
    return;
  }
  prune(dfd, name);
}
