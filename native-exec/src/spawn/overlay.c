/* overlay.c — a container's overlay rootfs, mounted and unmounted with mount(2)/umount2(2): the same
 * steps, names and error texts as worker/rootfs/overlay.ts (mountRootfs, unmountRootfs). */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "spawn.h"

#define MAX_LAYERS 500 /* overlay.ts MAX_LAYERS: overlayfs stacks at most 500 lowers */

/* rm -r without following symlinks; a missing path is fine. */
static int rm_rf_at(int dfd, const char *name, const char *shown, gx_err *err) {
  if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT) return 0;
  if (errno != EISDIR && errno != EPERM) return gx_fail(err, errno, "remove `%s`", shown);
  int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return gx_fail(err, errno, "open `%s`", shown);
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return gx_fail(err, errno, "read `%s`", shown);
  }
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    rc = rm_rf_at(dirfd(d), e->d_name, shown, err);
  }
  closedir(d);
  if (rc < 0) return rc;
  if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT) return gx_fail(err, errno, "remove `%s`", shown);
  return 0;
}

static int rm_rf(const char *path, gx_err *err) { return rm_rf_at(AT_FDCWD, path, path, err); }

/* mkdir -p from the deepest end: the container dir's parents exist (util.c's mkdir_p walks every
 * component from /, ~8 failed mkdirs per directory). */
static int mkdir_all(const char *path, gx_err *err) {
  if (mkdir(path, 0777) == 0 || errno == EEXIST) return 0;
  if (errno != ENOENT) return gx_fail(err, errno, "mkdir `%s`", path);
  cleanup_free char *parent = xstrdup(path);
  char *slash = strrchr(parent, '/');
  if (!slash || slash == parent) return gx_fail(err, ENOENT, "mkdir `%s`", path);
  *slash = 0;
  if (mkdir_all(parent, err) < 0) return -1;
  if (mkdir(path, 0777) < 0 && errno != EEXIST) return gx_fail(err, errno, "mkdir `%s`", path);
  return 0;
}

static void unescape(char *s) {
  char *w = s;
  for (char *r = s; *r; r++) {
    if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
      *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
      r += 3;
    } else *w++ = *r;
  }
  *w = 0;
}

