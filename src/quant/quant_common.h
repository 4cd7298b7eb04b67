// Building blocks shared by the 32-element block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
// IQ4_NL) and IQ4_XS. Two families live here:
//
//  * llama_*_block: llama.cpp's own encoders of Q4_0/Q5_0 and Q4_1/Q5_1, built on the
//    reference searches of llama_reference.h (make_qx_quants, make_qkx3_quants,
//    best_index_int8, the row "sigma2"; shared with IQ4 and the K-quants). Every quantizer
//    keeps llama.cpp's answer as one candidate; that is what guarantees our error is never
//    above llama.cpp's.
//  * our searches: many scale candidates, least-squares refits, fp16-aware requantisation
//    and a walk over neighbouring fp16 scales, all judged by the exact error the stored
//    (fp16) scales give.
//
// Error metric everywhere: sum_j w_j * (x_j - y_j)^2 in double, with w = importance weights
// or all ones, and y exactly what the dequantizer produces.
#pragma once
#include "common/half.h"
#include "quant/lane_legacy.h"
#include "quant/llama_reference.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

namespace qf::quant {

using llama_ref::kGroupMaxEps;  // ggml GROUP_MAX_EPS: smaller blocks are written as zero

// Little-endian u16/u32 access to block bytes (blocks are not aligned in general).
inline uint16_t load_u16(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}
inline void store_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
inline void store_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

// A float rounded through fp16, as the stored scale will read back.
inline float fp16_round(float v) { return f16_to_f32(f32_to_f16(v)); }

// fp16 rounding that never yields inf: scales beyond the fp16 range are pinned to the largest
// finite value of the same sign (llama.cpp would store inf there; the data then fails validation).
inline uint16_t f32_to_f16_finite(float v) {
    uint16_t h = f32_to_f16(v);
    if ((h & 0x7FFFu) >= 0x7C00u) h = static_cast<uint16_t>((h & 0x8000u) | 0x7BFFu);
    return h;
}

// The fp16 value `steps` units in the last place away from h in magnitude (sign kept);
// returns false when that leaves the finite non-zero range.
inline bool f16_step(uint16_t h, int steps, uint16_t* out) {
    const int mag = static_cast<int>(h & 0x7FFFu) + steps;
    if (mag < 1 || mag > 0x7BFF) return false;
    *out = static_cast<uint16_t>((h & 0x8000u) | static_cast<uint32_t>(mag));
    return true;
}

// sum w (x - y)^2 in double over n elements.
inline double weighted_sq_error(const float* x, const float* y, const float* w, int n) {
    double err = 0;
    for (int j = 0; j < n; ++j) {
        const double diff = static_cast<double>(x[j]) - static_cast<double>(y[j]);
        err += static_cast<double>(w[j]) * diff * diff;
    }
    return err;
}

// ---------------------------------------------------------------- llama.cpp's block encoders
//
// quantize_row_q4_0 and q5_0 (and q4_1 and q5_1) differ in ggml only by their constants; these
// are those two algorithms, reproduced operation for operation. qw == nullptr gives the _ref
// path, otherwise the _impl path with weights qw * sqrt(sigma2 + x^2) (sigma2: llama_ref::row_sigma2
// of the row). The stored bit layout stays with each format.

// Q4_0 (nmax 8) / Q5_0 (nmax 16): writes the 32 codes level + nmax (0 .. 2 nmax - 1) and
// returns the scale before fp16 rounding.
float llama_symmetric_block(int nmax, float sigma2, const float* x, const float* qw, uint8_t* q);

// Q4_1 (nmax 15) / Q5_1 (nmax 31): writes the 32 codes (0 .. nmax), returns the scale and sets
// *min, both before fp16 rounding. ggml's _ref clamps the codes to nmax for Q4_1 only
// (clamp_ref_codes); Q5_1's cannot exceed 31 anyway.
float llama_affine_block(int nmax, bool clamp_ref_codes, float sigma2, const float* x, const float* qw, uint8_t* q,
                         float* min);

// ---------------------------------------------------------------- level grids
//
// A grid maps v = x / scale to the nearest representable level. round_level() returns the
// level as a float (branch-free, so the loops below can use SIMD); index() gives the stored code.

// Levels lo..hi (integers): y = level * d.
struct UniformGrid {
    float lo, hi;
    float lowest() const { return lo; }
    float highest() const { return hi; }
    float round_level(float v) const {
        v = v < lo ? lo : v;
        v = v > hi ? hi : v;
        return (v + 12582912.0f) - 12582912.0f;  // round half to even, as nearest_int (|v| < 2^22 here)
    }
    int index(float v) const { return static_cast<int>(round_level(v) - lo); }
};

// 16 sorted non-uniform levels (IQ4_NL's table): y = d * table[i].
struct TableGrid16 {
    float levels[16] = {};
    float mid[15] = {};  // exact midpoints between neighbours (half-integers)
    constexpr explicit TableGrid16(const int8_t* table) {
        for (int k = 0; k < 16; ++k) levels[k] = static_cast<float>(table[k]);
        for (int k = 0; k < 15; ++k) mid[k] = 0.5f * (levels[k] + levels[k + 1]);
    }
    float lowest() const { return levels[0]; }
    float highest() const { return levels[15]; }
    int index(float v) const {  // count of midpoints at or below v: ties go up, as ggml
        int i = 0;
        for (int k = 0; k < 15; ++k) i += v >= mid[k] ? 1 : 0;
        return i;
    }
    float round_level(float v) const { return levels[index(v)]; }
};

// ---------------------------------------------------------------- our searches
//
// Inner loops accumulate in kLanes independent partial sums that are combined in a fixed
// order: deterministic on every CPU, and vectorisable without reassociating float adds.
// Their float results only rank candidates; the final choice between llama.cpp's encoding
// and ours is made in double on the decoded values (quantize_row_best).

inline constexpr int kLanes = 8;  // every block length here is a multiple of 8
inline float lane_sum(const float* a) { return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])); }

