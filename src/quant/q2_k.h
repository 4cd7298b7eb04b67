// Q2_K: 256 values in 84 bytes (2.625 bits per weight), byte-compatible with ggml's block_q2_K.
//   @0   scales[16]  per sub-block of 16: low nibble = 4-bit scale sc_j, high nibble = 4-bit min m_j
//   @16  qs[64]      2-bit quants: value 128h+32s+l (l < 32) -> bits 2s..2s+1 of qs[32h+l]
//   @80  d     fp16 super-scale of the scales
//   @82  dmin  fp16 super-scale of the mins
// Sixteen sub-blocks of 16 values: y = (d*sc_j)*q - dmin*m_j with q in [0, 3].
#pragma once
#include <array>
#include <cstdint>

namespace qf {

struct BlockQ2K {
    uint8_t scales[16];
    uint8_t qs[64];
    uint16_t d;
    uint16_t dmin;
};
static_assert(sizeof(BlockQ2K) == 84, "q2_K block must be 84 bytes");

void dequantize_row_q2_K(const void* src, float* dst, int64_t n);
// Best of llama.cpp's encoding and our search per block (kquant_common.h).
void quantize_row_q2_K(const float* src, void* dst, int64_t n, const float* importance);
// llama.cpp's own algorithm, byte for byte what ggml_quantize_chunk writes
// (quantize_row_q2_K_ref without importance, quantize_row_q2_K_impl with).
// The wider (slower) search kept against llama.cpp's per block: `qforge quantize --thorough`.
void quantize_row_q2_K_thorough(const float* src, void* dst, int64_t n, const float* importance);
void quantize_row_q2_K_llama(const float* src, void* dst, int64_t n, const float* importance);

// Error feedback: store codes 0..3 (value +0 .. +3) into an encoded block, scales kept.
void set_codes_q2_K(void* block, const uint8_t* codes);
inline constexpr auto kCodeValues_q2_K = [] {
    std::array<float, 4> v{};
    for (int k = 0; k < 4; ++k) v[k] = static_cast<float>(k + (0));
    return v;
}();

}  // namespace qf
