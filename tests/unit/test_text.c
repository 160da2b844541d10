/* test_text.c - base/'s text pieces the tokenizer stands on: UTF-8, Unicode
 * categories, the regex matcher (semantics and refusals) and the JSON
 * reader (escapes, errors with line:column). */
#include "tests/unit/harness.h"

#include <stdlib.h>
#include <string.h>

/* CHECK for strings, showing both on a failure. */
#define CHECK_STR(got, want)                                                              \
  do {                                                                                    \
    const char *g_ = (got), *w_ = (want);                                                 \
    CHECK(!strcmp(g_, w_));                                                               \
    if (strcmp(g_, w_))                                                                   \
      fprintf(stderr, "  got:  %s\n  want: %s\n", g_, w_);                                \
  } while (0)

static void test_utf8(void) {
  uint32_t cp;
  CHECK(ts_utf8_decode("A", 1, &cp) == 1 && cp == 'A');
  CHECK(ts_utf8_decode("\xC3\xA9", 2, &cp) == 2 && cp == 0xE9);
  CHECK(ts_utf8_decode("\xE4\xB8\x80", 3, &cp) == 3 && cp == 0x4E00);
  CHECK(ts_utf8_decode("\xF0\x9F\x98\x80", 4, &cp) == 4 && cp == 0x1F600);
  CHECK(ts_utf8_decode("\xC0\xAF", 2, &cp) == 0);          /* overlong */
  CHECK(ts_utf8_decode("\xED\xA0\x80", 3, &cp) == 0);      /* a surrogate */
  CHECK(ts_utf8_decode("\xE4\xB8", 2, &cp) == 0);          /* truncated */
  CHECK(ts_utf8_decode("\x80", 1, &cp) == 0);              /* a continuation byte */
  CHECK(ts_utf8_decode("\xF4\x90\x80\x80", 4, &cp) == 0);  /* past U+10FFFF */
  for (uint32_t c = 0; c < 0x110000; c += 97) {
    if (c >= 0xD800 && c <= 0xDFFF)
      continue;
    char b[4];
    size_t n = ts_utf8_encode(c, b);
    CHECK(ts_utf8_decode(b, n, &cp) == n && cp == c);
  }
}

static void test_categories(void) {
  CHECK(ts_unicode_category('a') == TS_UCAT_LL && ts_unicode_category('Q') == TS_UCAT_LU);
  CHECK(ts_unicode_category(0x01C5) == TS_UCAT_LT);   /* Dž */
  CHECK(ts_unicode_category(0x4E00) == TS_UCAT_LO);
  CHECK(ts_unicode_category(0x0301) == TS_UCAT_MN);
  CHECK(ts_unicode_category(0x0663) == TS_UCAT_ND);   /* Arabic-Indic three */
  CHECK(ts_unicode_category(0x2163) == TS_UCAT_NL);   /* Roman four */
  CHECK(ts_unicode_category(0x00B2) == TS_UCAT_NO);
  CHECK(ts_unicode_category(0xFF01) == TS_UCAT_PO);   /* fullwidth ! */
  CHECK(ts_unicode_category(0x20AC) == TS_UCAT_SC);   /* euro */
  CHECK(ts_unicode_category(0x1F600) == TS_UCAT_SO);
  CHECK(ts_unicode_category(0x3000) == TS_UCAT_ZS);
  CHECK(ts_unicode_category(0x0378) == TS_UCAT_CN);   /* unassigned */
  CHECK(ts_unicode_category(0x110041) == TS_UCAT_CN);
  CHECK(ts_unicode_is_space(0x3000) && ts_unicode_is_space(0x85) && ts_unicode_is_space('\v'));
  CHECK(!ts_unicode_is_space(0x200B) && !ts_unicode_is_space(0x1C) && !ts_unicode_is_space('x'));
  CHECK(ts_unicode_category_mask("L", 1) == ts_unicode_category_mask("Letter", 6));
  CHECK(ts_unicode_category_mask("Q", 1) == 0);
}

/* The first match of pattern in text as "start-end" in code points, "none",
 * or "error: ..." for a refused pattern. */
static char result[256];
static const char *find(const char *pattern, const char *text) {
  ts_regex *r;
  ts_status s = ts_regex_compile(pattern, strlen(pattern), &r);
  if (s) {
    snprintf(result, sizeof result, "error: %s", ts_status_message(s));
    ts_status_free(s);
    return result;
  }
  uint32_t cps[128];
  size_t n = 0;
  for (size_t i = 0, len = strlen(text); i < len && n < 128;) {
    size_t k = ts_utf8_decode(text + i, len - i, &cps[n++]);
    i += k ? k : 1;
  }
  bool found;
  size_t a, b;
  s = ts_regex_find(r, cps, n, 0, &found, &a, &b);
  CHECK(s == NULL);
  ts_regex_destroy(r);
  if (found)
    snprintf(result, sizeof result, "%zu-%zu", a, b);
  else
    snprintf(result, sizeof result, "none");
  return result;
}

#define FIND(p, t, want) CHECK_STR(find(p, t), want)

