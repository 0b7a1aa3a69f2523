// Text cleaning of OpenAI CLIP's tokenizer (see text_clean.h): a port of the parts of ftfy.fix_text that
// prompts meet, CPython's html.unescape, Python's whitespace sets and str.lower() through ICU.
// [SECTION] UTF-8  [SECTION] html.unescape  [SECTION] ftfy  [SECTION] clean_text
#include "clipnet/text_clean.h"

#include "clipnet/utf8.h"
#include "core/error.h"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>

namespace clipguide::clipnet {
namespace {

struct EntityEntry {
  const char* name;
  const char* value;
};
struct CharrefEntry {
  char32_t code;
  const char* value;
};
#include "clipnet/html_entities.inc"

// ============================================================================================
// [SECTION] UTF-8
// ============================================================================================


// Decodes UTF-8 that check_utf8 accepted.
std::u32string to_u32(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    unsigned char b = p[i];
    if (b < 0x80) {
      out.push_back(b);
      ++i;
    } else if (b < 0xE0) {
      out.push_back(((b & 0x1F) << 6) | (p[i + 1] & 0x3F));
      i += 2;
    } else if (b < 0xF0) {
      out.push_back(((b & 0x0F) << 12) | ((p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F));
      i += 3;
    } else {
      out.push_back(((b & 0x07) << 18) | ((p[i + 1] & 0x3F) << 12) | ((p[i + 2] & 0x3F) << 6) | (p[i + 3] & 0x3F));
      i += 4;
    }
  }
  return out;
}

std::string to_utf8(const std::u32string& s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

// The table strings are well-formed UTF-8 (generated from Python).
void append_table_text(std::u32string& out, const char* utf8) { out += to_u32(utf8); }

std::u32string icu_to_u32(const icu::UnicodeString& u) {
  std::u32string out(static_cast<size_t>(u.countChar32()), U'\0');
  UErrorCode err = U_ZERO_ERROR;
  u.toUTF32(reinterpret_cast<UChar32*>(out.data()), static_cast<int32_t>(out.size()), err);
  return out;
}

icu::UnicodeString u32_to_icu(const std::u32string& s) {
  return icu::UnicodeString::fromUTF32(reinterpret_cast<const UChar32*>(s.data()), static_cast<int32_t>(s.size()));
}

// ============================================================================================
// [SECTION] html.unescape
// ============================================================================================

const char* find_entity(const EntityEntry* begin, const EntityEntry* end, std::string_view name) {
  const EntityEntry* it =
      std::lower_bound(begin, end, name, [](const EntityEntry& e, std::string_view key) { return std::string_view(e.name) < key; });
  return (it != end && std::string_view(it->name) == name) ? it->value : nullptr;
}

const char* find_html5(std::string_view name) {
  return find_entity(std::begin(kHtml5Entities), std::end(kHtml5Entities), name);
}

bool is_digit(char32_t c) { return c >= U'0' && c <= U'9'; }
bool is_hex(char32_t c) { return is_digit(c) || (c >= U'a' && c <= U'f') || (c >= U'A' && c <= U'F'); }
int hex_value(char32_t c) { return is_digit(c) ? int(c - U'0') : int((c | 0x20) - U'a' + 10); }
bool is_ascii_alnum(char32_t c) { return is_digit(c) || (c >= U'a' && c <= U'z') || (c >= U'A' && c <= U'Z'); }

// ref: CPython 3.11 Lib/html/__init__.py _replace_charref (numeric branch). `num` is capped at 0x110000.
void append_charref(std::u32string& out, uint32_t num) {
  for (const auto& e : kInvalidCharrefs) {
    if (e.code == num) {
      append_table_text(out, e.value);
      return;
    }
  }
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
    out.push_back(0xFFFD);
    return;
  }
  if (std::binary_search(std::begin(kInvalidCodepoints), std::end(kInvalidCodepoints), static_cast<char32_t>(num))) return;
  out.push_back(num);
}

// Copies `s`, handing each '&' (at index i) to `at_ampersand(i, out)`, which appends what the reference there
// stands for and returns the index after it: the scan both HTML unescapers share.
template <class AtAmpersand>
std::u32string replace_references(const std::u32string& s, AtAmpersand at_ampersand) {
  if (s.find(U'&') == std::u32string::npos) return s;
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s[i] == U'&') {
      i = at_ampersand(i, out);
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

// ref: CPython 3.11 Lib/html/__init__.py unescape, _charref =
//   &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
std::u32string html_unescape_u32(const std::u32string& s) {
  return replace_references(s, [&](size_t i, std::u32string& out) -> size_t {
    const size_t n = s.size();
    auto keep = [&](size_t at) -> size_t {  // not a reference: the '&' as it is
      out.push_back(s[at]);
      return at + 1;
    };
    const size_t j = i + 1;
    if (j < n && s[j] == U'#') {
      size_t k = j + 1;
      bool hex;
      if (k < n && is_digit(s[k])) {
        hex = false;
      } else if (k + 1 < n && (s[k] == U'x' || s[k] == U'X') && is_hex(s[k + 1])) {
        hex = true;
        ++k;
      } else {
        return keep(i);  // '&#' that starts no reference: the named form excludes '#'
      }
      uint32_t num = 0;
      for (; k < n && (hex ? is_hex(s[k]) : is_digit(s[k])); ++k) {
        if (num <= 0x10FFFF) num = num * (hex ? 16 : 10) + static_cast<uint32_t>(hex ? hex_value(s[k]) : int(s[k] - U'0'));
      }
      if (num > 0x10FFFF) num = 0x110000;
      if (k < n && s[k] == U';') ++k;
      append_charref(out, num);
      return k;
    }
    size_t k = j;
    auto excluded = [](char32_t c) {
      return c == U'\t' || c == U'\n' || c == U'\f' || c == U' ' || c == U'<' || c == U'&' || c == U'#' || c == U';';
    };
    while (k < n && k - j < 32 && !excluded(s[k])) ++k;
    if (k == j) {
      return keep(i);
    }
    const size_t end = (k < n && s[k] == U';') ? k + 1 : k;
    // Named reference: the whole name, else the longest prefix of at least 2 characters (only the legacy
    // names without ';' can be proper prefixes), else the text unchanged.
    std::string name;
    size_t ascii_len = 0;  // the names are ASCII: a prefix with a non-ASCII character matches nothing
    for (size_t p = j; p < end; ++p) {
      if (s[p] >= 0x80) break;
      name.push_back(static_cast<char>(s[p]));
      ++ascii_len;
    }
    const char* value = nullptr;
    size_t used = 0;
    if (ascii_len == end - j) {
      value = find_html5(name);
      used = end - j;
    }
    for (size_t x = std::min(end - j - 1, ascii_len); !value && x >= 2; --x) {
      value = find_html5(std::string_view(name.data(), x));
      used = x;
    }
    if (value) {
      append_table_text(out, value);
      out.append(s, j + used, end - j - used);
    } else {
      out.append(s, i, end - i);
    }
    return end;
  });
}

// ============================================================================================
// [SECTION] ftfy
// ============================================================================================

// ref: ftfy 6.3.1 fixes.py unescape_html: HTML_ENTITY_RE = &#?[0-9A-Za-z]{1,24};  Names ending in ';' from
// html5 or ftfy's all-caps list; numeric references through html.unescape unless the result keeps a ';'.
std::u32string ftfy_unescape_html(const std::u32string& s) {
  return replace_references(s, [&](size_t i, std::u32string& out) -> size_t {
    const size_t n = s.size();
    auto keep = [&](size_t at) -> size_t {  // not a reference: the '&' as it is
      out.push_back(s[at]);
      return at + 1;
    };
    const bool numeric = i + 1 < n && s[i + 1] == U'#';
    const size_t k = i + 1 + (numeric ? 1 : 0);
    size_t run = 0;
    while (k + run < n && run <= 24 && is_ascii_alnum(s[k + run])) ++run;
    if (run < 1 || run > 24 || k + run >= n || s[k + run] != U';') {
      return keep(i);
    }
    const size_t end = k + run + 1;
    std::u32string match = s.substr(i, end - i);
    if (numeric) {
      std::u32string unescaped = html_unescape_u32(match);
      out += unescaped.find(U';') == std::u32string::npos ? unescaped : match;
    } else {
      std::string name;
      for (size_t p = i + 1; p < end; ++p) name.push_back(static_cast<char>(s[p]));
      const char* value = find_html5(name);
      if (!value) value = find_entity(std::begin(kFtfyUpperEntities), std::end(kFtfyUpperEntities), name);
      if (value) {
        append_table_text(out, value);
      } else {
        out += match;
      }
    }
    return end;
  });
}

// ref: ftfy 6.3.1 chardata.py LIGATURES
const char32_t* ligature(char32_t c) {
  switch (c) {
    case 0x0132: return U"IJ";
    case 0x0133: return U"ij";
    case 0x0149: return U"\u02BCn";
    case 0x01F1: return U"DZ";
    case 0x01F2: return U"Dz";
    case 0x01F3: return U"dz";
    case 0x01C4: return U"D\u017D";
    case 0x01C5: return U"D\u017E";
    case 0x01C6: return U"d\u017E";
    case 0x01C7: return U"LJ";
    case 0x01C8: return U"Lj";
    case 0x01C9: return U"lj";
    case 0x01CA: return U"NJ";
    case 0x01CB: return U"Nj";
    case 0x01CC: return U"nj";
    case 0xFB00: return U"ff";
    case 0xFB01: return U"fi";
    case 0xFB02: return U"fl";
    case 0xFB03: return U"ffi";
    case 0xFB04: return U"ffl";
    case 0xFB05: return U"\u017Ft";
    case 0xFB06: return U"st";
    default: return nullptr;
  }
}

// ref: ftfy 6.3.1 chardata.py _build_width_map: U+3000 -> ' ', U+FF01..U+FFEF -> NFKC where that differs.
const std::array<std::u32string, 0xFFF0 - 0xFF01>& width_map() {
  static const auto table = [] {
    std::array<std::u32string, 0xFFF0 - 0xFF01> t;
    UErrorCode err = U_ZERO_ERROR;
    const icu::Normalizer2* nfkc = icu::Normalizer2::getNFKCInstance(err);
    if (U_FAILURE(err)) throw Error(std::string("ICU: cannot load NFKC data: ") + u_errorName(err));
    for (char32_t c = 0xFF01; c < 0xFFF0; ++c) {
      icu::UnicodeString normalized = nfkc->normalize(icu::UnicodeString(static_cast<UChar32>(c)), err);
      std::u32string mapped = icu_to_u32(normalized);
      if (mapped != std::u32string(1, c)) t[c - 0xFF01] = mapped;
    }
    return t;
  }();
  return table;
}

const icu::Normalizer2& nfc_normalizer() {
  static const icu::Normalizer2* nfc = [] {
    UErrorCode err = U_ZERO_ERROR;
    const icu::Normalizer2* n = icu::Normalizer2::getNFCInstance(err);
    if (U_FAILURE(err)) throw Error(std::string("ICU: cannot load NFC data: ") + u_errorName(err));
    return n;
  }();
  return *nfc;
}

std::u32string nfc(const std::u32string& s) {
  // Below U+0300 nothing composes or decomposes: skip ICU for Latin-1 text.
  if (std::all_of(s.begin(), s.end(), [](char32_t c) { return c < 0x300; })) return s;
  UErrorCode err = U_ZERO_ERROR;
  icu::UnicodeString u = u32_to_icu(s);
  if (nfc_normalizer().isNormalized(u, err) && U_SUCCESS(err)) return s;
  err = U_ZERO_ERROR;
  icu::UnicodeString normalized = nfc_normalizer().normalize(u, err);
  if (U_FAILURE(err)) throw Error(std::string("ICU: NFC normalisation failed: ") + u_errorName(err));
  return icu_to_u32(normalized);
}

bool is_removed_control(char32_t c) {
  // ref: ftfy 6.3.1 chardata.py _build_control_char_mapping
  return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) || c == 0xFEFF ||
         (c >= 0xFFF9 && c <= 0xFFFC);
}

// ftfy's fixers after unescape_html, in fix_and_explain's order, fused into one pass where they cannot interact.
std::u32string ftfy_fix_chars(const std::u32string& s) {
  const auto& widths = width_map();
  std::u32string a;  // fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes
  a.reserve(s.size());
  for (char32_t c : s) {
    if (c >= 0x80 && c <= 0x9F) {
      // ref: ftfy fixes.py fix_c1_controls, sloppy-windows-1252 (= html's 0x80-0x9F table)
      for (const auto& e : kInvalidCharrefs) {
        if (e.code == c) {
          c = to_u32(e.value)[0];
          break;
        }
      }
    }
    if (const char32_t* lig = ligature(c)) {
      for (const char32_t* p = lig; *p; ++p) {
        char32_t d = *p;
        if (d == 0x02BC) d = U'\'';  // ŉ -> ʼn, then uncurl_quotes straightens the ʼ
        a.push_back(d);
      }
      continue;
    }
    if (c == 0x3000) {
      a.push_back(U' ');
      continue;
    }
    if (c >= 0xFF01 && c < 0xFFF0 && !widths[c - 0xFF01].empty()) {
      for (char32_t d : widths[c - 0xFF01]) {
        if (d == 0x02BC || (d >= 0x2018 && d <= 0x201B)) d = U'\'';
        if (d >= 0x201C && d <= 0x201F) d = U'"';
        a.push_back(d);
      }
      continue;
    }
    if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) c = U'\'';
    if (c >= 0x201C && c <= 0x201F) c = U'"';
    a.push_back(c);
  }
  std::u32string b;  // fix_line_breaks
  b.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    char32_t c = a[i];
    if (c == U'\r') {
      if (i + 1 < a.size() && a[i + 1] == U'\n') ++i;
      b.push_back(U'\n');
    } else if (c == 0x2028 || c == 0x2029 || c == 0x85) {
      b.push_back(U'\n');
    } else {
      b.push_back(c);
    }
  }
  // remove_terminal_escapes: \033\[((?:\d|;)*)([a-zA-Z]) with \d = any Unicode decimal digit; then
  // remove_control_chars.
  std::u32string c_out;
  c_out.reserve(b.size());
  for (size_t i = 0; i < b.size(); ++i) {
    if (b[i] == 0x1B && i + 1 < b.size() && b[i + 1] == U'[') {
      size_t k = i + 2;
      while (k < b.size() && (b[k] == U';' || u_charType(static_cast<UChar32>(b[k])) == U_DECIMAL_DIGIT_NUMBER)) ++k;
      if (k < b.size() && ((b[k] >= U'a' && b[k] <= U'z') || (b[k] >= U'A' && b[k] <= U'Z'))) {
        i = k;
        continue;
      }
    }
    if (!is_removed_control(b[i])) c_out.push_back(b[i]);
  }
  return nfc(c_out);
}

