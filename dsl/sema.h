/* sema.h - private to dsl/: the state of the semantic checker, shared by
 * sema.c (names, statements, kernels), sema_expr.c (expressions, types,
 * constants, extents) and sema_tile.c (tile references and tile ops). */
#ifndef TS_DSL_SEMA_H
#define TS_DSL_SEMA_H

#include "dsl/dsl.h"

typedef struct scope {
  struct scope *parent;
  ts_map names;
  bool is_function; /* the outermost scope of a kernel or fn body */
} scope;

typedef enum loop_kind { LOOP_NONE, LOOP_FOR, LOOP_PIPELINED } loop_kind;

typedef struct call_edge {
  ts_symbol *caller, *callee;
  ts_node *call;
} call_edge;

typedef struct sema {
  ts_unit *u;
  ts_diags *d;
  const ts_source *src;
  scope *sc;
  scope globals;
  const ts_define *defines;
  size_t define_count;
  bool *define_used;
  /* the item being checked */
  ts_kernel_info *kernel; /* NULL inside a fn */
  ts_symbol *fn;
  const ts_type *result; /* fn result type, or NULL */
  loop_kind loop;
  bool in_parallel;
  /* the tile function whose body is being checked (on its own or inlined
   * into a kernel: sema_inline.c), and the ones around it */
  ts_symbol *tile_fn;
  ts_symbol *inlining[16];
  int inline_depth;
  /* the final `return` of the tile function checked on its own (the one
   * return a tile function with a result has) */
  const ts_node *tile_return;
  int64_t shared_size;
  /* call graph, for the recursion check */
  call_edge *edges;
  uint32_t edge_count, edge_cap;
  /* the opaque atoms of extents and the expressions they stand for, so that
   * the same expression is the same atom (sema_expr.c) */
  struct opaque_atom {
    const ts_node *expr;
    uint32_t atom;
  } *opaques;
  uint32_t opaque_count, opaque_cap;
  /* tile function results computed before their statements (sema.c
   * hoist_results), numbered for their hidden names */
  uint32_t hoists;
  bool nomem;
} sema;

/* sema.c */
void sema_push_scope(sema *s, scope *sc, bool is_function);
void sema_pop_scope(sema *s);
ts_symbol *sema_lookup(sema *s, ts_str name);
/* Declares a name in the current scope; NULL (reported) when it is taken. */
ts_symbol *sema_declare(sema *s, ts_symbol_kind kind, ts_str name,
                        ts_node *decl, const ts_type *type);
void sema_resolve_type(sema *s, ts_node *tn);
void sema_check_stmt(sema *s, ts_node *n);
void sema_check_block(sema *s, ts_node *b);
/* A kernel's argument, or a tile function's parameter, into `k`. */
void sema_check_arg(sema *s, ts_node *n, ts_kernel_info *k);
/* Where an ARG's tensor or tile lives: frag or shared for a tile
 * function's tile parameter (`t: frag f32[B]`), else global. */
ts_scope sema_arg_scope(const ts_node *arg);
/* The dtype param named `name` (marked used), or NULL: a name written
 * where a type goes, a conversion W(x), bitcast's type, a default. */
ts_symbol *sema_dtype_param(sema *s, ts_str name);
void sema_unknown_name(sema *s, ts_node *n);
ts_diag *sema_error(sema *s, ts_span sp, const char *fmt, ...) TS_PRINTF(3, 4);
/* "'name' takes N arguments, found C" (at least lo when C is below it, at
 * most hi when above), with the signature as a hint. */
void sema_arg_count_error(sema *s, ts_span sp, const char *name, size_t len, uint32_t lo,
                          uint32_t hi, uint32_t c, const char *sig);
void sema_note_decl(sema *s, ts_diag *d, const ts_symbol *sym);
const char *sema_sym_kind_name(ts_symbol_kind k);
void *sema_alloc(sema *s, size_t size);

/* sema_expr.c */
extern const ts_type sema_error_type, sema_void_type, sema_string_type,
    sema_dtype_type;
const ts_type *sema_scalar(ts_dtype dt);
const ts_type *sema_literal(ts_dtype dt);
bool sema_is_scalar(const ts_type *t);
bool sema_is_int(const ts_type *t);
bool sema_is_float(const ts_type *t);
bool sema_is_bool(const ts_type *t);
/* Checks an expression; returns its type (sema_error_type after an error,
 * already reported). Fills n->type and, for constants, n->cval. */
const ts_type *sema_expr(sema *s, ts_node *n);
/* An expression that must be a scalar of integer type. */
bool sema_int_expr(sema *s, ts_node *n, const char *what);
/* A compile-time integer. */
bool sema_const_int(sema *s, ts_node *n, const char *what, int64_t *out);
/* Whether a value of type `v` may be stored into an element of `dt`. */
bool sema_assignable(ts_dtype dt, const ts_type *v);
void sema_mismatch(sema *s, ts_span sp, const char *ctx, ts_dtype want,
                   const ts_type *got);
/* A type for messages: "f32", "frag f32[64, N]", ... (arena string). */
const char *sema_type_str(sema *s, const ts_type *t);

/* extents */
ts_extent sema_extent_const(int64_t c);
ts_extent sema_extent_of(sema *s, ts_node *n);
bool sema_extent_sub(sema *s, ts_extent a, ts_extent b, ts_extent *out);
bool sema_extent_eq(const ts_extent *a, const ts_extent *b);
bool sema_extent_is_const(const ts_extent *e);
uint32_t sema_new_atom(sema *s, ts_str name);
ts_extent sema_extent_atom(uint32_t atom);

/* sema_inline.c: tile functions */
void sema_check_tile_fn(sema *s, ts_node *n);
void sema_inline_call(sema *s, ts_node *stmt, ts_node *call, ts_symbol *fn);
/* `let v = f(...);` (or var) for a tile function f with a result: the let
 * becomes a block whose names are the enclosing scope's (op TS_TOK_LET):
 * `var v#r: T = 0;`, the inlined call ending `v#r = VALUE;`, then the let
 * of v#r. */
void sema_inline_result(sema *s, ts_node *let, ts_node *call, ts_symbol *fn);
ts_str sema_hidden_name(sema *s, ts_str name, const char *suffix);
/* What a call names that is not a conversion (a function, a param, ...), or
 * NULL; whether a symbol is a tile function (sema.c). */
ts_symbol *sema_callee(sema *s, const ts_node *call);
bool sema_is_tile_fn(const ts_symbol *fn);
/* The statements of block b, in the current scope (sema.c); each preceded
 * first by a let of each tile function result inside its expressions
 * (sema_hoist_results: statement i of b), and an if's else-if whose
 * condition has one made the block of its else (sema_else_results;
 * sema_inline.c). */
void sema_check_stmts(sema *s, ts_node *b);
void sema_hoist_results(sema *s, ts_node *b, uint32_t i);
void sema_else_results(sema *s, ts_node *n);

/* sema_tile.c */
void sema_tile_op(sema *s, ts_node *call);

#endif
