/* caps.c — process credentials in the order the kernel needs: rlimits, bounding-set drop, keep
 * caps across setresuid, supplementary groups, gid/uid, capset, ambient raise, no_new_privs. */
#include <grp.h>
#include <linux/capability.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "runtime.h"

int rlimits_apply(const struct oci_process *p, gx_err *err) {
  for (size_t i = 0; i < p->nrlimits; i++) {
    struct rlimit rl = {p->rlimits[i].soft, p->rlimits[i].hard};
    if (setrlimit(p->rlimits[i].type, &rl) < 0)
      return gx_fail(err, errno, "setrlimit %s soft=%llu hard=%llu%s", rlimit_name(p->rlimits[i].type),
                     (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
                     errno == EPERM ? " (raising a hard limit needs CAP_SYS_RESOURCE)" : "");
  }
  return 0;
}

int caps_and_user_apply(const struct oci_process *p, gx_err *err) {
  const uint64_t *caps = p->caps;
  for (int cap = 0; cap < 64; cap++) {
    if (caps[CAP_SET_BOUNDING] & (1ULL << cap)) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
      if (errno == EINVAL) break; /* past the kernel's last capability */
      return gx_fail(err, errno, "drop capability %d from the bounding set", cap);
    }
  }
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) return gx_fail(err, errno, "prctl PR_SET_KEEPCAPS");
  if (setgroups(p->ngids, p->gids) < 0 && !(errno == EPERM && p->ngids == 0))
    return gx_fail(err, errno, "setgroups (%zu additional gids)", p->ngids);
  if (setresgid(p->gid, p->gid, p->gid) < 0) return gx_fail(err, errno, "setresgid %u", p->gid);
  if (setresuid(p->uid, p->uid, p->uid) < 0) return gx_fail(err, errno, "setresuid %u", p->uid);
  if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) return gx_fail(err, errno, "prctl PR_SET_KEEPCAPS 0");
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  for (int i = 0; i < 2; i++) {
    data[i].effective = (uint32_t)(caps[CAP_SET_EFFECTIVE] >> (32 * i));
    data[i].permitted = (uint32_t)(caps[CAP_SET_PERMITTED] >> (32 * i));
    data[i].inheritable = (uint32_t)(caps[CAP_SET_INHERITABLE] >> (32 * i));
  }
  if (syscall(SYS_capset, &hdr, data) < 0) return gx_fail(err, errno, "capset");
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  for (int cap = 0; cap < 64; cap++)
    if (caps[CAP_SET_AMBIENT] & (1ULL << cap)) /* needs the cap in permitted and inheritable; skip otherwise, as runc */
      prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0);
  if (p->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return gx_fail(err, errno, "prctl PR_SET_NO_NEW_PRIVS");
  return 0;
}
