/* rootfs.c — the container's filesystem view: rootfs bind + OCI mounts + /dev (default device
 * set, symlinks), pivot_root, masked and read-only paths, sysctl, hostname, read-only root. */
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/statvfs.h>

#include "runtime.h"

static const struct oci_device default_devices[] = {
    {"/dev/null", 'c', 1, 3, 0666, 0, 0},    {"/dev/zero", 'c', 1, 5, 0666, 0, 0},
    {"/dev/full", 'c', 1, 7, 0666, 0, 0},    {"/dev/random", 'c', 1, 8, 0666, 0, 0},
    {"/dev/urandom", 'c', 1, 9, 0666, 0, 0}, {"/dev/tty", 'c', 5, 0, 0666, 0, 0}};

static int make_device(int rootfd, const struct oci_device *d, bool userns, gx_err *err) {
  if (userns) { /* mknod is not allowed: bind the host's node */
    struct oci_mount m = {.dest = d->path, .source = d->path, .bind = true, .flags = MS_BIND};
    return mount_one(rootfd, NULL, &m, NULL, true, err);
  }
  cleanup_free char *parent = xstrdup(d->path);
  char *slash = strrchr(parent, '/');
  *slash = 0;
  cleanup_close int pfd = open_in_root(rootfd, *parent ? parent : "/", true, true, err);
  if (pfd < 0) return -1;
  /* O_PATH dirfd works for mknodat: reopen as a real dir fd to be safe */
  char p[40];
  snprintf(p, sizeof p, "/proc/self/fd/%d", pfd);
  cleanup_close int dfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return gx_fail(err, errno, "open `%s` in rootfs", parent);
  mode_t type = d->type == 'b' ? S_IFBLK : d->type == 'p' ? S_IFIFO : S_IFCHR;
  unlinkat(dfd, slash + 1, 0);
  if (mknodat(dfd, slash + 1, type | (d->mode & 07777), makedev(d->major, d->minor)) < 0)
    return gx_fail(err, errno, "mknod `%s`", d->path);
  if (fchmodat(dfd, slash + 1, d->mode & 07777, 0) < 0) return gx_fail(err, errno, "chmod `%s`", d->path);
  if (fchownat(dfd, slash + 1, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0) return gx_fail(err, errno, "chown `%s`", d->path);
  return 0;
}

static bool dev_is_mounted(const struct oci_config *c) {
  for (size_t i = 0; i < c->nmounts; i++)
    if (!strcmp(c->mounts[i].dest, "/dev")) return true;
  return false;
}

static int setup_dev(const struct oci_config *c, int rootfd, bool userns, gx_err *err) {
  bool own_dev = dev_is_mounted(c);
  for (size_t i = 0; own_dev && i < sizeof default_devices / sizeof *default_devices; i++) {
    bool overridden = false;
    for (size_t k = 0; k < c->ndevices; k++) overridden |= !strcmp(c->devices[k].path, default_devices[i].path);
    if (!overridden && make_device(rootfd, &default_devices[i], userns, err) < 0) return -1;
  }
  for (size_t k = 0; k < c->ndevices; k++)
    if (make_device(rootfd, &c->devices[k], userns, err) < 0) return -1;
  if (!own_dev) return 0;
  static const char *links[][2] = {{"/proc/self/fd", "fd"},       {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
                                   {"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"}};
  cleanup_close int dev = open_in_root(rootfd, "/dev", false, true, err);
  if (dev < 0) return -1;
  for (size_t i = 0; i < sizeof links / sizeof *links; i++)
    if (symlinkat(links[i][0], dev, links[i][1]) < 0 && errno != EEXIST) return gx_fail(err, errno, "symlink `/dev/%s`", links[i][1]);
  if (c->proc.terminal) {
    int f = openat(dev, "console", O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (f < 0 && errno != EEXIST) return gx_fail(err, errno, "create `/dev/console`");
    if (f >= 0) close(f);
  }
  return 0;
}

int rootfs_prepare(const struct oci_config *c, const struct cgroup *cg, int *rootfd, gx_err *err) {
  bool userns = false;
  for (size_t i = 0; i < c->nns; i++) userns |= c->ns[i].type == CLONE_NEWUSER;
  if (mount(NULL, "/", NULL, c->rootfs_propagation, NULL) < 0) return gx_fail(err, errno, "set propagation of `/`");
  if (mount(c->rootfs, c->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0) return gx_fail(err, errno, "bind mount rootfs `%s`", c->rootfs);
  /* pivot_root refuses a shared parent: keep the root mount itself private */
  if (mount(NULL, c->rootfs, NULL, MS_PRIVATE, NULL) < 0) return gx_fail(err, errno, "make rootfs `%s` private", c->rootfs);
  *rootfd = open(c->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (*rootfd < 0) return gx_fail(err, errno, "open rootfs `%s`", c->rootfs);
  for (size_t i = 0; i < c->nmounts; i++)
    if (mount_one(*rootfd, c->rootfs, &c->mounts[i], cg, userns, err) < 0) return -1;
  return setup_dev(c, *rootfd, userns, err);
}

static int write_sysctl(const char *kv, gx_err *err) {
  cleanup_free char *k = xstrdup(kv);
  char *eq = strchr(k, '=');
  *eq = 0;
  cleanup_free char *path = xasprintf("/proc/sys/%s", k);
  for (char *p = path + 10; *p; p++)
    if (*p == '.') *p = '/';
  cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return gx_fail(err, errno, "sysctl open `%s`", path);
  if (write(fd, eq + 1, strlen(eq + 1)) < 0) return gx_fail(err, errno, "sysctl write `%s` to `%s`", eq + 1, path);
  return 0;
}

static int mask_path(const char *path, gx_err *err) {
  struct stat st;
  if (lstat(path, &st) < 0) return errno == ENOENT ? 0 : gx_fail(err, errno, "mask `%s`", path);
  if (S_ISDIR(st.st_mode)) {
    if (mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0") < 0) return gx_fail(err, errno, "mask dir `%s` with tmpfs", path);
  } else if (mount("/dev/null", path, NULL, MS_BIND, NULL) < 0) {
    return gx_fail(err, errno, "mask `%s` with /dev/null", path);
  }
  return 0;
}

static int readonly_path(const char *path, gx_err *err) {
  if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) return errno == ENOENT ? 0 : gx_fail(err, errno, "bind `%s` read-only", path);
  struct statvfs s;
  unsigned long f = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  if (statvfs(path, &s) == 0) {
    f = 0;
    if (s.f_flag & ST_NOSUID) f |= MS_NOSUID;
    if (s.f_flag & ST_NODEV) f |= MS_NODEV;
    if (s.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  }
  if (mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_REC | f, NULL) < 0)
    return gx_fail(err, errno, "remount `%s` read-only", path);
  return 0;
}

/* After createContainer hooks: pivot_root into the rootfs and lock the view down. */
int rootfs_finish(const struct oci_config *c, int rootfd, int console_slave, gx_err *err) {
  if (fchdir(rootfd) < 0) return gx_fail(err, errno, "chdir to rootfs `%s`", c->rootfs);
  if (syscall(SYS_pivot_root, ".", ".") < 0) return gx_fail(err, errno, "pivot_root to `%s`", c->rootfs);
  if (umount2(".", MNT_DETACH) < 0) return gx_fail(err, errno, "unmount old root");
  if (chdir("/") < 0) return gx_fail(err, errno, "chdir `/`");
  if ((c->rootfs_propagation & (MS_SHARED | MS_UNBINDABLE)) && mount(NULL, "/", NULL, c->rootfs_propagation, NULL) < 0)
    return gx_fail(err, errno, "set rootfsPropagation of the new root");
  for (size_t i = 0; i < c->nsysctl; i++)
    if (write_sysctl(c->sysctl[i], err) < 0) return -1;
  if (c->hostname && sethostname(c->hostname, strlen(c->hostname)) < 0) return gx_fail(err, errno, "sethostname `%s`", c->hostname);
  if (c->domainname && setdomainname(c->domainname, strlen(c->domainname)) < 0)
    return gx_fail(err, errno, "setdomainname `%s`", c->domainname);
  (void)console_slave;
  for (size_t i = 0; i < c->nmasked; i++)
    if (mask_path(c->masked[i], err) < 0) return -1;
  for (size_t i = 0; i < c->nreadonly; i++)
    if (readonly_path(c->readonly[i], err) < 0) return -1;
  return 0;
}

/* Last step before dropping privileges: the root mount becomes read-only (root.readonly). */
int rootfs_readonly(gx_err *err) {
  struct statvfs s;
  unsigned long f = 0;
  if (statvfs("/", &s) == 0) {
    if (s.f_flag & ST_NOSUID) f |= MS_NOSUID;
    if (s.f_flag & ST_NODEV) f |= MS_NODEV;
    if (s.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  }
  if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | f, NULL) < 0) return gx_fail(err, errno, "remount `/` read-only");
  return 0;
}
