/* main.c — gantry-exec's command line: runc-compatible global options (--root, --log,
 * --log-format) and subcommands, and the one-line error report (text or JSON). */
#include <getopt.h>
#include <string.h>
#include <fcntl.h>

#include "monitor.h"
#include "runtime.h"

struct gx_globals G = {.root = "/run/gantry-exec"};

int report_error(const gx_err *err) {
  strbuf sb = {0};
  if (G.log_json) {
    char ts[40];
    rfc3339_now(ts);
    sb_puts(&sb, "{\"level\":\"error\",\"msg\":");
    sb_json_string(&sb, err->msg, strlen(err->msg));
    sb_printf(&sb, ",\"time\":\"%s\"}\n", ts);
  } else {
    sb_printf(&sb, "gantry-exec: %s\n", err->msg);
  }
  write_all(2, sb.buf, sb.len);
  if (G.log_file) {
    int fd = open(G.log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
      write_all(fd, sb.buf, sb.len);
      close(fd);
    }
  }
  free(sb.buf);
  return 1;
}

static const struct {
  const char *name;
  int (*fn)(int, char **);
} commands[] = {{"create", cmd_create}, {"start", cmd_start}, {"run", cmd_run},   {"state", cmd_state},
                {"kill", cmd_kill},     {"delete", cmd_delete}, {"list", cmd_list}, {"ps", cmd_ps},
                {"exec", cmd_exec},     {"monitor", monitor_main}};

static int usage(void) {
  fprintf(stderr, "usage: gantry-exec [--root DIR] [--log FILE] [--log-format text|json] "
                  "create|start|state|kill|delete|run|exec|list|ps|monitor ...\n");
  return 2;
}

int main(int argc, char **argv) {
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    const char *a = argv[i], *v = NULL;
    const char *eq = strchr(a, '=');
    char name[64];
    snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - a) : (int)strlen(a), a);
    bool takes = !strcmp(name, "--root") || !strcmp(name, "--log") || !strcmp(name, "--log-format") ||
                 !strcmp(name, "--criu") || !strcmp(name, "--rootless");
    if (takes) {
      if (eq) v = eq + 1;
      else if (i + 1 < argc) v = argv[++i];
      else return usage();
    }
    if (!strcmp(name, "--root")) G.root = v;
    else if (!strcmp(name, "--log")) G.log_file = v;
    else if (!strcmp(name, "--log-format")) G.log_json = !strcmp(v, "json");
    else if (!strcmp(name, "--debug") || !strcmp(name, "--systemd-cgroup") || takes) continue;
    else if (!strcmp(name, "--version") || !strcmp(name, "-v")) {
      printf("gantry-exec version 0.1.0\nspec: 1.0.2\n");
      return 0;
    } else return usage();
  }
  if (i >= argc) return usage();
  for (size_t k = 0; k < sizeof commands / sizeof *commands; k++)
    if (!strcmp(argv[i], commands[k].name)) return commands[k].fn(argc - i, argv + i);
  gx_err err = {0};
  gx_fail(&err, 0, "unknown command `%s`", argv[i]);
  return report_error(&err);
}