// ref: ftfy 6.3.1 __init__.py fix_and_explain (explain=False, fix_encoding left out): fixes until nothing changes.
std::u32string ftfy_fix_segment(std::u32string text, bool unescape_html) {
  while (true) {
    std::u32string fixed = unescape_html ? ftfy_unescape_html(text) : text;
    fixed = ftfy_fix_chars(fixed);
    if (fixed == text) return fixed;
    text = std::move(fixed);
  }
}

// ref: ftfy 6.3.1 __init__.py fix_text: segments end after each '\n'; once a segment holds '<', HTML
// unescaping stays off for the rest of the text.
std::u32string ftfy_fix_text(const std::u32string& text) {
  std::u32string out;
  out.reserve(text.size());
  bool unescape = true;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t brk = text.find(U'\n', pos);
    brk = brk == std::u32string::npos ? text.size() : brk + 1;
    std::u32string segment = text.substr(pos, brk - pos);
    if (unescape && segment.find(U'<') != std::u32string::npos) unescape = false;
    out += ftfy_fix_segment(std::move(segment), unescape);
    pos = brk;
  }
  return out;
}

// ============================================================================================
// [SECTION] clean_text
// ============================================================================================

// Python's regex-module \s (Unicode White_Space).
bool is_regex_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}
// Python's str.isspace(), used by str.strip(): \s plus the information separators U+001C..U+001F.
bool is_py_space(char32_t c) { return is_regex_space(c) || (c >= 0x1C && c <= 0x1F); }

