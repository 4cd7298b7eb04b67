#include "quant/q6_k.h"

#include "quant/kquant_common.h"
#include "quant/lane_search.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace qf {
namespace {

using kquant::kBlockElems;

void dequantize_block(const BlockQ6K& b, float* y) {
    const float d = f16_to_f32(b.d);
    for (int h = 0; h < 2; ++h) {
        const uint8_t* ql = b.ql + 64 * h;
        const uint8_t* qh = b.qh + 32 * h;
        const int8_t* sc = b.scales + 8 * h;
        float* out = y + 128 * h;
        for (int is = 0; is < 2; ++is) {  // is = l / 16, hoisted so the inner loop vectorises
            // (d*sc)*q, left to right, as ggml.
            const float d1 = d * sc[is], d2 = d * sc[is + 2], d3 = d * sc[is + 4], d4 = d * sc[is + 6];
            for (int l = 16 * is; l < 16 * is + 16; ++l) {
                const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                out[l] = d1 * static_cast<float>(q1);
                out[l + 32] = d2 * static_cast<float>(q2);
                out[l + 64] = d3 * static_cast<float>(q3);
                out[l + 96] = d4 * static_cast<float>(q4);
            }
        }
    }
}

// L holds quants biased by 32 (0..63).
void pack_quants(const uint8_t* L, BlockQ6K& b) {
    for (int h = 0; h < 2; ++h) {
        const uint8_t* v = L + 128 * h;
        for (int l = 0; l < 32; ++l) {
            b.ql[64 * h + l] = static_cast<uint8_t>((v[l] & 0xF) | ((v[l + 64] & 0xF) << 4));
            b.ql[64 * h + 32 + l] = static_cast<uint8_t>((v[l + 32] & 0xF) | ((v[l + 96] & 0xF) << 4));
            b.qh[32 * h + l] = static_cast<uint8_t>((v[l] >> 4) | ((v[l + 32] >> 4) << 2) | ((v[l + 64] >> 4) << 4) |
                                                    ((v[l + 96] >> 4) << 6));
        }
    }
}

// Shared by both llama.cpp paths (quantize_row_q6_K_ref and _impl differ only in the weights
// given to make_qx_quants: x^2 or the importance). First the sub-block searches of nb blocks
// on SIMD lanes, then each block on its own.
void llama_groups(const float* x, const float* importance, int nb, kquant::GroupSearch* gs) {
    int8_t L[kquant::kBatchBlocks * kBlockElems];
    float scales[kquant::kBatchBlocks * 16];
    lanes::make_qx_quants(nb * 16, 16, 32, x, L, 1, importance, scales);
    for (int b = 0; b < nb; ++b) {
        std::memcpy(gs[b].scales, scales + 16 * b, sizeof gs[b].scales);
        std::memcpy(gs[b].L, L + b * kBlockElems, kBlockElems);
    }
}

void llama_finish(const float* x, const float*, const kquant::GroupSearch& gs, BlockQ6K& b) {
    int8_t L[kBlockElems];
    std::memcpy(L, gs.L, kBlockElems);
    const float* scales = gs.scales;
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
        const float abs_scale = std::fabs(scales[ib]);
        if (abs_scale > max_abs_scale) {
            max_abs_scale = abs_scale;
            max_scale = scales[ib];
        }
    }
    if (max_abs_scale < kquant::kGroupMaxEps) {
        std::memset(&b, 0, sizeof b);
        return;
    }
    const float iscale = -128.f / max_scale;
    b.d = f32_to_f16(1 / iscale);
    for (int ib = 0; ib < 16; ++ib) b.scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
    for (int j = 0; j < 16; ++j) {
        const float d = f16_to_f32(b.d) * b.scales[j];
        if (!d) continue;
        for (int ii = 0; ii < 16; ++ii) {
            const int l = nearest_int(x[16 * j + ii] / d);
            L[16 * j + ii] = static_cast<int8_t>(std::max(-32, std::min(31, l)) + 32);
        }
    }
    uint8_t u[kBlockElems];
    for (int e = 0; e < kBlockElems; ++e) u[e] = static_cast<uint8_t>(L[e]);
    pack_quants(u, b);
}

void llama_block(const float* x, const float* importance, BlockQ6K& b) {
    kquant::GroupSearch gs;
    llama_groups(x, importance, 1, &gs);
    llama_finish(x, importance, gs, b);
}

constexpr kquant::SymSpec kSpec{16, 16, -32, 31, -128, 127};

// The block's super-scale and integer sub-block scales, unpacked (the polish's starting point).
void to_rep(const BlockQ6K& b, kquant::SymBlock& r) {
    r.d = b.d;
    std::memcpy(r.sc, b.scales, sizeof r.sc);
}

// A block from its unpacked form, quants included.
void store(const kquant::SymBlock& r, BlockQ6K& b) {
    b.d = r.d;
    std::memcpy(b.scales, r.sc, sizeof b.scales);
    uint8_t L[kBlockElems];
    for (int e = 0; e < kBlockElems; ++e) L[e] = static_cast<uint8_t>(r.q[e] + 32);
    pack_quants(L, b);
}

void search_block(const float* x, const float* w, BlockQ6K& b) { kquant::search_block(kSpec, x, w, b, store); }

void polish_blocks(const float* x, const float* w, int nb, const BlockQ6K* from, BlockQ6K* to) {
    kquant::polish_blocks(kSpec, x, w, nb, from, to, to_rep, store);
}

}  // namespace

void dequantize_row_q6_K(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockQ6K*>(src);
    for (int64_t i = 0; i < n / kBlockElems; ++i) dequantize_block(blocks[i], dst + i * kBlockElems);
}

void quantize_row_q6_K(const float* src, void* dst, int64_t n, const float* importance) {
    kquant::quantize_blocks_polished(src, static_cast<BlockQ6K*>(dst), n, importance, llama_groups, llama_finish,
                                     polish_blocks, dequantize_block);
}

void quantize_row_q6_K_thorough(const float* src, void* dst, int64_t n, const float* importance) {
    kquant::quantize_blocks_best_of(src, static_cast<BlockQ6K*>(dst), n, importance, llama_block, search_block,
                                    dequantize_block);
}

void quantize_row_q6_K_llama(const float* src, void* dst, int64_t n, const float* importance) {
    kquant::llama_rows(src, static_cast<BlockQ6K*>(dst), n, importance, llama_groups, llama_finish);
}

void set_codes_q6_K(void* block, const uint8_t* codes) { pack_quants(codes, *static_cast<BlockQ6K*>(block)); }

}  // namespace qf
