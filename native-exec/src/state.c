/* state.c — the container state directory (<root>/<id>/state.json, config.json, exec.fifo):
 * writing, reading, and deriving the OCI status (created/running/stopped) from the live pid. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime.h"

int state_check_id(const char *id, gx_err *err) {
  if (!id || !*id) return gx_fail(err, 0, "container id is required");
  if (strlen(id) > 200) return gx_fail(err, 0, "container id `%.40s...` is too long (max 200)", id);
  for (const char *p = id; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("_-.+", *p)))
      return gx_fail(err, 0, "container id `%s` has an invalid character (allowed: A-Z a-z 0-9 _ - . +)", id);
  if (!strcmp(id, ".") || !strcmp(id, "..")) return gx_fail(err, 0, "container id `%s` is invalid", id);
  return 0;
}

char *state_dir(const char *id) { return xasprintf("%s/%s", G.root, id); }

int state_create_dir(const char *id, gx_err *err) {
  if (mkdir(G.root, 0700) < 0 && errno != EEXIST) {
    if (errno != ENOENT || mkdir_p(G.root, 0700, err) < 0) return gx_fail(err, errno, "mkdir `%s`", G.root);
  }
  cleanup_free char *d = state_dir(id);
  if (mkdir(d, 0700) < 0) {
    if (errno == EEXIST) return gx_fail(err, 0, "container `%s` already exists (state in `%s`)", id, d);
    return gx_fail(err, errno, "mkdir `%s`", d);
  }
  return 0;
}

int state_write(const struct gx_state *s, gx_err *err) {
  cleanup_sb strbuf sb = {0};
  sb_puts(&sb, "{\"id\":");
  sb_json_string(&sb, s->id, strlen(s->id));
  sb_printf(&sb, ",\"pid\":%d,\"starttime\":%llu,\"bundle\":", s->pid, s->starttime);
  sb_json_string(&sb, s->bundle, strlen(s->bundle));
  sb_puts(&sb, ",\"rootfs\":");
  sb_json_string(&sb, s->rootfs, strlen(s->rootfs));
  sb_printf(&sb, ",\"created\":\"%s\",\"cgroupMode\":%d,\"cgroupRoot\":", s->created, s->cgroup_mode);
  sb_json_string(&sb, s->cgroup_root, strlen(s->cgroup_root));
  sb_puts(&sb, ",\"cgroupPath\":");
  sb_json_string(&sb, s->cgroup_path, strlen(s->cgroup_path));
  sb_printf(&sb, ",\"annotations\":%s}\n", s->annotations ? s->annotations : "{}");
  cleanup_free char *path = xasprintf("%s/%s/state.json", G.root, s->id);
  return write_file_atomic(path, sb.buf, sb.len, err);
}

int state_read(const char *id, struct gx_state *s, gx_err *err) {
  if (state_check_id(id, err) < 0) return -1;
  cleanup_free char *path = xasprintf("%s/%s/state.json", G.root, id), *text = NULL;
  if (read_file(path, &text, NULL, NULL) < 0) return gx_fail(err, 0, "container `%s` does not exist (no `%s`)", id, path);
  cleanup_json json *j = json_parse(text, path, err);
  if (!j) return -1;
  s->id = xstrdup(id);
  s->pid = jint(jget(j, "pid"), 0);
  s->starttime = jint(jget(j, "starttime"), 0);
  s->bundle = xstrdup(jstr(jget(j, "bundle"), ""));
  s->rootfs = xstrdup(jstr(jget(j, "rootfs"), ""));
  s->created = xstrdup(jstr(jget(j, "created"), ""));
  s->cgroup_mode = jint(jget(j, "cgroupMode"), 1);
  s->cgroup_root = xstrdup(jstr(jget(j, "cgroupRoot"), "/sys/fs/cgroup"));
  s->cgroup_path = xstrdup(jstr(jget(j, "cgroupPath"), ""));
  strbuf sb = {0};
  json_write(&sb, jget(j, "annotations"));
  s->annotations = sb.buf;
  return 0;
}

unsigned long long proc_starttime(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  if (n <= 0) return 0;
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return 0;
  /* after ") ": field 3 is state; starttime is field 22 */
  if (p[2] == 'Z' || p[2] == 'X') return 0;
  int field = 2;
  for (; *p && field < 22; p++)
    if (*p == ' ') field++;
  return strtoull(p, NULL, 10);
}

const char *state_status(const struct gx_state *s) {
  if (s->pid <= 0 || proc_starttime(s->pid) != s->starttime) return "stopped";
  cleanup_free char *fifo = xasprintf("%s/%s/exec.fifo", G.root, s->id);
  return access(fifo, F_OK) == 0 ? "created" : "running";
}

void state_json(strbuf *sb, const struct gx_state *s, const char *status) {
  sb_puts(sb, "{\"ociVersion\":\"1.0.2\",\"id\":");
  sb_json_string(sb, s->id, strlen(s->id));
  sb_printf(sb, ",\"status\":\"%s\",\"pid\":%d,\"bundle\":", status, strcmp(status, "stopped") ? s->pid : 0);
  sb_json_string(sb, s->bundle, strlen(s->bundle));
  sb_printf(sb, ",\"rootfs\":");
  sb_json_string(sb, s->rootfs, strlen(s->rootfs));
  sb_printf(sb, ",\"created\":\"%s\",\"annotations\":%s}", s->created, s->annotations ? s->annotations : "{}");
}

int state_remove(const char *id) {
  cleanup_free char *d = state_dir(id);
  cleanup_close int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    DIR *dir = fdopendir(dup(dfd));
    struct dirent *e;
    while (dir && (e = readdir(dir)))
      if (e->d_name[0] != '.') unlinkat(dfd, e->d_name, 0);
    if (dir) closedir(dir);
  }
  return rmdir(d);
}
