// Q8_0: 32 weights in 34 bytes (8.5 bits per weight).
// Layout: fp16 d at 0, then qs[32] as int8. Decoding: y = q * d.
#pragma once
#include <array>
#include <cstdint>

namespace qf {

void dequantize_row_q8_0(const void* src, float* dst, int64_t n);
// Importance weights steer our search; llama.cpp ignores them for Q8_0.
void quantize_row_q8_0(const float* src, void* dst, int64_t n, const float* importance);
// llama.cpp's own encoding (quantize_row_q8_0_ref), byte for byte; a candidate and a test oracle.
void quantize_row_q8_0_llama(const float* src, void* dst, int64_t n, const float* importance);
// The wide search (many scale candidates per block, best of it and llama.cpp's encoding):
// slower than quantize_row_q8_0, a little lower error.
void quantize_row_q8_0_thorough(const float* src, void* dst, int64_t n, const float* importance);

// Error feedback: store codes 0..255 (value -128 .. +127) into an encoded block, scales kept.
void set_codes_q8_0(void* block, const uint8_t* codes);
inline constexpr auto kCodeValues_q8_0 = [] {
    std::array<float, 256> v{};
    for (int k = 0; k < 256; ++k) v[k] = static_cast<float>(k + (-128));
    return v;
}();

}  // namespace qf
