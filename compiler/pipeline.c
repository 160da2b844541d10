/* pipeline.c - MLIR contexts, the named pass pipelines per target, and the
 * CPU JIT. The pipelines are text, readable top to bottom; each stage's IR
 * is what `tessera compile --emit mlir|lowered|llvm` prints. MLIR's
 * diagnostics come back through the context's handler and are reported at
 * the .tile location their FileLineCol points to. */
#define _POSIX_C_SOURCE 200809L
#include "compiler/gen.h"
#include "compiler/pipeline.h"

#include <mlir-c/Dialect/GPU.h>
#include <mlir-c/ExecutionEngine.h>
#include <mlir-c/Pass.h>
#include <mlir-c/RegisterEverything.h>
#include <mlir-c/Target/LLVMIR.h>
#include <llvm-c/Support.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#include <string.h>
#include <time.h>

/* The CPU pipeline: everything to the LLVM dialect. math ops LLVM has
 * intrinsics for go first; the rest (tanh, log1p, ...) become libm calls. */
static const char *const cpu_pipeline =
    "builtin.module("
    "canonicalize,"
    "cse,"
    "convert-vector-to-scf,"
    "convert-scf-to-cf,"
    "convert-vector-to-llvm,"
    "convert-math-to-llvm,"
    "convert-math-to-libm,"
    "expand-strided-metadata,"
    /* (arith before memref: memref.generic_atomic_rmw, a 16-bit float
     * atomic, lowers only once its body is LLVM ops) */
    "convert-arith-to-llvm,"
    "finalize-memref-to-llvm,"
    "convert-cf-to-llvm,"
    "convert-func-to-llvm,"
    "convert-arith-to-llvm,"
    "reconcile-unrealized-casts)";

/* The GPU pipeline: the gpu.module to the NVVM dialect (math ops become
 * libdevice calls, linked when the module is serialised); then, as a
 * separate step, gpu-module-to-binary turns it into PTX text. */
static const char *const gpu_pipeline =
    "builtin.module("
    "canonicalize,"
    "cse,"
    "gpu.module(expand-strided-metadata,convert-gpu-to-nvvm),"
    "reconcile-unrealized-casts)";

static const char *const ptx_pipeline =
    "builtin.module(gpu-module-to-binary{format=isa})";

const char *ts_pipeline_text(ts_target t) {
  return t == TS_TARGET_CPU ? cpu_pipeline
         : t == TS_TARGET_PTX ? gpu_pipeline
                              : NULL;
}

/* ---- contexts and diagnostics ---------------------------------------------------- */

static pthread_once_t passes_once = PTHREAD_ONCE_INIT;
/* Once per process: the passes, and LLVM's NVPTX back end told to use
 * 32-bit pointers for shared (and local and const) memory: shared
 * addresses then take one register, not two (sparse_attn_tc spilled 88
 * bytes on sm_90a with 64-bit ones). Process-wide, but only the NVPTX
 * target reads it; the CPU JIT is unaffected. */
static void register_passes(void) {
  mlirRegisterAllPasses();
  static const char *const argv[] = {"tessera", "-nvptx-short-ptr"};
  LLVMParseCommandLineOptions(2, argv, NULL);
}

typedef struct diag_sink {
  ts_diags *diags;
  const ts_source *src;
  ts_buf *text; /* messages without a .tile location */
} diag_sink;

static void append_cb(MlirStringRef s, void *ud) {
  ts_buf_append((ts_buf *)ud, s.data, s.length);
}

