// Q6_K: 256 values in 210 bytes (6.5625 bits per weight), byte-compatible with ggml's block_q6_K.
//   @0   ql[128]    low 4 bits; half h (values 128h..): byte 64h+l holds value 128h+l (low nibble)
//                   and 128h+64+l (high nibble), byte 64h+32+l holds 128h+32+l and 128h+96+l
//   @128 qh[64]     high 2 bits; byte 32h+l, bit pair k holds value 128h+32k+l
//   @192 scales[16] int8 sub-block scales
//   @208 d     fp16 super-scale
// Sixteen sub-blocks of 16 values: y = (d*sc_j)*q with q in [-32, 31] (stored biased by 32).
#pragma once
#include <array>
#include <cstdint>

namespace qf {

struct BlockQ6K {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
};
static_assert(sizeof(BlockQ6K) == 210, "q6_K block must be 210 bytes");

void dequantize_row_q6_K(const void* src, float* dst, int64_t n);
// Best of llama.cpp's encoding and our search per block (kquant_common.h).
void quantize_row_q6_K(const float* src, void* dst, int64_t n, const float* importance);
// llama.cpp's own algorithm, byte for byte what ggml_quantize_chunk writes
// (quantize_row_q6_K_ref without importance, quantize_row_q6_K_impl with).
// The wider (slower) search kept against llama.cpp's per block: `qforge quantize --thorough`.
void quantize_row_q6_K_thorough(const float* src, void* dst, int64_t n, const float* importance);
void quantize_row_q6_K_llama(const float* src, void* dst, int64_t n, const float* importance);

// Error feedback: store codes 0..63 (value -32 .. +31) into an encoded block, scales kept.
void set_codes_q6_K(void* block, const uint8_t* codes);
inline constexpr auto kCodeValues_q6_K = [] {
    std::array<float, 64> v{};
    for (int k = 0; k < 64; ++k) v[k] = static_cast<float>(k + (-32));
    return v;
}();

}  // namespace qf
