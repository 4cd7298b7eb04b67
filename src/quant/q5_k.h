// Q5_K: 256 values in 176 bytes (5.5 bits per weight), byte-compatible with ggml's block_q5_K.
//   @0   d     fp16 super-scale of the sub-block scales
//   @2   dmin  fp16 super-scale of the sub-block mins
//   @4   scales[12]  eight 6-bit scales and mins, packed as in Q4_K (kquant::pack_scale_min_k4)
//   @16  qh[32]      fifth bits: value 64c+l -> bit 2c of qh[l], value 64c+32+l -> bit 2c+1
//   @48  qs[128]     low 4 bits, nibble order as Q4_K
// Eight sub-blocks of 32 values: y = (d*sc_j)*q - dmin*m_j with q in [0, 31].
#pragma once
#include <array>
#include <cstdint>

namespace qf {

struct BlockQ5K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
};
static_assert(sizeof(BlockQ5K) == 176, "q5_K block must be 176 bytes");

void dequantize_row_q5_K(const void* src, float* dst, int64_t n);
// Best of llama.cpp's encoding and our search per block (kquant_common.h).
void quantize_row_q5_K(const float* src, void* dst, int64_t n, const float* importance);
// llama.cpp's own algorithm, byte for byte what ggml_quantize_chunk writes
// (quantize_row_q5_K_ref without importance, quantize_row_q5_K_impl with).
// The wider (slower) search kept against llama.cpp's per block: `qforge quantize --thorough`.
void quantize_row_q5_K_thorough(const float* src, void* dst, int64_t n, const float* importance);
void quantize_row_q5_K_llama(const float* src, void* dst, int64_t n, const float* importance);

// Error feedback: store codes 0..31 (value +0 .. +31) into an encoded block, scales kept.
void set_codes_q5_K(void* block, const uint8_t* codes);
inline constexpr auto kCodeValues_q5_K = [] {
    std::array<float, 32> v{};
    for (int k = 0; k < 32; ++k) v[k] = static_cast<float>(k + (0));
    return v;
}();

}  // namespace qf
