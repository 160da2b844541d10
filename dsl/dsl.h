/* dsl.h - the .tile front end: lexer, parser, AST, types, semantic checks,
 * the --emit dumps and the formatter. Sits on base/; everything above it
 * (compiler, runtime, cli) reaches the language through this header.
 * A ts_unit and everything in it belong to one thread at a time. */
#ifndef TS_DSL_H
#define TS_DSL_H

#include "base/base.h"

/* ---- tokens -----------------------------------------------------------------
 */

typedef enum ts_tok_kind {
#define TOK(name, text, cls) TS_TOK_##name,
#include "dsl/tokens.def"
#undef TOK
  TS_TOK_COUNT
} ts_tok_kind;

const char *ts_tok_spelling(ts_tok_kind k);
bool ts_tok_is_keyword(ts_tok_kind k);

typedef struct ts_token {
  ts_tok_kind kind;
  ts_span span;
  int64_t ival; /* TS_TOK_INT */
  double fval;  /* TS_TOK_FLOAT */
} ts_token;

/* Identifiers longer than this are an error (they still lex as one token). */
#define TS_MAX_IDENT_LEN 256

typedef struct ts_lexer {
  const ts_source *src;
  ts_diags *diags;
  uint32_t pos, end;  /* the next byte; the end of the text lexed */
  bool keep_comments; /* return TS_TOK_COMMENT tokens (the formatter) */
} ts_lexer;

void ts_lex_init(ts_lexer *lx, const ts_source *src, ts_diags *diags);
/* Lexes [lo, hi) of the source only (one file of a joined source). */
void ts_lex_range(ts_lexer *lx, uint32_t lo, uint32_t hi);
/* A string token's text between its quotes (escapes as written); *closed
 * says whether it has its closing quote (an unterminated one, reported by
 * the lexer, runs to the end of its line). */
ts_str ts_tok_string(const ts_source *src, ts_span span, bool *closed);
/* The next token; reports lexical errors into the sink and returns a
 * TS_TOK_ERROR token for them. Returns TS_TOK_EOF forever at the end. */
ts_token ts_lex_next(ts_lexer *lx);

/* ---- element types
 * ------------------------------------------------------------ */

typedef enum ts_dtype {
#define DTYPE(name, text, bits, cls, tok) TS_DTYPE_##name,
#include "dsl/dtypes.def"
#undef DTYPE
  TS_DTYPE_COUNT
} ts_dtype;

const char *ts_dtype_name(ts_dtype d);
int ts_dtype_bits(ts_dtype d);
bool ts_dtype_is_float(ts_dtype d);
bool ts_dtype_is_int(ts_dtype d);
/* The values an integer dtype or bool holds, [lo, hi] (bool: 0 and 1);
 * false for a float dtype. */
bool ts_dtype_int_range(ts_dtype d, int64_t *lo, int64_t *hi);
/* The dtype spelled `name` ("bf16"), or TS_DTYPE_COUNT. */
ts_dtype ts_dtype_from_name(const char *name);
/* The type arithmetic happens in: narrow floats -> f32, i8 -> i32. */
ts_dtype ts_dtype_promote(ts_dtype d);

/* ---- built-in operations
 * ------------------------------------------------------ */

typedef enum ts_builtin {
  TS_BUILTIN_NONE = 0,
#define BUILTIN(name, text, cls, lo, hi, sig) TS_BUILTIN_##name,
#include "dsl/builtins.def"
#undef BUILTIN
  TS_BUILTIN_COUNT
} ts_builtin;

ts_builtin ts_builtin_lookup(ts_str name);
const char *ts_builtin_name(ts_builtin b);
const char *ts_builtin_signature(ts_builtin b);

/* ---- AST
 * ------------------------------------------------------------------------ */

