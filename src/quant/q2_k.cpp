#include "quant/q2_k.h"

#include "quant/kquant_common.h"
#include "quant/lane_search.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace qf {
namespace {

using kquant::kBlockElems;

void dequantize_block(const BlockQ2K& b, float* y) {
    const float d = f16_to_f32(b.d);
    const float dmin = f16_to_f32(b.dmin);
    for (int j = 0; j < 16; ++j) {
        // Sub-block j = values 16j..16j+15: half h = j/8, bit pair s = (j%8)/2, bytes from 16*(j%2).
        const int h = j / 8, s = (j % 8) / 2, l0 = 16 * (j % 2);
        const float dl = d * (b.scales[j] & 0xF), ml = dmin * (b.scales[j] >> 4);
        const uint8_t* q = b.qs + 32 * h + l0;
        for (int l = 0; l < 16; ++l) y[16 * j + l] = dl * ((q[l] >> (2 * s)) & 3) - ml;
    }
}

void pack_quants(const uint8_t* L, BlockQ2K& b) {
    for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l) {
            const uint8_t* v = L + 128 * h + l;
            b.qs[32 * h + l] = static_cast<uint8_t>(v[0] | (v[32] << 2) | (v[64] << 4) | (v[96] << 6));
        }
}

void llama_requantize(const float* x, const BlockQ2K& b, uint8_t* L) {
    for (int j = 0; j < 16; ++j) {
        const float d = f16_to_f32(b.d) * (b.scales[j] & 0xF);
        if (!d) continue;
        const float dm = f16_to_f32(b.dmin) * (b.scales[j] >> 4);
        for (int ii = 0; ii < 16; ++ii) {
            const int l = nearest_int((x[16 * j + ii] + dm) / d);
            L[16 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(3, l)));
        }
    }
}

// The sub-block searches of nb blocks on SIMD lanes: make_qkx2_quants with |x| weights and
// absolute errors (quantize_row_q2_K_ref) or make_qkx3_quants with importance *
// sqrt(sigma2 + x^2) weights (quantize_row_q2_K_impl).
void llama_groups(const float* x, const float* qw, int nb, kquant::GroupSearch* gs) {
    uint8_t L[kquant::kBatchBlocks * kBlockElems];
    float weights[kquant::kBatchBlocks * kBlockElems];
    float scales[kquant::kBatchBlocks * 16], mins[kquant::kBatchBlocks * 16];
    if (!qw) {
        for (int e = 0; e < nb * kBlockElems; ++e) weights[e] = std::fabs(x[e]);
        lanes::make_qkx_quants(false, nb * 16, 16, 3, x, weights, L, scales, mins, -0.5f, 0.1f, 15, true);
    } else {
        for (int b = 0; b < nb; ++b) {
            const float* xb = x + b * kBlockElems;
            const float* qb = qw + b * kBlockElems;
            float* wb = weights + b * kBlockElems;
            float sumx2 = 0;
            for (int j = 0; j < kBlockElems; ++j) sumx2 += xb[j] * xb[j];
            const float sigma2 = sumx2 / kBlockElems;
            for (int j = 0; j < 16; ++j) {
                for (int l = 0; l < 16; ++l)
                    wb[16 * j + l] = qb[16 * j + l] * std::sqrt(sigma2 + xb[16 * j + l] * xb[16 * j + l]);
                gs[b].sw[j] = 0;
                for (int l = 0; l < 16; ++l) gs[b].sw[j] += wb[16 * j + l];
            }
        }
        lanes::make_qkx_quants(true, nb * 16, 16, 3, x, weights, L, scales, mins, -0.9f, 0.05f, 36, false);
    }
    for (int b = 0; b < nb; ++b) {
        std::memcpy(gs[b].scales, scales + 16 * b, sizeof gs[b].scales);
        std::memcpy(gs[b].mins, mins + 16 * b, sizeof gs[b].mins);
        std::memcpy(gs[b].L, L + b * kBlockElems, kBlockElems);
    }
}

