#include "model/unicode_text.h"

#include "model/unicode_tables.h"

#include <array>
#include <cassert>

namespace qf::unicode {

namespace {

// Flags of the ASCII range, looked up on every character of mostly-English text.
const std::array<uint16_t, 128>& ascii_flags() {
    static const std::array<uint16_t, 128> table = [] {
        std::array<uint16_t, 128> t{};
        size_t r = 0;
        for (uint32_t c = 0; c < 128; ++c) {
            while (r + 1 < kCodepointRangeCount && kCodepointRanges[r + 1].first <= c) ++r;
            t[c] = kCodepointRanges[r].flags;
        }
        return t;
    }();
    return table;
}

}  // namespace

uint16_t codepoint_flags(uint32_t cpt) {
    if (cpt < 128) return ascii_flags()[cpt];
    if (cpt > kMaxCodepoint) return kUndefined;
    // Last range whose first code point is <= cpt.
    size_t lo = 0, hi = kCodepointRangeCount;
    while (hi - lo > 1) {
        const size_t mid = lo + (hi - lo) / 2;
        if (kCodepointRanges[mid].first <= cpt)
            lo = mid;
        else
            hi = mid;
    }
    return kCodepointRanges[lo].flags;
}

std::vector<uint32_t> decode_utf8(std::string_view text) {
    std::vector<uint32_t> out;
    out.reserve(text.size());
    const size_t n = text.size();
    auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
    auto continuation = [&](size_t i) { return i < n && (byte(i) & 0xC0) == 0x80; };
    size_t i = 0;
    while (i < n) {
        const uint8_t b = byte(i);
        if (b < 0x80) {
            out.push_back(b);
            i += 1;
        } else if ((b & 0xE0) == 0xC0 && continuation(i + 1)) {
            out.push_back((uint32_t(b & 0x1F) << 6) | (byte(i + 1) & 0x3F));
            i += 2;
        } else if ((b & 0xF0) == 0xE0 && continuation(i + 1) && continuation(i + 2)) {
            out.push_back((uint32_t(b & 0x0F) << 12) | (uint32_t(byte(i + 1) & 0x3F) << 6) | (byte(i + 2) & 0x3F));
            i += 3;
        } else if ((b & 0xF8) == 0xF0 && continuation(i + 1) && continuation(i + 2) && continuation(i + 3)) {
            const uint32_t cpt = (uint32_t(b & 0x07) << 18) | (uint32_t(byte(i + 1) & 0x3F) << 12) |
                                 (uint32_t(byte(i + 2) & 0x3F) << 6) | (byte(i + 3) & 0x3F);
            out.push_back(cpt <= kMaxCodepoint ? cpt : kReplacementChar);
            i += 4;
        } else {
            // Continuation byte, 0xF8..0xFF, or a sequence cut short: one replacement
            // character for this byte only.
            out.push_back(kReplacementChar);
            i += 1;
        }
    }
    return out;
}

void append_utf8(std::string& out, uint32_t cpt) {
    assert(cpt <= kMaxCodepoint);
    if (cpt < 0x80) {
        out.push_back(static_cast<char>(cpt));
    } else if (cpt < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
        out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
    } else if (cpt < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cpt >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cpt >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
    }
}

const std::string& gpt2_byte_char(uint8_t byte) {
    // Printable Latin-1 bytes stand for themselves; the 68 others (controls, space, DEL,
    // NBSP, soft hyphen...) get U+0100, U+0101, ... in byte order.
    static const std::array<std::string, 256> table = [] {
        std::array<std::string, 256> t;
        uint32_t next = 256;
        for (uint32_t b = 0; b < 256; ++b) {
            const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
            append_utf8(t[b], printable ? b : next++);
        }
        return t;
    }();
    return table[byte];
}

namespace {

constexpr uint32_t kOutOfRange = 0xFFFFFFFF;

bool has(uint16_t flags, uint16_t flag) { return (flags & flag) != 0; }

// One piece of the text being split by a hand-written matcher. Positions past the piece
// read as kOutOfRange / no flags, exactly like the lookups of llama.cpp's matchers.
struct Piece {
    std::span<const uint32_t> cpts;
    std::span<const uint16_t> flags;
    size_t end;
    size_t prev_end;
    std::vector<size_t>& out;

