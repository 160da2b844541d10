/* tokenizer.c - byte-level BPE tokenizers read from a Hugging Face
 * tokenizer.json (DeepSeek V3/V4's, and GPT-2's, Llama 3's, Qwen's forms):
 * added tokens split out first, then the pre-tokenizer's Split regexes
 * (base/regex.c) and ByteLevel step, then BPE merges by rank, then the
 * post-processor's template. Decoding gives back the exact bytes (invalid
 * UTF-8 in the input survives the round trip). What the file asks for and
 * this does not do (normalizers, other models, other pre-tokenizers) is
 * refused at load, naming the part. */
#include "runtime/runtime.h"

#include <stdlib.h>
#include <string.h>

typedef struct token {
  char *bytes; /* what it decodes to (NULL: an unused id) */
  size_t len;
  bool added, special;
} token;

typedef struct added {
  const char *content;
  size_t len;
  int32_t id;
  bool lstrip, rstrip, single_word;
} added;

typedef enum step_kind { STEP_SPLIT, STEP_BYTELEVEL } step_kind;
typedef enum behavior { B_REMOVED, B_ISOLATED, B_PREVIOUS, B_NEXT, B_CONTIGUOUS } behavior;

typedef struct step {
  step_kind kind;
  ts_regex *regex; /* STEP_SPLIT with a Regex, or ByteLevel's use_regex */
  char *literal;   /* STEP_SPLIT with a String */
  size_t literal_len;
  behavior behavior;
  bool invert, prefix_space;
} step;

enum { MAX_STEPS = 16, MAX_TEMPLATE = 8 };

struct ts_tokenizer {
  ts_arena arena;
  token *tokens;
  size_t token_count;
  ts_map vocab; /* byte-level tokens' bytes -> id + 1 */
  int32_t byte_ids[256];
  uint64_t *pair_keys, *pair_values; /* (a << 32 | b) -> (rank << 32 | merged id) */
  size_t pair_cap;
  bool ignore_merges;
  added *added;
  size_t added_count;
  bool added_first[256]; /* the bytes an added token starts with */
  step steps[MAX_STEPS];
  size_t step_count;
  int32_t prefix[MAX_TEMPLATE], suffix[MAX_TEMPLATE];
  size_t prefix_count, suffix_count;
};

/* GPT-2's byte <-> code point map: printable bytes stand for themselves,
 * the other 68 (0-32, 127-160, 173) for 256 + n in order. */
