// Q4_1: 32 weights in 20 bytes (5 bits per weight).
// Layout: fp16 d at 0, fp16 m at 2, then qs[16]: byte j holds element j in its low nibble and
// element j+16 in its high nibble. Decoding: y = q * d + m.
#pragma once
#include <array>
#include <cstdint>

namespace qf {

void dequantize_row_q4_1(const void* src, float* dst, int64_t n);
// n is a whole row (a multiple of 32): llama.cpp's importance weighting uses the row's mean square.
void quantize_row_q4_1(const float* src, void* dst, int64_t n, const float* importance);
// llama.cpp's own encoding (quantize_q4_1), byte for byte; a candidate and a test oracle.
void quantize_row_q4_1_llama(const float* src, void* dst, int64_t n, const float* importance);
// The wide search (many scale candidates per block, best of it and llama.cpp's encoding):
// slower than quantize_row_q4_1, a little lower error.
void quantize_row_q4_1_thorough(const float* src, void* dst, int64_t n, const float* importance);

// Error feedback: store codes 0..15 (value +0 .. +15) into an encoded block, scales kept.
void set_codes_q4_1(void* block, const uint8_t* codes);
inline constexpr auto kCodeValues_q4_1 = [] {
    std::array<float, 16> v{};
    for (int k = 0; k < 16; ++k) v[k] = static_cast<float>(k + (0));
    return v;
}();

}  // namespace qf
