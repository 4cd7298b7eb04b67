// Text handling for the byte-level BPE tokenizer, equal to llama.cpp's src/unicode.cpp of
// the build we match: its lenient UTF-8 decoding, its pre-tokenizer splits (hand-written
// matchers for the regular expressions named below) and GPT-2's byte-to-character mapping.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qf::unicode {

inline constexpr uint32_t kReplacementChar = 0xFFFD;

// Bytes of the UTF-8 sequence that starts with this byte, judged from its high nibble only
// (1 for continuation and invalid bytes), as llama.cpp's symbol splitting does.
inline size_t utf8_sequence_length(uint8_t first_byte) {
    static constexpr uint8_t kLength[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return kLength[first_byte >> 4];
}

// Code points of text. A byte that does not start a complete sequence becomes U+FFFD and
// decoding resumes at the next byte. Like llama.cpp, overlong forms and surrogates are
// accepted as written; a 4-byte form above U+10FFFF (which llama.cpp cannot encode back and
// fails on) becomes U+FFFD here.
std::vector<uint32_t> decode_utf8(std::string_view text);
void append_utf8(std::string& out, uint32_t cpt);  // cpt <= U+10FFFF

// The printable character GPT-2's byte-level BPE uses for each byte, as UTF-8.
const std::string& gpt2_byte_char(uint8_t byte);

enum class PreTokenizer {
    // "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    kLlama3,
    // The same with \p{N} (one digit per word) instead of \p{N}{1,3}.
    kQwen2,
    // "'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
    kGpt2,
    // llama.cpp's fallback chain: "[\p{P}\$\+<=>\^~\|]+", then the GPT-2 expression, then
    // "\p{N}+", then "[0-9][0-9][0-9]", each splitting the pieces of the previous one.
    kDefault,
};

// Splits code points into words; returns each word's length in code points (all > 0,
// summing to cpts.size()).
std::vector<size_t> pre_tokenize(std::span<const uint32_t> cpts, PreTokenizer kind);

// The words byte-level BPE merges: text decoded, split, each word re-encoded as UTF-8 and
// spelled with GPT-2's byte characters (llama.cpp's unicode_regex_split with byte_encode).
std::vector<std::string> bpe_words(std::string_view text, PreTokenizer kind);

}  // namespace qf::unicode