static void test_regex(void) {
  FIND("abc", "xxabcx", "2-5");
  FIND("a|ab", "ab", "0-1");                 /* alternatives in order, not longest */
  FIND("ab|a", "ab", "0-2");
  FIND("a+", "baaac", "1-4");
  FIND("a+?", "baaac", "1-2");               /* lazy */
  FIND("a*?c", "aac", "0-3");
  FIND("a{2,3}", "aaaa", "0-3");
  FIND("a{2}", "a aa", "2-4");
  FIND("a{2,}", "aaaaa", "0-5");
  FIND("x{0}y", "xy", "1-2");
  FIND("\\p{N}{1,3}", "ab12345", "2-5");
  FIND("\\s+(?!\\S)", "a   b", "1-3");      /* leaves one space for the word */
  FIND("\\s+(?!\\S)|\\s+", "a   b", "1-3");
  FIND("\\s+(?!\\S)", "a   ", "1-4");
  FIND("a(?=b)", "acab", "2-3");
  FIND("(?i:'s|'t)", "IT'S", "2-4");
  FIND("(?i)abc", "xABC", "1-4");
  FIND("(?-i:a)", "A", "none");
  FIND("[^\\s\\p{L}\\p{N}]+", "ab 12 ?!x", "6-8");
  FIND("[\\p{L}\\p{M}]+", "1e\xCC\x81\xCC\x81z ", "1-5");
  FIND("[a-cx-z]+", "dxyzab", "1-6");
  FIND("[-a]+", "b-a-", "1-4");
  FIND("[]a]+", "b]a", "1-3");
  FIND("[\xE4\xB8\x80-\xE9\xBE\xA5]+", "a\xE4\xB8\x80\xE9\xBE\xA5\xE9\xBE\xA6", "1-3");
  FIND("\\x41\\u0042\\x{43}", "ABC", "0-3");
  FIND("\\d+", "a\xD9\xA3\xD9\xA4", "1-3");   /* \d is Unicode Nd */
  FIND("\\w+", "-a_1\xC3\xA9-", "1-5");
  FIND("^a", "ba", "none");
  FIND("a$", "aba", "2-3");
  FIND(".+", "ab\ncd", "0-2");
  FIND("(ab)+", "ababa", "0-4");
  FIND("(a|b)*c", "abbac", "0-5");
  FIND("(a*)*b", "aaab", "0-4");             /* an empty iteration ends the loop */
  FIND("(?:)", "x", "0-0");
  FIND("(?:a|[0-9]|\\p{Lu})+", "-a1Bc", "1-4");  /* one-character branches as a set */
  FIND("x|y", "zzy", "2-3");
  FIND("(?:a|bc)+", "abcab", "0-4");
  FIND("\\p{Lu}\\p{Ll}", "aBc", "1-3");
  FIND("\\P{L}", "ab1", "2-3");
  FIND("\\p{^L}", "ab1", "2-3");
  FIND("\\pN", "ab1", "2-3");
  /* refused with where */
  FIND("(?<=a)b", "ab", "error: regex '(?<=a)b': unsupported group (look-behind, named or atomic) at offset 2");
  FIND("(?-x:a)", "a", "error: regex '(?-x:a)': unsupported group flag at offset 3");
  FIND("(?-", "a", "error: regex '(?-': unsupported group flag at offset 3");
  FIND("(?-i", "a", "error: regex '(?-i': unsupported group flag at offset 4");
  FIND("a++", "a", "error: regex 'a++': possessive quantifiers are not supported at offset 2");
  FIND("\\p{Xx}", "a", "error: regex '\\p{Xx}': unknown Unicode category at offset 3");
  FIND("(ab", "a", "error: regex '(ab': expected ')' at offset 3");
  FIND("ab)", "a", "error: regex 'ab)': unbalanced ')' at offset 2");
  FIND("[ab", "a", "error: regex '[ab': unterminated class at offset 3");
  FIND("*a", "a", "error: regex '*a': nothing to repeat at offset 0");
  FIND("\\k<x>", "a", "error: regex '\\k<x>': unsupported escape at offset 1");
  FIND("[z-a]", "a", "error: regex '[z-a]': bad range in class at offset 4");
  FIND("a{3,2}", "a", "error: regex 'a{3,2}': bad {n,m} quantifier at offset 5");
  FIND("[[a]]", "a", "error: regex '[[a]]': nested classes are not supported at offset 1");

  /* A long run through a single-character repeat does not recurse per
   * character; a group repeated past the depth limit is an error, not a crash. */
  enum { N = 200000 };
  uint32_t *cps = malloc(N * sizeof *cps);
  for (size_t i = 0; i < N; i++)
    cps[i] = ' ';
  ts_regex *r;
  CHECK(ts_regex_compile("\\s+(?!\\S)|\\s+", 14, &r) == NULL);
  bool found;
  size_t a, b;
  CHECK(ts_regex_find(r, cps, N, 0, &found, &a, &b) == NULL && found && a == 0 && b == N);
  ts_regex_destroy(r);
  CHECK(ts_regex_compile("(?: )+", 6, &r) == NULL); /* one character a turn: a loop too */
  CHECK(ts_regex_find(r, cps, N, 0, &found, &a, &b) == NULL && found && b == N);
  ts_regex_destroy(r);
  CHECK(ts_regex_compile("(?:\\p{L}|\\p{M}| )+", 18, &r) == NULL); /* one-character branches */
  CHECK(ts_regex_find(r, cps, N, 0, &found, &a, &b) == NULL && found && b == N);
  ts_regex_destroy(r);
  CHECK(ts_regex_compile("(?:ab|  )+", 10, &r) == NULL);
  ts_status s = ts_regex_find(r, cps, N, 0, &found, &a, &b);
  CHECK(s && strstr(ts_status_message(s), "deeper than"));
  ts_status_free(s);
  ts_regex_destroy(r);
  /* nested repeats that would backtrack exponentially give up on a budget */
  for (size_t i = 0; i < 40; i++)
    cps[i] = 'a';
  CHECK(ts_regex_compile("(a*)*b", 6, &r) == NULL);
  s = ts_regex_find(r, cps, 40, 0, &found, &a, &b);
  CHECK(s && strstr(ts_status_message(s), "backtracking past"));
  ts_status_free(s);
  ts_regex_destroy(r);
  free(cps);
}

