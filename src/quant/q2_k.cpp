#include "quant/q2_k.h"

#include "quant/kquant_common.h"

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

// quantize_row_q2_K_ref for one block.
void llama_block_plain(const float* x, BlockQ2K& b) {
    uint8_t L[kBlockElems], Laux[16];
    float weights[16], mins[16], scales[16];
    const float q4scale = 15.f;
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; ++j) {
        for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
        scales[j] = llama_ref::make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f,
                                                    0.1f, 15, true);
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

// quantize_row_q2_K_impl for one block (the importance path).
void llama_block_weighted(const float* x, const float* qw, BlockQ2K& b) {
    uint8_t L[kBlockElems], Laux[16], Ls[16], Lm[16];
    float weight[16], sw[16] = {}, mins[16], scales[16];
    float sumx2 = 0;
    for (int j = 0; j < kBlockElems; ++j) sumx2 += x[j] * x[j];
    const float sigma2 = sumx2 / kBlockElems;
    for (int j = 0; j < 16; ++j) {
        for (int l = 0; l < 16; ++l) weight[l] = qw[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
        for (int l = 0; l < 16; ++l) sw[j] += weight[l];
        scales[j] = llama_ref::make_qkx3_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f,
                                                    0.05f, 36, false);
    }
    const float dm = llama_ref::make_qp_quants(16, 15, scales, Ls, sw);
    const float mm = llama_ref::make_qp_quants(16, 15, mins, Lm, sw);
    b.d = f32_to_f16(dm);
    b.dmin = f32_to_f16(mm);
    for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
    llama_requantize(x, b, L);
    pack_quants(L, b);
}

void llama_block(const float* x, const float* importance, BlockQ2K& b) {
    if (importance) llama_block_weighted(x, importance, b);
    else llama_block_plain(x, b);
}

constexpr kquant::AsymSpec kSpec{16, 16, 3, 15};

void search_block(const float* x, const float* w, BlockQ2K& b) {
    kquant::AsymBlock a;
    kquant::search_asym(kSpec, x, w, a);
    b.d = a.d;
    b.dmin = a.dmin;
    for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<uint8_t>(a.sc[j] | (a.m[j] << 4));
    pack_quants(a.q, b);
}

}  // namespace

void dequantize_row_q2_K(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockQ2K*>(src);
    for (int64_t i = 0; i < n / kBlockElems; ++i) dequantize_block(blocks[i], dst + i * kBlockElems);
}

void quantize_row_q2_K(const float* src, void* dst, int64_t n, const float* importance) {
    kquant::quantize_blocks_best_of(src, static_cast<BlockQ2K*>(dst), n, importance, llama_block, search_block,
                                    dequantize_block);
}

void quantize_row_q2_K_llama(const float* src, void* dst, int64_t n, const float* importance) {
    auto* blocks = static_cast<BlockQ2K*>(dst);
    for (int64_t i = 0; i < n / kBlockElems; ++i)
        llama_block(src + i * kBlockElems, importance ? importance + i * kBlockElems : nullptr, blocks[i]);
}

}  // namespace qf
