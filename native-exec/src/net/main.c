/* main.c — gantry-net: a container's network namespace, veths, addresses, default route and
 * in-namespace iptables rules, made and removed over rtnetlink, one request per JSON line.
 *
 *   worker (sys.ts NetHelper)                  gantry-net (this process, gantryd's netns)
 *   ── {"id":1,"op":"create","netns":P, ──▶   unshare(NEWNET) → bind ns onto P → setns(back)
 *       "links":[...],"gateway":G,               lo up; per link: RTM_NEWLINK veth (peer in P,
 *       "rules":"*nat..."}                       named, MAC, MTU, up; host end on bridge, up),
 *                                                alias + RTM_NEWADDR in P; RTM_NEWROUTE default
 *                                                via G; rules: fork, setns(P), iptables-restore -w
 *                                                started first, waited for last
 *   ◀── {"id":1,"ok":true,"us":850}            (on failure: everything made is removed again,
 *                                               {"id":1,"ok":false,"error":"create veth `gv..`: EEXIST"})
 *   ── {"id":2,"op":"delete","netns":P} ──▶    P unmounted and removed; the kernel destroys the
 *                                                netns and both ends of its veths in the background
 *                                                ("wait":true: delete its links first, slowly)
 *   ── {"id":3,"op":"restore","netns":P,"input":"*nat..."}   iptables-restore -w inside P
 *   ── {"id":4,"op":"ping"}  ◀── {"id":4,"ok":true,"version":1}
 *
 * Requests are answered one at a time, in order. EOF on stdin ends the process. Any request
 * can also be run alone: `echo '{"op":"delete","netns":"/run/netns/x"}' | gantry-net`. */
#include <arpa/inet.h>
#include <string.h>
#include <time.h>

#include "../json.h"
#include "netlink.h"
#include "netns.h"

#define MAX_LINKS 16
#define VERSION 1

static nl_sock host_nl = {.fd = -1};

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int parse_ip(const char *s, uint32_t *out, gx_err *err, const char *what) {
  struct in_addr a;
  if (!s || inet_pton(AF_INET, s, &a) != 1) return gx_fail(err, 0, "%s: invalid IPv4 address \"%s\"", what, s ? s : "");
  *out = a.s_addr;
  return 0;
}

static int parse_ifname(const char *s, gx_err *err, const char *what) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > 15 || strchr(s, '/') || strchr(s, ' ')) return gx_fail(err, 0, "%s: invalid interface name \"%s\"", what, s ? s : "");
  return 0;
}

static int parse_link(const json *j, veth_spec *v, gx_err *err) {
  memset(v, 0, sizeof *v);
  v->host = jstr(jget(j, "host"), NULL);
  v->peer = jstr(jget(j, "peer"), NULL);
  v->master = jstr(jget(j, "master"), "");
  v->alias = jstr(jget(j, "alias"), "");
  v->mtu = (int)jint(jget(j, "mtu"), 0);
  if (parse_ifname(v->host, err, "link host") < 0 || parse_ifname(v->peer, err, "link peer") < 0) return -1;
  if (*v->master && parse_ifname(v->master, err, "link master") < 0) return -1;
  if (v->mtu < 0 || v->mtu > 65535) return gx_fail(err, 0, "link `%s`: invalid mtu %d", v->host, v->mtu);
  const char *mac = jstr(jget(j, "mac"), "");
  if (*mac) {
    unsigned b[6];
    char extra;
    if (sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &extra) != 6)
      return gx_fail(err, 0, "link `%s`: invalid MAC \"%s\"", v->host, mac);
    for (int i = 0; i < 6; i++) v->mac[i] = (uint8_t)b[i];
    v->has_mac = 1;
  }
  const char *cidr = jstr(jget(j, "addr"), "");
  if (*cidr) {
    char ip[32];
    int prefix;
    char extra;
    if (strlen(cidr) >= sizeof ip || sscanf(cidr, "%31[0-9.]/%d%c", ip, &prefix, &extra) != 2 || prefix < 0 || prefix > 32)
      return gx_fail(err, 0, "link `%s`: invalid address \"%s\" (want a.b.c.d/n)", v->host, cidr);
    if (parse_ip(ip, &v->addr, err, "link addr") < 0) return -1;
    v->prefix = prefix;
  }
  return 0;
}