// sum w x l and sum w l^2 with l the levels of iscale * x.
template <class Grid>
void symmetric_sums(const Grid& g, const float* x, const float* w, int n, float iscale, float* sxl, float* sll) {
    float axl[kLanes] = {}, all[kLanes] = {};
    for (int j = 0; j < n; j += kLanes) {
        for (int k = 0; k < kLanes; ++k) {
            const float l = g.round_level(iscale * x[j + k]);
            const float wl = w[j + k] * l;
            axl[k] += wl * x[j + k];
            all[k] += wl * l;
        }
    }
    *sxl = lane_sum(axl);
    *sll = lane_sum(all);
}

// Error sum w (x - level * d)^2 of scale d (the decoded value) with every element on its
// nearest level.
template <class Grid>
float symmetric_error(const Grid& g, const float* x, const float* w, int n, float d) {
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    float acc[kLanes] = {};
    for (int j = 0; j < n; j += kLanes) {
        for (int k = 0; k < kLanes; ++k) {
            const float diff = x[j + k] - g.round_level(x[j + k] * id) * d;
            acc[k] += w[j + k] * diff * diff;
        }
    }
    return lane_sum(acc);
}

// Codes of every element for scale d (the same levels symmetric_error used).
template <class Grid>
void symmetric_indices(const Grid& g, const float* x, int n, float d, uint8_t* idx) {
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < n; ++j) idx[j] = static_cast<uint8_t>(g.index(x[j] * id));
}

// How widely the symmetric search spreads its scale candidates: the element of largest
// magnitude is mapped to extreme_level * (1 + f) for `steps` values of f in [f_lo, f_hi],
// once for the lowest and once for the highest level.
struct ScaleSpread {
    float f_lo, f_hi;
    int steps;
};

// How a candidate scale is stored: fp16 (block scales) or kept as float (IQ4_XS sub-block
// scales, which are quantized afterwards against the super-block scale).
struct KeepScale {
    static constexpr bool kFp16 = false;
    static float apply(float d) { return std::isfinite(d) ? d : 0.0f; }
};
struct Fp16Scale {
    static constexpr bool kFp16 = true;
    // A non-zero scale below fp16's range becomes the smallest subnormal rather than zero:
    // tiny blocks then keep some information (the error decides whether that helps).
    static float apply(float d) {
        if (!std::isfinite(d)) return 0.0f;
        uint16_t h = f32_to_f16_finite(d);
        if ((h & 0x7FFFu) == 0 && d != 0.0f) h = static_cast<uint16_t>(h | 1u);
        return f16_to_f32(h);
    }
};