std::u32string strip(const std::u32string& s) {
  size_t b = 0, e = s.size();
  while (b < e && is_py_space(s[b])) ++b;
  while (e > b && is_py_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

// Python's str.lower(): full Unicode lower-casing with the final-sigma rule; ICU's root locale does the same.
std::u32string lower(const std::u32string& s) {
  bool ascii = std::all_of(s.begin(), s.end(), [](char32_t c) { return c < 0x80; });
  if (ascii) {
    std::u32string out = s;
    for (char32_t& c : out) {
      if (c >= U'A' && c <= U'Z') c += 32;
    }
    return out;
  }
  icu::UnicodeString u = u32_to_icu(s);
  u.toLower(icu::Locale::getRoot());
  return icu_to_u32(u);
}

// Text with only printable ASCII, tabs, newlines, CR and form feeds and no '&': every ftfy and html step is a
// no-op (CR only turns into '\n', which the whitespace collapse swallows anyway).
bool is_plain_ascii(std::string_view s) {
  for (unsigned char b : s) {
    if (b >= 0x20 ? (b > 0x7E || b == '&') : (b != '\t' && b != '\n' && b != '\r' && b != '\f')) return false;
  }
  return true;
}

}  // namespace

size_t utf8_error(std::string_view s, const char** why) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    unsigned char b = p[i];
    if (b < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    char32_t min;
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2, min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3, min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4, min = 0x10000;
    } else {
      *why = (b & 0xC0) == 0x80 ? "unexpected continuation byte" : "byte that never starts a UTF-8 sequence";
      return i;
    }
    if (i + len > n) {
      *why = "truncated sequence at end of text";
      return i;
    }
    char32_t c = b & (0xFF >> (len + 1));
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) {
        *why = "sequence cut short by a byte that is not a continuation byte";
        return i;
      }
      c = (c << 6) | (p[i + k] & 0x3F);
    }
    if (c < min) {
      *why = "overlong encoding";
      return i;
    }
    if (c >= 0xD800 && c <= 0xDFFF) {
      *why = "encoded UTF-16 surrogate";
      return i;
    }
    if (c > 0x10FFFF) {
      *why = "code point above U+10FFFF";
      return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

void check_utf8(std::string_view utf8) {
  const char* why = "";
  size_t at = utf8_error(utf8, &why);
  if (at == std::string_view::npos) return;
  char byte[8];
  std::snprintf(byte, sizeof byte, "0x%02X", static_cast<unsigned char>(utf8[at]));
  throw Error("invalid UTF-8 at byte offset " + std::to_string(at) + " (byte " + byte + ": " + why + ") in text of " +
              std::to_string(utf8.size()) + " bytes");
}

std::string html_unescape(std::string_view utf8) {
  check_utf8(utf8);
  if (utf8.find('&') == std::string_view::npos) return std::string(utf8);
  return to_utf8(html_unescape_u32(to_u32(utf8)));
}

std::string fix_text(std::string_view utf8) {
  check_utf8(utf8);
  return to_utf8(ftfy_fix_text(to_u32(utf8)));
}

std::string clean_text(std::string_view utf8) {
  if (is_plain_ascii(utf8)) {
    // whitespace_clean + lower on ASCII: runs of \t\n\v\f\r and ' ' become one space, ends trimmed.
    std::string out;
    out.reserve(utf8.size());
    bool pending_space = false;
    for (unsigned char b : utf8) {
      if (b == ' ' || (b >= '\t' && b <= '\r')) {
        pending_space = !out.empty();
        continue;
      }
      if (pending_space) out.push_back(' ');
      pending_space = false;
      out.push_back(static_cast<char>(b >= 'A' && b <= 'Z' ? b + 32 : b));
    }
    return out;
  }
  check_utf8(utf8);
  // ref: openai/CLIP simple_tokenizer.py basic_clean, whitespace_clean, SimpleTokenizer.encode
  std::u32string text = ftfy_fix_text(to_u32(utf8));
  text = strip(html_unescape_u32(html_unescape_u32(text)));
  std::u32string collapsed;
  collapsed.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (is_regex_space(text[i])) {
      collapsed.push_back(U' ');
      while (i < text.size() && is_regex_space(text[i])) ++i;
    } else {
      collapsed.push_back(text[i++]);
    }
  }
  return to_utf8(lower(strip(collapsed)));
}

}  // namespace clipguide::clipnet