static MlirLogicalResult on_diag(MlirDiagnostic d, void *ud) {
  diag_sink *sink = ud;
  ts_buf msg;
  ts_buf_init(&msg, ts_allocator_system());
  mlirDiagnosticPrint(d, append_cb, &msg);
  MlirLocation loc = mlirDiagnosticGetLocation(d);
  bool placed = false;
  if (sink->src && mlirLocationIsAFileLineColRange(loc)) {
    int line = mlirLocationFileLineColRangeGetStartLine(loc);
    int col = mlirLocationFileLineColRangeGetStartColumn(loc);
    if (line >= 1 && (uint32_t)line <= sink->src->line_count) {
      uint32_t off = sink->src->line_starts[line - 1] + (uint32_t)(col - 1);
      ts_diag *dg = ts_diag_error(sink->diags, sink->src, (ts_span){off, off + 1},
                                  "MLIR: %s", msg.ptr ? msg.ptr : "");
      ts_diag_hint(sink->diags, dg,
                   "this is a bug in Tessera's lowering; please report it");
      placed = true;
    }
  }
  if (!placed && sink->text) {
    if (mlirLocationIsAFileLineColRange(loc)) { /* (a file of MLIR text: an override) */
      MlirStringRef f = mlirIdentifierStr(mlirLocationFileLineColRangeGetFilename(loc));
      ts_buf_printf(sink->text, "%.*s:%d:%d: ", (int)f.length, f.data,
                    mlirLocationFileLineColRangeGetStartLine(loc),
                    mlirLocationFileLineColRangeGetStartColumn(loc));
    }
    ts_buf_puts(sink->text, msg.ptr ? msg.ptr : "");
    ts_buf_putc(sink->text, '\n');
  }
  ts_buf_deinit(&msg);
  return mlirLogicalResultSuccess();
}

struct ts_mlir {
  MlirContext ctx;
  MlirDiagnosticHandlerID handler;
  diag_sink sink;
  ts_buf text;
};

ts_status ts_mlir_create(const ts_source *src, ts_diags *diags,
                         ts_mlir **out) {
  pthread_once(&passes_once, register_passes);
  ts_mlir *m = calloc(1, sizeof *m);
  if (!m)
    return ts_status_nomem();
  m->ctx = mlirContextCreateWithThreading(false);
  MlirDialectRegistry reg = mlirDialectRegistryCreate();
  mlirRegisterAllDialects(reg);
  mlirContextAppendDialectRegistry(m->ctx, reg);
  mlirDialectRegistryDestroy(reg);
  mlirContextLoadAllAvailableDialects(m->ctx);
  mlirRegisterAllLLVMTranslations(m->ctx);
  ts_buf_init(&m->text, ts_allocator_system());
  m->sink = (diag_sink){diags, src, &m->text};
  m->handler =
      mlirContextAttachDiagnosticHandler(m->ctx, on_diag, &m->sink, NULL);
  *out = m;
  return NULL;
}

void ts_mlir_destroy(ts_mlir *m) {
  if (!m)
    return;
  mlirContextDetachDiagnosticHandler(m->ctx, m->handler);
  mlirContextDestroy(m->ctx);
  ts_buf_deinit(&m->text);
  free(m);
}

/* Whatever MLIR said that had no .tile location, and forget it. */
static const char *take_text(ts_mlir *m) {
  return m->text.ptr && m->text.len ? m->text.ptr : "no message";
}

/* ---- stages ---------------------------------------------------------------------------- */

static void print_op(MlirOperation op, ts_buf *out) {
  mlirOperationPrint(op, append_cb, out);
  ts_buf_putc(out, '\n');
}

ts_status ts_mlir_gen(ts_mlir *m, ts_unit *u, const char *kernel,
                      ts_target target, const char *chip, ts_cpu_form form,
                      MlirModule *out) {
  if (target == TS_TARGET_CPU)
    TS_TRY(ts_gen_cpu(m->ctx, u, kernel,
                      form == TS_CPU_GPUSIM ? (chip ? chip : "sm_90a") : NULL,
                      form == TS_CPU_HOST, m->sink.diags, out));
  else
    TS_TRY(ts_gen_gpu(m->ctx, u, kernel, chip ? chip : "sm_90a",
                      m->sink.diags, out));
  if (!mlirOperationVerify(mlirModuleGetOperation(*out))) {
    ts_status s = ts_status_make(TS_ERR_INTERNAL,
                                 "the generated MLIR does not verify (a bug "
                                 "in Tessera): %s",
                                 take_text(m));
    mlirModuleDestroy(*out);
    out->ptr = NULL;
    return s;
  }
  return NULL;
}

static void pipeline_error(MlirStringRef s, void *ud) {
  ts_buf_append((ts_buf *)ud, s.data, s.length);
}

static ts_status run_pipeline(ts_mlir *m, MlirModule mod, const char *text,
                              const char *what, bool time_passes);

