/* main.c — gantry-exec's command line: runc-compatible global options and subcommands,
 * dispatching to the lifecycle (container.c), exec (exec.c) and monitor (monitor.c). */
#include <string.h>

#include "monitor.h"
#include "util.h"

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "monitor")) return monitor_main(argc - 1, argv + 1);
  fprintf(stderr, "gantry-exec: unknown command\n");
  return 2;
}