/* X(name, what the dumps call it) */
#define TS_NODE_KINDS(X)                                                       \
  X(FILE, "file")                                                              \
  X(KERNEL, "kernel")                                                          \
  X(FN, "fn")                                                                  \
  X(USE, "use")                                                                \
  X(LIST, "list")                                                              \
  X(ARG, "arg")                                                                \
  X(TYPE, "type")                                                              \
  X(PARAM, "param")                                                            \
  X(TUNE, "tune")                                                              \
  X(REQUIRE, "require")                                                        \
  X(BLOCK, "block")                                                            \
  X(LET, "let")                                                                \
  X(VAR, "var")                                                                \
  X(TILE, "tile")                                                              \
  X(ASSIGN, "assign")                                                          \
  X(EXPR_STMT, "stmt")                                                         \
  X(PARALLEL, "parallel")                                                      \
  X(PIPELINED, "pipelined")                                                    \
  X(FOR, "for")                                                                \
  X(IF, "if")                                                                  \
  X(BREAK, "break")                                                            \
  X(CONTINUE, "continue")                                                      \
  X(RETURN, "return")                                                          \
  X(INT, "int")                                                                \
  X(FLOAT, "float")                                                            \
  X(BOOL, "bool")                                                              \
  X(STRING, "string")                                                          \
  X(NAME, "name")                                                              \
  X(DTYPE, "dtype")                                                            \
  X(UNARY, "unary")                                                            \
  X(BINARY, "binary")                                                          \
  X(CALL, "call")                                                              \
  X(NAMED, "named")                                                            \
  X(INDEX, "index")                                                            \
  X(SLICE, "slice")                                                            \
  X(ERROR, "error")

typedef enum ts_node_kind {
#define X(name, text) TS_NODE_##name,
  TS_NODE_KINDS(X)
#undef X
} ts_node_kind;

const char *ts_node_kind_name(ts_node_kind k);

typedef struct ts_type ts_type;
typedef struct ts_symbol ts_symbol;

/* A compile-time value (params, literals, folded expressions). */
typedef struct ts_const {
  enum {
    TS_CONST_NONE,
    TS_CONST_INT,
    TS_CONST_FLOAT,
    TS_CONST_BOOL,
    TS_CONST_DTYPE /* a dtype param's value: `dt` */
  } kind;
  int64_t i;
  double f;
  bool b;
  ts_dtype dt;
} ts_const;

/* A param value as exact text: 32, 1.0000000000000001e-06, true, bf16
 * (floats round-trip; "-" for none). For keys and records that must not
 * depend on how a -D value was spelled. */
void ts_const_text(const ts_const *c, char *out, size_t size);

/* One node shape for the whole tree; what `kids` hold per kind:
 *   FILE      items (USE | KERNEL | FN; then the FNs of the files used)
 *   USE       name = the path as written (no kids)
 *   KERNEL    name; [LIST args, LIST params, LIST grid | NULL,
 *                    threads expr | NULL, BLOCK, LIST tune | NULL]
 *   TUNE      param name; [LIST values | NULL, lo | NULL, hi | NULL]
 *             (`BM in [32, 64]` or `S in 1..5`, half-open like `for`)
 *   REQUIRE   [bool expr over the params]
 *   FN        name; [LIST params (ARG), TYPE result | NULL, BLOCK]
 *   ARG       name; [TYPE]; op TS_TOK_FRAG / TS_TOK_SHARED for a tile
 *             function's tile parameter (`t: frag f32[B]`); a TYPE with
 *             op TS_TOK_DTYPE_T for its dtype parameter (`T: dtype`)
 *   TYPE      dtype (or TS_DTYPE_COUNT + 0/1 for int/float params),
 *             has_shape; kids = extents; op TS_TOK_IDENT and name for a
 *             dtype param's name (`W[N]`)
 *   PARAM     name; [TYPE, default expr]
 *   LET/VAR   name; [TYPE | NULL, value]; a LET with op TS_TOK_FN binds a
 *             tile function's scalar parameter at an inlined call (its
 *             value may name a caller's variable of the same name)
 *   TILE      name, scope (TS_TOK_SHARED/FRAG in `op`); [TYPE]
 *   ASSIGN    op (=, +=, ...); [target, value]
 *   EXPR_STMT [CALL]; sema turns a tile function's call into a BLOCK of
 *             `let`s for its scalar arguments and a copy of its body; a
 *             LET/VAR of a tile function's result into a BLOCK with op
 *             TS_TOK_LET (its names the enclosing scope's): the hidden
 *             VAR NAME#r, that BLOCK ending `NAME#r = value`, the LET
 *   PARALLEL  [LIST of NAME (index vars), LIST of extents, BLOCK]
 *   PIPELINED name (loop var); [lo, hi, stages | NULL, BLOCK]
 *   FOR       name (loop var); [lo, hi, BLOCK]
 *   IF        [cond, BLOCK, else (IF | BLOCK) | NULL]
 *   RETURN    [value | NULL]
 *   UNARY/BINARY op; operands
 *   CALL      name (callee), dtype if the callee is a type (a cast); args
 *   NAMED     name; [value]          (named argument `dim=1`)
 *   INDEX     [base, subscripts...]
 *   SLICE     [lo | NULL, hi | NULL]
 * Sema fills `type`, `sym`, `cval` and `builtin`. */
