#!/usr/bin/env python3
"""Writes tests/lua/data/pretok.txt: how three tokenizer.json pre-tokenizers
(DeepSeek V3/V4's three Splits, GPT-2's ByteLevel regex, Llama 3's Split)
cut a corpus of texts, computed with Python's `re` (another backtracking
engine), \\p{X} and \\s spelled out as explicit classes of the corpus's own
characters (unicodedata categories; \\s as Unicode White_Space). tests/lua/
tokenizer.lua checks runtime/tokenizer.c's pieces against it.
Line format: NAME TEXT_HEX PIECE_HEX,PIECE_HEX,...  (run from the repo root)"""
import random
import re
import unicodedata

PATTERNS = {
    # DeepSeek V3/V4's tokenizer.json: Split, Split, Split (Isolated), then ByteLevel
    "deepseek": [r"\p{N}{1,3}",
                 "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
                 r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""],
    "gpt2": [r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"],
    "llama3": [r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
}

WHITE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B)) + \
        "\u2028\u2029\u202f\u205f\u3000"

TEXTS = [
    "Hello! 毕老师！1 + 1 = 2 ĠÑĤÐ²ÑĬÑĢ",
    "Hello world, it's a test.\n\n  Indented   line\r\nend",
    "I'm HERE!\r\n  café 12345 naïve déjà vu",
    "fooBarBaz getHTTPResponse parseXMLFile // TODO: fixThis",
    "def foo_bar(self):  # noqa\n    return 1.5e-10\n",
    "12 123 1234567 x4² ½ ١٢٣ ① Ⅳ",
    "中文 日本語のテキスト、カタカナ 한국어 龥龦",
    "Русский Ελληνικά עברית العربية हिन्दी",
    "a\u0301\u0301b \u0301x !\u0301! e\u0301",
    "x\u00a0\u2003y\u2028\n\u3000z  \t",
    "emoji 😀👍🏽 and ★☆ symbols $5 €10 ¥",
    "<html><body class=\"x\">&amp;</body></html>",
    "...!!! ??? --- ''' \"\"\" ,,, :::",
    "   leading and trailing   ",
    "\n\n\n",
    "ǅungla ǈ Ǆ",
    "THE QUICK'S 'T 'Re 'VE 'M 'LL 'D",
    "tab\there\vvertical\fform",
    "",
]

POOL = (list("abcXYZ019 '!.,-_\n\r\t") + ["\u00a0", "\u3000", "\u2028", "一", "龥", "龦", "ひ",
        "カ", "ー", "한", "é", "\u0301", "²", "½", "١", "Ⅳ", "😀", "★", "€", "、", "！", "“", "”",
        "Ǆ", "ǅ", "ß", "Ω", "\u200d", "\u0300"])


def spell(pattern, chars):
    """\\p{X} and \\s / \\S as explicit classes over `chars`."""
    cats = {"L": "L", "N": "N", "P": "P", "S": "S", "M": "M"}

    def members(name):  # never empty: U+10FFFF (a noncharacter) is in no text here
        return "\U0010ffff" + "".join(re.escape(c) for c in sorted(chars)
                                       if unicodedata.category(c)[0] == cats[name])
    white = "".join(re.escape(c) for c in WHITE)
    out, i, in_class = [], 0, False
    while i < len(pattern):
        m = re.match(r"\\p\{(\w)\}", pattern[i:])
        if m:
            body = members(m.group(1))
            out.append(body if in_class else "[" + body + "]")
            i += m.end()
            continue
        two = pattern[i:i + 2]
        if two in ("\\s", "\\S"):
            if in_class:
                assert two == "\\s"
                out.append(white)
            else:
                out.append(("[" if two == "\\s" else "[^") + white + "]")
            i += 2
            continue
        if pattern[i] == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if pattern[i] == "[" and not in_class:
            in_class = True
        elif pattern[i] == "]" and in_class:
            in_class = False
        out.append(pattern[i])
        i += 1
    return "".join(out)


def split(patterns, text):
    pieces = [text] if text else []
    chars = set(text)
    for p in patterns:
        rx = re.compile(spell(p, chars))
        out = []
        for piece in pieces:
            prev = 0
            for m in rx.finditer(piece):
                if m.start() != prev:
                    out.append(piece[prev:m.start()])
                out.append(piece[m.start():m.end()])
                prev = m.end()
            if prev != len(piece):
                out.append(piece[prev:])
        pieces = [q for q in out if q]
    return pieces


def hexs(s):
    return s.encode("utf-8").hex() or "-"


rng = random.Random(7)
texts = TEXTS + ["".join(rng.choice(POOL) for _ in range(rng.randrange(1, 40))) for _ in range(300)]
lines = []
for name, pats in PATTERNS.items():
    for t in texts:
        lines.append("%s %s %s" % (name, hexs(t), ",".join(hexs(p) for p in split(pats, t)) or "-"))
with open("tests/lua/data/pretok.txt", "w") as f:
    f.write("\n".join(lines) + "\n")
print("tests/lua/data/pretok.txt: %d lines" % len(lines))