static bool named(MlirOperation op, const char *name) {
  MlirStringRef n = mlirIdentifierStr(mlirOperationGetName(op));
  return n.length == strlen(name) && !memcmp(n.data, name, n.length);
}

/* A kernel's tensor maps (its `tessera.tmaps` parameters before the last;
 * compiler/gen.c) are passed by value: 128 bytes, 64-byte aligned, a
 * grid constant, so that TMA reads the map from the parameter space. The
 * conversion to the NVVM dialect drops argument attributes of gpu.func,
 * so they are set on the llvm.func it made. */
static void by_value_maps(MlirContext ctx, MlirModule mod) {
  MlirAttribute map = mlirAttributeParseGet(
      ctx, mlirStringRefCreateFromCString("{llvm.align = 64 : i64, llvm.byval = "
                                          "!llvm.array<128 x i8>, nvvm.grid_constant}"));
  MlirOperation gm = mlirBlockGetFirstOperation(mlirModuleGetBody(mod));
  for (; !mlirOperationIsNull(gm); gm = mlirOperationGetNextInBlock(gm)) {
    if (!named(gm, "gpu.module"))
      continue;
    MlirBlock body = mlirRegionGetFirstBlock(mlirOperationGetRegion(gm, 0));
    for (MlirOperation f = mlirBlockGetFirstOperation(body); !mlirOperationIsNull(f);
         f = mlirOperationGetNextInBlock(f)) {
      MlirAttribute nt = mlirOperationGetAttributeByName(f, mlirStringRefCreateFromCString("tessera.tmaps"));
      if (!named(f, "llvm.func") || mlirAttributeIsNull(nt))
        continue;
      int64_t n = mlirIntegerAttrGetValueInt(nt);
      MlirBlock entry = mlirRegionGetFirstBlock(mlirOperationGetRegion(f, 0));
      intptr_t na = mlirBlockGetNumArguments(entry);
      MlirAttribute old = mlirOperationGetAttributeByName(f, mlirStringRefCreateFromCString("arg_attrs"));
      MlirAttribute attrs[200];
      if (na > 200 || n + 1 > na)
        continue;
      for (intptr_t i = 0; i < na; i++)
        attrs[i] = i >= na - 1 - n && i < na - 1 ? map
                   : !mlirAttributeIsNull(old) ? mlirArrayAttrGetElement(old, i)
                                               : mlirDictionaryAttrGet(ctx, 0, NULL);
      mlirOperationSetAttributeByName(f, mlirStringRefCreateFromCString("arg_attrs"),
                                      mlirArrayAttrGet(ctx, na, attrs));
    }
  }
}

ts_status ts_mlir_lower(ts_mlir *m, MlirModule mod, ts_target target,
                        bool time_passes) {
  const char *text = ts_pipeline_text(target);
  if (!text)
    return ts_status_make(TS_ERR_UNSUPPORTED, "no pipeline for target '%s' yet",
                          ts_target_name(target));
  TS_TRY(run_pipeline(m, mod, text, ts_target_name(target), time_passes));
  if (target == TS_TARGET_PTX)
    by_value_maps(m->ctx, mod);
  return NULL;
}

ts_status ts_mlir_ptx(ts_mlir *m, MlirModule lowered, bool time_passes,
                      ts_buf *out) {
  TS_TRY(run_pipeline(m, lowered, ptx_pipeline, "PTX", time_passes));
  /* the module now holds gpu.binary @tessera [#gpu.object<..., "PTX">] */
  MlirOperation op = mlirBlockGetFirstOperation(mlirModuleGetBody(lowered));
  for (; !mlirOperationIsNull(op); op = mlirOperationGetNextInBlock(op)) {
    MlirAttribute objs =
        mlirOperationGetAttributeByName(op, mb_str("objects"));
    if (mlirAttributeIsNull(objs) || !mlirAttributeIsAArray(objs) ||
        mlirArrayAttrGetNumElements(objs) < 1)
      continue;
    MlirAttribute o = mlirArrayAttrGetElement(objs, 0);
    if (!mlirAttributeIsAGPUObjectAttr(o))
      continue;
    MlirStringRef ptx = mlirGPUObjectAttrGetObject(o);
    ts_buf_append(out, ptx.data, ptx.length);
    return NULL;
  }
  return ts_status_make(TS_ERR_INTERNAL,
                        "gpu-module-to-binary left no PTX in the module");
}

