/* base.h - the bottom layer of Tessera: status values, allocators and
 * arenas, string builders, hash maps, files, source texts with line tables,
 * and the diagnostic sink that renders `path:line:col: error: ...`.
 * Nothing here knows about the .tile language. Types are not thread-safe
 * unless a comment says so; functions with no shared state are. */
#ifndef TS_BASE_H
#define TS_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define TS_VERSION_STRING "0.1.0"

#if defined(__GNUC__)
#define TS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define TS_MUST_USE __attribute__((warn_unused_result))
#else
#define TS_PRINTF(f, a)
#define TS_MUST_USE
#endif

#define TS_ARRAY_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- status: errors of the system (I/O, memory, foreign calls) ---------- */

typedef enum ts_code {
  TS_OK = 0,
  TS_ERR_NOMEM,
  TS_ERR_IO,
  TS_ERR_INVALID, /* bad argument from the caller */
  TS_ERR_NOT_FOUND,
  TS_ERR_UNSUPPORTED, /* not built yet, or not on this machine */
  TS_ERR_PROGRAM,     /* the .tile program has errors (see the diagnostics) */
  TS_ERR_INTERNAL,
} ts_code;

/* NULL means success. A non-NULL status is owned by whoever holds it and is
 * released with ts_status_free (the static out-of-memory status too: freeing
 * it is a no-op). */
typedef struct ts_status_rec *ts_status;

ts_status ts_status_make(ts_code code, const char *fmt, ...) TS_PRINTF(2, 3);
/* Prefixes context ("loading x: " + old message). Takes `s`, returns it. */
ts_status ts_status_annotate(ts_status s, const char *fmt, ...) TS_PRINTF(2, 3);
ts_code ts_status_code(ts_status s);
const char *ts_status_message(ts_status s);
void ts_status_free(ts_status s);
/* The never-allocating out-of-memory status. */
ts_status ts_status_nomem(void);

#define TS_TRY(expr)                                                           \
  do {                                                                         \
    ts_status ts_try_s_ = (expr);                                              \
    if (ts_try_s_)                                                             \
      return ts_try_s_;                                                        \
  } while (0)

/* ---- allocators -------------------------------------------------------- */

/* An allocator is passed in to whoever allocates. `alloc` returns NULL on
 * failure; `resize` keeps the old block on failure. */
typedef struct ts_allocator {
  void *(*alloc)(void *ctx, size_t size);
  void *(*resize)(void *ctx, void *ptr, size_t old_size, size_t new_size);
  void (*release)(void *ctx, void *ptr, size_t size);
  void *ctx;
} ts_allocator;

/* malloc/realloc/free. Thread-safe. */
const ts_allocator *ts_allocator_system(void);

/* A test allocator that fails the `fail_at`-th call (1-based; 0 = never)
 * and every call after it when `sticky`. Counts calls in `calls`. */
typedef struct ts_failing_allocator {
  ts_allocator base;
  uint64_t calls, fail_at;
  bool sticky;
} ts_failing_allocator;
void ts_failing_allocator_init(ts_failing_allocator *fa, uint64_t fail_at,
                               bool sticky);

void *ts_alloc(const ts_allocator *a, size_t size);
void *ts_resize(const ts_allocator *a, void *p, size_t old_size,
                size_t new_size);
void ts_release(const ts_allocator *a, void *p, size_t size);

/* ---- arena: one per compilation, freed at once --------------------------- */

typedef struct ts_arena_chunk ts_arena_chunk;
typedef struct ts_arena {
  const ts_allocator *alloc;
  ts_arena_chunk *head;
  size_t used, cap;
  bool failed; /* set once an allocation has failed */
} ts_arena;

void ts_arena_init(ts_arena *a, const ts_allocator *alloc);
void ts_arena_deinit(ts_arena *a);
/* Zeroed memory, 16-byte aligned; NULL (and a->failed) on failure. */
void *ts_arena_alloc(ts_arena *a, size_t size);
char *ts_arena_strndup(ts_arena *a, const char *s, size_t len);

