/* monitor.h — the per-container monitor (`gantry-exec monitor ...`): holds a container's stdio,
 * writes ctr.log / exit.json and serves attach.sock; works with any runc-compatible runtime. */
#ifndef GX_MONITOR_H
#define GX_MONITOR_H
int monitor_main(int argc, char **argv);
#endif