static bool printable(unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

static int cp_byte(uint32_t cp) {
  if (cp < 256)
    return printable(cp) ? (int)cp : -1;
  uint32_t n = cp - 256;
  return n < 33 ? (int)n : n < 67 ? (int)(127 + n - 33) : n == 67 ? 173 : -1;
}

/* A byte-level string's bytes into dst (as long as s at most); false when a
 * code point is not one of the 256. */
static bool unmap_bytes(const char *s, size_t len, char *dst, size_t *out_len) {
  size_t k = 0;
  for (size_t i = 0; i < len;) {
    uint32_t cp;
    size_t n = ts_utf8_decode(s + i, len - i, &cp);
    int b = n ? cp_byte(cp) : -1;
    if (b < 0)
      return false;
    dst[k++] = (char)b;
    i += n;
  }
  *out_len = k;
  return true;
}

/* ---- the pair table ---------------------------------------------------------------- */

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

static bool pair_get(const ts_tokenizer *t, int32_t a, int32_t b, uint32_t *rank, int32_t *id) {
  if (!t->pair_cap)
    return false;
  uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
  for (size_t i = mix(key) & (t->pair_cap - 1);; i = (i + 1) & (t->pair_cap - 1)) {
    if (t->pair_keys[i] == UINT64_MAX)
      return false;
    if (t->pair_keys[i] == key) {
      *rank = (uint32_t)(t->pair_values[i] >> 32);
      *id = (int32_t)(uint32_t)t->pair_values[i];
      return true;
    }
  }
}

/* Keeps the first (lowest-ranked) merge of a pair, as HF's BPE does. */
static void pair_put(ts_tokenizer *t, int32_t a, int32_t b, uint32_t rank, int32_t id) {
  uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
  size_t i = mix(key) & (t->pair_cap - 1);
  while (t->pair_keys[i] != UINT64_MAX && t->pair_keys[i] != key)
    i = (i + 1) & (t->pair_cap - 1);
  if (t->pair_keys[i] == key)
    return;
  t->pair_keys[i] = key;
  t->pair_values[i] = (uint64_t)rank << 32 | (uint32_t)id;
}

/* ---- loading ------------------------------------------------------------------------ */

/* "part: what is wrong" */
static ts_status bad(const char *part, const char *what) {
  return ts_status_make(TS_ERR_INVALID, "%s: %s", part, what);
}

static const char *str_of(const ts_json *obj, const char *key) {
  const ts_json *v = ts_json_get(obj, key);
  return v && v->kind == TS_JSON_STRING ? v->str : NULL;
}

static bool flag_of(const ts_json *obj, const char *key) {
  const ts_json *v = ts_json_get(obj, key);
  return v && v->kind == TS_JSON_BOOL && v->boolean;
}

static bool is_null(const ts_json *v) { return !v || v->kind == TS_JSON_NULL; }

static ts_status set_token(ts_tokenizer *t, double idd, const char *bytes, size_t len,
                           bool added, bool special, const char *where) {
  if (idd < 0 || idd > 1e8 || idd != (double)(int64_t)idd)
    return ts_status_make(TS_ERR_INVALID, "%s: bad token id %g", where, idd);
  size_t id = (size_t)idd;
  if (id >= t->token_count) {
    size_t n = t->token_count ? t->token_count : 1024;
    while (n <= id)
      n *= 2;
    token *nt = realloc(t->tokens, n * sizeof *nt);
    if (!nt)
      return ts_status_nomem();
    memset(nt + t->token_count, 0, (n - t->token_count) * sizeof *nt);
    t->tokens = nt;
    t->token_count = n;
  }
  char *copy = ts_arena_strndup(&t->arena, bytes, len);
  if (!copy)
    return ts_status_nomem();
  token *tk = &t->tokens[id];
  if (tk->bytes && added == tk->added) /* (an added token may repeat a vocabulary id) */
    return ts_status_make(TS_ERR_INVALID, "%s: id %zu given twice", where, id);
  if (!tk->bytes || added) {
    tk->bytes = copy;
    tk->len = len;
  }
  tk->added |= added;
  tk->special |= special;
  return NULL;
}

static ts_status load_model(ts_tokenizer *t, const ts_json *model) {
  if (!model || model->kind != TS_JSON_OBJECT)
    return bad("model", "missing");
  const char *type = str_of(model, "type");
  if (type && strcmp(type, "BPE"))
    return ts_status_make(TS_ERR_UNSUPPORTED, "model: type '%s' (only BPE is supported)", type);
  const char *prefix = str_of(model, "continuing_subword_prefix");
  const char *suffix = str_of(model, "end_of_word_suffix");
  if ((prefix && *prefix) || (suffix && *suffix))
    return ts_status_make(TS_ERR_UNSUPPORTED,
                          "model: subword prefixes and suffixes are not supported");
  if (flag_of(model, "byte_fallback"))
    return ts_status_make(TS_ERR_UNSUPPORTED, "model: byte_fallback is not supported "
                                              "(a byte-level BPE does not need it)");
  t->ignore_merges = flag_of(model, "ignore_merges");
  const ts_json *vocab = ts_json_get(model, "vocab");
  if (!vocab || vocab->kind != TS_JSON_OBJECT)
    return bad("model.vocab", "missing or not an object");
  for (int b = 0; b < 256; b++)
    t->byte_ids[b] = -1;
  char *buf = malloc(1024);
  size_t buf_cap = 1024;
  if (!buf)
    return ts_status_nomem();
  ts_status s = NULL;
  for (size_t i = 0; i < vocab->count && !s; i++) {
    const ts_json *e = &vocab->items[i];
    if (e->kind != TS_JSON_NUMBER) {
      s = ts_status_make(TS_ERR_INVALID, "model.vocab: '%s' has no numeric id", e->key);
      break;
    }
    if (e->key_len > buf_cap) {
      char *nb = realloc(buf, e->key_len);
      if (!nb) {
        s = ts_status_nomem();
        break;
      }
      buf = nb;
      buf_cap = e->key_len;
    }
    size_t len;
    bool byte_level = unmap_bytes(e->key, e->key_len, buf, &len);
    s = set_token(t, e->number, byte_level ? buf : e->key, byte_level ? len : e->key_len,
                  false, false, "model.vocab");
    if (s || !byte_level)
      continue; /* (not reachable by merges: kept for decoding) */
    token *tk = &t->tokens[(size_t)e->number];
    s = ts_map_put(&t->vocab, (ts_str){tk->bytes, tk->len}, (void *)(uintptr_t)(e->number + 1));
    if (!s && len == 1)
      t->byte_ids[(unsigned char)buf[0]] = (int32_t)e->number;
  }
  if (s) {
    free(buf);
    return s;
  }
  for (int b = 0; b < 256 && !s; b++)
    if (t->byte_ids[b] < 0)
      s = ts_status_make(TS_ERR_UNSUPPORTED,
                         "model.vocab: byte 0x%02X has no token (not a byte-level BPE vocabulary)",
                         b);
  const ts_json *merges = ts_json_get(model, "merges");
  if (!s && merges && merges->kind != TS_JSON_ARRAY)
    s = bad("model.merges", "not an array");
  size_t count = merges && !s ? merges->count : 0;
  if (count) {
    t->pair_cap = 16;
    while (t->pair_cap < 2 * count)
      t->pair_cap *= 2;
    t->pair_keys = malloc(t->pair_cap * sizeof *t->pair_keys);
    t->pair_values = malloc(t->pair_cap * sizeof *t->pair_values);
    if (!t->pair_keys || !t->pair_values)
      s = ts_status_nomem();
    else
      memset(t->pair_keys, 0xFF, t->pair_cap * sizeof *t->pair_keys);
  }
  for (size_t r = 0; r < count && !s; r++) {
    const ts_json *m = &merges->items[r];
    const char *a, *b;
    size_t alen, blen;
    if (m->kind == TS_JSON_STRING) { /* "a b" */
      const char *sp = memchr(m->str, ' ', m->len);
      if (!sp || memchr(sp + 1, ' ', m->len - (size_t)(sp + 1 - m->str))) {
        s = ts_status_make(TS_ERR_INVALID, "model.merges[%zu]: '%s' is not two tokens", r,
                           m->str);
        break;
      }
      a = m->str, alen = (size_t)(sp - m->str), b = sp + 1, blen = m->len - alen - 1;
    } else if (m->kind == TS_JSON_ARRAY && m->count == 2 &&
               m->items[0].kind == TS_JSON_STRING && m->items[1].kind == TS_JSON_STRING) {
      a = m->items[0].str, alen = m->items[0].len, b = m->items[1].str, blen = m->items[1].len;
    } else {
      s = ts_status_make(TS_ERR_INVALID, "model.merges[%zu]: not \"a b\" or [a, b]", r);
      break;
    }
    if (alen + blen > buf_cap) {
      char *nb = realloc(buf, buf_cap = alen + blen);
      if (!nb) {
        s = ts_status_nomem();
        break;
      }
      buf = nb;
    }
    size_t la, lb;
    void *ia = NULL, *ib = NULL, *im = NULL;
    if (unmap_bytes(a, alen, buf, &la) && unmap_bytes(b, blen, buf + la, &lb)) {
      ia = ts_map_get(&t->vocab, (ts_str){buf, la});
      ib = ts_map_get(&t->vocab, (ts_str){buf + la, lb});
      im = ts_map_get(&t->vocab, (ts_str){buf, la + lb});
    }
    if (!ia || !ib || !im) {
      s = ts_status_make(TS_ERR_INVALID, "model.merges[%zu]: '%.*s' + '%.*s' %s", r, (int)alen,
                         a, (int)blen, b,
                         ia && ib ? "makes a token not in the vocabulary"
                                  : "names a token not in the vocabulary");
      break;
    }
    pair_put(t, (int32_t)(uintptr_t)ia - 1, (int32_t)(uintptr_t)ib - 1, (uint32_t)r,
             (int32_t)(uintptr_t)im - 1);
  }
  free(buf);
  return s;
}

static ts_status load_added(ts_tokenizer *t, const ts_json *list) {
  if (is_null(list))
    return NULL;
  if (list->kind != TS_JSON_ARRAY)
    return bad("added_tokens", "not an array");
  t->added = ts_arena_alloc(&t->arena, (list->count ? list->count : 1) * sizeof *t->added);
  if (!t->added)
    return ts_status_nomem();
  for (size_t i = 0; i < list->count; i++) {
    const ts_json *e = &list->items[i];
    const ts_json *id = ts_json_get(e, "id"), *content = ts_json_get(e, "content");
    if (!id || id->kind != TS_JSON_NUMBER || !content || content->kind != TS_JSON_STRING ||
        content->len == 0)
      return ts_status_make(TS_ERR_INVALID, "added_tokens[%zu]: needs an id and a content", i);
    bool special = flag_of(e, "special");
    TS_TRY(set_token(t, id->number, content->str, content->len, true, special, "added_tokens"));
    t->added_first[(unsigned char)content->str[0]] = true;
    added *a = &t->added[t->added_count++];
    *a = (added){content->str, content->len, (int32_t)id->number, flag_of(e, "lstrip"),
                 flag_of(e, "rstrip"), flag_of(e, "single_word")};
  }
  return NULL;
}

/* GPT-2's pattern, what ByteLevel's use_regex splits by. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static ts_status add_step(ts_tokenizer *t, const ts_json *p, const char *where) {
  const char *type = str_of(p, "type");
  if (!type)
    return ts_status_make(TS_ERR_INVALID, "%s: no type", where);
  if (!strcmp(type, "Sequence")) {
    const ts_json *list = ts_json_get(p, "pretokenizers");
    if (!list || list->kind != TS_JSON_ARRAY)
      return ts_status_make(TS_ERR_INVALID, "%s: a Sequence without pretokenizers", where);
    for (size_t i = 0; i < list->count; i++)
      TS_TRY(add_step(t, &list->items[i], where));
    return NULL;
  }
  if (t->step_count == MAX_STEPS)
    return ts_status_make(TS_ERR_UNSUPPORTED, "%s: more than %d steps", where, MAX_STEPS);
  step *st = &t->steps[t->step_count];
  memset(st, 0, sizeof *st);
  if (!strcmp(type, "ByteLevel")) {
    st->kind = STEP_BYTELEVEL;
    st->prefix_space = flag_of(p, "add_prefix_space");
    const ts_json *use = ts_json_get(p, "use_regex");
    if (!use || (use->kind == TS_JSON_BOOL && use->boolean)) /* HF's default: true */
      TS_TRY(ts_regex_compile(gpt2_pattern, sizeof gpt2_pattern - 1, &st->regex));
    st->behavior = B_ISOLATED;
    t->step_count++;
    return NULL;
  }
  if (strcmp(type, "Split"))
    return ts_status_make(TS_ERR_UNSUPPORTED,
                          "%s: type '%s' (Split, ByteLevel and Sequence are supported)", where,
                          type);
  st->kind = STEP_SPLIT;
  const ts_json *pat = ts_json_get(p, "pattern");
  const char *rx = str_of(pat, "Regex"), *lit = str_of(pat, "String");
  if (rx) {
    ts_status s = ts_regex_compile(rx, ts_json_get(pat, "Regex")->len, &st->regex);
    if (s)
      return ts_status_annotate(s, "%s", where);
  } else if (lit && *lit) {
    st->literal_len = ts_json_get(pat, "String")->len;
    st->literal = ts_arena_strndup(&t->arena, lit, st->literal_len);
    if (!st->literal)
      return ts_status_nomem();
  } else {
    return ts_status_make(TS_ERR_INVALID, "%s: a Split without a Regex or String pattern", where);
  }
  static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                      "MergedWithNext", "Contiguous"};
  const char *b = str_of(p, "behavior");
  size_t k = 0;
  while (k < TS_ARRAY_COUNT(names) && (!b || strcmp(b, names[k])))
    k++;
  if (k == TS_ARRAY_COUNT(names)) {
    ts_regex_destroy(st->regex);
    return ts_status_make(TS_ERR_INVALID, "%s: Split behavior '%s'", where, b ? b : "(none)");
  }
  st->behavior = (behavior)k;
  st->invert = flag_of(p, "invert");
  t->step_count++;
  return NULL;
}