static ts_status run_pipeline(ts_mlir *m, MlirModule mod, const char *text,
                              const char *what, bool time_passes) {
  MlirPassManager pm = mlirPassManagerCreate(m->ctx);
  if (time_passes)
    mlirPassManagerEnableTiming(pm);
  ts_buf err;
  ts_buf_init(&err, ts_allocator_system());
  MlirLogicalResult r = mlirParsePassPipeline(
      mlirPassManagerGetAsOpPassManager(pm), mb_str(text), pipeline_error, &err);
  ts_status st = NULL;
  if (mlirLogicalResultIsFailure(r)) {
    st = ts_status_make(TS_ERR_INTERNAL, "bad pass pipeline '%s': %s", text,
                        err.ptr ? err.ptr : "");
  } else if (mlirLogicalResultIsFailure(mlirPassManagerRunOnOp(
                 pm, mlirModuleGetOperation(mod)))) {
    st = ts_status_make(TS_ERR_INTERNAL, "the %s pipeline failed: %s", what,
                        take_text(m));
  }
  ts_buf_deinit(&err);
  mlirPassManagerDestroy(pm);
  return st;
}

/* ---- one pass at a time: --dump-after ------------------------------------------------------ */

typedef struct pass_step {
  char text[192]; /* a pipeline of this one pass, nested as it is */
  char name[64];  /* its name, without its options */
} pass_step;
enum { MAX_STEPS = 32 };

/* The passes of the entries in [p, end) at one level of a pipeline's
 * text, each nested in `pre` ... `suf` (an anchor's "x(" ... ")" around
 * "builtin.module(" ... ")"), appended to steps from n; the new count, -1
 * when they do not fit. */
static int split_steps(const char *p, const char *end, const char *pre, const char *suf,
                       pass_step *steps, int n) {
  while (p < end && n >= 0) {
    const char *q = p, *open = NULL;
    for (int depth = 0; q < end && (depth || *q != ','); q++) {
      if ((*q == '(' || *q == '{') && !depth++ && *q == '(' && !open)
        open = q;
      else if (*q == ')' || *q == '}')
        depth--;
    }
    int len = (int)(q - p);
    if (open) { /* an anchor: its passes nested in it */
      char pre2[192], suf2[64];
      int a = snprintf(pre2, sizeof pre2, "%s%.*s(", pre, (int)(open - p), p);
      int b = snprintf(suf2, sizeof suf2, ")%s", suf);
      n = a < (int)sizeof pre2 && b < (int)sizeof suf2
              ? split_steps(open + 1, q - 1, pre2, suf2, steps, n) : -1;
    } else if (n == MAX_STEPS) {
      n = -1;
    } else {
      pass_step *s = &steps[n++];
      const char *brace = memchr(p, '{', (size_t)len);
      int a = snprintf(s->text, sizeof s->text, "%s%.*s%s", pre, len, p, suf);
      int b = snprintf(s->name, sizeof s->name, "%.*s", brace ? (int)(brace - p) : len, p);
      if (a >= (int)sizeof s->text || b >= (int)sizeof s->name)
        n = -1;
    }
    p = q + 1;
  }
  return n;
}