/* Mount points (field 5 of /proc/self/mountinfo, unescaped) equal to dir or below it. */
static int mounts_under(const char *dir, char ***out, size_t *count, gx_err *err) {
  cleanup_free char *info = NULL;
  size_t len;
  if (read_file("/proc/self/mountinfo", &info, &len, err) < 0) return -1;
  size_t dl = strlen(dir), n = 0;
  char **list = NULL;
  for (char *save = NULL, *line = strtok_r(info, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *f = line;
    for (int i = 0; i < 4 && f; i++) {
      f = strchr(f, ' ');
      if (f) f++;
    }
    if (!f) continue;
    char *end = strchr(f, ' ');
    if (end) *end = 0;
    unescape(f);
    if (strncmp(f, dir, dl) != 0 || (f[dl] != 0 && f[dl] != '/')) continue;
    list = xrealloc(list, (n + 1) * sizeof *list);
    list[n++] = xstrdup(f);
  }
  *out = list;
  *count = n;
  return 0;
}

static void free_list(char **l, size_t n) {
  for (size_t i = 0; i < n; i++) free(l[i]);
  free(l);
}

static int is_mount_point(const char *p, gx_err *err) {
  char real[PATH_MAX];
  if (!realpath(p, real)) return 0;
  char **l;
  size_t n;
  if (mounts_under(real, &l, &n, err) < 0) return -1;
  int found = 0;
  for (size_t i = 0; i < n; i++) found |= !strcmp(l[i], real);
  free_list(l, n);
  return found;
}

static void base36(size_t i, char out[16]) {
  char tmp[16];
  int k = 0;
  do tmp[k++] = "0123456789abcdefghijklmnopqrstuvwxyz"[i % 36];
  while ((i /= 36));
  for (int j = 0; j < k; j++) out[j] = tmp[k - 1 - j];
  out[k] = 0;
}

/* overlay.ts overlayOptions: lowers topmost first as l/<base36 i>; upper/work relative to the container
 * dir, or absolute under disk_dir when the container's writes live elsewhere. */
static char *overlay_options(size_t count, bool is_volatile, bool read_only, const char *disk_dir) {
  strbuf sb = {0};
  sb_puts(&sb, "lowerdir=");
  for (size_t i = count; i-- > 0;) {
    char b[16];
    base36(i, b);
    sb_printf(&sb, "%sl/%s", i + 1 == count ? "" : ":", b);
  }
  if (count == 0) sb_puts(&sb, "l/empty");
  if (read_only) {
    if (count <= 1) sb_puts(&sb, ":l/empty");
    return sb.buf;
  }
  if (disk_dir) sb_printf(&sb, ",upperdir=%s/upper,workdir=%s/work", disk_dir, disk_dir);
  else sb_puts(&sb, ",upperdir=upper,workdir=work");
  if (is_volatile) sb_puts(&sb, ",volatile");
  return sb.buf;
}

int overlay_mount(const mount_req *r, char **rootfs_out, gx_err *err) {
  const char *dir = r->container_dir;
  if (r->lowers > MAX_LAYERS) return gx_fail(err, 0, "image has %zu layers; overlayfs stacks at most %d", r->lowers, MAX_LAYERS);
  cleanup_free char *rootfs = xasprintf("%s/rootfs", dir);
  int mp = is_mount_point(rootfs, err);
  if (mp < 0) return -1;
  if (mp) return gx_fail(err, 0, "%s is already mounted; unmountRootfs(\"%s\") first", rootfs, dir);
  if (mkdir_all(rootfs, err) < 0) return -1;
  if (!r->read_only) {
    const char *disk = r->disk_dir ? r->disk_dir : dir;
    cleanup_free char *upper = xasprintf("%s/upper", disk);
    cleanup_free char *work = xasprintf("%s/work", disk);
    cleanup_free char *incompat = xasprintf("%s/work/work/incompat", disk);
    if (mkdir_all(upper, err) < 0 || mkdir_all(work, err) < 0) return -1;
    /* a volatile overlay leaves work/work/incompat/volatile behind, which makes the next mount refuse */
    if (rm_rf(incompat, err) < 0) return -1;
  }
  cleanup_free char *l = xasprintf("%s/l", dir);
  cleanup_free char *empty = xasprintf("%s/l/empty", dir);
  if (rm_rf(l, err) < 0 || mkdir_all(empty, err) < 0) return -1;
  for (size_t i = 0; i < r->lowers; i++) {
    struct stat st;
    if (stat(r->lower_dirs[i], &st) < 0 || !S_ISDIR(st.st_mode)) return gx_fail(err, 0, "layer directory %s does not exist", r->lower_dirs[i]);
    char b[16];
    base36(i, b);
    cleanup_free char *link = xasprintf("%s/l/%s", dir, b);
    if (symlink(r->lower_dirs[i], link) < 0) return gx_fail(err, errno, "symlink `%s` to `%s`", link, r->lower_dirs[i]);
  }
  cleanup_free char *options = overlay_options(r->lowers, r->is_volatile, r->read_only, r->disk_dir);
  /* the option string names l/… upper work relative to the container dir: mount from there */
  cleanup_close int back = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (back < 0) return gx_fail(err, errno, "mount overlay on %s: open the working directory", rootfs);
  if (chdir(dir) < 0) return gx_fail(err, errno, "mount overlay on %s: chdir `%s`", rootfs, dir);
  int rc = mount("overlay", rootfs, "overlay", 0, options);
  int e = errno;
  if (fchdir(back) < 0) { /* cannot happen: back is an open directory */ }
  if (rc < 0) return gx_fail(err, e, "mount overlay on %s", rootfs);
  *rootfs_out = steal_ptr(rootfs);
  return 0;
}

static int by_length_desc(const void *a, const void *b) {
  size_t la = strlen(*(char *const *)a), lb = strlen(*(char *const *)b);
  return la < lb ? 1 : la > lb ? -1 : 0;
}

int overlay_unmount(const char *container_dir, gx_err *err) {
  cleanup_free char *rootfs = xasprintf("%s/rootfs", container_dir);
  char real[PATH_MAX];
  if (!realpath(rootfs, real)) return 0;
  for (int round = 0; round < 8; round++) {
    char **l;
    size_t n;
    if (mounts_under(real, &l, &n, err) < 0) return -1;
    if (n == 0) {
      free(l);
      return 0;
    }
    qsort(l, n, sizeof *l, by_length_desc);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
      if (umount2(l[i], UMOUNT_NOFOLLOW) == 0 || errno == EINVAL || errno == ENOENT) continue; /* EINVAL: gone already */
      if (errno != EBUSY) rc = gx_fail(err, errno, "unmount %s", l[i]);
      else if (umount2(l[i], MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL) rc = gx_fail(err, errno, "lazy unmount %s", l[i]);
    }
    free_list(l, n);
    if (rc < 0) return -1;
  }
  return 0;
}