// Symmetric scale search, y = level * d:
//  1. screen 2 * spread.steps starting scales by their least-squares error (sum w x l)^2 / sum w l^2;
//  2. round the four best least-squares scales as stored and requantize every element;
//  3. improve locally: least-squares refit for the current levels, neighbouring fp16 values.
// Returns the best stored scale (0 for an all-zero block); its error goes to *err if given.
template <class Rounding, class Grid>
float search_symmetric(const Grid& g, const float* x, const float* w, int n, ScaleSpread spread, float* err = nullptr) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; ++j) {
        const float ax = std::fabs(x[j]);
        if (ax > amax) {
            amax = ax;
            max = x[j];
        }
    }
    float best_d = 0;
    float best = symmetric_error(g, x, w, n, 0.0f);
    if (amax < 1e-30f) {  // scales this small are zero in fp16 anyway
        if (err) *err = best;
        return 0.0f;
    }
    // The kTop best starting points by least-squares error (insertion into a sorted list).
    constexpr int kTop = 4;
    float top_score[kTop], top_scale[kTop];
    for (int c = 0; c < kTop; ++c) top_score[c] = -1, top_scale[c] = 0;
    for (const float ext : {g.lowest(), g.highest()}) {
        const float base = ext / max;
        for (int s = 0; s < spread.steps; ++s) {
            const float f = spread.steps > 1
                                ? spread.f_lo + (spread.f_hi - spread.f_lo) * static_cast<float>(s) / static_cast<float>(spread.steps - 1)
                                : 0.0f;
            float sxl, sll;
            symmetric_sums(g, x, w, n, base * (1.0f + f), &sxl, &sll);
            if (!(sll > 0)) continue;
            const float score = sxl * sxl / sll, scale = sxl / sll;
            bool duplicate = false;
            for (int c = 0; c < kTop; ++c) duplicate |= top_scale[c] == scale;
            if (duplicate || !(score > top_score[kTop - 1])) continue;
            int c = kTop - 1;
            for (; c > 0 && score > top_score[c - 1]; --c) top_score[c] = top_score[c - 1], top_scale[c] = top_scale[c - 1];
            top_score[c] = score;
            top_scale[c] = scale;
        }
    }
    auto consider = [&](float d) {
        if (d == best_d) return false;
        const float e = symmetric_error(g, x, w, n, d);
        if (e < best) {
            best = e;
            best_d = d;
            return true;
        }
        return false;
    };
    for (int c = 0; c < kTop; ++c)
        if (top_score[c] >= 0) consider(Rounding::apply(top_scale[c]));
    for (int round = 0; round < 4 && best_d != 0.0f; ++round) {
        float sxl, sll;
        symmetric_sums(g, x, w, n, 1.0f / best_d, &sxl, &sll);
        bool improved = sll > 0 && consider(Rounding::apply(sxl / sll));
        if constexpr (Rounding::kFp16) {
            const uint16_t h = f32_to_f16(best_d);
            for (const int step : {-1, 1}) {
                uint16_t nh;
                if (f16_step(h, step, &nh)) improved |= consider(f16_to_f32(nh));
            }
        }
        if (!improved) break;
    }
    if (err) *err = best;
    return best_d;
}

// Affine levels 0..nmax with y = L * d + m, d and m stored as fp16: least-squares fits of
// (d, m) for levels from 2 * (nstep + 1) starting scales, the two best rounded to fp16 and
// requantized, then refits and neighbouring fp16 values. Returns the error; writes the
// fp16 bits and the levels.
float search_affine(int nmax, const float* x, const float* w, int n, float rmin, float rdelta, int nstep,
                    uint16_t* d_out, uint16_t* m_out, uint8_t* L);

}  // namespace qf::quant

