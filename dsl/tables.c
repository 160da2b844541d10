/* tables.c - the X-macro tables (tokens, dtypes, builtins, node kinds)
 * turned into lookup functions. */
#include "dsl/dsl.h"

#include <stdio.h>
#include <string.h>

static const char *const tok_text[] = {
#define TOK(name, text, cls) text,
#include "dsl/tokens.def"
#undef TOK
};

enum { CLS_SPECIAL, CLS_PUNCT, CLS_KEYWORD };
static const unsigned char tok_class[] = {
#define TOK(name, text, cls) CLS_##cls,
#include "dsl/tokens.def"
#undef TOK
};

const char *ts_tok_spelling(ts_tok_kind k) {
  return (unsigned)k < TS_TOK_COUNT ? tok_text[k] : "?";
}

bool ts_tok_is_keyword(ts_tok_kind k) {
  return (unsigned)k < TS_TOK_COUNT && tok_class[k] == CLS_KEYWORD;
}

static const struct {
  const char *name;
  int bits;
  int cls; /* 0 float, 1 int, 2 bool */
} dtypes[] = {
#define FLOAT 0
#define INT 1
#define BOOL 2
#define DTYPE(name, text, bits, cls, tok) {text, bits, cls},
#include "dsl/dtypes.def"
#undef DTYPE
#undef FLOAT
#undef INT
#undef BOOL
};

const char *ts_dtype_name(ts_dtype d) {
  return (unsigned)d < TS_DTYPE_COUNT ? dtypes[d].name : "?";
}
void ts_const_text(const ts_const *c, char *out, size_t size) {
  switch (c->kind) {
  case TS_CONST_INT: snprintf(out, size, "%lld", (long long)c->i); break;
  case TS_CONST_FLOAT: snprintf(out, size, "%.17g", c->f); break;
  case TS_CONST_BOOL: snprintf(out, size, "%s", c->b ? "true" : "false"); break;
  case TS_CONST_DTYPE: snprintf(out, size, "%s", ts_dtype_name(c->dt)); break;
  default: snprintf(out, size, "-"); break;
  }
}

ts_dtype ts_dtype_from_name(const char *name) {
  for (int d = 0; d < TS_DTYPE_COUNT; d++)
    if (!strcmp(name, dtypes[d].name))
      return (ts_dtype)d;
  return TS_DTYPE_COUNT;
}
int ts_dtype_bits(ts_dtype d) {
  return (unsigned)d < TS_DTYPE_COUNT ? dtypes[d].bits : 0;
}
bool ts_dtype_is_float(ts_dtype d) {
  return (unsigned)d < TS_DTYPE_COUNT && dtypes[d].cls == 0;
}
bool ts_dtype_is_int(ts_dtype d) {
  return (unsigned)d < TS_DTYPE_COUNT && dtypes[d].cls == 1;
}
bool ts_dtype_int_range(ts_dtype d, int64_t *lo, int64_t *hi) {
  if (d == TS_DTYPE_BOOL) {
    *lo = 0, *hi = 1;
    return true;
  }
  if (!ts_dtype_is_int(d))
    return false;
  int bits = ts_dtype_bits(d); /* (8, 32, 64: two's complement) */
  *hi = bits == 64 ? INT64_MAX : ((int64_t)1 << (bits - 1)) - 1;
  *lo = -*hi - 1;
  return true;
}
ts_dtype ts_dtype_promote(ts_dtype d) {
  switch (d) {
  case TS_DTYPE_F16:
  case TS_DTYPE_BF16:
  case TS_DTYPE_FP8E4M3: return TS_DTYPE_F32;
  case TS_DTYPE_I8: return TS_DTYPE_I32;
  default: return d;
  }
}

static const struct {
  const char *name, *sig;
} builtins[] = {
    {"", ""},
#define BUILTIN(name, text, cls, lo, hi, sig) {text, sig},
#include "dsl/builtins.def"
#undef BUILTIN
};

ts_builtin ts_builtin_lookup(ts_str name) {
  for (int i = 1; i < TS_BUILTIN_COUNT; i++)
    if (ts_str_eq_cstr(name, builtins[i].name))
      return (ts_builtin)i;
  return TS_BUILTIN_NONE;
}
const char *ts_builtin_name(ts_builtin b) {
  return (unsigned)b < TS_BUILTIN_COUNT ? builtins[b].name : "?";
}
const char *ts_builtin_signature(ts_builtin b) {
  return (unsigned)b < TS_BUILTIN_COUNT ? builtins[b].sig : "?";
}

static const char *const node_names[] = {
#define X(name, text) text,
    TS_NODE_KINDS(X)
#undef X
};

const char *ts_node_kind_name(ts_node_kind k) { return node_names[k]; }

int ts_arch_number(const char *arch) {
  if (!arch)
    return 0;
  if (strncmp(arch, "sm_", 3) || arch[3] < '1' || arch[3] > '9')
    return -1;
  int v = 0;
  const char *c = arch + 3;
  for (; *c >= '0' && *c <= '9' && v < 1000; c++)
    v = v * 10 + (*c - '0');
  return (!*c || (c[0] == 'a' && !c[1])) && v < 1000 ? v : -1;
}
