// Faithful copies of llama.cpp's reference block searches (ggml-quants.c), shared by every
// format that reproduces ggml_quantize_chunk's bytes as one of its candidates: the 32-element
// formats (quant_common.h), IQ4_NL/IQ4_XS and the K-quants (kquant_common.h).
//
// Each function performs the same float operations in the same order, with the same integer
// conversions, as its ggml namesake, so it returns the same scales and levels bit for bit.
// That is what guarantees a quantizer that keeps the better of llama.cpp's candidate and its own
// is never worse than llama.cpp. Do not "improve" or "simplify" anything here: a changed
// rounding or summation order breaks that guarantee (tests/interop/test_quant*_interop.cpp
// compare the bytes with libggml). It also relies on plain IEEE arithmetic: no -ffast-math and
// no FMA contraction (the build passes -ffp-contract=off).
//
// Argument names and meanings follow ggml's functions.
#pragma once
#include <cstdint>

namespace qf::llama_ref {

inline constexpr float kGroupMaxEps = 1e-15f;  // ggml GROUP_MAX_EPS: groups below it are written as zero

// best_index_int8: index of the sorted table entry nearest to x (ties go to the upper entry).
inline int best_index_int8(const int8_t* values, int n, float x) {
    if (x <= values[0]) return 0;
    if (x >= values[n - 1]) return n - 1;
    int lo = 0, hi = n - 1;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (x < values[mid]) hi = mid;
        else lo = mid;
    }
    return x - values[hi - 1] < values[hi] - x ? hi - 1 : hi;
}

// Sum of squares of the whole row divided by its length, summed in float left to right as
// quantize_row_q{4,5}_{0,1}_impl do (their per-element weights use it). Not the K-quants'
// or IQ4's sigma2 (2 * sum / block size, per super-block), which those formats compute inline.
float row_sigma2(const float* x, int64_t n);

// make_qx_quants: symmetric levels -nmax..nmax-1, stored in L as level + nmax; returns the
// (float, unrounded) scale. qw == nullptr selects ggml's implicit weights for rmse_type 1..4
// (x^2, 1, |x|, sqrt|x|); rmse_type 0 is plain rounding, a negative rmse_type returns early.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw);

// make_q3_quants: symmetric search with x^2 weights followed by per-element coordinate descent
// (Q3_K's reference path). L as in make_qx_quants.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse);

// make_qkx2_quants / make_qkx3_quants: levels 0..nmax with y = scale * L - the_min; returns the
// scale and sets *the_min (>= 0). Laux is scratch of n bytes. They differ only where ggml's do:
// qkx2 needs weights, qkx3 uses x^2 when weights == nullptr; the degenerate range test is
// max == min in qkx2 and max <= min in qkx3.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad);
float make_qkx3_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad);

// make_qp_quants: non-negative values (sub-block scales or mins) to [0, nmax] with one shared
// scale, weighted by quant_weights (never null).
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights);

}  // namespace qf::llama_ref