namespace qf::quant {

// ---------------------------------------------------------------- row drivers
//
// A block format F provides:
//   static constexpr int kElems, kBytes;
//   struct RowContext;                                   // per-row values llama.cpp's search uses
//   static RowContext row_context(const float* row, int64_t n, const float* importance);
//   static void dequantize_block(const uint8_t* block, float* y);
//   static void llama_block(const RowContext&, const float* x, const float* qw /*nullable*/, uint8_t* block);
//   static void search_block(const float* x, const float* w /*never null*/, uint8_t* block);

inline double error_or_inf(double e) { return e == e ? e : std::numeric_limits<double>::infinity(); }

// Encodes every block with llama.cpp's search and with ours and keeps the one whose decoded
// values have the lower (importance-weighted) squared error; llama.cpp's wins ties.
template <class F>
void quantize_row_best(const float* src, void* dst, int64_t n, const float* importance) {
    const typename F::RowContext ctx = F::row_context(src, n, importance);
    float ones[F::kElems];
    for (float& v : ones) v = 1.0f;
    auto* out = static_cast<uint8_t*>(dst);
    for (int64_t b = 0; b < n / F::kElems; ++b) {
        const float* x = src + b * F::kElems;
        const float* qw = importance ? importance + b * F::kElems : nullptr;
        const float* w = qw ? qw : ones;
        uint8_t* block = out + b * F::kBytes;
        float y[F::kElems];
        F::llama_block(ctx, x, qw, block);
        F::dequantize_block(block, y);
        const double llama_err = error_or_inf(weighted_sq_error(x, y, w, F::kElems));
        uint8_t cand[F::kBytes];
        F::search_block(x, w, cand);
        F::dequantize_block(cand, y);
        if (weighted_sq_error(x, y, w, F::kElems) < llama_err) std::memcpy(block, cand, F::kBytes);
    }
}

// The fast default: llama.cpp's encoding polished on SIMD (quant/lane_legacy.h), never worse
// than llama.cpp's per block. Blocks the fast path cannot encode finitely (fp16 overflow on huge
// values) get the wide search of quantize_row_best instead.
template <class F>
void quantize_row_fast(legacy_lanes::Format format, const float* src, void* dst, int64_t n, const float* importance) {
    const int64_t n_blocks = n / F::kElems;
    std::vector<uint8_t> fallback(static_cast<size_t>(n_blocks));
    legacy_lanes::quantize_row(format, legacy_lanes::default_polish(format, importance != nullptr), src, dst, n,
                               importance, fallback.data());
    bool any = false;
    for (uint8_t f : fallback) any |= f != 0;
    if (!any) return;
    float ones[F::kElems];
    for (float& v : ones) v = 1.0f;
    auto* out = static_cast<uint8_t*>(dst);
    for (int64_t b = 0; b < n_blocks; ++b) {
        if (!fallback[static_cast<size_t>(b)]) continue;
        const float* x = src + b * F::kElems;
        const float* qw = importance ? importance + b * F::kElems : nullptr;
        uint8_t* block = out + b * F::kBytes;
        float y[F::kElems];
        F::dequantize_block(block, y);
        const double fast_err = error_or_inf(weighted_sq_error(x, y, qw ? qw : ones, F::kElems));
        uint8_t cand[F::kBytes];
        F::search_block(x, qw ? qw : ones, cand);
        F::dequantize_block(cand, y);
        if (weighted_sq_error(x, y, qw ? qw : ones, F::kElems) < fast_err) std::memcpy(block, cand, F::kBytes);
    }
}

// llama.cpp's encoding alone (what ggml_quantize_chunk writes for this row).
template <class F>
void quantize_row_llama(const float* src, void* dst, int64_t n, const float* importance) {
    const typename F::RowContext ctx = F::row_context(src, n, importance);
    auto* out = static_cast<uint8_t*>(dst);
    for (int64_t b = 0; b < n / F::kElems; ++b)
        F::llama_block(ctx, src + b * F::kElems, importance ? importance + b * F::kElems : nullptr,
                       out + b * F::kBytes);
}

template <class F>
void dequantize_row_blocks(const void* src, float* dst, int64_t n) {
    const auto* in = static_cast<const uint8_t*>(src);
    for (int64_t b = 0; b < n / F::kElems; ++b) F::dequantize_block(in + b * F::kBytes, dst + b * F::kElems);
}

}  // namespace qf::quant