static int op_create(const json *req, gx_err *err) {
  const char *path = jstr(jget(req, "netns"), NULL);
  if (!path || path[0] != '/') return gx_fail(err, 0, "create: \"netns\" must be an absolute path");
  const json *links = jget(req, "links");
  size_t n = jlen(links);
  if (n > MAX_LINKS) return gx_fail(err, 0, "create: at most %d links", MAX_LINKS);
  veth_spec v[MAX_LINKS];
  for (size_t i = 0; i < n; i++)
    if (parse_link(links->v[i], &v[i], err) < 0) return -1;
  uint32_t gw = 0;
  const char *g = jstr(jget(req, "gateway"), "");
  if (*g && parse_ip(g, &gw, err, "create gateway") < 0) return -1;
  if (gw && n == 0) return gx_fail(err, 0, "create: a gateway needs a link");
  const char *rules = jstr(jget(req, "rules"), "");

  nl_sock ns = {.fd = -1, .seq = 1};
  cleanup_close int nsfd = netns_create(path, &ns.fd, err);
  if (nsfd < 0) return -1;
  size_t made = 0;
  /* the rules do not depend on the links: iptables-restore runs while we make them */
  netns_child ipt = {.pid = -1, .out = -1};
  char *argv[] = {"iptables-restore", "-w", NULL};
  int rc = *rules ? netns_spawn(nsfd, argv, rules, &ipt, err) : 0;
  if (rc == 0) rc = nl_link_up(&ns, "lo", err);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    rc = nl_veth_add(&host_nl, &v[i], nsfd, err);
    if (rc < 0 && err->code == EEXIST) {
      /* the host end of an earlier namespace the kernel has not finished destroying: remove it */
      gx_err stale;
      if (nl_link_del(&host_nl, v[i].host, &stale) == 0) rc = nl_veth_add(&host_nl, &v[i], nsfd, err);
    }
    if (rc == 0) made = i + 1;
    if (rc == 0) rc = nl_veth_configure(&ns, &v[i], err);
  }
  if (rc == 0 && gw) rc = nl_route_default(&ns, gw, v[0].peer, err);
  gx_err ignore;
  if (rc == 0) rc = netns_wait(&ipt, err);
  else netns_wait(&ipt, &ignore);
  nl_close(&ns);
  if (rc == 0) return 0;
  /* undo: the host ends (their peers go with them), then the namespace */
  for (size_t i = 0; i < made; i++) nl_link_del(&host_nl, v[i].host, &ignore);
  netns_remove(path, &ignore);
  return gx_wrap(err, "netns `%s`", path);
}

/* Unmounting is enough: the kernel destroys the namespace and its veths (both ends) in the
 * background, in one batch. Deleting each veth ourselves costs tens of ms per link (an RCU
 * grace period each); "wait": true does it anyway, for callers that must see them gone. */
static int op_delete(const json *req, gx_err *err) {
  const char *path = jstr(jget(req, "netns"), NULL);
  if (!path || path[0] != '/') return gx_fail(err, 0, "delete: \"netns\" must be an absolute path");
  nl_sock ns = {.fd = -1, .seq = 1};
  gx_err open_err;
  int nsfd = jbool(jget(req, "wait"), false) ? netns_open(path, &ns.fd, &open_err) : -1;
  if (nsfd >= 0) {
    char names[64][16];
    int k = nl_link_names(&ns, names, 64, err);
    for (int i = 0; k > 0 && i < k; i++)
      if (nl_link_del(&ns, names[i], err) < 0) k = -1;
    nl_close(&ns);
    close(nsfd);
    if (k < 0) return gx_wrap(err, "netns `%s`", path);
  }
  return netns_remove(path, err);
}

static int op_restore(const json *req, gx_err *err) {
  const char *path = jstr(jget(req, "netns"), NULL);
  if (!path || path[0] != '/') return gx_fail(err, 0, "restore: \"netns\" must be an absolute path");
  nl_sock ns = {.fd = -1};
  cleanup_close int nsfd = netns_open(path, &ns.fd, err);
  if (nsfd < 0) return -1;
  nl_close(&ns);
  char *argv[] = {"iptables-restore", "-w", NULL};
  if (netns_exec(nsfd, argv, jstr(jget(req, "input"), ""), err) < 0) return gx_wrap(err, "netns `%s`", path);
  return 0;
}

static void answer(long long id, int ok, const gx_err *err, double us, const char *extra) {
  cleanup_sb strbuf sb = {0};
  sb_printf(&sb, "{\"id\":%lld,\"ok\":%s", id, ok ? "true" : "false");
  if (ok) sb_printf(&sb, ",\"us\":%.0f%s", us, extra ? extra : "");
  else {
    sb_puts(&sb, ",\"error\":");
    sb_json_string(&sb, err->msg, strlen(err->msg));
  }
  sb_puts(&sb, "}\n");
  write_all(1, sb.buf, sb.len);
}

static void handle(const char *line) {
  gx_err err = {0};
  cleanup_json json *req = json_parse(line, "request", &err);
  long long id = req ? jint(jget(req, "id"), 0) : 0;
  if (!req || req->t != J_OBJ) {
    if (req) gx_fail(&err, 0, "request: want a JSON object");
    answer(id, 0, &err, 0, NULL);
    return;
  }
  const char *op = jstr(jget(req, "op"), "");
  double t0 = now_us();
  int rc;
  const char *extra = NULL;
  if (!strcmp(op, "create")) rc = op_create(req, &err);
  else if (!strcmp(op, "delete")) rc = op_delete(req, &err);
  else if (!strcmp(op, "restore")) rc = op_restore(req, &err);
  else if (!strcmp(op, "ping")) {
    rc = 0;
    extra = ",\"version\":1";
  } else rc = gx_fail(&err, 0, "unknown op \"%s\" (create, delete, restore, ping)", op);
  answer(id, rc == 0, &err, now_us() - t0, extra);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "serve") != 0) {
    fprintf(stderr, "usage: gantry-net [serve]   (JSON requests on stdin, one per line; see src/net/main.c)\n");
    return 2;
  }
  gx_err err;
  if (netns_init(&err) < 0 || nl_open(&host_nl, &err) < 0) {
    fprintf(stderr, "gantry-net: %s\n", err.msg);
    return 1;
  }
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, stdin)) >= 0) {
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
    if (len) handle(line);
  }
  free(line);
  return 0;
}