static ts_status template_ids(const ts_json *special, const char *name,
                              int32_t *out, size_t *count) {
  const ts_json *e = ts_json_get(special, name), *ids = ts_json_get(e, "ids");
  if (!ids || ids->kind != TS_JSON_ARRAY)
    return ts_status_make(TS_ERR_INVALID, "post_processor: special token '%s' has no ids", name);
  for (size_t i = 0; i < ids->count; i++) {
    if (*count == MAX_TEMPLATE || ids->items[i].kind != TS_JSON_NUMBER)
      return ts_status_make(TS_ERR_INVALID, "post_processor: bad ids for '%s'", name);
    out[(*count)++] = (int32_t)ids->items[i].number;
  }
  return NULL;
}

static ts_status load_post(ts_tokenizer *t, const ts_json *p) {
  if (is_null(p))
    return NULL;
  const char *type = str_of(p, "type");
  if (type && !strcmp(type, "Sequence")) {
    const ts_json *list = ts_json_get(p, "processors");
    for (size_t i = 0; list && i < list->count; i++)
      TS_TRY(load_post(t, &list->items[i]));
    return NULL;
  }
  if (type && !strcmp(type, "ByteLevel"))
    return NULL; /* offsets only */
  if (!type || strcmp(type, "TemplateProcessing"))
    return ts_status_make(TS_ERR_UNSUPPORTED, "post_processor: type '%s' is not supported",
                          type ? type : "(none)");
  const ts_json *single = ts_json_get(p, "single"), *special = ts_json_get(p, "special_tokens");
  if (!single || single->kind != TS_JSON_ARRAY)
    return bad("post_processor", "a template without 'single'");
  bool seen_text = false;
  for (size_t i = 0; i < single->count; i++) {
    const ts_json *piece = &single->items[i];
    const ts_json *sp = ts_json_get(piece, "SpecialToken");
    if (ts_json_get(piece, "Sequence")) {
      if (seen_text)
        return bad("post_processor", "two sequences in 'single'");
      seen_text = true;
    } else if (str_of(sp, "id")) {
      TS_TRY(template_ids(special, str_of(sp, "id"), seen_text ? t->suffix : t->prefix,
                          seen_text ? &t->suffix_count : &t->prefix_count));
    } else {
      return bad("post_processor", "a 'single' entry neither SpecialToken nor Sequence");
    }
  }
  return NULL;
}

