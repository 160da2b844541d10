/* fuzz_text.c - the libFuzzer entry point over what a tokenizer.json feeds:
 * the input's first byte (mod 3) picks the regex compiler (a pattern that
 * compiles is matched over a fixed text of mixed scripts and over its own
 * bytes decoded), the JSON reader, or the whole tokenizer (a file that
 * loads encodes a fixed text and its own bytes, and every id it gives must
 * decode). Any input must come back with a result or a status, never a
 * crash, a hang or a leak. */
#include "runtime/runtime.h"

#include <stdlib.h>

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void match_all(const ts_regex *r, const uint32_t *cps, size_t n) {
  size_t from = 0;
  while (from <= n) {
    bool found;
    size_t a, b;
    ts_status s = ts_regex_find(r, cps, n, from, &found, &a, &b);
    if (s) {
      ts_status_free(s);
      return;
    }
    if (!found)
      return;
    if (a < from || b < a || b > n)
      __builtin_trap(); /* a match outside the text */
    from = b > a ? b : b + 1;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  const char *text = (const char *)data + 1;
  size_t len = size - 1;
  if (data[0] % 3 == 2) {
    ts_tokenizer *t;
    ts_status s = ts_tokenizer_parse(text, len, &t);
    if (s) {
      ts_status_free(s);
      return 0;
    }
    static const char sample[] = "Hello, world! it's 12345 \xE6\xAF\x95 caf\xC3\xA9\n\t  x <s></s>\xFF";
    for (int k = 0; k < 2; k++) {
      int32_t *ids;
      size_t n;
      s = k ? ts_tokenizer_encode(t, text, len, true, &ids, &n)
            : ts_tokenizer_encode(t, sample, sizeof sample - 1, false, &ids, &n);
      if (s) {
        ts_status_free(s);
        continue;
      }
      ts_buf b;
      ts_buf_init(&b, ts_allocator_system());
      s = ts_tokenizer_decode(t, ids, n, false, &b);
      if (s)
        __builtin_trap(); /* an id that encode gave is not in the vocabulary */
      ts_buf_deinit(&b);
      free(ids);
    }
    size_t *offs, n;
    s = ts_tokenizer_pieces(t, text, len, &offs, &n);
    if (s)
      ts_status_free(s);
    else
      free(offs);
    ts_tokenizer_destroy(t);
    return 0;
  }
  if (data[0] % 3 == 1) {
    ts_json_doc d;
    ts_status s = ts_json_parse(text, len, &d);
    if (s)
      ts_status_free(s);
    else
      ts_json_doc_deinit(&d);
    return 0;
  }
  ts_regex *r;
  ts_status s = ts_regex_compile(text, len, &r);
  if (s) {
    ts_status_free(s);
    return 0;
  }
  static const char sample[] = "Hello, world! it's 12345 \xE6\xAF\x95\xE8\x80\x81 caf\xC3\xA9\n\t  x"
                               "\xF0\x9F\x98\x80 \xD9\xA3 a\xCC\x81";
  uint32_t cps[4200];
  size_t n = 0;
  for (size_t i = 0; i < sizeof sample - 1;) {
    size_t k = ts_utf8_decode(sample + i, sizeof sample - 1 - i, &cps[n++]);
    i += k ? k : 1;
  }
  match_all(r, cps, n);
  n = 0;
  for (size_t i = 0; i < len && n < 4200;) {
    size_t k = ts_utf8_decode(text + i, len - i, &cps[n]);
    if (!k)
      cps[n] = 0x110000u + (unsigned char)text[i];
    n++;
    i += k ? k : 1;
  }
  match_all(r, cps, n);
  ts_regex_destroy(r);
  return 0;
}
