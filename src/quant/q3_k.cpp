#include "quant/q3_k.h"

#include "quant/kquant_common.h"

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
    std::memset(b.hmask, 0, sizeof b.hmask);
    uint8_t low[kBlockElems];
    for (int e = 0; e < kBlockElems; ++e) {
        if (L[e] > 3) b.hmask[e % 32] |= static_cast<uint8_t>(1 << (e / 32));
        low[e] = L[e] & 3;
    }
    for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l) {
            const uint8_t* v = low + 128 * h + l;
            b.qs[32 * h + l] = static_cast<uint8_t>(v[0] | (v[32] << 2) | (v[64] << 4) | (v[96] << 6));
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

// quantize_row_q3_K_ref for one block.
void llama_block_plain(const float* x, BlockQ3K& b) {
    int8_t L[kBlockElems];
    float scales[16];
    float max_scale = 0, amax = 0;
    for (int j = 0; j < 16; ++j) {
        scales[j] = llama_ref::make_q3_quants(16, 4, x + 16 * j, L + 16 * j, true);
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

// quantize_row_q3_K_impl for one block (the importance path).
void llama_block_weighted(const float* x, const float* qw, BlockQ3K& b) {
    int8_t L[kBlockElems], Ls[16];
    float scales[16], weight[16], sw[16];
    float sumx2 = 0;
    for (int j = 0; j < kBlockElems; ++j) sumx2 += x[j] * x[j];
    const float sigma2 = 2 * sumx2 / kBlockElems;
    for (int j = 0; j < 16; ++j) {
        for (int l = 0; l < 16; ++l) weight[l] = qw[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 16; ++l) sumw += weight[l];
        sw[j] = sumw;
        scales[j] = llama_ref::make_qx_quants(16, 4, x + 16 * j, L + 16 * j, 1, weight);
    }
    const float d_block = llama_ref::make_qx_quants(16, 32, scales, Ls, 1, sw);
    int8_t sc[16];
    for (int j = 0; j < 16; ++j) sc[j] = static_cast<int8_t>(Ls[j] - 32);
    kquant::pack_scales_q3_k(sc, b.scales);
    b.d = f32_to_f16(d_block);
    llama_finish(x, b, L);
}

void llama_block(const float* x, const float* importance, BlockQ3K& b) {
    if (importance) llama_block_weighted(x, importance, b);
    else llama_block_plain(x, b);
}

constexpr kquant::SymSpec kSpec{16, 16, -4, 3, -32, 31};

void search_block(const float* x, const float* w, BlockQ3K& b) {
    kquant::SymBlock s;
    kquant::search_sym(kSpec, x, w, s);
    b.d = s.d;
    kquant::pack_scales_q3_k(s.sc, b.scales);
    uint8_t L[kBlockElems];
    for (int e = 0; e < kBlockElems; ++e) L[e] = static_cast<uint8_t>(s.q[e] + 4);
    pack_quants(L, b);
}

}  // namespace

void dequantize_row_q3_K(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockQ3K*>(src);
    for (int64_t i = 0; i < n / kBlockElems; ++i) dequantize_block(blocks[i], dst + i * kBlockElems);
}

void quantize_row_q3_K(const float* src, void* dst, int64_t n, const float* importance) {
    kquant::quantize_blocks_best_of(src, static_cast<BlockQ3K*>(dst), n, importance, llama_block, search_block,
                                    dequantize_block);
}

void quantize_row_q3_K_llama(const float* src, void* dst, int64_t n, const float* importance) {
    auto* blocks = static_cast<BlockQ3K*>(dst);
    for (int64_t i = 0; i < n / kBlockElems; ++i)
        llama_block(src + i * kBlockElems, importance ? importance + i * kBlockElems : nullptr, blocks[i]);
}

}  // namespace qf
