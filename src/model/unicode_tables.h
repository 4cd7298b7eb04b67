// Unicode character classes for the tokenizer's pre-tokenizers, as llama.cpp defines them
// (src/unicode.h of the build we match): one flag per general category group plus the
// White_Space property. The table itself is generated (scripts/gen_unicode_tables.py).
#pragma once
#include <cstddef>
#include <cstdint>

namespace qf::unicode {

enum CodepointFlag : uint16_t {
    kUndefined = 0x0001,    // unassigned (Cn), and anything above U+10FFFF
    kNumber = 0x0002,       // \p{N}
    kLetter = 0x0004,       // \p{L}
    kSeparator = 0x0008,    // \p{Z}
    kMark = 0x0010,         // \p{M}
    kPunctuation = 0x0020,  // \p{P}
    kSymbol = 0x0040,       // \p{S}
    kControl = 0x0080,      // \p{C}
    kCategoryMask = 0x00FF,
    kWhitespace = 0x0100,   // \s (White_Space)
};

struct CodepointRange {
    uint32_t first;
    uint16_t flags;
};

// Sorted by first; the first range starts at 0 and the last one runs to U+10FFFF.
extern const CodepointRange kCodepointRanges[];
extern const size_t kCodepointRangeCount;

inline constexpr uint32_t kMaxCodepoint = 0x10FFFF;

// Flags of one code point (kUndefined above U+10FFFF).
uint16_t codepoint_flags(uint32_t cpt);

}  // namespace qf::unicode
