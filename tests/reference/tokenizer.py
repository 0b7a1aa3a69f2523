"""Reference fixture for tests/clipnet/tokenizer_test.cpp and text_clean_test.cpp: a deterministic corpus of
varied strings with the ids, truncated rows and decoded text of openai-clip's SimpleTokenizer, plus the same
vocabulary in every file layout clipnet::Tokenizer reads, and the pattern's class of every code point.

Writes into DIR:
  corpus.json     {"vocab": <path>, "excluded_mojibake": n, "items": [{"text", "clean", "ids", "decoded"}, ...],
                   "truncate": [{"text", "context_length", "row"}, ...]}
  classes.txt     one letter per code point U+0000..U+10FFFF (surrogates 'S'), how OpenAI's pattern sees it:
                  L [\\p{L}], N [\\p{N}], S \\s, O [^\\s\\p{L}\\p{N}], - none (all with IGNORECASE, `regex` module)
  vocab_path.txt  the path of bpe_simple_vocab_16e6.txt.gz used
  readers.json    [{"name", "path"}]: the vocabulary as OpenAI .txt.gz, plain .txt, HF vocab.json + merges.txt
                  (given by either file and by folder), HF tokenizer.json with "a b" merges and with [a, b] merges,
                  and transformers' own CLIPTokenizerFast.save_pretrained output
  DONE            written last

The corpus is generated, not picked: every string the generators make is kept, except those where ftfy's
mojibake repair (fix_encoding, which clipnet documents as not covered) changes the text; their number is
recorded as excluded_mojibake. The vocabulary and prompts come from the repository's tests/data/openai-clip;
without them the script fails.

Usage: python tokenizer.py --out DIR --test-data DIR
"""
import gzip
import html.entities
import json
import os
import random
import sys

import ftfy
import regex
import fixture_cli  # tests/reference/fixture_cli.py, beside this script

N_RANDOM = 2400  # generated strings besides the fixed ones (the corpus must hold >= 2,000)


# ---------------------------------------------------------------------------------------------------------
# corpus
# ---------------------------------------------------------------------------------------------------------

