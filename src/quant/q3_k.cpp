#include "quant/q3_k.h"

#include "quant/kquant_common.h"
#include "quant/lane_search.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace qf {
namespace {

using kquant::kBlockElems;

void dequantize_block(const BlockQ3K& b, float* y) {
    const float d = f16_to_f32(b.d);
    int8_t sc[16];
    kquant::unpack_scales_q3_k(b.scales, sc);
    for (int j = 0; j < 16; ++j) {
        // Sub-block j = values 16j..16j+15: half h = j/8, bit pair s = (j%8)/2, bytes from 16*(j%2);
        // the high bit of value e is bit e/32 of hmask[e%32].
        const int h = j / 8, s = (j % 8) / 2, l0 = 16 * (j % 2);
        const float dl = d * sc[j];
        const uint8_t* q = b.qs + 32 * h + l0;
        const uint8_t* hm = b.hmask + l0;
        const int hbit = 1 << (4 * h + s);
        for (int l = 0; l < 16; ++l) y[16 * j + l] = dl * (((q[l] >> (2 * s)) & 3) - ((hm[l] & hbit) ? 0 : 4));
    }
}

// L holds quants biased by 4 (0..7).
void pack_quants(const uint8_t* L, BlockQ3K& b) {
    // The high bit of value e is bit e/32 of hmask[e%32]; gathered per byte, no read-modify-write.
    for (int l = 0; l < 32; ++l) {
        unsigned m = 0;
        for (int k = 0; k < 8; ++k) m |= static_cast<unsigned>(L[32 * k + l] > 3) << k;
        b.hmask[l] = static_cast<uint8_t>(m);
    }
    for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l) {
            const uint8_t* v = L + 128 * h + l;
            b.qs[32 * h + l] =
                static_cast<uint8_t>((v[0] & 3) | ((v[32] & 3) << 2) | ((v[64] & 3) << 4) | ((v[96] & 3) << 6));
        }
}

void llama_requantize(const float* x, const BlockQ3K& b, int8_t* L) {
    int8_t sc[16];
    kquant::unpack_scales_q3_k(b.scales, sc);
    for (int j = 0; j < 16; ++j) {
        const float d = f16_to_f32(b.d) * sc[j];
        if (!d) continue;
        for (int ii = 0; ii < 16; ++ii) {
            const int l = nearest_int(x[16 * j + ii] / d);
            L[16 * j + ii] = static_cast<int8_t>(std::max(-4, std::min(3, l)) + 4);
        }
    }
}

void llama_finish(const float* x, BlockQ3K& b, int8_t* L) {
    llama_requantize(x, b, L);
    uint8_t u[kBlockElems];
    for (int e = 0; e < kBlockElems; ++e) u[e] = static_cast<uint8_t>(L[e]);
    pack_quants(u, b);
}

// The sub-block searches of nb blocks on SIMD lanes: make_q3_quants (quantize_row_q3_K_ref) or
// make_qx_quants with importance * sqrt(sigma2 + x^2) weights (quantize_row_q3_K_impl).
void llama_groups(const float* x, const float* qw, int nb, kquant::GroupSearch* gs) {
    int8_t L[kquant::kBatchBlocks * kBlockElems];
    float scales[kquant::kBatchBlocks * 16];
    if (!qw) {
        lanes::make_q3_quants(nb * 16, 16, 4, x, L, scales);
    } else {
        float weights[kquant::kBatchBlocks * kBlockElems];
        for (int b = 0; b < nb; ++b) {
            const float* xb = x + b * kBlockElems;
            const float* qb = qw + b * kBlockElems;
            float* wb = weights + b * kBlockElems;
            float sumx2 = 0;
            for (int j = 0; j < kBlockElems; ++j) sumx2 += xb[j] * xb[j];
            const float sigma2 = 2 * sumx2 / kBlockElems;
            for (int j = 0; j < 16; ++j) {
                for (int l = 0; l < 16; ++l)
                    wb[16 * j + l] = qb[16 * j + l] * std::sqrt(sigma2 + xb[16 * j + l] * xb[16 * j + l]);
                float sumw = 0;
                for (int l = 0; l < 16; ++l) sumw += wb[16 * j + l];
                gs[b].sw[j] = sumw;
            }
        }
        lanes::make_qx_quants(nb * 16, 16, 4, x, L, 1, weights, scales);
    }
    for (int b = 0; b < nb; ++b) {
        std::memcpy(gs[b].scales, scales + 16 * b, sizeof gs[b].scales);
        std::memcpy(gs[b].L, L + b * kBlockElems, kBlockElems);
    }
}

