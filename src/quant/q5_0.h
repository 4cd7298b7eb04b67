// Q5_0: 32 weights in 22 bytes (5.5 bits per weight).
// Layout: fp16 d at 0, qh (u32 LE) at 2 whose bit i is the fifth bit of element i, qs[16] at 6:
// byte j holds the low four bits of element j (low nibble) and of element j+16 (high nibble).
// Decoding: y = (q - 16) * d.
#pragma once
#include <array>
#include <cstdint>

namespace qf {

void dequantize_row_q5_0(const void* src, float* dst, int64_t n);
// n is a whole row (a multiple of 32): llama.cpp's importance weighting uses the row's mean square.
void quantize_row_q5_0(const float* src, void* dst, int64_t n, const float* importance);
// llama.cpp's own encoding (quantize_q5_0), byte for byte; a candidate and a test oracle.
void quantize_row_q5_0_llama(const float* src, void* dst, int64_t n, const float* importance);
// The wide search (many scale candidates per block, best of it and llama.cpp's encoding):
// slower than quantize_row_q5_0, a little lower error.
void quantize_row_q5_0_thorough(const float* src, void* dst, int64_t n, const float* importance);

// Error feedback: store codes 0..31 (value -16 .. +15) into an encoded block, scales kept.
void set_codes_q5_0(void* block, const uint8_t* codes);
inline constexpr auto kCodeValues_q5_0 = [] {
    std::array<float, 32> v{};
    for (int k = 0; k < 32; ++k) v[k] = static_cast<float>(k + (-16));
    return v;
}();

}  // namespace qf
