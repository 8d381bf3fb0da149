/* json.c — recursive-descent JSON parser into a json tree, lookups, and a compact writer
 * (used to copy annotations into the state output). */
#include "json.h"

#include <math.h>
#include <string.h>

struct parser {
  const char *s, *start, *what;
  gx_err *err;
  int depth;
};

static int perr(struct parser *p, const char *why) {
  int line = 1, col = 1;
  for (const char *c = p->start; c < p->s; c++) {
    if (*c == '\n') line++, col = 1;
    else col++;
  }
  return gx_fail(p->err, 0, "invalid JSON in %s at line %d col %d: %s", p->what, line, col, why);
}

static void ws(struct parser *p) {
  while (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r') p->s++;
}

static json *node(jtype t) {
  json *j = xcalloc(1, sizeof *j);
  j->t = t;
  return j;
}

static void put_utf8(strbuf *sb, unsigned cp) {
  char b[4];
  int n;
  if (cp < 0x80) b[0] = cp, n = 1;
  else if (cp < 0x800) b[0] = 0xc0 | cp >> 6, b[1] = 0x80 | (cp & 0x3f), n = 2;
  else if (cp < 0x10000) b[0] = 0xe0 | cp >> 12, b[1] = 0x80 | (cp >> 6 & 0x3f), b[2] = 0x80 | (cp & 0x3f), n = 3;
  else b[0] = 0xf0 | cp >> 18, b[1] = 0x80 | (cp >> 12 & 0x3f), b[2] = 0x80 | (cp >> 6 & 0x3f), b[3] = 0x80 | (cp & 0x3f), n = 4;
  sb_append(sb, b, n);
}

static int hex4(const char *s, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = s[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else return -1;
  }
  *out = v;
  return 0;
}

static char *parse_string(struct parser *p) {
  strbuf sb = {0};
  p->s++; /* opening quote */
  sb_append(&sb, "", 0);
  for (;;) {
    const char *run = p->s;
    while (*p->s && *p->s != '"' && *p->s != '\\' && (unsigned char)*p->s >= 0x20) p->s++;
    sb_append(&sb, run, p->s - run);
    if (*p->s == '"') {
      p->s++;
      return sb.buf;
    }
    if (*p->s != '\\') {
      free(sb.buf);
      perr(p, *p->s ? "control character in string" : "unterminated string");
      return NULL;
    }
    p->s++;
    char c = *p->s++;
    switch (c) {
    case '"': sb_append(&sb, "\"", 1); break;
    case '\\': sb_append(&sb, "\\", 1); break;
    case '/': sb_append(&sb, "/", 1); break;
    case 'b': sb_append(&sb, "\b", 1); break;
    case 'f': sb_append(&sb, "\f", 1); break;
    case 'n': sb_append(&sb, "\n", 1); break;
    case 'r': sb_append(&sb, "\r", 1); break;
    case 't': sb_append(&sb, "\t", 1); break;
    case 'u': {
      unsigned cp, lo;
      if (hex4(p->s, &cp) < 0) goto bad;
      p->s += 4;
      if (cp >= 0xd800 && cp < 0xdc00 && p->s[0] == '\\' && p->s[1] == 'u' && hex4(p->s + 2, &lo) == 0 &&
          lo >= 0xdc00 && lo < 0xe000) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        p->s += 6;
      }
      put_utf8(&sb, cp);
      break;
    }
    default:
    bad:
      free(sb.buf);
      perr(p, "bad escape in string");
      return NULL;
    }
  }
}

static json *parse_value(struct parser *p);

