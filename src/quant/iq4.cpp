#include "quant/iq4.h"

#include "quant/quant_common.h"

namespace qf {
namespace {

using namespace quant;

constexpr TableGrid16 kGrid(kIq4nlValues);
constexpr int kNtry = 7;  // ggml_quantize_chunk's number of scale trials either side

// The part of ggml's quantize_row_iq4_nl_impl that finds one 32-element sub-block's float
// scale: start from -max/table[0], least-squares fit, then 2*kNtry+1 more starting scales.
// Leaves L untouched (and returns 0) for an all-zero sub-block, as ggml does.
float llama_subblock_scale(const float* xb, const float* weight, uint8_t* L) {
    const int8_t* values = kIq4nlValues;
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j) {
        const float ax = std::fabs(xb[j]);
        if (ax > amax) {
            amax = ax;
            max = xb[j];
        }
    }
    if (amax < kGroupMaxEps) return 0.0f;
    float d = -max / static_cast<float>(values[0]);
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < 32; ++j) {
        const int l = llama_ref::best_index_int8(values, 16, id * xb[j]);
        L[j] = static_cast<uint8_t>(l);
        const float q = values[l];
        sumqx += weight[j] * q * xb[j];
        sumq2 += weight[j] * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.0f;
    float best = d * sumqx;
    for (int itry = -kNtry; itry <= kNtry; ++itry) {
        id = static_cast<float>(itry + values[0]) / max;
        sumqx = sumq2 = 0;
        for (int j = 0; j < 32; ++j) {
            const int l = llama_ref::best_index_int8(values, 16, id * xb[j]);
            const float q = values[l];
            sumqx += weight[j] * q * xb[j];
            sumq2 += weight[j] * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

// ggml's per-element weights: x^2 without importance, qw * sqrt(sigma2 + x^2) with it, where
// sigma2 = 2 * sum(x^2) / super_block_size (summed in float over the whole super-block).
float llama_sigma2(const float* x, int n) {
    float sigma2 = 0;
    for (int j = 0; j < n; ++j) sigma2 += x[j] * x[j];
    return sigma2 * (2.0f / static_cast<float>(n));
}
void llama_weights(const float* xb, const float* qw, float sigma2, float* weight) {
    if (qw) {
        for (int j = 0; j < 32; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    } else {
        for (int j = 0; j < 32; ++j) weight[j] = xb[j] * xb[j];
    }
}

void pack_nibbles32(uint8_t* qs, const uint8_t* L) {
    for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
}

struct Iq4Nl {
    static constexpr int kElems = 32, kBytes = 18;
    struct RowContext {};
    static RowContext row_context(const float*, int64_t, const float*) { return {}; }

    static void dequantize_block(const uint8_t* block, float* y) {
        const float d = f16_to_f32(load_u16(block));
        for (int j = 0; j < 16; ++j) {
            y[j] = d * static_cast<float>(kIq4nlValues[block[2 + j] & 0x0F]);
            y[j + 16] = d * static_cast<float>(kIq4nlValues[block[2 + j] >> 4]);
        }
    }

    static void llama_block(const RowContext&, const float* x, const float* qw, uint8_t* block) {
        float weight[32];
        llama_weights(x, qw, qw ? llama_sigma2(x, 32) : 0.0f, weight);
        uint8_t L[32];
        const float scale = llama_subblock_scale(x, weight, L);
        store_u16(block, f32_to_f16(scale));
        // ggml then re-picks every index with the unrounded scale.
        const float id = scale != 0.0f ? 1 / scale : 0.0f;
        for (int j = 0; j < 32; ++j) L[j] = static_cast<uint8_t>(llama_ref::best_index_int8(kIq4nlValues, 16, id * x[j]));
        pack_nibbles32(block + 2, L);
    }

    static void search_block(const float* x, const float* w, uint8_t* block) {
        const float d = search_symmetric<Fp16Scale>(kGrid, x, w, 32, ScaleSpread{-0.12f, 0.06f, 13});
        uint8_t idx[32];
        symmetric_indices(kGrid, x, 32, d, idx);
        store_u16(block, f32_to_f16(d));
        pack_nibbles32(block + 2, idx);
    }
};

struct Iq4Xs {
    static constexpr int kElems = 256, kBytes = 136;
    struct RowContext {};
    static RowContext row_context(const float*, int64_t, const float*) { return {}; }

    static int sub_scale(const uint8_t* block, int ib) {  // ls - 32, in [-32, 31]
        const uint16_t scales_h = load_u16(block + 2);
        const int ls = ((block[4 + ib / 2] >> (4 * (ib % 2))) & 0x0F) | (((scales_h >> (2 * ib)) & 3) << 4);
        return ls - 32;
    }

    static void dequantize_block(const uint8_t* block, float* y) {
        const float d = f16_to_f32(load_u16(block));
        for (int ib = 0; ib < 8; ++ib) {
            const float dl = d * static_cast<float>(sub_scale(block, ib));
            const uint8_t* qs = block + 8 + 16 * ib;
            for (int j = 0; j < 16; ++j) {
                y[32 * ib + j] = dl * static_cast<float>(kIq4nlValues[qs[j] & 0x0F]);
                y[32 * ib + 16 + j] = dl * static_cast<float>(kIq4nlValues[qs[j] >> 4]);
            }
        }
    }

    // l[ib] in [-32, 31]; L holds 256 table indices.
    static void pack(uint8_t* block, uint16_t d, const int* l, const uint8_t* L) {
        store_u16(block, d);
        uint16_t scales_h = 0;
        for (int ib = 0; ib < 8; ++ib) {
            const int ls = l[ib] + 32;
            if (ib % 2 == 0) block[4 + ib / 2] = static_cast<uint8_t>(ls & 0x0F);
            else block[4 + ib / 2] |= static_cast<uint8_t>((ls & 0x0F) << 4);
            scales_h |= static_cast<uint16_t>((ls >> 4) << (2 * ib));
        }
        store_u16(block + 2, scales_h);
        for (int ib = 0; ib < 8; ++ib) pack_nibbles32(block + 8 + 16 * ib, L + 32 * ib);
    }

    static void llama_block(const RowContext&, const float* x, const float* qw, uint8_t* block) {
        const float sigma2 = llama_sigma2(x, 256);
        float scales[8];
        uint8_t L[256];
        float max_scale = 0, amax_scale = 0;
        for (int ib = 0; ib < 8; ++ib) {
            float weight[32];
            llama_weights(x + 32 * ib, qw ? qw + 32 * ib : nullptr, sigma2, weight);
            scales[ib] = llama_subblock_scale(x + 32 * ib, weight, L + 32 * ib);
            const float abs_d = std::fabs(scales[ib]);
            if (abs_d > amax_scale) {
                amax_scale = abs_d;
                max_scale = scales[ib];
            }
        }
        const float d = -max_scale / 32.0f;
        const float id = d != 0.0f ? 1 / d : 0.0f;
        int l[8];
        for (int ib = 0; ib < 8; ++ib) {
            l[ib] = std::max(-32, std::min(31, nearest_int(id * scales[ib])));
            const float dl = d * static_cast<float>(l[ib]);
            const float idl = dl != 0.0f ? 1 / dl : 0.0f;
            for (int j = 0; j < 32; ++j)
                L[32 * ib + j] = static_cast<uint8_t>(llama_ref::best_index_int8(kIq4nlValues, 16, idl * x[32 * ib + j]));
        }
        pack(block, f32_to_f16(d), l, L);
    }

    // For a fixed super-scale d (as decoded), picks each sub-block's 6-bit scale among the
    // three nearest to its ideal float scale s[ib], with every element on its nearest level.
    static float eval_super_scale(const float* x, const float* w, const float* s, float d, int* l) {
        float total = 0;
        for (int ib = 0; ib < 8; ++ib) {
            int l0 = 0;
            if (d != 0.0f) l0 = std::clamp(nearest_int(std::clamp(s[ib] / d, -40.0f, 40.0f)), -32, 31);
            float best = INFINITY;
            for (int li = std::max(-32, l0 - 1); li <= std::min(31, l0 + 1); ++li) {
                const float e = symmetric_error(kGrid, x + 32 * ib, w + 32 * ib, 32, d * static_cast<float>(li));
                if (e < best) {
                    best = e;
                    l[ib] = li;
                }
            }
            total += best;
        }
        return total;
    }

    static void search_block(const float* x, const float* w, uint8_t* block) {
        float s[8];
        float max_s = 0, amax_s = 0;
        for (int ib = 0; ib < 8; ++ib) {
            s[ib] = search_symmetric<KeepScale>(kGrid, x + 32 * ib, w + 32 * ib, 32, ScaleSpread{-0.12f, 0.06f, 9});
            if (std::fabs(s[ib]) > amax_s) {
                amax_s = std::fabs(s[ib]);
                max_s = s[ib];
            }
        }
        int best_l[8], l[8];
        uint16_t best_dh = 0;
        float best = eval_super_scale(x, w, s, 0.0f, best_l);
        auto consider = [&](uint16_t dh) {
            if (dh == best_dh) return false;
            const float e = eval_super_scale(x, w, s, f16_to_f32(dh), l);
            if (e < best) {
                best = e;
                best_dh = dh;
                std::memcpy(best_l, l, sizeof(l));
                return true;
            }
            return false;
        };
        if (amax_s > 0) {
            // The largest sub-scale on level -32 (as ggml) or +31, each a little stretched.
            for (const float ext : {-32.0f, 31.0f})
                for (const float f : {0.0f, -0.02f, 0.02f})
                    consider(f32_to_f16(Fp16Scale::apply(max_s / (ext * (1.0f + f)))));
            for (int round = 0; round < 4 && best_dh != 0; ++round) {
                bool improved = false;
                const uint16_t dh = best_dh;
                for (const int step : {-1, 1}) {
                    uint16_t nh;
                    if (f16_step(dh, step, &nh)) improved |= consider(nh);
                }
                if (!improved) break;
            }
        }
        const float d = f16_to_f32(best_dh);
        uint8_t L[256];
        for (int ib = 0; ib < 8; ++ib)
            symmetric_indices(kGrid, x + 32 * ib, 32, d * static_cast<float>(best_l[ib]), L + 32 * ib);
        pack(block, best_dh, best_l, L);
    }
};

}  // namespace

void dequantize_row_iq4_nl(const void* src, float* dst, int64_t n) { dequantize_row_blocks<Iq4Nl>(src, dst, n); }
void quantize_row_iq4_nl(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_fast<Iq4Nl>(legacy_lanes::Format::IQ4_NL, src, dst, n, importance);
}
void quantize_row_iq4_nl_thorough(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_best<Iq4Nl>(src, dst, n, importance);
}
void quantize_row_iq4_nl_llama(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_llama<Iq4Nl>(src, dst, n, importance);
}

void dequantize_row_iq4_xs(const void* src, float* dst, int64_t n) { dequantize_row_blocks<Iq4Xs>(src, dst, n); }
void quantize_row_iq4_xs(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_fast<Iq4Xs>(legacy_lanes::Format::IQ4_XS, src, dst, n, importance);
}
void quantize_row_iq4_xs_thorough(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_best<Iq4Xs>(src, dst, n, importance);
}
void quantize_row_iq4_xs_llama(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_llama<Iq4Xs>(src, dst, n, importance);
}

void set_codes_iq4_nl(void* block, const uint8_t* codes) { pack_nibbles32(static_cast<uint8_t*>(block) + 2, codes); }
void set_codes_iq4_xs(void* block, const uint8_t* codes) {
    for (int ib = 0; ib < 8; ++ib) pack_nibbles32(static_cast<uint8_t*>(block) + 8 + 16 * ib, codes + 32 * ib);
}

}  // namespace qf