static ts_status load_doc(ts_tokenizer *t, const ts_json *root) {
  if (root->kind != TS_JSON_OBJECT)
    return bad("tokenizer", "not a JSON object");
  const ts_json *norm = ts_json_get(root, "normalizer");
  if (!is_null(norm)) {
    const char *type = str_of(norm, "type");
    const ts_json *list = ts_json_get(norm, "normalizers");
    if (!type || strcmp(type, "Sequence") || !list || list->count)
      return ts_status_make(TS_ERR_UNSUPPORTED, "normalizer: type '%s' is not supported",
                            type ? type : "(none)");
  }
  TS_TRY(load_model(t, ts_json_get(root, "model")));
  TS_TRY(load_added(t, ts_json_get(root, "added_tokens")));
  const ts_json *pre = ts_json_get(root, "pre_tokenizer");
  if (!is_null(pre))
    TS_TRY(add_step(t, pre, "pre_tokenizer"));
  bool byte_level = false;
  for (size_t i = 0; i < t->step_count; i++)
    byte_level |= t->steps[i].kind == STEP_BYTELEVEL;
  if (!byte_level)
    return ts_status_make(TS_ERR_UNSUPPORTED,
                          "pre_tokenizer: no ByteLevel step (only byte-level BPE is supported)");
  const ts_json *dec = ts_json_get(root, "decoder");
  const char *dtype = str_of(dec, "type");
  if (!is_null(dec) && (!dtype || strcmp(dtype, "ByteLevel")))
    return ts_status_make(TS_ERR_UNSUPPORTED, "decoder: type '%s' (ByteLevel is supported)",
                          dtype ? dtype : "(none)");
  return load_post(t, ts_json_get(root, "post_processor"));
}

ts_status ts_tokenizer_parse(const char *text, size_t len, ts_tokenizer **out) {
  ts_json_doc doc;
  TS_TRY(ts_json_parse(text, len, &doc));
  ts_tokenizer *t = calloc(1, sizeof *t);
  if (!t) {
    ts_json_doc_deinit(&doc);
    return ts_status_nomem();
  }
  ts_arena_init(&t->arena, ts_allocator_system());
  ts_map_init(&t->vocab, ts_allocator_system());
  ts_status s = load_doc(t, doc.root);
  for (size_t i = 0; !s && i < t->added_count; i++) /* (the document's strings go next) */
    t->added[i].content = t->tokens[t->added[i].id].bytes;
  ts_json_doc_deinit(&doc);
  if (s) {
    ts_tokenizer_destroy(t);
    return s;
  }
  *out = t;
  return NULL;
}

