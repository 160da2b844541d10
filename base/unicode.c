/* unicode.c - UTF-8 and Unicode general categories, as the tokenizer's
 * regexes need them: \p{L}, \p{N}, \s. The category table is generated
 * (scripts/gen_unicode.py -> unicode_categories.def); a code point not in it
 * is unassigned (Cn). */
#include "base/base.h"

#include <string.h>

typedef struct range {
  uint32_t first, last;
  uint8_t cat;
} range;

#define R(a, b, c) {a, b, TS_UCAT_##c},
#define A(c)
static const range ranges[] = {
#include "base/unicode_categories.def"
};
#undef R
#undef A

#define R(a, b, c)
#define A(c) TS_UCAT_##c,
static const uint8_t ascii[128] = {
#include "base/unicode_categories.def"
};
#undef R
#undef A

ts_ucat ts_unicode_category(uint32_t cp) {
  if (cp < 128)
    return (ts_ucat)ascii[cp];
  size_t lo = 0, hi = TS_ARRAY_COUNT(ranges);
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (cp < ranges[mid].first)
      hi = mid;
    else if (cp > ranges[mid].last)
      lo = mid + 1;
    else
      return (ts_ucat)ranges[mid].cat;
  }
  return TS_UCAT_CN;
}

/* The White_Space property (PropList.txt), what \s matches. */
bool ts_unicode_is_space(uint32_t cp) {
  if (cp < 0x80)
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

static const struct {
  const char *name;
  uint32_t mask;
} category_names[] = {
#define M(c) (1u << TS_UCAT_##c)
    {"L", M(LU) | M(LL) | M(LT) | M(LM) | M(LO)},
    {"Letter", M(LU) | M(LL) | M(LT) | M(LM) | M(LO)},
    {"M", M(MN) | M(MC) | M(ME)},
    {"Mark", M(MN) | M(MC) | M(ME)},
    {"N", M(ND) | M(NL) | M(NO)},
    {"Number", M(ND) | M(NL) | M(NO)},
    {"P", M(PC) | M(PD) | M(PS) | M(PE) | M(PI) | M(PF) | M(PO)},
    {"Punctuation", M(PC) | M(PD) | M(PS) | M(PE) | M(PI) | M(PF) | M(PO)},
    {"S", M(SM) | M(SC) | M(SK) | M(SO)},
    {"Symbol", M(SM) | M(SC) | M(SK) | M(SO)},
    {"Z", M(ZS) | M(ZL) | M(ZP)},
    {"Separator", M(ZS) | M(ZL) | M(ZP)},
    {"C", M(CC) | M(CF) | M(CS) | M(CO) | M(CN)},
    {"Other", M(CC) | M(CF) | M(CS) | M(CO) | M(CN)},
    {"Lu", M(LU)}, {"Ll", M(LL)}, {"Lt", M(LT)}, {"Lm", M(LM)}, {"Lo", M(LO)},
    {"Mn", M(MN)}, {"Mc", M(MC)}, {"Me", M(ME)}, {"Nd", M(ND)}, {"Nl", M(NL)},
    {"No", M(NO)}, {"Pc", M(PC)}, {"Pd", M(PD)}, {"Ps", M(PS)}, {"Pe", M(PE)},
    {"Pi", M(PI)}, {"Pf", M(PF)}, {"Po", M(PO)}, {"Sm", M(SM)}, {"Sc", M(SC)},
    {"Sk", M(SK)}, {"So", M(SO)}, {"Zs", M(ZS)}, {"Zl", M(ZL)}, {"Zp", M(ZP)},
    {"Cc", M(CC)}, {"Cf", M(CF)}, {"Cs", M(CS)}, {"Co", M(CO)}, {"Cn", M(CN)},
#undef M
};

uint32_t ts_unicode_category_mask(const char *name, size_t len) {
  for (size_t i = 0; i < TS_ARRAY_COUNT(category_names); i++)
    if (strlen(category_names[i].name) == len && !memcmp(category_names[i].name, name, len))
      return category_names[i].mask;
  return 0;
}

size_t ts_utf8_decode(const char *s, size_t len, uint32_t *out_cp) {
  const unsigned char *u = (const unsigned char *)s;
  if (len == 0)
    return 0;
  if (u[0] < 0x80) {
    *out_cp = u[0];
    return 1;
  }
  size_t n = u[0] >= 0xF0 ? 4 : u[0] >= 0xE0 ? 3 : u[0] >= 0xC0 ? 2 : 0;
  if (n == 0 || u[0] > 0xF4 || n > len)
    return 0;
  uint32_t cp = u[0] & (0x7F >> n);
  for (size_t i = 1; i < n; i++) {
    if ((u[i] & 0xC0) != 0x80)
      return 0;
    cp = cp << 6 | (u[i] & 0x3F);
  }
  static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < least[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0; /* overlong, out of range, a surrogate */
  *out_cp = cp;
  return n;
}

size_t ts_utf8_encode(uint32_t cp, char out[4]) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | cp >> 12);
    out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | cp >> 18);
  out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}