    uint32_t cpt(size_t pos) const { return pos < end ? cpts[pos] : kOutOfRange; }
    uint16_t flag(size_t pos) const { return pos < end ? flags[pos] : 0; }
    // Ends the current word at `to`; returns its length.
    size_t add(size_t to) {
        const size_t len = to - prev_end;
        if (len > 0) out.push_back(len);
        prev_end = to;
        return len;
    }
};

bool is_ascii_lower_of(uint32_t cpt, char lower) {
    // Only ASCII letters lower-case to ASCII s/t/r/e/v/m/l/d (the table generator checks it).
    if (cpt >= 'A' && cpt <= 'Z') cpt += 'a' - 'A';
    return cpt == static_cast<uint32_t>(lower);
}

// 's 't 're 've 'm 'll 'd at pos: its length, 0 when none. Case-insensitive for llama3/qwen2.
size_t contraction_length(const Piece& p, size_t pos, bool ignore_case) {
    if (p.cpt(pos) != '\'' || pos + 1 >= p.end) return 0;
    auto is = [&](uint32_t c, char want) { return ignore_case ? is_ascii_lower_of(c, want) : c == uint32_t(want); };
    const uint32_t c1 = p.cpt(pos + 1);
    if (is(c1, 's') || is(c1, 't') || is(c1, 'm') || is(c1, 'd')) return 2;
    if (pos + 2 < p.end) {
        const uint32_t c2 = p.cpt(pos + 2);
        if ((is(c1, 'r') && is(c2, 'e')) || (is(c1, 'v') && is(c2, 'e')) || (is(c1, 'l') && is(c2, 'l'))) return 3;
    }
    return 0;
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
void split_gpt2(Piece& p, size_t pos) {
    while (pos < p.end) {
        const uint32_t cpt = p.cpt(pos);
        if (size_t n = contraction_length(p, pos, false)) {
            pos += p.add(pos + n);
            continue;
        }
        uint16_t f2 = cpt == ' ' ? p.flag(pos + 1) : p.flag(pos);
        if (has(f2, kLetter)) {
            pos += (cpt == ' ');
            while (has(f2, kLetter)) f2 = p.flag(++pos);
            p.add(pos);
            continue;
        }
        if (has(f2, kNumber)) {
            pos += (cpt == ' ');
            while (has(f2, kNumber)) f2 = p.flag(++pos);
            p.add(pos);
            continue;
        }
        auto other = [](uint16_t f) { return !has(f, kWhitespace | kLetter | kNumber) && f != 0; };
        if (other(f2)) {
            pos += (cpt == ' ');
            while (other(f2)) f2 = p.flag(++pos);
            p.add(pos);
            continue;
        }
        size_t n_ws = 0;
        while (has(p.flag(pos + n_ws), kWhitespace)) ++n_ws;
        if (n_ws > 1 && p.cpt(pos + n_ws) != kOutOfRange) {  // \s+(?!\S): leave the last one
            pos += n_ws - 1;
            p.add(pos);
            continue;
        }
        if (n_ws > 0) {
            pos += n_ws;
            p.add(pos);
            continue;
        }
        p.add(++pos);  // no alternative matches: a word of its own
    }
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// with \p{N} instead of \p{N}{1,3} for qwen2 (max_digits 1).
void split_llama3(Piece& p, size_t pos, size_t max_digits) {
    while (pos < p.end) {
        const uint32_t cpt = p.cpt(pos);
        const uint16_t f = p.flag(pos);
        if (size_t n = contraction_length(p, pos, true)) {
            pos += p.add(pos + n);
            continue;
        }
        if (!(cpt == '\r' || cpt == '\n' || has(f, kNumber))) {
            if (has(f, kLetter) || has(p.flag(pos + 1), kLetter)) {
                ++pos;
                while (has(p.flag(pos), kLetter)) ++pos;
                p.add(pos);
                continue;
            }
        }
        if (has(f, kNumber)) {
            size_t run_start = pos;
            while (has(p.flag(pos), kNumber)) {
                if (++pos - run_start >= max_digits) {
                    p.add(pos);
                    run_start = pos;
                }
            }
            p.add(pos);
            continue;
        }
        uint16_t f2 = cpt == ' ' ? p.flag(pos + 1) : f;
        // llama.cpp tests the current character's flags (never empty inside the piece) here,
        // so a space at the very end of a piece is taken by this branch alone.
        if (!has(f2, kWhitespace | kLetter | kNumber) && f != 0) {
            pos += (cpt == ' ');
            while (!has(f2, kWhitespace | kLetter | kNumber) && f2 != 0) f2 = p.flag(++pos);
            while (p.cpt(pos) == '\r' || p.cpt(pos) == '\n') ++pos;
            p.add(pos);
            continue;
        }
        size_t n_ws = 0;
        size_t last_newline_end = 0;
        while (has(p.flag(pos + n_ws), kWhitespace)) {
            const uint32_t c = p.cpt(pos + n_ws);
            if (c == '\r' || c == '\n') last_newline_end = pos + n_ws + 1;
            ++n_ws;
        }
        if (last_newline_end > 0) {  // \s*[\r\n]+
            pos = last_newline_end;
            p.add(pos);
            continue;
        }
        if (n_ws > 1 && p.cpt(pos + n_ws) != kOutOfRange) {  // \s+(?!\S)
            pos += n_ws - 1;
            p.add(pos);
            continue;
        }
        if (n_ws > 0) {  // \s+
            pos += n_ws;
            p.add(pos);
            continue;
        }
        p.add(++pos);
    }
}

// Splits every piece of `lengths` into maximal runs of characters in / not in a class:
// what std::regex_iterator does with "[class]+" over each piece.
template <class InClass>
std::vector<size_t> split_runs(std::span<const uint32_t> cpts, std::span<const uint16_t> flags,
                               const std::vector<size_t>& lengths, InClass in_class) {
    std::vector<size_t> out;
    out.reserve(lengths.size());
    size_t start = 0;
    for (size_t len : lengths) {
        const size_t end = start + len;
        size_t run = start;
        for (size_t i = start + 1; i <= end; ++i) {
            if (i == end || in_class(cpts[i], flags[i]) != in_class(cpts[run], flags[run])) {
                out.push_back(i - run);
                run = i;
            }
        }
        start = end;
    }
    return out;
}

// "[0-9][0-9][0-9]" over each piece: leftmost non-overlapping triples of ASCII digits.
std::vector<size_t> split_digit_triples(std::span<const uint32_t> cpts, const std::vector<size_t>& lengths) {
    std::vector<size_t> out;
    out.reserve(lengths.size());
    auto digit = [&](size_t i) { return cpts[i] >= '0' && cpts[i] <= '9'; };
    size_t start = 0;
    for (size_t len : lengths) {
        const size_t end = start + len;
        size_t gap = start;
        size_t i = start;
        while (i + 3 <= end) {
            if (digit(i) && digit(i + 1) && digit(i + 2)) {
                if (i > gap) out.push_back(i - gap);
                out.push_back(3);
                i += 3;
                gap = i;
            } else {
                ++i;
            }
        }
        if (end > gap) out.push_back(end - gap);
        start = end;
    }
    return out;
}

template <class Matcher>
std::vector<size_t> split_each(std::span<const uint32_t> cpts, std::span<const uint16_t> flags,
                               const std::vector<size_t>& lengths, Matcher matcher) {
    std::vector<size_t> out;
    out.reserve(lengths.size());
    size_t start = 0;
    for (size_t len : lengths) {
        Piece piece{cpts, flags, start + len, start, out};
        matcher(piece, start);
        start += len;
    }
    return out;
}

}  // namespace

std::vector<size_t> pre_tokenize(std::span<const uint32_t> cpts, PreTokenizer kind) {
    if (cpts.empty()) return {};
    std::vector<uint16_t> flags(cpts.size());
    for (size_t i = 0; i < cpts.size(); ++i) flags[i] = codepoint_flags(cpts[i]);
    const std::vector<size_t> whole{cpts.size()};

    switch (kind) {
        case PreTokenizer::kLlama3:
            return split_each(cpts, flags, whole, [](Piece& p, size_t pos) { split_llama3(p, pos, 3); });
        case PreTokenizer::kQwen2:
            return split_each(cpts, flags, whole, [](Piece& p, size_t pos) { split_llama3(p, pos, 1); });
        case PreTokenizer::kGpt2:
            return split_each(cpts, flags, whole, [](Piece& p, size_t pos) { split_gpt2(p, pos); });
        case PreTokenizer::kDefault: {
            // llama.cpp runs these two through std::regex on a "collapsed" copy of the text:
            // ASCII as is, other white space as \v, other code points as one byte per
            // category. So beyond ASCII only the exact category counts.
            auto category_is = [](uint32_t cpt, uint16_t f, uint16_t category) {
                return !has(f, kWhitespace) && (f & kCategoryMask) == category && cpt >= 128;
            };
            auto punctuation_like = [&](uint32_t cpt, uint16_t f) {
                if (cpt < 128) {  // \p{P} of the collapsed ASCII set, plus $ + < = > ^ ~ |
                    return cpt > 0x20 && cpt < 0x7F && cpt != '`' && !(cpt >= '0' && cpt <= '9') &&
                           !(cpt >= 'A' && cpt <= 'Z') && !(cpt >= 'a' && cpt <= 'z');
                }
                return category_is(cpt, f, kPunctuation);
            };
            auto number_like = [&](uint32_t cpt, uint16_t f) {
                return cpt < 128 ? (cpt >= '0' && cpt <= '9') : category_is(cpt, f, kNumber);
            };
            auto pieces = split_runs(cpts, flags, whole, punctuation_like);
            pieces = split_each(cpts, flags, pieces, [](Piece& p, size_t pos) { split_gpt2(p, pos); });
            pieces = split_runs(cpts, flags, pieces, number_like);
            return split_digit_triples(cpts, pieces);
        }
    }
    return whole;
}

std::vector<std::string> bpe_words(std::string_view text, PreTokenizer kind) {
    const std::vector<uint32_t> cpts = decode_utf8(text);
    const std::vector<size_t> lengths = pre_tokenize(cpts, kind);
    std::vector<std::string> words;
    words.reserve(lengths.size());
    std::string utf8;
    size_t start = 0;
    for (size_t len : lengths) {
        utf8.clear();
        for (size_t i = start; i < start + len; ++i) append_utf8(utf8, cpts[i]);
        start += len;
        std::string& word = words.emplace_back();
        word.reserve(utf8.size() * 2);
        for (char c : utf8) word += gpt2_byte_char(static_cast<uint8_t>(c));
    }
    return words;
}

}  // namespace qf::unicode