ts_status ts_tokenizer_load(const char *path, ts_tokenizer **out) {
  char *text;
  size_t len;
  TS_TRY(ts_file_read(ts_allocator_system(), path, &text, &len));
  ts_status s = ts_tokenizer_parse(text, len, out);
  ts_release(ts_allocator_system(), text, len + 1);
  return s ? ts_status_annotate(s, "%s", path) : NULL;
}

void ts_tokenizer_destroy(ts_tokenizer *t) {
  if (!t)
    return;
  for (size_t i = 0; i < t->step_count; i++)
    ts_regex_destroy(t->steps[i].regex);
  ts_map_deinit(&t->vocab);
  free(t->pair_keys);
  free(t->pair_values);
  free(t->tokens);
  ts_arena_deinit(&t->arena);
  free(t);
}

/* ---- pre-tokenizing ------------------------------------------------------------------ */

typedef struct span {
  size_t start, end; /* bytes */
  bool match;
} span;

typedef struct spans {
  span *v;
  size_t count, cap;
  bool failed;
} spans;

/* p resized to n elements of `size` bytes; on failure p as it was and *ok
 * false (so that several arrays can grow before one check). */
static void *grow(void *p, size_t n, size_t size, bool *ok) {
  void *q = realloc(p, n * size);
  if (!q) {
    *ok = false;
    return p;
  }
  return q;
}

static void push_span(spans *s, size_t start, size_t end, bool match) {
  if (s->count == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    span *v = realloc(s->v, cap * sizeof *v);
    if (!v) {
      s->failed = true;
      return;
    }
    s->v = v;
    s->cap = cap;
  }
  s->v[s->count++] = (span){start, end, match};
}

typedef struct scratch {
  uint32_t *cps;
  size_t *offs, cap;
  spans found, next;
} scratch;

/* Where st's pattern matches text[start, end) (byte offsets), with the gaps
 * between as unmatched spans, into sc->found (cleared first). */
static ts_status find_all(const step *st, const char *text, size_t start, size_t end,
                          scratch *sc) {
  sc->found.count = 0;
  if (st->literal) {
    size_t prev = start, i = start, n = st->literal_len;
    while (i + n <= end) {
      if (!memcmp(text + i, st->literal, n)) {
        if (prev != i)
          push_span(&sc->found, prev, i, false);
        push_span(&sc->found, i, i + n, true);
        prev = i += n;
      } else {
        i++;
      }
    }
    if (prev != end)
      push_span(&sc->found, prev, end, false);
    return NULL;
  }
  size_t n = 0;
  if (end - start + 1 > sc->cap) {
    size_t cap = end - start + 1;
    bool ok = true;
    sc->cps = grow(sc->cps, cap, sizeof *sc->cps, &ok);
    sc->offs = grow(sc->offs, cap, sizeof *sc->offs, &ok);
    if (!ok)
      return ts_status_nomem();
    sc->cap = cap;
  }
  for (size_t i = start; i < end;) { /* a byte of invalid UTF-8 is a code point of its own */
    uint32_t cp;
    size_t k = ts_utf8_decode(text + i, end - i, &cp);
    if (!k) {
      cp = 0x110000u + (unsigned char)text[i];
      k = 1;
    }
    sc->cps[n] = cp;
    sc->offs[n++] = i;
    i += k;
  }
  sc->offs[n] = end;
  size_t prev = 0, from = 0;
  while (from <= n) {
    bool found;
    size_t a, b;
    TS_TRY(ts_regex_find(st->regex, sc->cps, n, from, &found, &a, &b));
    if (!found)
      break;
    if (prev != a)
      push_span(&sc->found, sc->offs[prev], sc->offs[a], false);
    push_span(&sc->found, sc->offs[a], sc->offs[b], true);
    prev = b;
    from = b > a ? b : b + 1;
  }
  if (prev != n)
    push_span(&sc->found, sc->offs[prev], end, false);
  return NULL;
}

/* Splits one piece by a step's matches as its behavior says (HF tokenizers'
 * SplitDelimiterBehavior), appending the non-empty results to sc->next. */
static ts_status split_piece(const step *st, const char *text, span piece, scratch *sc) {
  TS_TRY(find_all(st, text, piece.start, piece.end, sc));
  if (sc->found.failed)
    return ts_status_nomem();
  span *f = sc->found.v;
  size_t n = sc->found.count, first = sc->next.count;
  bool prev_match = false;
  for (size_t i = 0; i < n; i++) {
    size_t k = st->behavior == B_NEXT ? n - 1 - i : i; /* MergedWithNext folds from the end */
    bool m = f[k].match != st->invert;
    span *last = sc->next.count > first ? &sc->next.v[sc->next.count - 1] : NULL;
    switch (st->behavior) {
    case B_REMOVED:
      if (!m)
        push_span(&sc->next, f[k].start, f[k].end, false);
      break;
    case B_ISOLATED:
      push_span(&sc->next, f[k].start, f[k].end, false);
      break;
    case B_PREVIOUS:
    case B_NEXT:
      if (m && !prev_match && last) {
        if (st->behavior == B_PREVIOUS)
          last->end = f[k].end;
        else
          last->start = f[k].start;
      } else {
        push_span(&sc->next, f[k].start, f[k].end, false);
      }
      break;
    case B_CONTIGUOUS:
      if (m == prev_match && last)
        last->end = f[k].end;
      else
        push_span(&sc->next, f[k].start, f[k].end, false);
      break;
    }
    prev_match = m;
  }
  if (st->behavior == B_NEXT) /* back into text order */
    for (size_t i = first, j = sc->next.count; i + 1 < j; i++, j--) {
      span tmp = sc->next.v[i];
      sc->next.v[i] = sc->next.v[j - 1];
      sc->next.v[j - 1] = tmp;
    }
  size_t kept = first;
  for (size_t i = first; i < sc->next.count; i++)
    if (sc->next.v[i].end > sc->next.v[i].start)
      sc->next.v[kept++] = sc->next.v[i];
  sc->next.count = kept;
  return sc->next.failed ? ts_status_nomem() : NULL;
}