typedef struct ts_node ts_node;
struct ts_node {
  ts_node_kind kind;
  ts_span span;
  ts_str name;
  int op; /* a ts_tok_kind */
  ts_dtype dtype;
  bool has_shape;
  int64_t ival;
  double fval;
  ts_node **kids;
  uint32_t kid_count;
  /* filled by sema */
  const ts_type *type;
  ts_symbol *sym;
  ts_const cval;
  ts_builtin builtin;
};

/* ---- types
 * ------------------------------------------------------------------------ */

typedef enum ts_type_kind {
  TS_TYPE_ERROR,
  TS_TYPE_VOID,
  TS_TYPE_SCALAR,
  TS_TYPE_TENSOR, /* a global tensor (kernel argument) or a slice of one */
  TS_TYPE_TILE,   /* a shared or frag tile, or a slice of one */
  TS_TYPE_STRING,
  TS_TYPE_DTYPE, /* a type name used as a value (bitcast's second argument) */
} ts_type_kind;

typedef enum ts_scope {
  TS_SCOPE_GLOBAL,
  TS_SCOPE_SHARED,
  TS_SCOPE_FRAG,
} ts_scope;

#define TS_MAX_RANK 8
#define TS_EXTENT_TERMS 4

/* An extent in canonical linear form: c + sum(coef * atom). Atoms are the
 * symbolic dims of the kernel's tensors, immutable runtime values (lets,
 * loop variables) and opaque sub-expressions; each has a printable name in
 * the unit's atom table. Two extents agree when their forms are equal. */
typedef struct ts_extent {
  int64_t c;
  uint32_t term_count;
  struct {
    int64_t coef;
    uint32_t atom;
  } terms[TS_EXTENT_TERMS];
} ts_extent;

struct ts_type {
  ts_type_kind kind;
  ts_dtype dtype;
  bool literal; /* an untyped literal that adapts to the other operand */
  ts_scope scope;
  uint32_t rank;
  ts_extent dims[TS_MAX_RANK];
  bool gathered; /* a tile reference that gathers rows by an index tile */
};

typedef enum ts_symbol_kind {
  TS_SYM_TENSOR, /* tensor argument */
  TS_SYM_SCALAR, /* scalar runtime argument */
  TS_SYM_DIM,    /* symbolic dim of tensor arguments */
  TS_SYM_PARAM,  /* compile-time param */
  TS_SYM_LET,
  TS_SYM_VAR,
  TS_SYM_TILE,
  TS_SYM_LOOP, /* for / pipelined / parallel index */
  TS_SYM_FN,
  TS_SYM_CONST, /* built-in constants: inf, nan, pi */
} ts_symbol_kind;

struct ts_symbol {
  ts_symbol_kind kind;
  ts_str name;
  ts_node *decl;
  const ts_type *type;
  ts_const cval; /* params and constants */
  uint32_t atom; /* dims, lets and loop variables: their atom id */
  bool used;
  const void *user; /* scratch for the pass after sema (codegen) */
  bool has_range;   /* a loop index known to run over 0 .. range-1 */
  ts_extent range;
  bool failed; /* a tile function whose own check failed (not inlined) */
};

/* One kernel after sema: what the compiler and the runtime need. */
typedef struct ts_kernel_info {
  ts_node *node;
  ts_str name;
  ts_symbol **params;
  uint32_t param_count;
  ts_symbol **args;
  uint32_t arg_count;
  ts_symbol **dims;
  uint32_t dim_count;
  ts_extent grid[3];
  uint32_t grid_rank;
  int64_t threads;
  int64_t shared_size; /* bytes of shared tiles with constant shapes */
  ts_node *tune; /* the `tune(...)` list (checked), or NULL */
  bool simt; /* uses thread_id() (the CPU then numbers a parallel's
              * elements as the GPU's threads would take them) */
} ts_kernel_info;

/* A `-D NAME=VALUE` override. */
typedef struct ts_define {
  const char *name;
  const char *value;
} ts_define;

/* ---- a compilation unit: one source file through the front end ------------
 */