FIXED = [
    "a photo of a cat", "A PHOTO OF A DOG", "a diagram", "a painting of a fox in the style of Van Gogh",
    "", " ", "\t\n", "hello world", "Hello, World!", "it's", "IT'S", "we're here", "they've", "I'm", "you'll",
    "he'd", "'s 't 're 've 'm 'll 'd", "rock'n'roll", "don't stop", "O'Neil's", "it\u2019s curly", "\u2018quoted\u2019",
    "\u201cdouble\u201d", "the ﬁrst ﬂoor", "ﬀ ﬃ ﬄ ﬅ ﬆ", "Ĳssel ĳs", "ŉ", "ǄǅǆǇǈǉǊǋǌǱǲǳ", "ＬＯＵＤ　ＮＯＩＳＥＳ",
    "ｈｅｌｌｏ１２３", "ﾊﾝｶｸ ｶﾀｶﾅ ｶﾞ", "ﾟﾞ", "ﾡﾢﾣ", "<|endoftext|>", "<|startoftext|>", "a<|endoftext|>b",
    "<|ENDOFTEXT|>", "<|EndOfText|>", "!!<|endoftext|>", "<|endoftext|><|startoftext|>", "<|endoftext", "<|ſtartoftext|>",
    "it'ſ", "itſ", "ﬅ", "it'ﬅ", "ab\u0345c", "x\u0345", "ᾳ", "ΟΔΟΣ ΟΔΟΣ.", "Σ", "ΑΣ", "İstanbul", "ǅ", "ß STRASSE",
    "Ꭰ", "ﬀ", "12345", "3.14159", "1,000,000", "٣٤٥", "१२३", "½ ¾ ² ³", "Ⅻ ⅻ", "①②③", "₀₁₂", "x²+y²",
    "&amp;", "&amp;amp;", "&amp;amp;amp;amp;", "&lt;b&gt;bold&lt;/b&gt;", "<b>bold</b> &amp; stuff",
    "&AMP; &EACUTE; &NTILDE; &nTILDE;", "P&EACUTE;REZ", "&notit; &notin; &not", "this&not that", "&ampx;", "&amp",
    "&#65;&#x42;&#X43;", "&#128;&#129;&#150;", "&#0;", "&#13;", "&#x110000;", "&#xD800;", "&#1;", "&#59;", "&#x;",
    "&#;", "&#abc;", "&#12ab;", "&#x4G;", "&#99999999999999999999;", "&#x1F600;", "&#x1f600", "&nbsp;&nbsp;x",
    "&Tab;a&NewLine;b", "&hellip;", "Broken text&hellip; it&#x2019;s ﬂubberiﬁc!", "&frac12; &frac12", "&frac12abc",
    "&thetasym; &ThickSpace; &NotEqualTilde;", "&abcdefghijklmnopqrstuvwxyzabcdefghijklmnop;",
    "&a;", "&;", "& ;", "&&amp;", "&#38;amp;", "a&lt;b", "line1 &amp;\nline2 <\nline3 &amp;", "x < y &amp; z",
    "&lt;\n&amp;", "\x1b[36;44mblue\x1b[0m", "\x1b[1m", "\x1b[٣m", "\x1bx", "bell\x07", "a\x00b", "a\x0bb", "a\x0cb",
    "a\x1cb", "a\x7fb", "a\u200bb", "a\u200db", "a\ufeffb", "\ufeffBOM", "a\ufffcb", "a\u206ab",
    "a\rb", "a\r\nb", "a\u2028b", "a\u2029b", "a\x85b", "caf\u00e9", "cafe\u0301", "e\u0301\u0302", "\u1100\u1161\u11a8",
    "한국어", "日本語のテキスト", "中文文本", "Ελληνικά κείμενα", "Русский текст", "עברית", "العربية", "हिन्दी",
    "ภาษาไทย", "ქართული", "Հայերեն", "🐱 cat", "👩‍💻", "👍🏽", "🏳️‍🌈", "🇯🇵🇺🇸", "1️⃣", "👨‍👩‍👧‍👦",
    "a\u00a0b", "a\u3000b", "a\u2003b", "a\u202fb", "a\u1680b", "a\u180eb", "a\u200ab", "   leading and trailing   ",
    "many     spaces\t\ttabs\n\nnewlines", "\u0130\u0069\u0307", "\u1e9e", "ǰ", "ﬓ", "Å", "Kelvin \u212a",
    "\U0001d400\U0001d401", "\U00010400", "\U000105c0\U000105c1", "\U00016d40 \U00016d70", "\U0001e5f1",
    "\u0080\u0081\u0090\u009f", "€", "\U0010fffd", "\ufffd", "\ue000 private", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "!!!!!!!!!!!!!!!!!!!!", "...", "---", "$100", "C++", "#hashtag", "@user", "e-mail: a.b@c.d", "https://example.com/x?y=1",
    "snake_case_name", "CamelCaseName", "HTML5", "4k", "8K UHD", "f/1.8", "16:9", "trending on artstation",
]