/* The pre-tokenizer's pieces of text[start, end), into out (appended). */
static ts_status pre_tokenize(const ts_tokenizer *t, const char *text, size_t start, size_t end,
                              spans *out) {
  scratch sc = {0};
  spans cur = {0};
  push_span(&cur, start, end, false);
  ts_status s = NULL;
  for (size_t i = 0; i < t->step_count && !s && !cur.failed; i++) {
    const step *st = &t->steps[i];
    if (!st->regex && !st->literal)
      continue;
    sc.next.count = 0;
    for (size_t k = 0; k < cur.count && !s; k++)
      s = split_piece(st, text, cur.v[k], &sc);
    spans tmp = cur;
    cur = sc.next;
    sc.next = tmp;
  }
  for (size_t k = 0; k < cur.count && !s; k++)
    push_span(out, cur.v[k].start, cur.v[k].end, false);
  if (!s && (cur.failed || out->failed))
    s = ts_status_nomem();
  free(cur.v);
  free(sc.next.v);
  free(sc.found.v);
  free(sc.cps);
  free(sc.offs);
  return s;
}

/* ---- BPE ------------------------------------------------------------------------------- */

typedef struct ids {
  int32_t *v;
  size_t count, cap;
  bool failed;
} ids;

static void push_id(ids *o, int32_t id) {
  if (o->count == o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 256;
    int32_t *v = realloc(o->v, cap * sizeof *v);
    if (!v) {
      o->failed = true;
      return;
    }
    o->v = v;
    o->cap = cap;
  }
  o->v[o->count++] = id;
}

typedef struct merge {
  uint32_t rank;
  int32_t id;
  size_t pos;
} merge;