ts_status ts_mlir_lower_dump(ts_mlir *m, MlirModule mod, ts_target target, const char *after,
                             ts_buf *out) {
  const char *text = ts_pipeline_text(target);
  const char *open = text ? strchr(text, '(') : NULL;
  pass_step steps[MAX_STEPS];
  int n = open ? split_steps(open + 1, text + strlen(text) - 1, "builtin.module(", ")",
                             steps, 0)
               : -1;
  if (n <= 0)
    return ts_status_make(TS_ERR_INTERNAL, "the %s pipeline's passes: %s",
                          ts_target_name(target), text ? text : "(none)");
  bool all = !strcmp(after, "all");
  int last = all ? n - 1 : -1;
  for (int i = 0; i < n; i++)
    if (!strcmp(steps[i].name, after))
      last = i;
  if (last < 0) {
    ts_buf names;
    ts_buf_init(&names, ts_allocator_system());
    for (int i = 0; i < n; i++) {
      bool seen = false;
      for (int j = 0; j < i; j++)
        seen = seen || !strcmp(steps[j].name, steps[i].name);
      if (!seen)
        ts_buf_printf(&names, "%s, ", steps[i].name);
    }
    ts_status st = ts_status_make(TS_ERR_INVALID, "no pass '%s' in the %s pipeline (%sor all)",
                                  after, ts_target_name(target), names.ptr ? names.ptr : "");
    ts_buf_deinit(&names);
    return st;
  }
  for (int i = 0; i <= last; i++) {
    TS_TRY(run_pipeline(m, mod, steps[i].text, ts_target_name(target), false));
    if (all || !strcmp(steps[i].name, after)) {
      size_t pre = strlen("builtin.module(");
      ts_buf_printf(out, "// ----- the IR after pass %d of %d: %.*s -----\n", i + 1, n,
                    (int)(strlen(steps[i].text) - pre - 1), steps[i].text + pre);
      ts_mlir_print(mod, out);
    }
  }
  return NULL;
}

ts_status ts_mlir_parse_file(ts_mlir *m, const char *path, MlirModule *out) {
  MlirModule mod = mlirModuleCreateParseFromFile(m->ctx, mlirStringRefCreateFromCString(path));
  if (mlirModuleIsNull(mod))
    return ts_status_make(TS_ERR_PROGRAM, "%s: not a module of MLIR: %s", path, take_text(m));
  if (!mlirOperationVerify(mlirModuleGetOperation(mod))) {
    mlirModuleDestroy(mod);
    return ts_status_make(TS_ERR_PROGRAM, "%s: the module does not verify: %s", path,
                          take_text(m));
  }
  *out = mod;
  return NULL;
}

void ts_mlir_print(MlirModule mod, ts_buf *out) {
  print_op(mlirModuleGetOperation(mod), out);
}

ts_status ts_mlir_print_llvm(MlirModule mod, ts_buf *out) {
  char *ir = mlirTranslateModuleToLLVMIRToString(mlirModuleGetOperation(mod));
  if (!ir)
    return ts_status_make(TS_ERR_INTERNAL, "translation to LLVM IR failed");
  ts_buf_puts(out, ir);
  free(ir);
  return NULL;
}

/* ---- the CPU JIT --------------------------------------------------------------------------- */

struct ts_jit {
  ts_mlir *m;
  MlirModule module;
  MlirExecutionEngine engine;
};

ts_status ts_jit_create(ts_mlir *m, MlirModule lowered,
                        const ts_jit_symbol *syms, size_t nsyms, bool dumpable,
                        ts_jit **out) {
  ts_jit *j = calloc(1, sizeof *j);
  if (!j)
    return ts_status_nomem();
  j->engine = mlirExecutionEngineCreate(lowered, 3, 0, NULL, dumpable, dumpable);
  if (mlirExecutionEngineIsNull(j->engine)) {
    free(j);
    return ts_status_make(TS_ERR_INTERNAL, "the JIT could not be created: %s",
                          take_text(m));
  }
  for (size_t i = 0; i < nsyms; i++)
    mlirExecutionEngineRegisterSymbol(j->engine, mb_str(syms[i].name),
                                      syms[i].fn);
  j->m = m;
  j->module = lowered;
  *out = j;
  return NULL;
}

ts_packed_fn ts_jit_lookup(ts_jit *j, const char *name) {
  void *p = mlirExecutionEngineLookupPacked(j->engine, mb_str(name));
  return (ts_packed_fn)p;
}

bool ts_jit_dump_object(ts_jit *j, const char *path) {
  unlink(path);
  mlirExecutionEngineDumpToObjectFile(j->engine, mb_str(path));
  struct stat sb;
  return stat(path, &sb) == 0 && sb.st_size > 0;
}

void ts_jit_destroy(ts_jit *j) {
  if (!j)
    return;
  mlirExecutionEngineDestroy(j->engine);
  free(j);
}
