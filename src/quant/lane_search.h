// llama.cpp's group searches (llama_reference.h) run on many groups at once, one group per
// SIMD lane. Each lane performs exactly the scalar operation sequence of its llama_ref namesake
// (same order of every sum, same roundings, no FMA), so the results are bit-identical to
// llama_ref's on every CPU path; only independent groups run side by side. That is what lets
// the K-quants keep llama.cpp's candidate (our "never worse than llama.cpp" guarantee) at SIMD
// speed, with runtime dispatch to AVX-512 / AVX2 / baseline x86-64.
//
// Groups are `count` consecutive runs of n values (n <= 32): group g is x[g*n .. g*n+n).
// Outputs are per group; L holds n levels per group exactly as llama_ref would write them.
#pragma once
#include <cstdint>
#include <string_view>

namespace qf::lanes {

// make_qkx2_quants (kQkx3 = false) / make_qkx3_quants (true) on each group. weights: n per
// group (required for qkx2; nullptr in qkx3 means x^2). scales[g] = the returned scale,
// mins[g] = *the_min.
void make_qkx_quants(bool qkx3, int count, int n, int nmax, const float* x, const float* weights, uint8_t* L,
                     float* scales, float* mins, float rmin, float rdelta, int nstep, bool use_mad);

// make_qx_quants(n, nmax, x, L, rmse_type, qw) on each group, rmse_type in 1..4 (ggml's
// implicit weights when qw == nullptr). scales[g] = the returned scale.
void make_qx_quants(int count, int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw,
                    float* scales);

// make_q3_quants(n, nmax, x, L, do_rmse = true) on each group.
void make_q3_quants(int count, int n, int nmax, const float* x, int8_t* L, float* scales);

// Polishing (kquant_common): for each group g with super-scale d[g] (and dmin[g]), the integer
// sub-block scale (and min) near sc0[g] (m0[g]) with the smallest weighted squared error, every
// quant at its nearest level (clamped, half to even), and those quants (n per group).
// Asymmetric y = (d*sc)*q - dmin*m, q in [0, qmax], sc/m in [0, smax]: tries (sc0, m0) then
// sc0 +- 1 and m0 +- 1. Symmetric y = (d*sc)*q, q in [qmin, qmax]: sc0 - 1, sc0, sc0 + 1 in
// [smin, smax] without 0. w: n weights per group. Same results on every path.
void asym_refit(int count, int n, int qmax, int smax, const float* x, const float* w, const float* d,
                const float* dmin, const int32_t* sc0, const int32_t* m0, int32_t* sc_out, int32_t* m_out,
                uint8_t* q_out);
void sym_refit(int count, int n, int qmin, int qmax, int smin, int smax, const float* x, const float* w,
               const float* d, const int32_t* sc0, int32_t* sc_out, int8_t* q_out);

// The code path in use: "avx512f", "avx2", "sse2" (x86-64), or "generic" elsewhere.
const char* dispatch_path();
// Switches to a path ("sse2", "avx2", "avx512f", or "best" = what the CPU supports); false when
// the CPU lacks it. For tests and benchmarks: all paths give the same bytes. Not thread-safe.
bool use_path(std::string_view name);

}  // namespace qf::lanes