/* ---- strings ------------------------------------------------------------- */

typedef struct ts_str {
  const char *ptr;
  size_t len;
} ts_str;

#define TS_STR_LIT(s) ((ts_str){(s), sizeof(s) - 1})
ts_str ts_str_from(const char *cstr);
bool ts_str_eq(ts_str a, ts_str b);
bool ts_str_eq_cstr(ts_str a, const char *b);

/* A growable byte buffer, always NUL-terminated when `ptr` is non-NULL.
 * On allocation failure `failed` is set and further appends are ignored. */
typedef struct ts_buf {
  const ts_allocator *alloc;
  char *ptr;
  size_t len, cap;
  bool failed;
} ts_buf;

void ts_buf_init(ts_buf *b, const ts_allocator *alloc);
void ts_buf_deinit(ts_buf *b);
void ts_buf_clear(ts_buf *b);
void ts_buf_append(ts_buf *b, const char *s, size_t len);
void ts_buf_puts(ts_buf *b, const char *s);
void ts_buf_putc(ts_buf *b, char c);
void ts_buf_printf(ts_buf *b, const char *fmt, ...) TS_PRINTF(2, 3);
void ts_buf_vprintf(ts_buf *b, const char *fmt, va_list ap);
/* Appends `s` quoted for a message: printable ASCII as is, other bytes as
 * \xNN, cut to `max` characters with "..." after. */
void ts_buf_put_quoted(ts_buf *b, const char *s, size_t len, size_t max);

/* 64-bit FNV-1a. */
uint64_t ts_hash_bytes(const void *p, size_t len, uint64_t seed);

/* ---- map: ts_str -> void*, open addressing, keys borrowed -------------- */

typedef struct ts_map_slot {
  ts_str key;
  uint64_t hash;
  void *value;
} ts_map_slot;

typedef struct ts_map {
  const ts_allocator *alloc;
  ts_map_slot *slots;
  size_t count, cap;
} ts_map;

void ts_map_init(ts_map *m, const ts_allocator *alloc);
void ts_map_deinit(ts_map *m);
void *ts_map_get(const ts_map *m, ts_str key);
/* Inserts or replaces. Fails only for memory. */
TS_MUST_USE ts_status ts_map_put(ts_map *m, ts_str key, void *value);

/* ---- files ----------------------------------------------------------------
 */

/* Reads a whole file. On success *out_data (NUL-terminated, owned, release
 * with `alloc`, size *out_len + 1). */
TS_MUST_USE ts_status ts_file_read(const ts_allocator *alloc, const char *path,
                                   char **out_data, size_t *out_len);
/* Writes a file atomically: a temp file in the same folder, then rename. */
TS_MUST_USE ts_status ts_file_write_atomic(const char *path, const void *data,
                                           size_t len);

/* Runs the tool argv[0] (looked up in PATH) with argv to completion, its
 * standard output discarded. With `err`, its standard error is appended
 * there (the first 64 KiB), else discarded. Returns its exit status, or -1
 * when it could not be started or did not exit (a signal). (proc.c) */
int ts_run_tool(char *const argv[], ts_buf *err);
/* A yes/no setting from the environment: 1, on, true or yes, and 0, off,
 * false or no (any case); unset or empty: dflt. Another value is reported
 * on stderr (once a process for each variable) and dflt used. (proc.c) */
bool ts_env_flag(const char *name, bool dflt);
/* Which of those words v is: 1 (yes), 0 (no), -1 (neither). */
int ts_flag_word(const char *v);

/* ---- the on-disk cache of compiled artifacts (cache.c) ---------------------
 * One file per entry in a folder, named by a 128-bit key hashed from
 * everything the artifact depends on (not cryptographic: for telling builds
 * apart, not for trust). An entry has a header (magic, key, length,
 * checksum) checked on every read; a damaged entry is removed and reads as
 * a miss, with a warning. Writes go to a temp file that is renamed, so
 * concurrent readers and writers of one folder see whole entries only. */

