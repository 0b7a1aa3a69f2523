// Text cleaning of OpenAI CLIP's tokenizer: whitespace_clean(basic_clean(text)).lower(), i.e. ftfy.fix_text,
// html.unescape twice, strip, whitespace collapse and Unicode lower-casing, on UTF-8 strings.
// ref: openai/CLIP clip/simple_tokenizer.py (basic_clean, whitespace_clean, encode); ftfy 6.3.1; CPython 3.11 html.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace clipguide::clipnet {

// The cleaning SimpleTokenizer.encode applies before splitting into words:
//   ftfy.fix_text(text) -> html.unescape twice -> strip() -> re.sub(r'\s+', ' ') -> strip() -> lower().
// Throws clipguide::Error (naming the byte offset) when `utf8` is not valid UTF-8.
std::string clean_text(std::string_view utf8);

// ftfy.fix_text with its default configuration, except for mojibake repair (see below). Per line (ftfy's
// segments end at '\n'), repeated until nothing changes:
//   unescape_html ("auto": only while no segment so far contained '<'; names ending in ';', ftfy's all-caps
//   names such as &EACUTE;, numeric references), fix_c1_controls (U+0080-U+009F read as windows-1252),
//   fix_latin_ligatures, fix_character_width (fullwidth/halfwidth forms, U+3000 -> ' '), uncurl_quotes,
//   fix_line_breaks, remove_terminal_escapes, remove_control_chars, NFC normalisation.
// Not covered:
//   - fix_encoding: mojibake detection and repair ("sÃ³" -> "só", "â€œ" -> "“", decode_inconsistent_utf8,
//     restore_byte_a0, replace_lossy_sequences, latin-1 -> windows-1252 re-decoding). Text that ftfy would
//     re-decode gets different ids from the Python reference; text it leaves alone is unaffected.
//   - fix_surrogates: valid UTF-8 cannot carry UTF-16 surrogates, so there is nothing to fix.
//   - max_decode_length: ftfy also cuts lines longer than 1,000,000 code points into segments.
// Unicode data comes from ICU (NFC, digits); Python 3.11 uses Unicode 14.0, ICU 72 15.0, which agree on
// every character that Unicode 14.0 assigns.
std::string fix_text(std::string_view utf8);

// Python's html.unescape, exactly: all HTML5 named references (the longest-prefix rule for the legacy names
// written without ';', e.g. "&notit;" -> "¬it;"), decimal and hexadecimal references with HTML5's rules
// (0x80-0x9F as windows-1252, surrogates and > U+10FFFF -> U+FFFD, noncharacters and most controls -> "").
// Differs only where Python raises: decimal references of more than 4300 digits (int() limit) are U+FFFD here.
std::string html_unescape(std::string_view utf8);

// The offset of the first byte of `s` that is not well-formed UTF-8, or npos; `why` says what is wrong there.
size_t utf8_error(std::string_view s, const char** why);

// Throws clipguide::Error "invalid UTF-8 at byte offset N (...)" unless `utf8` is well-formed UTF-8
// (no overlong forms, surrogates or code points above U+10FFFF).
void check_utf8(std::string_view utf8);

}  // namespace clipguide::clipnet
