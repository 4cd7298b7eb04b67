// Q3_K: 256 values in 110 bytes (3.4375 bits per weight), byte-compatible with ggml's block_q3_K.
//   @0   hmask[32]   high bits: value e -> bit e/32 of hmask[e%32]; a CLEAR bit subtracts 4
//   @32  qs[64]      low 2 bits, laid out as in Q2_K
//   @96  scales[12]  sixteen 6-bit scales biased by 32 (kquant::pack_scales_q3_k)
//   @108 d     fp16 super-scale
// Sixteen sub-blocks of 16 values: y = (d*sc_j)*q with sc_j in [-32, 31] and q in [-4, 3].
#pragma once
#include <array>
#include <cstdint>

namespace qf {

struct BlockQ3K {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12];
    uint16_t d;
};
static_assert(sizeof(BlockQ3K) == 110, "q3_K block must be 110 bytes");

void dequantize_row_q3_K(const void* src, float* dst, int64_t n);
// Best of llama.cpp's encoding and our search per block (kquant_common.h).
void quantize_row_q3_K(const float* src, void* dst, int64_t n, const float* importance);
// llama.cpp's own algorithm, byte for byte what ggml_quantize_chunk writes
// (quantize_row_q3_K_ref without importance, quantize_row_q3_K_impl with).
// The wider (slower) search kept against llama.cpp's per block: `qforge quantize --thorough`.
void quantize_row_q3_K_thorough(const float* src, void* dst, int64_t n, const float* importance);
void quantize_row_q3_K_llama(const float* src, void* dst, int64_t n, const float* importance);

// Error feedback: store codes 0..7 (value -4 .. +3) into an encoded block, scales kept.
void set_codes_q3_K(void* block, const uint8_t* codes);
inline constexpr auto kCodeValues_q3_K = [] {
    std::array<float, 8> v{};
    for (int k = 0; k < 8; ++k) v[k] = static_cast<float>(k + (-4));
    return v;
}();

}  // namespace qf