// quantize_row_q3_K_ref for one block, from its sub-block searches.
void llama_finish_plain(const float* x, const kquant::GroupSearch& gs, BlockQ3K& b) {
    int8_t L[kBlockElems];
    std::memcpy(L, gs.L, kBlockElems);
    const float* scales = gs.scales;
    float max_scale = 0, amax = 0;
    for (int j = 0; j < 16; ++j) {
        const float scale = std::fabs(scales[j]);
        if (scale > amax) {
            amax = scale;
            max_scale = scales[j];
        }
    }
    if (max_scale) {
        const float iscale = -32.f / max_scale;
        int8_t sc[16];
        for (int j = 0; j < 16; ++j) {
            const auto l = static_cast<int8_t>(nearest_int(iscale * scales[j]));
            sc[j] = static_cast<int8_t>(std::max<int>(-32, std::min<int>(31, l)));
        }
        kquant::pack_scales_q3_k(sc, b.scales);
        b.d = f32_to_f16(1 / iscale);
    } else {
        std::memset(b.scales, 0, sizeof b.scales);
        b.d = f32_to_f16(0.f);
    }
    llama_finish(x, b, L);
}

// quantize_row_q3_K_impl for one block (the importance path), from its sub-block searches.
void llama_finish_weighted(const float* x, const kquant::GroupSearch& gs, BlockQ3K& b) {
    int8_t L[kBlockElems], Ls[16];
    std::memcpy(L, gs.L, kBlockElems);
    const float d_block = llama_ref::make_qx_quants(16, 32, gs.scales, Ls, 1, gs.sw);
    int8_t sc[16];
    for (int j = 0; j < 16; ++j) sc[j] = static_cast<int8_t>(Ls[j] - 32);
    kquant::pack_scales_q3_k(sc, b.scales);
    b.d = f32_to_f16(d_block);
    llama_finish(x, b, L);
}

void llama_finish_block(const float* x, const float* qw, const kquant::GroupSearch& gs, BlockQ3K& b) {
    if (qw) llama_finish_weighted(x, gs, b);
    else llama_finish_plain(x, gs, b);
}

void llama_block(const float* x, const float* importance, BlockQ3K& b) {
    kquant::GroupSearch gs;
    llama_groups(x, importance, 1, &gs);
    llama_finish_block(x, importance, gs, b);
}

constexpr kquant::SymSpec kSpec{16, 16, -4, 3, -32, 31};

// The block's super-scale and integer sub-block scales, unpacked (the polish's starting point).
void to_rep(const BlockQ3K& b, kquant::SymBlock& r) {
    r.d = b.d;
    kquant::unpack_scales_q3_k(b.scales, r.sc);
}

// A block from its unpacked form, quants included.
void store(const kquant::SymBlock& r, BlockQ3K& b) {
    b.d = r.d;
    kquant::pack_scales_q3_k(r.sc, b.scales);
    uint8_t L[kBlockElems];
    for (int e = 0; e < kBlockElems; ++e) L[e] = static_cast<uint8_t>(r.q[e] + 4);
    pack_quants(L, b);
}

void search_block(const float* x, const float* w, BlockQ3K& b) { kquant::search_block(kSpec, x, w, b, store); }

void polish_blocks(const float* x, const float* w, int nb, const BlockQ3K* from, BlockQ3K* to) {
    kquant::polish_blocks(kSpec, x, w, nb, from, to, to_rep, store);
}

}  // namespace

void dequantize_row_q3_K(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockQ3K*>(src);
    for (int64_t i = 0; i < n / kBlockElems; ++i) dequantize_block(blocks[i], dst + i * kBlockElems);
}

void quantize_row_q3_K(const float* src, void* dst, int64_t n, const float* importance) {
    kquant::quantize_blocks_polished(src, static_cast<BlockQ3K*>(dst), n, importance, llama_groups, llama_finish_block,
                                     polish_blocks, dequantize_block, 2.0f);
}

void quantize_row_q3_K_thorough(const float* src, void* dst, int64_t n, const float* importance) {
    kquant::quantize_blocks_best_of(src, static_cast<BlockQ3K*>(dst), n, importance, llama_block, search_block,
                                    dequantize_block);
}

void quantize_row_q3_K_llama(const float* src, void* dst, int64_t n, const float* importance) {
    kquant::llama_rows(src, static_cast<BlockQ3K*>(dst), n, importance, llama_groups, llama_finish_block);
}

void set_codes_q3_K(void* block, const uint8_t* codes) { pack_quants(codes, *static_cast<BlockQ3K*>(block)); }

}  // namespace qf
