/* netlink.c — raw rtnetlink requests for gantry-net: veth pairs created straight into a netns,
 * links, addresses, the default route, link dumps. Every request waits for its ack (extended ack
 * text, when the kernel gives one, goes into the error). */
#include "netlink.h"

#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <string.h>
#include <sys/socket.h>

#define NL_BUF 8192

typedef struct nl_msg {
  union {
    struct nlmsghdr h;
    char buf[NL_BUF];
  };
} nl_msg;

static struct nlmsghdr *msg_init(nl_msg *m, int type, int flags, const void *hdr, size_t hlen) {
  memset(m->buf, 0, NLMSG_SPACE(hlen));
  m->h.nlmsg_len = NLMSG_LENGTH(hlen);
  m->h.nlmsg_type = type;
  m->h.nlmsg_flags = NLM_F_REQUEST | flags;
  memcpy(NLMSG_DATA(&m->h), hdr, hlen);
  return &m->h;
}

static struct rtattr *attr_put(struct nlmsghdr *h, int type, const void *data, size_t len) {
  struct rtattr *a = (struct rtattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));
  a->rta_type = type;
  a->rta_len = RTA_LENGTH(len);
  if (len) memcpy(RTA_DATA(a), data, len);
  h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(a->rta_len);
  return a;
}

static void attr_str(struct nlmsghdr *h, int type, const char *s) { attr_put(h, type, s, strlen(s) + 1); }
static void attr_u32(struct nlmsghdr *h, int type, uint32_t v) { attr_put(h, type, &v, sizeof v); }
static struct rtattr *nest_begin(struct nlmsghdr *h, int type) { return attr_put(h, type, NULL, 0); }
static void nest_end(struct nlmsghdr *h, struct rtattr *a) { a->rta_len = (char *)h + h->nlmsg_len - (char *)a; }

