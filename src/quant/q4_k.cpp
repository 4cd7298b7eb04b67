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

// The requantization step both llama.cpp paths end with: every value re-rounded with its
// decoded sub-block scale and min (sub-blocks whose scale decodes to 0 keep their quants).
void llama_requantize(const float* x, const BlockQ4K& b, uint8_t* L) {
    uint8_t sc[8], m[8];
    kquant::unpack_scale_min_k4(b.scales, sc, m);
    for (int j = 0; j < 8; ++j) {
        const float d = f16_to_f32(b.d) * sc[j];
        if (!d) continue;
        const float dm = f16_to_f32(b.dmin) * m[j];
        for (int ii = 0; ii < 32; ++ii) {
            const int l = nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(15, l)));
        }
    }
}

// quantize_row_q4_K_ref for one block.
void llama_block_plain(const float* x, BlockQ4K& b) {
    uint8_t L[kBlockElems], Laux[32];
    float weights[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
        scales[j] = kquant::llama::make_qkx2_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f,
                                                    0.1f, 20, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; ++j) {
        ls[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
        lm[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
    }
    kquant::pack_scale_min_k4(ls, lm, b.scales);
    b.d = f32_to_f16(max_scale / 63.f);
    b.dmin = f32_to_f16(max_min / 63.f);
    llama_requantize(x, b, L);
    pack_quants(L, b);
}

// quantize_row_q4_K_impl for one block (the importance path).
void llama_block_weighted(const float* x, const float* qw, BlockQ4K& b) {
    uint8_t L[kBlockElems], Laux[32], Ls[8], Lm[8];
    float weights[32], sw[8], mins[8], scales[8];
    float sum_x2 = 0;
    for (int l = 0; l < kBlockElems; ++l) sum_x2 += x[l] * x[l];
    const float sigma2 = 2 * sum_x2 / kBlockElems;
    for (int j = 0; j < 8; ++j) {
        for (int l = 0; l < 32; ++l) weights[l] = qw[32 * j + l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 32; ++l) sumw += weights[l];
        sw[j] = sumw;
        scales[j] = kquant::llama::make_qkx3_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f,
                                                    0.05f, 36, false);
    }
    const float d_block = kquant::llama::make_qp_quants(8, 63, scales, Ls, sw);
    const float m_block = kquant::llama::make_qp_quants(8, 63, mins, Lm, sw);
    // ggml packs these without clamping; make_qp_quants already limits them to 63 unless a
    // negative value wrapped, which the 6-bit fields then truncate exactly like ggml's packing.
    std::memset(b.scales, 0, sizeof b.scales);
    for (int j = 0; j < 8; ++j) {
        if (j < 4) {
            b.scales[j] = Ls[j];
            b.scales[j + 4] = Lm[j];
        } else {
            b.scales[j + 4] = static_cast<uint8_t>((Ls[j] & 0xF) | ((Lm[j] & 0xF) << 4));
            b.scales[j - 4] |= static_cast<uint8_t>((Ls[j] >> 4) << 6);
            b.scales[j] |= static_cast<uint8_t>((Lm[j] >> 4) << 6);
        }
    }
    b.d = f32_to_f16(d_block);
    b.dmin = f32_to_f16(m_block);
    llama_requantize(x, b, L);
    pack_quants(L, b);
}

void llama_block(const float* x, const float* importance, BlockQ4K& b) {
    if (importance) llama_block_weighted(x, importance, b);
    else llama_block_plain(x, b);
}

constexpr kquant::AsymSpec kSpec{32, 8, 15, 63};

void search_block(const float* x, const float* w, BlockQ4K& b) {
    kquant::AsymBlock a;
    kquant::search_asym(kSpec, x, w, a);
    b.d = a.d;
    b.dmin = a.dmin;
    kquant::pack_scale_min_k4(a.sc, a.m, b.scales);
    pack_quants(a.q, b);
}

}  // namespace

void dequantize_row_q4_K(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockQ4K*>(src);
    for (int64_t i = 0; i < n / kBlockElems; ++i) dequantize_block(blocks[i], dst + i * kBlockElems);
}

void quantize_row_q4_K(const float* src, void* dst, int64_t n, const float* importance) {
    kquant::quantize_blocks_best_of(src, static_cast<BlockQ4K*>(dst), n, importance, llama_block, search_block,
                                    dequantize_block);
}

void quantize_row_q4_K_llama(const float* src, void* dst, int64_t n, const float* importance) {
    auto* blocks = static_cast<BlockQ4K*>(dst);
    for (int64_t i = 0; i < n / kBlockElems; ++i)
        llama_block(src + i * kBlockElems, importance ? importance + i * kBlockElems : nullptr, blocks[i]);
}

}  // namespace qf