typedef struct ts_cache_key {
  uint64_t h[2];
} ts_cache_key;

void ts_cache_key_init(ts_cache_key *k);
void ts_cache_key_add(ts_cache_key *k, const void *p, size_t len);
void ts_cache_key_add_str(ts_cache_key *k, const char *s); /* NULL as "" */
void ts_cache_key_hex(const ts_cache_key *k, char out[33]);
/* The cache folder: $TESSERA_CACHE, else $XDG_CACHE_HOME/tessera, else
 * $HOME/.cache/tessera. Returns buf. */
const char *ts_cache_dir(char *buf, size_t size);
/* mkdir -p */
TS_MUST_USE ts_status ts_make_dirs(const char *dir);
/* On a hit, appends the artifact to `out` and sets *hit. A damaged entry is
 * a miss; why is appended to `warning` (when not NULL). */
TS_MUST_USE ts_status ts_cache_get(const char *dir, const ts_cache_key *k,
                                   ts_buf *out, bool *hit, ts_buf *warning);
/* Stores an artifact (creating the folder). The first store of a process
 * then sweeps the folder (ts_cache_sweep). */
TS_MUST_USE ts_status ts_cache_put(const char *dir, const ts_cache_key *k,
                                   const void *data, size_t len);
/* The cache's limits, applied to the files of `dir` named *`suffix` (the
 * entries, ".tsc"; the CPU code's shared objects, ".so"): those unused for
 * $TESSERA_CACHE_MAX_DAYS days (default 30) are removed, and the least
 * recently used beyond $TESSERA_CACHE_MAX_MB MiB (default 1024); a hit
 * marks an entry used (its modification time). */
void ts_cache_sweep(const char *dir, const char *suffix);

/* ---- sources: text plus a line table ------------------------------------- */

typedef struct ts_source {
  const char *name; /* as given by the user, for messages */
  const char *text; /* NUL-terminated; may contain NUL bytes before `len` */
  uint32_t len;
  uint32_t *line_starts; /* byte offset of each line's first byte */
  uint32_t line_count;
  /* A unit's text may join several files (a `.tile` file and those it
   * `use`s, each starting on a line of its own): where each starts. NULL
   * when the text is one file, `name`. */
  struct ts_source_file *files;
  uint32_t file_count;
} ts_source;

/* A file of a joined source: its name, its first byte and its first line
 * (0-based) in the joined text. */
typedef struct ts_source_file {
  const char *name;
  uint32_t lo, line0;
} ts_source_file;

/* Builds the line table ("\n", "\r\n" end a line). The text is borrowed and
 * must outlive the source. Fails for memory or if the text exceeds 2 GiB. */
TS_MUST_USE ts_status ts_source_init(ts_source *s, const ts_allocator *alloc,
                                     const char *name, const char *text,
                                     size_t len);
void ts_source_deinit(ts_source *s, const ts_allocator *alloc);
/* 1-based line and column (column counts UTF-8 characters; a tab is one),
 * within the file that holds the offset. */
void ts_source_position(const ts_source *s, uint32_t offset, uint32_t *out_line,
                        uint32_t *out_col);
/* The name of the file that holds the offset. */
const char *ts_source_name(const ts_source *s, uint32_t offset);
/* The text of line `line` (1-based, of the whole joined text) without its
 * end-of-line bytes. */
ts_str ts_source_line(const ts_source *s, uint32_t line);
/* The same of the line holding the offset. */
ts_str ts_source_line_at(const ts_source *s, uint32_t offset);

/* Length in bytes of the UTF-8 character at p (1 for an invalid byte). */
size_t ts_utf8_char_len(const char *p, size_t left);

/* A byte range [lo, hi) in one source. */
typedef struct ts_span {
  uint32_t lo, hi;
} ts_span;

/* ---- diagnostics: the .tile program is wrong ----------------------------- */