def build_pools():
    """Characters by script, for random words."""
    def rng(a, b):
        return [chr(c) for c in range(a, b + 1)]
    return {
        "latin": list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        "latin_accents": rng(0xC0, 0xFF) + rng(0x100, 0x17F) + rng(0x180, 0x24F) + rng(0x1E00, 0x1EFF),
        "greek": rng(0x391, 0x3A9) + rng(0x3B1, 0x3C9) + list("άέήίόύώϊϋΐΰς") + rng(0x1F00, 0x1FFC),
        "cyrillic": rng(0x410, 0x44F) + rng(0x400, 0x40F) + rng(0x450, 0x45F) + rng(0x460, 0x4FF),
        "armenian": rng(0x531, 0x556) + rng(0x561, 0x587),
        "hebrew": rng(0x5D0, 0x5EA) + rng(0x591, 0x5C7),
        "arabic": rng(0x621, 0x64A) + rng(0x64B, 0x652) + rng(0x660, 0x669) + rng(0x6F0, 0x6F9),
        "devanagari": rng(0x900, 0x97F),
        "bengali": rng(0x985, 0x9B9) + rng(0x9BC, 0x9CD) + rng(0x9E6, 0x9EF),
        "tamil": rng(0xB85, 0xBB9) + rng(0xBBE, 0xBCD) + rng(0xBE6, 0xBEF),
        "thai": rng(0xE01, 0xE3A) + rng(0xE40, 0xE5B),
        "georgian": rng(0x10D0, 0x10FA) + rng(0x10A0, 0x10C5),
        "hangul": rng(0xAC00, 0xD7A3) + rng(0x1100, 0x1112) + rng(0x1161, 0x1175) + rng(0x11A8, 0x11C2) + rng(0x3131, 0x318E),
        "kana": rng(0x3041, 0x3096) + rng(0x30A1, 0x30FA) + list("ーゝゞ゛゜") + rng(0xFF61, 0xFF9F),
        "cjk": rng(0x4E00, 0x9FFF) + rng(0x3400, 0x4DBF) + rng(0x20000, 0x2A6DF) + rng(0xF900, 0xFAFF),
        "ethiopic": rng(0x1200, 0x135A),
        "digits": list("0123456789") + rng(0x660, 0x669) + rng(0x966, 0x96F) + rng(0xFF10, 0xFF19) + list("½¼¾²³¹⁰ⅠⅡⅫⅰ①⑳"),
        "punct": list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + list("¡¿«»‹›–—…·•§¶†‡‰′″‴※‼⁇⁈") + rng(0x2018, 0x201F)
        + list("、。「」『』【】〈〉《》！？（），：；") + rng(0xFF01, 0xFF0F) + list("ʼ"),
        "symbols": list("©®™°±×÷µ¶€£¥¢₹₽₿∞≈≠≤≥∑∏√∫∂∆∇∈∉∩∪⊂⊃←↑→↓↔⇒⇔★☆♠♣♥♦♪♫☀☁☂☃✓✗✔✘❤")
        + rng(0x2500, 0x257F) + rng(0x1D400, 0x1D433),
        "ligatures": list("ﬀﬁﬂﬃﬄﬅﬆĲĳŉǄǅǆǇǈǉǊǋǌǱǲǳ"),
        "fullwidth": rng(0xFF01, 0xFF5E) + rng(0xFFE0, 0xFFEE) + ["\u3000"],
        "combining": rng(0x300, 0x36F) + rng(0x1AB0, 0x1ABE) + rng(0x20D0, 0x20F0),
        "newer_unicode": rng(0x105C0, 0x105F3) + rng(0x16D40, 0x16D79) + rng(0x1E5D0, 0x1E5FA) + rng(0x11380, 0x113B5)
        + rng(0x10D40, 0x10D65) + rng(0x1E030, 0x1E06D) + rng(0x11F00, 0x11F59),
    }


EMOJI = ["😀", "😂", "🥲", "😍", "🤖", "👾", "🐱", "🐶", "🦊", "🌸", "🌈", "🔥", "⭐", "🎨", "🖼️", "🏔️", "❤️", "✨",
         "🚀", "🍕", "🍣", "⚽", "🎉", "🧠", "🦄", "🐉", "🌍", "☕", "🌊", "🌙"]
