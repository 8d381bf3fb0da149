/* seccomp_cache_unit.c — unit checks for src/seccomp_cache.c, built and run by seccomp-cache.test.ts:
 * SHA-256 against FIPS 180-4 vectors, and the canonical form (key order ignored, values kept). */
#include <string.h>

#include "../src/runtime.h"

struct gx_globals G = {.root = "/nonexistent"};

static int failures;

static void check_sha(const char *name, const void *data, size_t len, const char *want) {
  char hex[65];
  seccomp_sha256_hex(data, len, hex);
  if (strcmp(hex, want)) {
    printf("FAIL sha256 %s: %s != %s\n", name, hex, want);
    failures++;
  }
}

static char *canon(const char *text) {
  gx_err err = {0};
  json *j = json_parse(text, "test", &err);
  if (!j) {
    printf("FAIL parse %s: %s\n", text, err.msg);
    failures++;
    return xstrdup("");
  }
  strbuf sb = {0};
  seccomp_canon(&sb, j);
  json_free(j);
  return sb.buf ? sb.buf : xstrdup("");
}

static void check_canon(const char *a, const char *b, bool same) {
  char *ca = canon(a), *cb = canon(b);
  if (!strcmp(ca, cb) != same) {
    printf("FAIL canon %s vs %s should be %s: %s | %s\n", a, b, same ? "equal" : "different", ca, cb);
    failures++;
  }
  free(ca);
  free(cb);
}

int main(void) {
  check_sha("empty", "", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  check_sha("abc", "abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char *s448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 56 bytes: padding spills a block */
  check_sha("448 bits", s448, strlen(s448), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  char *million = malloc(1000000);
  memset(million, 'a', 1000000);
  check_sha("a x 1e6", million, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  free(million);

  check_canon("{\"a\":1,\"b\":[1,2],\"c\":{\"x\":\"y\",\"w\":null}}", "{\"c\":{\"w\":null,\"x\":\"y\"},\"b\":[1,2],\"a\":1}", true);
  check_canon("{\"b\":[1,2]}", "{\"b\":[2,1]}", false);              /* array order is meaningful */
  check_canon("{\"a\":1}", "{\"a\":1.0}", false);                   /* integer vs float token */
  check_canon("{\"a\":1}", "{\"a\":\"1\"}", false);                 /* number vs string */
  check_canon("{\"a\":true}", "{\"a\":false}", false);
  check_canon("{\"a\":null}", "{}", false);
  check_canon("{\"ab\":\"c\"}", "{\"a\":\"bc\"}", false);           /* lengths keep keys and values apart */
  check_canon("[\"a\",\"b\"]", "[\"a\\\"b\"]", false);
  check_canon("{\"a\":1,\"a\":2}", "{\"a\":2,\"a\":1}", false);     /* duplicates keep document order (jget takes the first) */
  check_canon("{\"v\":18446744073709551615}", "{\"v\":18446744073709551614}", false); /* u64 masks */
  check_canon("{\"s\":\"\\u00e9\"}", "{\"s\":\"\xc3\xa9\"}", true); /* same string, two spellings */
  if (!failures) printf("ok\n");
  return failures ? 1 : 0;
}