typedef enum ts_diag_level {
  TS_DIAG_ERROR,
  TS_DIAG_WARNING,
  TS_DIAG_NOTE,
} ts_diag_level;

/* A diagnostic is self-contained: it copies the file name, the position and
 * the part of the source line it points at, so it outlives the source. */
typedef struct ts_diag ts_diag;
struct ts_diag {
  ts_diag_level level;
  bool has_location;
  char *path;         /* the source's name */
  uint32_t line, col; /* 1-based */
  char *snippet;      /* (part of) the source line, no end-of-line bytes */
  uint32_t snippet_len;
  uint32_t span_lo, span_hi;  /* the span within the snippet */
  bool cut_before, cut_after; /* the snippet is a window of a longer line */
  char *message;
  char *hint;     /* NULL if none */
  ts_diag *notes; /* linked list of notes, each a ts_diag with level NOTE */
  ts_diag *next;
};

#define TS_DIAG_DEFAULT_LIMIT 20

/* Collects diagnostics. Keeps the first `limit` errors (and their notes);
 * later ones are counted only. Not thread-safe. */
typedef struct ts_diags {
  const ts_allocator *alloc;
  ts_diag *head, *tail;
  uint32_t error_count; /* all errors reported, kept or not */
  uint32_t warning_count;
  uint32_t limit;
  bool nomem;
} ts_diags;

void ts_diags_init(ts_diags *d, const ts_allocator *alloc);
void ts_diags_deinit(ts_diags *d);
/* True once `limit` errors have been reported: callers should stop. */
bool ts_diags_full(const ts_diags *d);
/* Reports an error; returns the record to attach notes and hints to, or NULL
 * when over the limit (the attach functions accept NULL). */
ts_diag *ts_diag_error(ts_diags *d, const ts_source *src, ts_span span,
                       const char *fmt, ...) TS_PRINTF(4, 5);
ts_diag *ts_diag_warning(ts_diags *d, const ts_source *src, ts_span span,
                         const char *fmt, ...) TS_PRINTF(4, 5);
void ts_diag_note(ts_diags *d, ts_diag *dg, const ts_source *src, ts_span span,
                  const char *fmt, ...) TS_PRINTF(5, 6);
void ts_diag_hint(ts_diags *d, ts_diag *dg, const char *fmt, ...)
    TS_PRINTF(3, 4);

typedef struct ts_render_options {
  bool color;
  bool snippets; /* show source line and caret */
} ts_render_options;

/* Renders every kept diagnostic, then a line saying how many were left out
 * if the limit was reached. */
void ts_diags_render(const ts_diags *d, FILE *out, ts_render_options opt);
void ts_diag_render_one(const ts_diag *dg, ts_buf *out, ts_render_options opt);
/* Whether to use colour on this stream: a terminal and no NO_COLOR. */
bool ts_color_wanted(FILE *stream);

/* ---- JSON (json.c): a document tree in an arena ------------------------- */

typedef enum ts_json_kind {
  TS_JSON_NULL, TS_JSON_BOOL, TS_JSON_NUMBER, TS_JSON_STRING, TS_JSON_ARRAY, TS_JSON_OBJECT,
} ts_json_kind;

typedef struct ts_json ts_json;
struct ts_json {
  ts_json_kind kind;
  bool boolean;
  double number;
  const char *str; /* TS_JSON_STRING: UTF-8, NUL-terminated (may hold NULs) */
  size_t len;
  ts_json *items;  /* TS_JSON_ARRAY, TS_JSON_OBJECT (members carry their key) */
  size_t count;
  const char *key; /* a member's name */
  size_t key_len;
  size_t offset;   /* where the value starts in the text */
};

typedef struct ts_json_doc {
  ts_arena arena;
  ts_json *root;
} ts_json_doc;

