/* config.h — the OCI runtime config.json as gantry-exec uses it: parsed and validated once
 * (config.c), then trusted by every other file. */
#ifndef GX_CONFIG_H
#define GX_CONFIG_H
#include <stdint.h>
#include <sys/resource.h>

#include "json.h"

struct oci_mount {
  char *dest, *type, *source, *data;
  unsigned long flags, clear, propagation; /* mount(2) flags, flags to clear (rw, suid..), MS_SHARED.. */
  bool bind, recursive_ro;
};

struct oci_ns {
  int type; /* CLONE_NEW* */
  char *path;
};

struct oci_idmap {
  uint32_t container, host, size;
};

struct oci_device {
  char *path;
  char type; /* c b p u */
  int64_t major, minor;
  uint32_t mode, uid, gid;
};

struct oci_devrule { /* linux.resources.devices */
  bool allow;
  char type;
  int64_t major, minor; /* -1 = any */
  char access[4];
};

struct oci_rlimit {
  int type;
  uint64_t soft, hard;
};

struct oci_hook {
  char *path;
  char **args, **env;
  int timeout;
};

enum hook_kind { HOOK_PRESTART, HOOK_CREATE_RUNTIME, HOOK_CREATE_CONTAINER, HOOK_START_CONTAINER, HOOK_POSTSTART, HOOK_POSTSTOP, HOOK_KINDS };

struct oci_process {
  char **args, **env;
  char *cwd;
  uint32_t uid, gid;
  gid_t *gids;
  size_t ngids;
  bool terminal, nnp, has_oom_score_adj;
  unsigned short rows, cols;
  uint64_t caps[5]; /* bounding, effective, inheritable, permitted, ambient */
  bool has_caps;
  struct oci_rlimit *rlimits;
  size_t nrlimits;
  int oom_score_adj;
};
enum { CAP_SET_BOUNDING, CAP_SET_EFFECTIVE, CAP_SET_INHERITABLE, CAP_SET_PERMITTED, CAP_SET_AMBIENT };

struct oci_resources {
  int64_t mem_limit, mem_reservation; /* -1 = unset */
  int64_t mem_swap; /* memory+swap as in the spec: 0 = unset, -1 = unlimited */
  uint64_t cpu_shares;                          /* 0 = unset */
  int64_t cpu_quota;                            /* 0 = unset, -1 = unlimited */
  uint64_t cpu_period;
  char *cpus, *mems;
  int64_t pids_limit; /* 0 = unset, -1 = unlimited */
  uint16_t blkio_weight;
  struct oci_devrule *devrules;
  size_t ndevrules;
};

struct oci_config {
  char *text;       /* config.json as read (copied into the state dir) */
  json *root;       /* the parsed document (seccomp and annotations are read from it) */
  char *bundle;     /* absolute */
  char *rootfs;     /* absolute */
  bool root_ro;
  struct oci_process proc;
  char *hostname, *domainname;
  struct oci_mount *mounts;
  size_t nmounts;
  struct oci_ns *ns;
  size_t nns;
  int clone_flags; /* namespaces to create (no path) */
  struct oci_idmap *uidmap, *gidmap;
  size_t nuidmap, ngidmap;
  struct oci_device *devices;
  size_t ndevices;
  char *cgroups_path;
  struct oci_resources res;
  char **sysctl; /* key=value */
  size_t nsysctl;
  json *seccomp;
  char **masked, **readonly;
  size_t nmasked, nreadonly;
  unsigned long rootfs_propagation;
  struct oci_hook *hooks[HOOK_KINDS];
  size_t nhooks[HOOK_KINDS];
};

/* Read bundle/config.json (or `path` when given) and validate. */
int config_load(const char *bundle, struct oci_config *c, gx_err *err);
/* A config file with an explicit bundle; check_rootfs = false when the rootfs may be gone (delete). */
int config_load_file(const char *path, const char *bundle, bool check_rootfs, struct oci_config *c, gx_err *err);
int config_parse(json *root, const char *bundle, bool check_rootfs, struct oci_config *c, gx_err *err);
/* A "process" object (exec --process): fills p. */
int config_parse_process(const json *j, struct oci_process *p, gx_err *err);
void config_free(struct oci_config *c);
int cap_from_name(const char *name);
const char *rlimit_name(int resource);
/* "TERM", "SIGTERM", "15" -> 15, or -1. */
int signal_from_name(const char *name);
#endif