static bool before(const merge *a, const merge *b) {
  return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(merge *h, size_t *n, merge m) {
  size_t i = (*n)++;
  while (i > 0 && before(&m, &h[(i - 1) / 2])) {
    h[i] = h[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  h[i] = m;
}

static merge heap_pop(merge *h, size_t *n) {
  merge top = h[0], last = h[--*n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= *n)
      break;
    if (c + 1 < *n && before(&h[c + 1], &h[c]))
      c++;
    if (!before(&h[c], &last))
      break;
    h[i] = h[c];
    i = c;
  }
  if (*n)
    h[i] = last;
  return top;
}

static void try_pair(const ts_tokenizer *t, const int32_t *sym, size_t a, size_t b, merge *h,
                     size_t *n) {
  uint32_t rank;
  int32_t id;
  if (pair_get(t, sym[a], sym[b], &rank, &id))
    heap_push(h, n, (merge){rank, id, a});
}

/* What one encode call reuses across its pieces: the merge arrays, grown to
 * the longest piece so far (they were allocated for every piece), and a
 * cache of the pieces already merged, as HF's BPE keeps one: a text repeats
 * its words, and a piece's tokens depend on its bytes alone. The cache
 * holds pieces of 2..CACHE_MAX_LEN bytes, at most CACHE_ENTRIES of them (a
 * fixed open-addressing table of twice that, keys and tokens in two
 * growing arrays); when full it is used but no longer grown. */
enum { CACHE_MAX_LEN = 256, CACHE_ENTRIES = 1 << 15, CACHE_SLOTS = 2 * CACHE_ENTRIES };

typedef struct cached {
  uint64_t hash;
  uint32_t key, key_len, val, val_len; /* offsets into keys and vals */
} cached;

typedef struct work {
  int32_t *sym;
  size_t *next, *prev;
  bool *dead;
  merge *heap;
  size_t cap;
  cached *slots; /* CACHE_SLOTS, allocated at the first insert */
  size_t entries;
  ts_buf keys;
  ids vals;
} work;

static void work_deinit(work *w) {
  free(w->sym), free(w->next), free(w->prev), free(w->dead), free(w->heap);
  free(w->slots);
  ts_buf_deinit(&w->keys);
  free(w->vals.v);
}

static bool work_reserve(work *w, size_t n) {
  if (n <= w->cap)
    return true;
  size_t cap = n < 64 ? 64 : n;
  bool ok = true;
  w->sym = grow(w->sym, cap, sizeof *w->sym, &ok);
  w->next = grow(w->next, cap, sizeof *w->next, &ok);
  w->prev = grow(w->prev, cap, sizeof *w->prev, &ok);
  w->dead = grow(w->dead, cap, sizeof *w->dead, &ok);
  w->heap = grow(w->heap, 3 * cap, sizeof *w->heap, &ok);
  if (ok)
    w->cap = cap;
  return ok;
}

/* The cache's slot for piece s[0..n) of hash h: its entry, or the empty
 * slot where it would go. */
static cached *cache_slot(work *w, const char *s, size_t n, uint64_t h) {
  for (size_t i = h & (CACHE_SLOTS - 1);; i = (i + 1) & (CACHE_SLOTS - 1)) {
    cached *c = &w->slots[i];
    if (!c->key_len || (c->hash == h && c->key_len == n && !memcmp(w->keys.ptr + c->key, s, n)))
      return c;
  }
}

/* One piece's bytes to tokens: start from its bytes, apply the merges lowest
 * rank first (leftmost first among equals), as HF's BPE::merge_word does. */
static ts_status bpe(const ts_tokenizer *t, const char *s, size_t n, ids *out, work *w) {
  if (n == 0)
    return NULL;
  if (t->ignore_merges || n == 1) {
    void *whole = ts_map_get(&t->vocab, (ts_str){s, n});
    if (whole) {
      push_id(out, (int32_t)(uintptr_t)whole - 1);
      return NULL;
    }
  }
  bool cacheable = n <= CACHE_MAX_LEN;
  uint64_t h = cacheable ? ts_hash_bytes(s, n, 0x9e3779b97f4a7c15u) : 0;
  cached *slot = cacheable && w->slots ? cache_slot(w, s, n, h) : NULL;
  if (slot && slot->key_len) {
    for (uint32_t i = 0; i < slot->val_len; i++)
      push_id(out, w->vals.v[slot->val + i]);
    return out->failed ? ts_status_nomem() : NULL;
  }
  if (!work_reserve(w, n))
    return ts_status_nomem();
  int32_t *sym = w->sym;
  size_t *next = w->next, *prev = w->prev;
  bool *dead = w->dead;
  merge *heap = w->heap;
  size_t hn = 0;
  for (size_t i = 0; i < n; i++) {
    sym[i] = t->byte_ids[(unsigned char)s[i]];
    next[i] = i + 1 < n ? i + 1 : SIZE_MAX;
    prev[i] = i ? i - 1 : SIZE_MAX;
    dead[i] = false;
  }
  for (size_t i = 0; i + 1 < n; i++)
    try_pair(t, sym, i, i + 1, heap, &hn);
  while (hn) {
    merge m = heap_pop(heap, &hn);
    size_t r = next[m.pos];
    uint32_t rank;
    int32_t id;
    if (dead[m.pos] || r == SIZE_MAX || !pair_get(t, sym[m.pos], sym[r], &rank, &id) ||
        id != m.id)
      continue; /* out of date */
    sym[m.pos] = id;
    dead[r] = true;
    next[m.pos] = next[r];
    if (next[r] != SIZE_MAX)
      prev[next[r]] = m.pos;
    if (prev[m.pos] != SIZE_MAX)
      try_pair(t, sym, prev[m.pos], m.pos, heap, &hn);
    if (next[m.pos] != SIZE_MAX)
      try_pair(t, sym, m.pos, next[m.pos], heap, &hn);
  }
  size_t first = out->count;
  for (size_t i = 0; i != SIZE_MAX; i = next[i])
    push_id(out, sym[i]);
  if (out->failed)
    return ts_status_nomem();
  if (!cacheable || w->entries == CACHE_ENTRIES)
    return NULL;
  if (!w->slots) { /* the first insert (an allocation failure only skips caching) */
    w->slots = calloc(CACHE_SLOTS, sizeof *w->slots);
    if (!w->slots)
      return NULL;
    ts_buf_init(&w->keys, ts_allocator_system());
    slot = cache_slot(w, s, n, h);
  }
  size_t key = w->keys.len, val = w->vals.count;
  ts_buf_append(&w->keys, s, n);
  for (size_t i = first; i < out->count; i++)
    push_id(&w->vals, out->v[i]);
  if (w->keys.failed || w->vals.failed || w->keys.len > UINT32_MAX ||
      w->vals.count > UINT32_MAX) {
    w->entries = CACHE_ENTRIES; /* stop caching; what is cached stays valid */
    return NULL;
  }
  *slot = (cached){h, (uint32_t)key, (uint32_t)n, (uint32_t)val, (uint32_t)(out->count - first)};
  w->entries++;
  return NULL;
}

/* ---- encoding ---------------------------------------------------------------------------- */

static bool word_byte(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool space_byte(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* The added token at text[i] (leftmost, then longest), or NULL. */
static const added *added_at(const ts_tokenizer *t, const char *text, size_t len, size_t i) {
  const added *best = NULL;
  for (size_t k = 0; k < t->added_count; k++) {
    const added *a = &t->added[k];
    if (a->len > len - i || a->content[0] != text[i] || (best && a->len <= best->len) ||
        memcmp(text + i, a->content, a->len))
      continue;
    if (a->single_word && ((i > 0 && word_byte((unsigned char)text[i - 1])) ||
                           (i + a->len < len && word_byte((unsigned char)text[i + a->len]))))
      continue;
    best = a;
  }
  return best;
}

/* Text outside the added tokens, pre-tokenized and merged (or, with
 * `pieces`, only pre-tokenized). */
static ts_status encode_text(const ts_tokenizer *t, const char *text, size_t start, size_t end,
                             ids *out, spans *pieces, work *w) {
  if (start >= end)
    return NULL;
  char *own = NULL;
  const step *first = t->step_count ? &t->steps[0] : NULL;
  if (first && first->kind == STEP_BYTELEVEL && first->prefix_space && text[start] != ' ') {
    own = malloc(end - start + 1); /* ByteLevel's add_prefix_space */
    if (!own)
      return ts_status_nomem();
    own[0] = ' ';
    memcpy(own + 1, text + start, end - start);
    end = end - start + 1;
    start = 0;
    text = own;
  }
  spans local = {0}, *sp = pieces ? pieces : &local;
  size_t from = sp->count;
  ts_status s = pre_tokenize(t, text, start, end, sp);
  for (size_t i = from; i < sp->count && !s && !pieces; i++)
    s = bpe(t, text + sp->v[i].start, sp->v[i].end - sp->v[i].start, out, w);
  if (pieces && own) /* offsets into the caller's text: the added space is at -1 */
    for (size_t i = from; i < sp->count; i++)
      sp->v[i].start = sp->v[i].start ? sp->v[i].start - 1 : 0, sp->v[i].end--;
  free(local.v);
  free(own);
  return s;
}

static ts_status run_with(const ts_tokenizer *t, const char *text, size_t len, bool add_special,
                          ids *out, spans *pieces, work *w) {
  for (size_t k = 0; add_special && k < t->prefix_count; k++)
    push_id(out, t->prefix[k]);
  size_t seg = 0, i = 0;
  while (i < len) {
    const added *a = t->added_first[(unsigned char)text[i]] ? added_at(t, text, len, i) : NULL;
    if (!a) {
      i++;
      continue;
    }
    size_t seg_end = i;
    if (a->lstrip)
      while (seg_end > seg && space_byte(text[seg_end - 1]))
        seg_end--;
    TS_TRY(encode_text(t, text, seg, seg_end, out, pieces, w));
    push_id(out, a->id);
    i += a->len;
    if (a->rstrip)
      while (i < len && space_byte(text[i]))
        i++;
    seg = i;
  }
  TS_TRY(encode_text(t, text, seg, len, out, pieces, w));
  for (size_t k = 0; add_special && k < t->suffix_count; k++)
    push_id(out, t->suffix[k]);
  return out->failed ? ts_status_nomem() : NULL;
}

static ts_status run(const ts_tokenizer *t, const char *text, size_t len, bool add_special,
                     ids *out, spans *pieces) {
  work w = {0};
  ts_status s = run_with(t, text, len, add_special, out, pieces, &w);
  work_deinit(&w);
  return s;
}

ts_status ts_tokenizer_encode(const ts_tokenizer *t, const char *text, size_t len,
                              bool add_special, int32_t **out_ids, size_t *out_count) {
  ids o = {0};
  ts_status s = run(t, text, len, add_special, &o, NULL);
  if (s) {
    free(o.v);
    return s;
  }
  *out_ids = o.v;
  *out_count = o.count;
  return NULL;
}

ts_status ts_tokenizer_pieces(const ts_tokenizer *t, const char *text, size_t len,
                              size_t **out_offsets, size_t *out_count) {
  ids o = {0};
  spans sp = {0};
  ts_status s = run(t, text, len, false, &o, &sp);
  free(o.v);
  size_t *offs = s ? NULL : malloc((sp.count ? sp.count : 1) * 2 * sizeof *offs);
  if (!s && !offs)
    s = ts_status_nomem();
  if (s) {
    free(sp.v);
    return s;
  }
  for (size_t i = 0; i < sp.count; i++) {
    offs[2 * i] = sp.v[i].start;
    offs[2 * i + 1] = sp.v[i].end;
  }
  *out_offsets = offs;
  *out_count = sp.count;
  free(sp.v);
  return NULL;
}

/* ---- decoding and the vocabulary ---------------------------------------------------------- */

ts_status ts_tokenizer_decode(const ts_tokenizer *t, const int32_t *list, size_t count,
                              bool skip_special, ts_buf *out) {
  for (size_t i = 0; i < count; i++) {
    int32_t id = list[i];
    if (id < 0 || (size_t)id >= t->token_count || !t->tokens[id].bytes)
      return ts_status_make(TS_ERR_INVALID, "token %zu: id %d is not in the vocabulary", i, id);
    if (skip_special && t->tokens[id].special)
      continue;
    ts_buf_append(out, t->tokens[id].bytes, t->tokens[id].len);
  }
  return out->failed ? ts_status_nomem() : NULL;
}

size_t ts_tokenizer_vocab_count(const ts_tokenizer *t) {
  size_t n = t->token_count;
  while (n > 0 && !t->tokens[n - 1].bytes)
    n--;
  return n;
}

const char *ts_tokenizer_token(const ts_tokenizer *t, int32_t id, size_t *out_len,
                               bool *out_special) {
  if (id < 0 || (size_t)id >= t->token_count || !t->tokens[id].bytes)
    return NULL;
  *out_len = t->tokens[id].len;
  *out_special = t->tokens[id].special;
  return t->tokens[id].bytes;
}

int32_t ts_tokenizer_id(const ts_tokenizer *t, const char *s, size_t len) {
  for (size_t k = 0; k < t->added_count; k++)
    if (t->added[k].len == len && !memcmp(t->added[k].content, s, len))
      return t->added[k].id;
  void *v = ts_map_get(&t->vocab, (ts_str){s, len});
  return v ? (int32_t)(uintptr_t)v - 1 : -1;
}