int nl_open(nl_sock *s, gx_err *err) {
  s->seq = 1;
  s->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (s->fd < 0) return gx_fail(err, errno, "open a netlink socket");
  int one = 1;
  /* best effort: the error text and a short echo of the request */
  setsockopt(s->fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  setsockopt(s->fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
  if (bind(s->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    int e = errno;
    nl_close(s);
    return gx_fail(err, e, "bind a netlink socket");
  }
  return 0;
}

void nl_close(nl_sock *s) {
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
}

typedef int (*nl_cb)(struct nlmsghdr *h, void *ctx);

/* The kernel's extended-ack message, if any (NETLINK_CAP_ACK: it follows the capped header). */
static const char *ext_msg(struct nlmsghdr *h) {
  if (!(h->nlmsg_flags & NLM_F_ACK_TLVS)) return NULL;
  size_t off = NLMSG_HDRLEN + sizeof(struct nlmsgerr);
  struct rtattr *a = (struct rtattr *)((char *)h + off);
  int left = (int)h->nlmsg_len - (int)off;
  for (; RTA_OK(a, left); a = RTA_NEXT(a, left))
    if (a->rta_type == NLMSGERR_ATTR_MSG) return RTA_DATA(a);
  return NULL;
}

/* Send one request and read until its ack (or the end of a dump); cb sees each reply message.
 * Returns 0, or -errno with the kernel's text in *why. */
static int nl_talk(nl_sock *s, struct nlmsghdr *h, nl_cb cb, void *ctx, char *why, size_t whylen) {
  int dump = (h->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
  if (!dump) h->nlmsg_flags |= NLM_F_ACK;
  h->nlmsg_seq = ++s->seq;
  why[0] = 0;
  if (send(s->fd, h, h->nlmsg_len, 0) < 0) return -errno;
  static char buf[32768] __attribute__((aligned(4)));
  for (;;) {
    ssize_t n = recv(s->fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    int left = (int)n;
    for (struct nlmsghdr *r = (struct nlmsghdr *)buf; NLMSG_OK(r, left); r = NLMSG_NEXT(r, left)) {
      if (r->nlmsg_seq != h->nlmsg_seq) continue;
      if (r->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *e = NLMSG_DATA(r);
        const char *m = ext_msg(r);
        if (m) snprintf(why, whylen, "%s", m);
        return e->error;
      }
      if (r->nlmsg_type == NLMSG_DONE) return 0;
      if (cb) {
        int rc = cb(r, ctx);
        if (rc < 0) return rc;
      }
    }
  }
}

/* nl_talk + error text "what: EXXX (kernel says ...)". */
static int nl_do(nl_sock *s, struct nlmsghdr *h, nl_cb cb, void *ctx, gx_err *err, const char *what) {
  char why[256];
  int rc = nl_talk(s, h, cb, ctx, why, sizeof why);
  if (rc == 0) return 0;
  if (why[0]) return gx_fail(err, -rc, "%s (%s)", what, why);
  return gx_fail(err, -rc, "%s", what);
}

static int got_index(struct nlmsghdr *h, void *ctx) {
  if (h->nlmsg_type == RTM_NEWLINK) *(int *)ctx = ((struct ifinfomsg *)NLMSG_DATA(h))->ifi_index;
  return 0;
}

int nl_link_index(nl_sock *s, const char *name, gx_err *err) {
  nl_msg m;
  struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
  struct nlmsghdr *h = msg_init(&m, RTM_GETLINK, 0, &ifi, sizeof ifi);
  attr_str(h, IFLA_IFNAME, name);
  attr_u32(h, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  int idx = 0;
  char why[256];
  int rc = nl_talk(s, h, got_index, &idx, why, sizeof why);
  if (rc < 0) return gx_fail(err, -rc, "find link `%s`", name);
  if (idx <= 0) return gx_fail(err, ENODEV, "find link `%s`", name);
  return idx;
}

int nl_veth_add(nl_sock *host, const veth_spec *v, int nsfd, gx_err *err) {
  int master = 0;
  if (v->master && *v->master) {
    master = nl_link_index(host, v->master, err);
    if (master < 0) return gx_wrap(err, "bridge for veth `%s`", v->host);
  }
  nl_msg m;
  /* no IFF_UP here: veth_open refuses (ENOTCONN) until both ends exist; up comes after */
  struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
  struct nlmsghdr *h = msg_init(&m, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof ifi);
  attr_str(h, IFLA_IFNAME, v->host);
  if (v->mtu) attr_u32(h, IFLA_MTU, v->mtu);
  if (master) attr_u32(h, IFLA_MASTER, master);
  struct rtattr *info = nest_begin(h, IFLA_LINKINFO);
  attr_str(h, IFLA_INFO_KIND, "veth");
  struct rtattr *data = nest_begin(h, IFLA_INFO_DATA);
  struct rtattr *peer = nest_begin(h, VETH_INFO_PEER);
  /* the peer's ifinfomsg, then its attributes: named, placed and addressed from the start */
  struct ifinfomsg pifi = {.ifi_family = AF_UNSPEC};
  memcpy((char *)h + h->nlmsg_len, &pifi, sizeof pifi);
  h->nlmsg_len += NLMSG_ALIGN(sizeof pifi);
  attr_str(h, IFLA_IFNAME, v->peer);
  attr_u32(h, IFLA_NET_NS_FD, (uint32_t)nsfd);
  if (v->mtu) attr_u32(h, IFLA_MTU, v->mtu);
  if (v->has_mac) attr_put(h, IFLA_ADDRESS, v->mac, 6);
  nest_end(h, peer);
  nest_end(h, data);
  nest_end(h, info);
  char what[96];
  snprintf(what, sizeof what, "create veth `%s` (peer `%s`)", v->host, v->peer);
  if (nl_do(host, h, NULL, NULL, err, what) < 0) return -1;
  return nl_link_up(host, v->host, err);
}

static int link_set(nl_sock *s, const char *name, const char *alias, int up, gx_err *err) {
  nl_msg m;
  struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_flags = up ? IFF_UP : 0, .ifi_change = up ? IFF_UP : 0};
  struct nlmsghdr *h = msg_init(&m, RTM_NEWLINK, 0, &ifi, sizeof ifi);
  attr_str(h, IFLA_IFNAME, name);
  if (alias && *alias) attr_str(h, IFLA_IFALIAS, alias);
  char what[64];
  snprintf(what, sizeof what, "set link `%s`", name);
  return nl_do(s, h, NULL, NULL, err, what);
}


int nl_link_up(nl_sock *s, const char *name, gx_err *err) { return link_set(s, name, NULL, 1, err); }

static int addr_add(nl_sock *s, int index, const char *dev, uint32_t addr, int prefix, gx_err *err) {
  nl_msg m;
  struct ifaddrmsg ifa = {.ifa_family = AF_INET, .ifa_prefixlen = prefix, .ifa_scope = RT_SCOPE_UNIVERSE, .ifa_index = index};
  struct nlmsghdr *h = msg_init(&m, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &ifa, sizeof ifa);
  attr_put(h, IFA_LOCAL, &addr, 4);
  attr_put(h, IFA_ADDRESS, &addr, 4);
  const uint8_t *b = (const uint8_t *)&addr;
  char what[96];
  snprintf(what, sizeof what, "add address %u.%u.%u.%u/%d to `%s`", b[0], b[1], b[2], b[3], prefix, dev);
  return nl_do(s, h, NULL, NULL, err, what);
}

int nl_veth_configure(nl_sock *ns, const veth_spec *v, gx_err *err) {
  if (link_set(ns, v->peer, v->alias, 1, err) < 0) return -1;
  if (!v->addr) return 0;
  int idx = nl_link_index(ns, v->peer, err);
  if (idx < 0) return -1;
  return addr_add(ns, idx, v->peer, v->addr, v->prefix, err);
}

int nl_link_del(nl_sock *s, const char *name, gx_err *err) {
  nl_msg m;
  struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
  struct nlmsghdr *h = msg_init(&m, RTM_DELLINK, 0, &ifi, sizeof ifi);
  attr_str(h, IFLA_IFNAME, name);
  char why[256];
  int rc = nl_talk(s, h, NULL, NULL, why, sizeof why);
  if (rc == 0 || rc == -ENODEV) return 0;
  return gx_fail(err, -rc, "delete link `%s`%s%s", name, why[0] ? ": " : "", why);
}

int nl_route_default(nl_sock *s, uint32_t gw, const char *dev, gx_err *err) {
  int idx = nl_link_index(s, dev, err);
  if (idx < 0) return -1;
  nl_msg m;
  struct rtmsg rt = {.rtm_family = AF_INET, .rtm_table = RT_TABLE_MAIN, .rtm_protocol = RTPROT_BOOT, .rtm_scope = RT_SCOPE_UNIVERSE, .rtm_type = RTN_UNICAST};
  struct nlmsghdr *h = msg_init(&m, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &rt, sizeof rt);
  attr_put(h, RTA_GATEWAY, &gw, 4);
  attr_u32(h, RTA_OIF, idx);
  const uint8_t *b = (const uint8_t *)&gw;
  char what[96];
  snprintf(what, sizeof what, "add default route via %u.%u.%u.%u dev `%s`", b[0], b[1], b[2], b[3], dev);
  return nl_do(s, h, NULL, NULL, err, what);
}

typedef struct names_ctx {
  char (*names)[16];
  int max, n;
} names_ctx;

static int got_name(struct nlmsghdr *h, void *ctx) {
  names_ctx *c = ctx;
  if (h->nlmsg_type != RTM_NEWLINK) return 0;
  struct ifinfomsg *ifi = NLMSG_DATA(h);
  if (ifi->ifi_flags & IFF_LOOPBACK) return 0;
  int left = (int)IFLA_PAYLOAD(h);
  for (struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, left); a = RTA_NEXT(a, left)) {
    if (a->rta_type != IFLA_IFNAME || c->n >= c->max) continue;
    snprintf(c->names[c->n++], 16, "%s", (const char *)RTA_DATA(a));
  }
  return 0;
}

int nl_link_names(nl_sock *s, char names[][16], int max, gx_err *err) {
  nl_msg m;
  struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
  struct nlmsghdr *h = msg_init(&m, RTM_GETLINK, NLM_F_DUMP, &ifi, sizeof ifi);
  attr_u32(h, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  names_ctx c = {.names = names, .max = max};
  if (nl_do(s, h, got_name, &c, err, "list links") < 0) return -1;
  return c.n;
}