/* Errors say "JSON line:col: what". */
TS_MUST_USE ts_status ts_json_parse(const char *text, size_t len, ts_json_doc *out);
void ts_json_doc_deinit(ts_json_doc *d);
/* An object's member (the first of that name); NULL when absent or when
 * obj is not an object. */
const ts_json *ts_json_get(const ts_json *obj, const char *key);
/* Appends s as a JSON string: quotes, '"' and '\\' escaped, control
 * characters as \u00XX, other bytes as they are (UTF-8 passes through). */
void ts_json_put_string(ts_buf *b, const char *s, size_t len);

/* ---- Unicode (unicode.c) ---------------------------------------------------- */

/* General categories; TS_UCAT_CN (unassigned) is 0. */
typedef enum ts_ucat {
  TS_UCAT_CN, TS_UCAT_LU, TS_UCAT_LL, TS_UCAT_LT, TS_UCAT_LM, TS_UCAT_LO,
  TS_UCAT_MN, TS_UCAT_MC, TS_UCAT_ME, TS_UCAT_ND, TS_UCAT_NL, TS_UCAT_NO,
  TS_UCAT_PC, TS_UCAT_PD, TS_UCAT_PS, TS_UCAT_PE, TS_UCAT_PI, TS_UCAT_PF,
  TS_UCAT_PO, TS_UCAT_SM, TS_UCAT_SC, TS_UCAT_SK, TS_UCAT_SO, TS_UCAT_ZS,
  TS_UCAT_ZL, TS_UCAT_ZP, TS_UCAT_CC, TS_UCAT_CF, TS_UCAT_CS, TS_UCAT_CO,
} ts_ucat;

ts_ucat ts_unicode_category(uint32_t cp);
/* The categories a name stands for as a mask of (1 << ts_ucat): "L", "Lu",
 * "Letter", ...; 0 for an unknown name. */
uint32_t ts_unicode_category_mask(const char *name, size_t len);
/* The White_Space property (what a regex's \s matches). */
bool ts_unicode_is_space(uint32_t cp);
/* One code point from s[0, len): its length in bytes, or 0 when the bytes
 * there are not valid UTF-8 (overlong, a surrogate, truncated). */
size_t ts_utf8_decode(const char *s, size_t len, uint32_t *out_cp);
/* Writes cp (at most U+10FFFF) and returns its length, 1 to 4. */
size_t ts_utf8_encode(uint32_t cp, char out[4]);

/* ---- regular expressions over code points (regex.c) ---------------------- */

/* Backtracking, leftmost-first (Oniguruma's semantics, what tokenizer.json
 * patterns assume); the supported syntax is listed at the top of regex.c.
 * A pattern outside it is refused with its offset. */
typedef struct ts_regex ts_regex;
TS_MUST_USE ts_status ts_regex_compile(const char *pattern, size_t len, ts_regex **out);
void ts_regex_destroy(ts_regex *r);
/* The leftmost match in cps[from, count): *out_found, and when found its
 * code points [*out_start, *out_end). Fails only when the backtracking gets
 * too deep for the stack. */
TS_MUST_USE ts_status ts_regex_find(const ts_regex *r, const uint32_t *cps, size_t count,
                                    size_t from, bool *out_found, size_t *out_start,
                                    size_t *out_end);

/* ---- narrow floats (numeric.c): round to nearest even ------------------- */

uint16_t ts_f32_to_bf16(float f);
float ts_bf16_to_f32(uint16_t h);
uint16_t ts_f32_to_f16(float f);
float ts_f16_to_f32(uint16_t h);
/* fp8 e4m3fn: saturating at +-448, NaN kept. */
uint8_t ts_f32_to_e4m3(float f);
float ts_e4m3_to_f32(uint8_t b);
/* TensorFloat-32 as a tf32=true gemm takes an operand: the low 13 mantissa
 * bits cleared (truncation, not rounding); and rounded to nearest, ties
 * away (PTX's cvt.rna.tf32.f32). Both still f32. */
float ts_f32_tf32(float f);
float ts_f32_tf32_rna(float f);

#endif
