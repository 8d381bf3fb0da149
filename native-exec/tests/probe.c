/* probe.c — a static program run inside test containers: prints one JSON object describing what
 * the process sees (identity, caps, mounts, cgroup limits, tty, which privileged calls fail). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <unistd.h>

static void jstr(const char *s) {
  putchar('"');
  for (; s && *s; s++) {
    if (*s == '"' || *s == '\\') printf("\\%c", *s);
    else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
    else putchar(*s);
  }
  putchar('"');
}

static char *slurp(const char *path) {
  static char buf[65536];
  int fd = open(path, O_RDONLY);
  if (fd < 0) return NULL;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n < 0) return NULL;
  buf[n] = 0;
  while (n > 0 && buf[n - 1] == '\n') buf[--n] = 0;
  return buf;
}

static const char *err_of(long r) { return r < 0 ? strerrorname_np(errno) : "ok"; }

static void status_field(const char *name) {
  char *s = slurp("/proc/self/status");
  char *p = s ? strstr(s, name) : NULL;
  if (!p) {
    printf("null");
    return;
  }
  p += strlen(name);
  while (*p == ' ' || *p == '\t' || *p == ':') p++;
  char *e = strchr(p, '\n');
  if (e) *e = 0;
  jstr(p);
}

/* --recv-console SOCK: be a --console-socket server; print what the pty master yields. */
static int recv_console(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  unlink(path);
  if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l, 1) < 0) return perror("console socket"), 1;
  printf("listening\n");
  fflush(stdout);
  int c = accept(l, NULL, NULL);
  char data[256];
  struct iovec iov = {.iov_base = data, .iov_len = sizeof data};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr a;
  } u;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
  if (c < 0 || recvmsg(c, &msg, 0) < 0 || !CMSG_FIRSTHDR(&msg)) return perror("recvmsg"), 1;
  int fd;
  memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof fd);
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) fwrite(buf, 1, n, stdout);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--recv-console")) return recv_console(argv[2]);
  char host[256] = "";
  gethostname(host, sizeof host);
  printf("{\"hostname\":");
  jstr(host);
  printf(",\"pid\":%d,\"uid\":%d,\"gid\":%d,\"groups\":[", getpid(), getuid(), getgid());
  gid_t groups[64];
  int ng = getgroups(64, groups);
  for (int i = 0; i < ng; i++) printf("%s%d", i ? "," : "", groups[i]);
  printf("],\"capEff\":");
  status_field("CapEff");
  printf(",\"capBnd\":");
  status_field("CapBnd");
  printf(",\"capPrm\":");
  status_field("CapPrm");
  printf(",\"capAmb\":");
  status_field("CapAmb");
  printf(",\"noNewPrivs\":");
  status_field("NoNewPrivs");
  printf(",\"seccomp\":");
  status_field("Seccomp:");
  printf(",\"isatty\":[%d,%d,%d]", isatty(0), isatty(1), isatty(2));
  struct winsize ws = {0};
  ioctl(0, TIOCGWINSZ, &ws);
  printf(",\"winsize\":[%d,%d]", ws.ws_row, ws.ws_col);
  char cwd[512] = "";
  (void)!getcwd(cwd, sizeof cwd);
  printf(",\"cwd\":");
  jstr(cwd);
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  printf(",\"nofile\":[%llu,%llu]", (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
  printf(",\"oomScoreAdj\":");
  jstr(slurp("/proc/self/oom_score_adj"));
  int procs = 0;
  DIR *d = opendir("/proc");
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (e->d_name[0] >= '0' && e->d_name[0] <= '9') procs++;
  if (d) closedir(d);
  printf(",\"visiblePids\":%d", procs);
  printf(",\"mounts\":[");
  char *mi = slurp("/proc/self/mountinfo");
  int first = 1;
  for (char *line = mi ? strtok(mi, "\n") : NULL; line; line = strtok(NULL, "\n")) {
    char mp[512], opts[512], fstype[64];
    if (sscanf(line, "%*s %*s %*s %*s %511s %511s", mp, opts) != 2) continue;
    char *dash = strstr(line, " - ");
    if (!dash || sscanf(dash + 3, "%63s", fstype) != 1) continue;
    printf("%s{\"path\":", first ? "" : ",");
    jstr(mp);
    printf(",\"opts\":");
    jstr(opts);
    printf(",\"type\":");
    jstr(fstype);
    printf("}");
    first = 0;
  }
  printf("]");
  const char *cg[][2] = {{"memoryLimit", "/sys/fs/cgroup/memory/memory.limit_in_bytes"},
                         {"memoryMax", "/sys/fs/cgroup/memory.max"},
                         {"pidsMax", "/sys/fs/cgroup/pids/pids.max"},
                         {"cpuQuota", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"},
                         {"cpuShares", "/sys/fs/cgroup/cpu/cpu.shares"}};
  for (size_t i = 0; i < sizeof cg / sizeof *cg; i++) {
    printf(",\"%s\":", cg[i][0]);
    char *v = slurp(cg[i][1]);
    if (v) jstr(v);
    else printf("null");
  }
  /* privileged operations: each should fail inside a default container */
  printf(",\"keyctl\":\"%s\"", err_of(syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0)));
  printf(",\"mount\":\"%s\"", err_of(mount("none", "/tmp", "tmpfs", 0, NULL)));
  printf(",\"personality\":\"%s\"", err_of(syscall(SYS_personality, 0xffffffffUL)));
  printf(",\"initModule\":\"%s\"", err_of(syscall(SYS_finit_module, -1, "", 0)));
  int w = open("/proc/sys/kernel/domainname", O_WRONLY);
  printf(",\"procSysWrite\":\"%s\"", err_of(w));
  if (w >= 0) close(w);
  char rl2[512] = "";
  ssize_t n = readlink("/proc/self/root", rl2, sizeof rl2 - 1);
  if (n > 0) rl2[n] = 0;
  printf(",\"procSelfRoot\":");
  jstr(rl2);
  n = readlink("/proc/self/ns/net", rl2, sizeof rl2 - 1);
  rl2[n > 0 ? n : 0] = 0;
  printf(",\"netns\":");
  jstr(rl2);
  /* last: a successful unshare would grant caps in a new user namespace */
  printf(",\"unshare\":\"%s\"", err_of(unshare(CLONE_NEWNS | CLONE_NEWUSER)));
  printf(",\"paths\":{");
  for (int i = 1; i + 1 < argc; i += 2) {
    int r;
    if (!strcmp(argv[i], "--exists")) {
      struct stat st;
      r = stat(argv[i + 1], &st);
    } else if (!strcmp(argv[i], "--write")) {
      r = open(argv[i + 1], O_WRONLY | O_CREAT, 0644);
      if (r >= 0) close(r);
    } else {
      continue;
    }
    printf("%s", i > 1 ? "," : "");
    jstr(argv[i + 1]);
    printf(":\"%s\"", err_of(r));
  }
  printf("}}\n");
  return 0;
}