// quantize_row_q2_K_ref for one block, from its sub-block searches.
void llama_finish_plain(const float* x, const kquant::GroupSearch& gs, BlockQ2K& b) {
    uint8_t L[kBlockElems];
    std::memcpy(L, gs.L, kBlockElems);
    const float* scales = gs.scales;
    const float* mins = gs.mins;
    const float q4scale = 15.f;
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; ++j) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
        const float iscale = q4scale / max_scale;
        for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
        b.d = f32_to_f16(max_scale / q4scale);
    } else {
        for (int j = 0; j < 16; ++j) b.scales[j] = 0;
        b.d = f32_to_f16(0.f);
    }
    if (max_min > 0) {
        const float iscale = q4scale / max_min;
        for (int j = 0; j < 16; ++j)
            b.scales[j] = static_cast<uint8_t>(b.scales[j] | (nearest_int(iscale * mins[j]) << 4));
        b.dmin = f32_to_f16(max_min / q4scale);
    } else {
        b.dmin = f32_to_f16(0.f);
    }
    llama_requantize(x, b, L);
    pack_quants(L, b);
}

// quantize_row_q2_K_impl for one block (the importance path), from its sub-block searches.
void llama_finish_weighted(const float* x, const kquant::GroupSearch& gs, BlockQ2K& b) {
    uint8_t L[kBlockElems], Ls[16], Lm[16];
    std::memcpy(L, gs.L, kBlockElems);
    const float* sw = gs.sw;
    const float* scales = gs.scales;
    const float* mins = gs.mins;
    const float dm = llama_ref::make_qp_quants(16, 15, scales, Ls, sw);
    const float mm = llama_ref::make_qp_quants(16, 15, mins, Lm, sw);
    b.d = f32_to_f16(dm);
    b.dmin = f32_to_f16(mm);
    for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
    llama_requantize(x, b, L);
    pack_quants(L, b);
}

void llama_finish_block(const float* x, const float* qw, const kquant::GroupSearch& gs, BlockQ2K& b) {
    if (qw) llama_finish_weighted(x, gs, b);
    else llama_finish_plain(x, gs, b);
}

void llama_block(const float* x, const float* importance, BlockQ2K& b) {
    kquant::GroupSearch gs;
    llama_groups(x, importance, 1, &gs);
    llama_finish_block(x, importance, gs, b);
}

constexpr kquant::AsymSpec kSpec{16, 16, 3, 15};

// The block's super-scale and integer sub-block scales, unpacked (the polish's starting point).
void to_rep(const BlockQ2K& b, kquant::AsymBlock& r) {
    r.d = b.d;
    r.dmin = b.dmin;
    for (int j = 0; j < 16; ++j) {
        r.sc[j] = b.scales[j] & 0xF;
        r.m[j] = b.scales[j] >> 4;
    }
}

// A block from its unpacked form, quants included.
void store(const kquant::AsymBlock& r, BlockQ2K& b) {
    b.d = r.d;
    b.dmin = r.dmin;
    for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<uint8_t>(r.sc[j] | (r.m[j] << 4));
    pack_quants(r.q, b);
}

void search_block(const float* x, const float* w, BlockQ2K& b) { kquant::search_block(kSpec, x, w, b, store); }

void polish_blocks(const float* x, const float* w, int nb, const BlockQ2K* from, BlockQ2K* to) {
    kquant::polish_blocks(kSpec, x, w, nb, from, to, to_rep, store);
}

}  // namespace

void dequantize_row_q2_K(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockQ2K*>(src);
    for (int64_t i = 0; i < n / kBlockElems; ++i) dequantize_block(blocks[i], dst + i * kBlockElems);
}

void quantize_row_q2_K(const float* src, void* dst, int64_t n, const float* importance) {
    kquant::quantize_blocks_polished(src, static_cast<BlockQ2K*>(dst), n, importance, llama_groups, llama_finish_block,
                                     polish_blocks, dequantize_block, 1.0f);
}

void quantize_row_q2_K_thorough(const float* src, void* dst, int64_t n, const float* importance) {
    kquant::quantize_blocks_best_of(src, static_cast<BlockQ2K*>(dst), n, importance, llama_block, search_block,
                                    dequantize_block);
}

void quantize_row_q2_K_llama(const float* src, void* dst, int64_t n, const float* importance) {
    kquant::llama_rows(src, static_cast<BlockQ2K*>(dst), n, importance, llama_groups, llama_finish_block);
}

void set_codes_q2_K(void* block, const uint8_t* codes) { pack_quants(codes, *static_cast<BlockQ2K*>(block)); }

}  // namespace qf