PEOPLE = ["👍", "👋", "🙏", "💪", "👩", "👨", "🧑", "👶", "🏃", "🤷"]
SKIN = ["", "\U0001F3FB", "\U0001F3FC", "\U0001F3FD", "\U0001F3FE", "\U0001F3FF"]
ZWJ = ["👩‍💻", "👨‍🚀", "🧑‍🎨", "👩‍❤️‍👨", "👨‍👩‍👧", "🏳️‍🌈", "🏴‍☠️", "🐻‍❄️", "❤️‍🔥", "😶‍🌫️", "👁️‍🗨️"]
FLAGS = ["🇫🇷", "🇩🇪", "🇯🇵", "🇧🇷", "🇮🇳", "🇺🇦", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"]
WHITESPACE = [" ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2002", "\u2009", "\u202f", "\u205f", "\u2028",
              "\u2029", "\u0085", "\x0b", "\x0c", "\x1c", "\x1f", " \t \n "]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'LL", "'D", "'x", "'", "’s", "‘t"]
WORDS = ("a photo of the cat dog house tree mountain river painting portrait landscape city night sunset "
         "beautiful detailed highly realistic render octane unreal engine trending artstation concept art "
         "watercolor oil canvas studio lighting cinematic 4k 8k hdr surreal abstract minimalist vintage "
         "cyberpunk steampunk fantasy medieval castle dragon forest ocean ship robot astronaut flower garden "
         "by greg rutkowski alphonse mucha moebius don't isn't we're they'll i've she'd it's").split()


def html_pieces(rand):
    names = sorted(html.entities.html5)
    name = rand.choice(names)
    kind = rand.randrange(14)
    if kind == 0:
        return "&" + name
    if kind == 1:
        return "&" + name.upper()
    if kind == 2:
        return "&" + name.rstrip(";") + rand.choice(["", "x", "abc", ";", "1", " "])
    if kind == 3:
        return "&#%d;" % rand.choice([0, 1, 9, 10, 13, 32, 38, 59, 60, 65, 127, 128, 133, 150, 159, 160, 233, 8217, 55296,
                                      57343, 65279, 65534, 65535, 1114111, 1114112, 128512, rand.randrange(0, 200000)])
    if kind == 4:
        return "&#x%X;" % rand.choice([0x41, 0x80, 0x9F, 0xA0, 0x2019, 0xD800, 0xFDD0, 0x1FFFE, 0x10FFFF, 0x110000,
                                       rand.randrange(0, 0x30000)])
    if kind == 5:
        return "&#x%x" % rand.randrange(0, 0x3000) + rand.choice(["", " ", "g", "z;"])
    if kind == 6:
        return "&#%d" % rand.randrange(0, 100000) + rand.choice(["", "a", ";", "x"])
    if kind == 7:
        return rand.choice(["&#;", "&#x;", "&#xg;", "&;", "& ", "&&", "&#", "&x", "&#X41;", "&#0065;", "&#x0041;",
                            "&" + "a" * rand.randrange(20, 40) + ";", "&amp" * rand.randrange(1, 4), "&amp;" * 2 + "lt;"])
    if kind == 8:
        return "&amp;" + name  # double-escaped: html.unescape twice in basic_clean
    if kind == 9:
        return "&amp;amp;" + name
    if kind == 10:
        return "<" + rand.choice(["b", "i", "/p", "br/"]) + ">"
    if kind == 11:
        return "&" + "".join(rand.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
                             for _ in range(rand.randrange(1, 30))) + rand.choice([";", "", " "])
    if kind == 12:
        return "&" + name.rstrip(";") + rand.choice(["é", "日", "😀"]) + ";"
    return "&" + rand.choice(["lt", "gt", "amp", "quot", "nbsp", "copy", "eacute", "hellip", "mdash"]) + rand.choice([";", ""])


def random_word(rand, pools, pool_name=None):
    pool = pools[pool_name or rand.choice(list(pools))]
    return "".join(rand.choice(pool) for _ in range(rand.choice([1, 2, 3, 4, 5, 6, 8, 12])))


# Dense mixtures of the characters where the cleaning and splitting rules interact: entity syntax, segment breaks,
# '<', long s, U+0345, sigma, dotted I, C1 controls, ANSI escapes, ligatures, fullwidth forms, special tokens.
TRICKY = list("&#xX;0123456789aAbBltgpmoOsStT<>\n\r\t '\"|") + [
    "ſ", "\u0345", "Σ", "σ", "İ", "ß", "\u00a0", "\u3000", "\u2028", "\u0085", "\u0091", "\u0092", "\u0080", "\u0081",
    "\x1b", "[", "ﬁ", "ﬅ", "ŉ", "Ｓ", "ｓ", "＆", "＃", "；", "\u2019", "\u201c", "e\u0301", "\u0301", "ΐ", "ᾳ", "ǅ", "\x00",
    "\x0b", "\x1c", "\ufeff", "\u200d", "😀", "\U0001F3FD", "٣", "¹", "Ⅻ", "amp", "lt", "gt", "nbsp", "notin", "not",
    "AMP", "EACUTE", "eacute", "Eacute", "frac12", "endoftext", "startoftext", "<|", "|>", "&#", "&#x", "&amp;", "&lt;"]


def random_string(rand, pools):
    kind = rand.randrange(18)
    if kind >= 16:
        return "".join(rand.choice(TRICKY) for _ in range(rand.randrange(1, 25)))
    parts = []
    if kind <= 2:  # prompt-like English with noise
        n = rand.randrange(1, 20)
        for _ in range(n):
            w = rand.choice(WORDS)
            r = rand.random()
            if r < 0.1:
                w = w.upper()
            elif r < 0.2:
                w = w.capitalize()
            parts.append(w)
            parts.append(rand.choice([" ", " ", " ", ", ", ". ", " - ", "  ", "\t"]))
        return "".join(parts)
    if kind == 3:  # one script, words
        script = rand.choice([p for p in pools if p not in ("combining",)])
        return " ".join(random_word(rand, pools, script) for _ in range(rand.randrange(1, 8)))
    if kind == 4:  # mixed scripts
        return rand.choice(["", " "]).join(random_word(rand, pools) for _ in range(rand.randrange(1, 8)))
    if kind == 5:  # emoji
        for _ in range(rand.randrange(1, 8)):
            r = rand.randrange(5)
            if r == 0:
                parts.append(rand.choice(EMOJI))
            elif r == 1:
                parts.append(rand.choice(PEOPLE) + rand.choice(SKIN))
            elif r == 2:
                parts.append(rand.choice(ZWJ))
            elif r == 3:
                parts.append(rand.choice(FLAGS))
            else:
                parts.append(rand.choice(WORDS))
            parts.append(rand.choice(["", " ", " ", "!"]))
        return "".join(parts)
    if kind in (6, 7):  # HTML entities in text
        for _ in range(rand.randrange(1, 6)):
            parts.append(rand.choice(WORDS) if rand.random() < 0.5 else random_word(rand, pools))
            parts.append(rand.choice([" ", "", "\n"]))
            parts.append(html_pieces(rand))
        return "".join(parts)
    if kind == 8:  # whitespace runs
        for _ in range(rand.randrange(1, 8)):
            parts.append(rand.choice(WHITESPACE) * rand.randrange(1, 3))
            parts.append(rand.choice(WORDS))
        parts.append(rand.choice(WHITESPACE))
        return "".join(parts)
    if kind == 9:  # contractions and apostrophes
        for _ in range(rand.randrange(1, 8)):
            parts.append(rand.choice(WORDS + ["ſ", "I", "WE", "YOU"]))
            parts.append(rand.choice(CONTRACTIONS))
            parts.append(rand.choice([" ", "", "!", "'"]))
        return "".join(parts)
    if kind == 10:  # digits and numbers
        return " ".join(random_word(rand, pools, "digits") + rand.choice(["", "px", "%", ".5", "k", "th"])
                        for _ in range(rand.randrange(1, 8)))
    if kind == 11:  # long text (beyond 77 tokens)
        n = rand.randrange(60, 200)
        return " ".join(rand.choice(WORDS) for _ in range(n))
    if kind == 12:  # combining marks, normalisation
        for _ in range(rand.randrange(1, 6)):
            parts.append(random_word(rand, pools, rand.choice(["latin", "greek", "cyrillic", "latin_accents"])))
            parts.append("".join(rand.choice(pools["combining"]) for _ in range(rand.randrange(0, 3))))
            parts.append(" ")
        return "".join(parts)
    if kind == 13:  # ligatures, fullwidth, quotes, C1 and other controls
        pool = pools["ligatures"] + pools["fullwidth"] + list("\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f\u02bc")
        pool += ["\x00", "\x07", "\x1b[31m", "\x7f", "\u0080", "\u0085", "\u0091", "\u0092", "\u009d", "\ufeff", "\u206b",
                 "\ufff9", "\ufffc", "\u200b", "\u200c", "\u200d", "\u200e"]
        return "".join(rand.choice(pool + [" ", rand.choice(WORDS)]) for _ in range(rand.randrange(1, 15)))
    if kind == 14:  # random code points, any plane (no surrogates)
        out = []
        for _ in range(rand.randrange(1, 20)):
            r = rand.random()
            if r < 0.5:
                cp = rand.randrange(0x20, 0x3000)
            elif r < 0.8:
                cp = rand.randrange(0x3000, 0x10000)
            else:
                cp = rand.randrange(0x10000, 0x110000)
            if 0xD800 <= cp <= 0xDFFF:
                cp = 0xFFFD
            out.append(chr(cp))
        return "".join(out)
    # kind 15: endoftext literals and punctuation mixtures
    pieces = ["<|endoftext|>", "<|startoftext|>", "<|ENDOFTEXT|>", "<|", "|>", "<", ">", "|", "!!", "...", "'", "?!",
              "(", ")", "[", "]", "{", "}", "\"", "--", "//", "#", "@"]
    return "".join(rand.choice(pieces + [rand.choice(WORDS), " "]) for _ in range(rand.randrange(1, 12)))


def prompts_from_test_data(folder):
    """Class names and templates of OpenAI's prompts.md (real prompts), when the file is there."""
    path = os.path.join(folder, "openai-clip", "prompts.md")
    if not os.path.exists(path):
        return []
    out = []
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line.startswith("'") and line.endswith("',") or line.startswith('"') and line.endswith('",'):
            out.append(line[1:-2])
    return out[::7]  # every 7th line: varied without being huge


def build_corpus(folder):
    rand = random.Random(20240601)
    pools = build_pools()
    texts = list(FIXED) + prompts_from_test_data(folder)
    texts += [random_string(rand, pools) for _ in range(N_RANDOM)]
    kept, excluded = [], 0
    for t in texts:
        # fix_encoding (mojibake repair) is documented as not covered by clipnet; leave out what it changes.
        if ftfy.fix_text(t) != ftfy.fix_text(t, fix_encoding=False):
            excluded += 1
            continue
        kept.append(t)
    return kept, excluded


# ---------------------------------------------------------------------------------------------------------
# vocabulary files
# ---------------------------------------------------------------------------------------------------------

def write_vocab_files(out, tok, bpe_path):
    """The SimpleTokenizer vocabulary in every layout the C++ reader takes; returns readers.json entries."""
    merges = [" ".join(m) for m, _ in sorted(tok.bpe_ranks.items(), key=lambda kv: kv[1])]
    vocab = dict(sorted(tok.encoder.items(), key=lambda kv: kv[1]))
    readers = [{"name": "openai_gz", "path": bpe_path}]

    plain = os.path.join(out, "openai_txt")
    os.makedirs(plain, exist_ok=True)
    with gzip.open(bpe_path) as f, open(os.path.join(plain, "bpe_merges.txt"), "wb") as g:
        g.write(f.read())
    readers.append({"name": "openai_txt", "path": os.path.join(plain, "bpe_merges.txt")})

    hf = os.path.join(out, "hf_pair")
    os.makedirs(hf, exist_ok=True)
    with open(os.path.join(hf, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(hf, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    readers += [{"name": "hf_vocab_json", "path": os.path.join(hf, "vocab.json")},
                {"name": "hf_merges_txt", "path": os.path.join(hf, "merges.txt")},
                {"name": "hf_pair_folder", "path": hf}]

    added = [{"id": tok.encoder[t], "content": t, "special": True} for t in ("<|startoftext|>", "<|endoftext|>")]
    for name, merge_list in (("hf_json_strings", merges), ("hf_json_pairs", [m.split(" ") for m in merges])):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        doc = {"version": "1.0", "added_tokens": added,
               "model": {"type": "BPE", "end_of_word_suffix": "</w>", "vocab": vocab, "merges": merge_list}}
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False)
        readers.append({"name": name, "path": os.path.join(d, "tokenizer.json")})

    # transformers' own tokenizer.json (whatever merges layout the installed version writes).
    try:
        import transformers
        fast = transformers.CLIPTokenizerFast.from_pretrained(hf)
        d = os.path.join(out, "hf_fast")
        fast.save_pretrained(d)
        with open(os.path.join(d, "tokenizer.json"), encoding="utf-8") as f:
            saved = json.load(f)
        if len(saved["model"]["vocab"]) != len(vocab):
            raise RuntimeError(f"saved vocabulary has {len(saved['model']['vocab'])} entries, expected {len(vocab)}")
        readers.append({"name": "hf_fast_save_pretrained", "path": os.path.join(d, "tokenizer.json")})
    except Exception as e:  # an optional extra layout; the hand-built files above cover both merge layouts
        print(f"note: transformers CLIPTokenizerFast.save_pretrained unavailable ({e}); skipping that layout", file=sys.stderr)
    return readers


def write_classes(path):
    pat = regex.compile(r"(?P<L>[\p{L}])|(?P<N>[\p{N}])|(?P<S>\s)|(?P<O>[^\s\p{L}\p{N}])", regex.IGNORECASE)
    chars = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            chars.append("S")
            continue
        m = pat.match(chr(cp))
        chars.append(m.lastgroup if m else "-")
    with open(path, "w", encoding="ascii") as f:
        f.write("".join(chars))


def main():
    args = fixture_cli.start(__doc__.split("\n\n")[0], test_data_required=True)
    out = args.out
    bpe_path = os.path.abspath(os.path.join(args.test_data, "openai-clip", "bpe_simple_vocab_16e6.txt.gz"))
    if not os.path.exists(bpe_path):
        sys.exit(f"tokenizer fixture: {bpe_path} not found (tests/data is part of the repository)")

    import clip
    from clip.simple_tokenizer import SimpleTokenizer, basic_clean, whitespace_clean
    tok = SimpleTokenizer(bpe_path)
    clip.clip._tokenizer = tok  # clip.tokenize uses the module's tokenizer: make it this vocabulary

    texts, excluded = build_corpus(args.test_data)
    items = []
    for t in texts:
        ids = tok.encode(t)
        items.append({"text": t, "clean": whitespace_clean(basic_clean(t)).lower(), "ids": ids, "decoded": tok.decode(ids)})
    truncate = []
    long_texts = [t for t in texts if len(tok.encode(t)) > 75][:60]
    for t in long_texts:
        for L in (77, 16):
            truncate.append({"text": t, "context_length": L, "row": clip.tokenize([t], context_length=L, truncate=True)[0].tolist()})
    with open(os.path.join(out, "corpus.json"), "w", encoding="utf-8") as f:
        json.dump({"vocab": bpe_path, "excluded_mojibake": excluded, "items": items, "truncate": truncate}, f, ensure_ascii=False)
    with open(os.path.join(out, "readers.json"), "w", encoding="utf-8") as f:
        json.dump(write_vocab_files(out, tok, bpe_path), f, indent=1)
    write_classes(os.path.join(out, "classes.txt"))
    with open(os.path.join(out, "vocab_path.txt"), "w", encoding="utf-8") as f:
        f.write(bpe_path)
    print(f"tokenizer fixture: {len(items)} strings ({excluded} left out as mojibake), {len(truncate)} truncated rows")
    fixture_cli.finish(out)


if __name__ == "__main__":
    main()