static void test_json(void) {
  const char *text = "{\"a\": [1, -2.5e3, true, null], \"s\": \"x\\u00e9\\ud83d\\ude00\\n\\\"\","
                     " \"o\": {}, \"e\": []}";
  ts_json_doc d;
  CHECK(ts_json_parse(text, strlen(text), &d) == NULL);
  const ts_json *a = ts_json_get(d.root, "a"), *s = ts_json_get(d.root, "s");
  CHECK(a && a->kind == TS_JSON_ARRAY && a->count == 4);
  CHECK(a->items[0].number == 1 && a->items[1].number == -2500);
  CHECK(a->items[2].kind == TS_JSON_BOOL && a->items[2].boolean);
  CHECK(a->items[3].kind == TS_JSON_NULL);
  CHECK(s && s->len == 9 && !memcmp(s->str, "x\xC3\xA9\xF0\x9F\x98\x80\n\"", 9));
  CHECK(ts_json_get(d.root, "o")->count == 0 && ts_json_get(d.root, "e")->kind == TS_JSON_ARRAY);
  CHECK(ts_json_get(d.root, "missing") == NULL && ts_json_get(a, "x") == NULL);
  ts_json_doc_deinit(&d);

  static const struct {
    const char *text, *error;
  } bad[] = {
      {"{\"a\": 1,}", "JSON 1:9: expected a member name"},
      {"[1 2]", "JSON 1:4: expected ',' or ']'"},
      {"{\"a\"\n  : tru}", "JSON 2:5: expected a value"},
      {"\"abc", "JSON 1:1: unterminated string"},
      {"\"\\ud800x\"", "JSON 1:2: unpaired surrogate in a string"},
      {"\"\\q\"", "JSON 1:2: bad escape in a string"},
      {"[01]", "JSON 1:2: expected a value"},
      {"{} x", "JSON 1:4: text after the value"},
      {"", "JSON 1:1: unexpected end of text"},
  };
  for (size_t i = 0; i < TS_ARRAY_COUNT(bad); i++) {
    ts_status st = ts_json_parse(bad[i].text, strlen(bad[i].text), &d);
    CHECK(st != NULL);
    if (st) {
      CHECK_STR(ts_status_message(st), bad[i].error);
      ts_status_free(st);
    }
  }
  char deep[600];
  memset(deep, '[', sizeof deep);
  ts_status st = ts_json_parse(deep, sizeof deep, &d);
  CHECK(st && strstr(ts_status_message(st), "nested too deep"));
  ts_status_free(st);
}

/* ts_json_put_string writes what ts_json_parse reads back: every byte
 * value (control characters escaped, NUL included; bytes that are not
 * UTF-8 pass through) and the quoting characters. */
static void test_json_write(void) {
  char bytes[256 + 4];
  size_t n = 0;
  for (int c = 0; c < 256; c++)
    bytes[n++] = (char)c;
  memcpy(bytes + n, "\"\\/", 3);
  n += 3;
  ts_buf b;
  ts_buf_init(&b, ts_allocator_system());
  ts_buf_putc(&b, '[');
  ts_json_put_string(&b, bytes, n);
  ts_buf_putc(&b, ']');
  CHECK(!b.failed && !memchr(b.ptr, 0, b.len) && !memchr(b.ptr, '\n', b.len));
  ts_json_doc d;
  ts_status st = ts_json_parse(b.ptr, b.len, &d);
  CHECK(st == NULL);
  if (!st) {
    const ts_json *v = &d.root->items[0];
    CHECK(v->kind == TS_JSON_STRING && v->len == n && !memcmp(v->str, bytes, n));
    ts_json_doc_deinit(&d);
  }
  ts_status_free(st);
  ts_buf_deinit(&b);
}

int main(void) {
  test_json_write();
  test_utf8();
  test_categories();
  test_regex();
  test_json();
  return ts_test_finish();
}