static json *parse_container(struct parser *p, bool obj) {
  json *j = node(obj ? J_OBJ : J_ARR);
  size_t cap = 0;
  p->s++;
  ws(p);
  if (*p->s == (obj ? '}' : ']')) {
    p->s++;
    return j;
  }
  for (;;) {
    char *key = NULL;
    ws(p);
    if (obj) {
      if (*p->s != '"') {
        perr(p, "expected a string key");
        goto fail;
      }
      if (!(key = parse_string(p))) goto fail;
      ws(p);
      if (*p->s != ':') {
        free(key);
        perr(p, "expected ':'");
        goto fail;
      }
      p->s++;
    }
    json *v = parse_value(p);
    if (!v) {
      free(key);
      goto fail;
    }
    if (j->len == cap) {
      cap = cap ? cap * 2 : 8;
      j->v = xrealloc(j->v, cap * sizeof *j->v);
      if (obj) j->k = xrealloc(j->k, cap * sizeof *j->k);
    }
    if (obj) j->k[j->len] = key;
    j->v[j->len++] = v;
    ws(p);
    if (*p->s == ',') {
      p->s++;
      continue;
    }
    if (*p->s == (obj ? '}' : ']')) {
      p->s++;
      return j;
    }
    perr(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    goto fail;
  }
fail:
  json_free(j);
  return NULL;
}

static json *parse_value(struct parser *p) {
  ws(p);
  if (++p->depth > 200) {
    perr(p, "nested too deeply");
    return NULL;
  }
  json *j = NULL;
  char c = *p->s;
  if (c == '{' || c == '[') j = parse_container(p, c == '{');
  else if (c == '"') {
    char *s = parse_string(p);
    if (s) {
      j = node(J_STR);
      j->s = s;
    }
  } else if (!strncmp(p->s, "true", 4) || !strncmp(p->s, "false", 5)) {
    j = node(J_BOOL);
    j->b = c == 't';
    p->s += j->b ? 4 : 5;
  } else if (!strncmp(p->s, "null", 4)) {
    j = node(J_NULL);
    p->s += 4;
  } else if (c == '-' || (c >= '0' && c <= '9')) {
    const char *b = p->s;
    if (*p->s == '-') p->s++;
    if (!(*p->s >= '0' && *p->s <= '9')) {
      perr(p, "bad number");
      return NULL;
    }
    while ((*p->s >= '0' && *p->s <= '9') || *p->s == '.' || *p->s == 'e' || *p->s == 'E' || *p->s == '+' ||
           (*p->s == '-' && (p->s[-1] == 'e' || p->s[-1] == 'E')))
      p->s++;
    char *end;
    j = node(J_NUM);
    j->n = strtod(b, &end);
    if (end != p->s) {
      json_free(j);
      perr(p, "bad number");
      return NULL;
    }
    j->is_int = !memchr(b, '.', p->s - b) && !memchr(b, 'e', p->s - b) && !memchr(b, 'E', p->s - b);
    /* unsigned 64-bit values (seccomp masks) keep their bit pattern */
    j->i = !j->is_int ? (long long)j->n : *b == '-' ? strtoll(b, NULL, 10) : (long long)strtoull(b, NULL, 10);
  } else {
    perr(p, c ? "unexpected character" : "unexpected end of input");
  }
  p->depth--;
  return j;
}

json *json_parse(const char *text, const char *what, gx_err *err) {
  struct parser p = {.s = text, .start = text, .what = what, .err = err};
  json *j = parse_value(&p);
  if (!j) return NULL;
  ws(&p);
  if (*p.s) {
    perr(&p, "trailing characters");
    json_free(j);
    return NULL;
  }
  return j;
}

void json_free(json *j) {
  if (!j) return;
  for (size_t i = 0; i < j->len; i++) {
    json_free(j->v[i]);
    if (j->k) free(j->k[i]);
  }
  free(j->v);
  free(j->k);
  free(j->s);
  free(j);
}

json *jget(const json *o, const char *key) {
  if (!o || o->t != J_OBJ) return NULL;
  for (size_t i = 0; i < o->len; i++)
    if (!strcmp(o->k[i], key)) return o->v[i];
  return NULL;
}
const char *jstr(const json *j, const char *dflt) { return j && j->t == J_STR ? j->s : dflt; }
long long jint(const json *j, long long dflt) { return j && j->t == J_NUM ? j->i : dflt; }
bool jbool(const json *j, bool dflt) { return j && j->t == J_BOOL ? j->b : dflt; }

void json_write(strbuf *sb, const json *j) {
  if (!j) {
    sb_puts(sb, "null");
    return;
  }
  switch (j->t) {
  case J_NULL: sb_puts(sb, "null"); break;
  case J_BOOL: sb_puts(sb, j->b ? "true" : "false"); break;
  case J_NUM:
    if (j->is_int) sb_printf(sb, "%lld", j->i);
    else sb_printf(sb, "%.17g", j->n);
    break;
  case J_STR: sb_json_string(sb, j->s, strlen(j->s)); break;
  case J_ARR:
  case J_OBJ:
    sb_puts(sb, j->t == J_OBJ ? "{" : "[");
    for (size_t i = 0; i < j->len; i++) {
      if (i) sb_puts(sb, ",");
      if (j->t == J_OBJ) {
        sb_json_string(sb, j->k[i], strlen(j->k[i]));
        sb_puts(sb, ":");
      }
      json_write(sb, j->v[i]);
    }
    sb_puts(sb, j->t == J_OBJ ? "}" : "]");
    break;
  }
}
