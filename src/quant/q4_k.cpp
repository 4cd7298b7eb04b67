#include "quant/q4_k.h"

#include "quant/kquant_common.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace qf {
namespace {

using kquant::kBlockElems;

void dequantize_block(const BlockQ4K& b, float* y) {
    const float d = f16_to_f32(b.d);
    const float dmin = f16_to_f32(b.dmin);
    uint8_t sc[8], m[8];
    kquant::unpack_scale_min_k4(b.scales, sc, m);
    for (int c = 0; c < 4; ++c) {
        // Same float operations as ggml: the sub-block scale and min are rounded to float first.
        const float d1 = d * sc[2 * c], m1 = dmin * m[2 * c];
        const float d2 = d * sc[2 * c + 1], m2 = dmin * m[2 * c + 1];
        const uint8_t* q = b.qs + 32 * c;
        for (int l = 0; l < 32; ++l) y[64 * c + l] = d1 * (q[l] & 0xF) - m1;
        for (int l = 0; l < 32; ++l) y[64 * c + 32 + l] = d2 * (q[l] >> 4) - m2;
    }
}

void pack_quants(const uint8_t* L, BlockQ4K& b) {
    for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l)
            b.qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
}

// llama.cpp's encoder: quantize_row_q4_K_ref without importance, quantize_row_q4_K_impl with it
// (the same algorithm as Q5_K's with other constants; see kquant_common.h).
constexpr kquant::LlamaScaleMinSpec kLlamaSpec{15, -1.f, 20, false};

void llama_block(const float* x, const float* importance, BlockQ4K& b) {
    kquant::LlamaScaleMinBlock l;
    kquant::llama_scale_min_block(kLlamaSpec, x, importance, l);
    kquant::store_llama_scale_min(l, b, pack_quants);
}

constexpr kquant::AsymSpec kSpec{32, 8, 15, 63};

void search_block(const float* x, const float* w, BlockQ4K& b) {
    kquant::search_block(kSpec, x, w, b, [](const kquant::AsymBlock& a, BlockQ4K& out) {
        kquant::store_scale_min_k4(a, out, pack_quants);
    });
}

}  // namespace

void dequantize_row_q4_K(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockQ4K*>(src);
    for (int64_t i = 0; i < n / kBlockElems; ++i) dequantize_block(blocks[i], dst + i * kBlockElems);
}

void quantize_row_q4_K(const float* src, void* dst, int64_t n, const float* importance) {
    kquant::quantize_scale_min_k4(kLlamaSpec, kSpec, src, static_cast<BlockQ4K*>(dst), n, importance, true, pack_quants,
                                  dequantize_block);
}

void quantize_row_q4_K_thorough(const float* src, void* dst, int64_t n, const float* importance) {
    kquant::quantize_blocks_best_of(src, static_cast<BlockQ4K*>(dst), n, importance, llama_block, search_block,
                                    dequantize_block);
}

void quantize_row_q4_K_llama(const float* src, void* dst, int64_t n, const float* importance) {
    kquant::quantize_scale_min_k4(kLlamaSpec, kSpec, src, static_cast<BlockQ4K*>(dst), n, importance, false, pack_quants,
                                  dequantize_block);
}

void set_codes_q4_K(void* block, const uint8_t* codes) { pack_quants(codes, *static_cast<BlockQ4K*>(block)); }

}  // namespace qf
