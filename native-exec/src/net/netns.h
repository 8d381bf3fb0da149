/* netns.h — persistent network namespaces bound at a path (as `ip netns add` / `unshare --net=PATH`),
 * and running a program inside one (iptables-restore for a container's rules). */
#ifndef GN_NETNS_H
#define GN_NETNS_H
#include "../util.h"

/* Remember the caller's netns (call once before netns_create). */
int netns_init(gx_err *err);
/* New netns bound at path (an empty file is made); returns an fd on it, or -1. The caller stays in
 * its own netns; *nl_fd gets a NETLINK_ROUTE socket opened inside the new one. */
int netns_create(const char *path, int *nl_fd, gx_err *err);
/* An fd on the netns at path, and a netlink socket in it (*nl_fd). -1 with ENOENT when absent. */
int netns_open(const char *path, int *nl_fd, gx_err *err);
/* Unmount and remove path; an absent or unmounted path is not an error. */
int netns_remove(const char *path, gx_err *err);
/* Run argv inside nsfd with `input` on stdin; 0 when it exits 0, else -1 with its stderr. */
int netns_exec(int nsfd, char *const argv[], const char *input, gx_err *err);
/* The same in two halves, so the caller can work while the child runs. */
typedef struct netns_child {
  pid_t pid; /* -1: nothing to wait for */
  int out;   /* its stdout+stderr */
  const char *name;
} netns_child;
int netns_spawn(int nsfd, char *const argv[], const char *input, netns_child *c, gx_err *err);
int netns_wait(netns_child *c, gx_err *err);
#endif
