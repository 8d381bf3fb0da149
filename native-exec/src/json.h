/* json.h — a compact recursive-descent JSON parser (RFC 8259) producing a small tree; enough for
 * OCI config.json and our state files. No external dependencies. */
#ifndef GX_JSON_H
#define GX_JSON_H
#include <stdbool.h>
#include <stddef.h>

#include "util.h"

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct json {
  jtype t;
  bool b;
  double n;
  long long i;     /* integer value when the number is integral */
  bool is_int;
  char *s;         /* J_STR */
  size_t len;      /* items in J_ARR / J_OBJ */
  struct json **v; /* values */
  char **k;        /* keys (J_OBJ) */
} json;

/* Parse text; on error return NULL with "invalid JSON in <what> at line L col C: <why>". */
json *json_parse(const char *text, const char *what, gx_err *err);
void json_free(json *j);
static inline void json_freep(json **j) { json_free(*j); }
#define cleanup_json __attribute__((cleanup(json_freep)))

json *jget(const json *o, const char *key);           /* NULL unless o is an object holding key */
const char *jstr(const json *j, const char *dflt);    /* string value or dflt */
long long jint(const json *j, long long dflt);
bool jbool(const json *j, bool dflt);
static inline size_t jlen(const json *j) { return j && (j->t == J_ARR || j->t == J_OBJ) ? j->len : 0; }
/* Re-serialise a value (compact). */
void json_write(strbuf *sb, const json *j);
#endif
