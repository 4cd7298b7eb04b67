// Q4_K: 256 values in 144 bytes (4.5 bits per weight), byte-compatible with ggml's block_q4_K.
//   @0   d     fp16 super-scale of the sub-block scales
//   @2   dmin  fp16 super-scale of the sub-block mins
//   @4   scales[12]  eight 6-bit scales sc_j and eight 6-bit mins m_j (kquant::pack_scale_min_k4)
//   @16  qs[128]     4-bit quants; byte 32c+l: low nibble = value 64c+l, high nibble = value 64c+32+l
// Eight sub-blocks of 32 values: y = (d*sc_j)*q - dmin*m_j with q in [0, 15].
#pragma once
#include <array>
#include <cstdint>

namespace qf {

struct BlockQ4K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[128];
};
static_assert(sizeof(BlockQ4K) == 144, "q4_K block must be 144 bytes");

void dequantize_row_q4_K(const void* src, float* dst, int64_t n);
// Best of llama.cpp's encoding and our search per block (kquant_common.h).
void quantize_row_q4_K(const float* src, void* dst, int64_t n, const float* importance);
// llama.cpp's own algorithm, byte for byte what ggml_quantize_chunk writes
// (quantize_row_q4_K_ref without importance, quantize_row_q4_K_impl with).
// The wider (slower) search kept against llama.cpp's per block: `qforge quantize --thorough`.
void quantize_row_q4_K_thorough(const float* src, void* dst, int64_t n, const float* importance);
void quantize_row_q4_K_llama(const float* src, void* dst, int64_t n, const float* importance);

// Error feedback: store codes 0..15 (value +0 .. +15) into an encoded block, scales kept.
void set_codes_q4_K(void* block, const uint8_t* codes);
inline constexpr auto kCodeValues_q4_K = [] {
    std::array<float, 16> v{};
    for (int k = 0; k < 16; ++k) v[k] = static_cast<float>(k + (0));
    return v;
}();

}  // namespace qf
