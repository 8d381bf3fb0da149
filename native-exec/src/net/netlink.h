/* netlink.h — raw rtnetlink for gantry-net: one socket per network namespace, requests built as
 * messages with nested attributes, each answered by the kernel's ack (or error) before the next. */
#ifndef GN_NETLINK_H
#define GN_NETLINK_H
#include <stdint.h>

#include "../util.h"

typedef struct nl_sock {
  int fd;
  uint32_t seq;
} nl_sock;

/* A NETLINK_ROUTE socket in the calling thread's current network namespace. */
int nl_open(nl_sock *s, gx_err *err);
void nl_close(nl_sock *s);

/* What one veth pair should look like: host end on `master`, peer renamed and moved into netns. */
typedef struct veth_spec {
  const char *host;     /* host-side name, e.g. gv1a2b3c4d50 */
  const char *peer;     /* name inside the netns, e.g. eth0 */
  const char *master;   /* bridge for the host end ("" = none) */
  int mtu;              /* 0 = kernel default */
  uint8_t mac[6];       /* peer MAC; has_mac */
  int has_mac;
  const char *alias;    /* peer's ifalias ("" = none) */
  uint32_t addr;        /* peer IPv4 address, network order (0 = none) */
  int prefix;
} veth_spec;

/* Host side: create the pair with the peer already in netns `nsfd` under its final name, then
 * put the host end on its bridge and up. */
int nl_veth_add(nl_sock *host, const veth_spec *v, int nsfd, gx_err *err);
/* Inside the netns (socket opened there): alias and up, then the address. */
int nl_veth_configure(nl_sock *ns, const veth_spec *v, gx_err *err);
int nl_link_index(nl_sock *s, const char *name, gx_err *err); /* > 0, or -1 (ENODEV = missing) */
int nl_link_up(nl_sock *s, const char *name, gx_err *err);
int nl_link_del(nl_sock *s, const char *name, gx_err *err);    /* a missing link is not an error */
int nl_route_default(nl_sock *s, uint32_t gw, const char *dev, gx_err *err);
/* Names of every link but lo (at most max, each < 16 bytes); returns the count. */
int nl_link_names(nl_sock *s, char names[][16], int max, gx_err *err);
#endif
