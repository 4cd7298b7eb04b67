// The two 4-bit non-linear formats; both map each 4-bit index through the same 16-entry table
// kIq4nlValues (y = scale * table[q]).
//
// IQ4_NL: 32 weights in 18 bytes (4.5 bits per weight). fp16 d at 0, then qs[16]: byte j holds
//   element j (low nibble) and element j+16 (high nibble). y = d * table[q].
// IQ4_XS: 256 weights in 136 bytes (4.25 bits per weight), 8 sub-blocks of 32.
//   fp16 d at 0; scales_h (u16 LE) at 2; scales_l[4] at 4; qs[128] at 8.
//   Sub-block ib has the 6-bit scale ls = (low nibble ib%2 of scales_l[ib/2]) | (bits 2ib..2ib+1
//   of scales_h) << 4, and uses qs[16ib .. 16ib+15] with element 32ib+j in the low nibble and
//   32ib+16+j in the high nibble. y = (d * (ls - 32)) * table[q].
#pragma once
#include <array>
#include <cstdint>

namespace qf {

inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

void dequantize_row_iq4_nl(const void* src, float* dst, int64_t n);
void quantize_row_iq4_nl(const float* src, void* dst, int64_t n, const float* importance);
// llama.cpp's own encoding (quantize_iq4_nl, 7 scale trials), byte for byte; a candidate and a test oracle.
void quantize_row_iq4_nl_llama(const float* src, void* dst, int64_t n, const float* importance);
// The wide search (many scale candidates per block, best of it and llama.cpp's encoding):
// slower than quantize_row_iq4_nl, a little lower error.
void quantize_row_iq4_nl_thorough(const float* src, void* dst, int64_t n, const float* importance);

void dequantize_row_iq4_xs(const void* src, float* dst, int64_t n);
void quantize_row_iq4_xs(const float* src, void* dst, int64_t n, const float* importance);
// llama.cpp's own encoding (quantize_iq4_xs), byte for byte; a candidate and a test oracle.
void quantize_row_iq4_xs_llama(const float* src, void* dst, int64_t n, const float* importance);
// The wide search (many scale candidates per block, best of it and llama.cpp's encoding):
// slower than quantize_row_iq4_xs, a little lower error.
void quantize_row_iq4_xs_thorough(const float* src, void* dst, int64_t n, const float* importance);

// Error feedback: store codes 0..15 (indices into kIq4nlValues) into an encoded block, scales kept.
void set_codes_iq4_nl(void* block, const uint8_t* codes);
void set_codes_iq4_xs(void* block, const uint8_t* codes);
inline constexpr auto kCodeValues_iq4 = [] {
    std::array<float, 16> v{};
    for (int k = 0; k < 16; ++k) v[k] = static_cast<float>(kIq4nlValues[k]);
    return v;
}();

}  // namespace qf