typedef struct ts_unit {
  const ts_allocator *alloc;
  ts_arena arena;
  ts_source src;
  ts_diags *diags; /* borrowed */
  ts_node *root;   /* after ts_unit_parse */
  /* after ts_unit_check */
  ts_kernel_info *kernels;
  uint32_t kernel_count;
  ts_str *atom_names;
  uint32_t atom_count, atom_cap;
  /* Set before ts_unit_check: the kernel the defines are for (the others
   * keep their defaults, so that one kernel's -D cannot break another's
   * `require`); NULL: every kernel with a param of the name. */
  const char *define_kernel;
  /* How messages name an override: "-D" (NULL: the command line's) or
   * "param" (a params table from Lua or the C API). */
  const char *define_label;
  /* Set before ts_unit_check: the value of the built-in constant `arch`,
   * the architecture the kernels are checked for: 0 the CPU (the default),
   * a GPU's SM version otherwise (ts_arch_number), so that a param's
   * default or a folded `if` can differ by target. */
  int arch;
  /* Set before ts_unit_parse: do not read the files a `use` names (the
   * formatter, which looks at one file). */
  bool no_use;
  /* The joined text of the file and the files it uses (owned; NULL when
   * it uses none and src.text is the caller's). */
  char *joined;
  size_t joined_size;
  bool parsed, checked;
} ts_unit;

/* Copies nothing: `text` (len bytes, NUL after) must outlive the unit.
 * Fails only for memory. */
TS_MUST_USE ts_status ts_unit_init(ts_unit *u, const ts_allocator *alloc,
                                   const char *name, const char *text,
                                   size_t len, ts_diags *diags);
void ts_unit_deinit(ts_unit *u);
/* Reads the files the unit's `use` items name (dsl/use.c): each is looked
 * for next to the file naming it, read once, and joined after the unit's
 * text (src then spans every file; its `files` say which is where). Reports
 * files that cannot be read. ts_unit_parse calls it unless no_use is set;
 * false only for memory. */
bool ts_unit_load_uses(ts_unit *u);
/* Parses the file; returns true when no error was reported. The tree is
 * built even with errors (error nodes where recovery skipped input). */
bool ts_unit_parse(ts_unit *u);
/* Semantic checks; returns true when the whole unit is free of errors.
 * Defines override params (of u->define_kernel only, when set); one that
 * names no such param is an error. */
bool ts_unit_check(ts_unit *u, const ts_define *defines, size_t define_count);
/* The number the built-in constant `arch` takes for a GPU architecture
 * "sm_NN" or "sm_NNa" (sm_90a: 90); NULL, the CPU: 0; -1 for any other
 * text. */
int ts_arch_number(const char *arch);
/* Whether a FN item is a tile function (a tensor, tile or dtype
 * parameter): one
 * that sema inlines at each call and the compiler never emits alone. */
bool ts_fn_is_tile(const ts_node *fn);
/* Kernel by name, or NULL. */
const ts_kernel_info *ts_unit_kernel(const ts_unit *u, ts_str name);

/* The deepest nesting of brackets, blocks and expressions the parser takes
 * before it reports an error (bounded so that no input overflows the stack). */
#define TS_MAX_NESTING 200

/* ---- dumps and formatting (text appended to `out`)
 * ---------------------------- */

void ts_dump_tokens(const ts_source *src, ts_diags *diags, ts_buf *out);
void ts_dump_ast(const ts_unit *u, ts_buf *out);
void ts_dump_typed(const ts_unit *u, ts_buf *out);
void ts_type_print(const ts_unit *u, const ts_type *t, ts_buf *out);
void ts_extent_print(const ts_unit *u, const ts_extent *e, ts_buf *out);
/* Whether two extents have the same canonical form. */
bool ts_extent_equal(const ts_extent *a, const ts_extent *b);
/* The value of named argument `name` of a call (`dim=1`), or NULL. */
ts_node *ts_call_named(const ts_node *call, const char *name);
/* A named bool argument's constant value (`trans_b=true`), or `dflt`. */
bool ts_call_named_bool(const ts_node *call, const char *name, bool dflt);
/* Whether `call` is a copy of FP4 codes: copy(src, dst, format="e2m1"),
 * dst[..., 2j + h] the e2m1 value of nibble h of byte src[..., j], or
 * format="e2m1x2" (ts_copy_twice), twice that value into an integer dst. */
bool ts_copy_packed(const ts_node *call);
bool ts_copy_twice(const ts_node *call);
/* Of such a copy with scale=S: B, each value times S[..., k / B] (S's last
 * dim a constant dividing dst's); 0 without a scale. */
int64_t ts_copy_scale_block(const ts_node *call);
/* Canonical layout of a file that parses without errors; comments kept.
 * Returns false (and reports) when the file has syntax errors. */
bool ts_format(const ts_source *src, ts_diags *diags, ts_buf *out);

#endif
