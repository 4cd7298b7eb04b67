// Shared machinery of the K-quant super-block formats (Q2_K .. Q6_K, QK_K = 256 values per block).
//
// Every K-quant stores a super-block as an fp16 super-scale d (plus dmin for the formats with
// a per-sub-block minimum), small integer sub-block scales (and mins), and integer quants:
//   asymmetric (Q2_K, Q4_K, Q5_K):  y = (d*sc_j)*q - dmin*m_j,   q in [0, qmax], sc/m in [0, smax]
//   symmetric  (Q3_K, Q6_K):        y = (d*sc_j)*q,              q in [qmin, qmax], sc signed
// The float operations are done in exactly that order by llama.cpp's dequantize_row_*, and the
// error of a candidate encoding is always measured on values computed that way.
//
// Quantization of one super-block evaluates several complete candidate encodings and keeps the
// one with the smallest weighted squared error on the dequantized values:
//   1. llama.cpp's own algorithm, reproduced operation for operation (llama_reference.h), so
//      our result is never worse than ggml_quantize_chunk's on any block;
//   2. a search (search_asym / search_sym) that fits each sub-block (continuous scale and min
//      under the actual metric), tries several fp16 super-scales, re-fits every sub-block's
//      integer scale (and min) for each rounded super-scale by hill climbing on the exact error
//      with re-rounded quants, and finally refits the super-scales by least squares for the
//      chosen integers. For blocks with sub-blocks of all-positive values it also tries a
//      negative dmin (non-negative offsets): ggml decodes it with the same linear formula.
// The metric is sum w (x - y)^2 with w = importance, or 1 without. Everything is per block, on
// the stack, deterministic, and independent of how rows are split over threads.
#pragma once
#include "common/half.h"
#include "quant/llama_reference.h"

#include <algorithm>
#include <cstdint>

namespace qf::kquant {

inline constexpr int kBlockElems = 256;      // QK_K
using llama_ref::kGroupMaxEps;  // ggml GROUP_MAX_EPS: groups below it are all-zero

// Weighted squared error sum_i w_i (x_i - y_i)^2 in double; w == nullptr means all weights 1.
double weighted_sq_error(const float* x, const float* y, const float* w, int n);

// ---- Scale packing shared by several formats ------------------------------------------------

// Q4_K / Q5_K: eight 6-bit scales and eight 6-bit mins in 12 bytes (ggml get_scale_min_k4).
void pack_scale_min_k4(const uint8_t sc[8], const uint8_t m[8], uint8_t out[12]);
void unpack_scale_min_k4(const uint8_t in[12], uint8_t sc[8], uint8_t m[8]);
// Q3_K: sixteen 6-bit scales stored biased by 32 in 12 bytes. sc values are in [-32, 31].
void pack_scales_q3_k(const int8_t sc[16], uint8_t out[12]);
void unpack_scales_q3_k(const uint8_t in[12], int8_t sc[16]);

// ---- The search (our candidates) ----------------------------------------------------------

// Shape of an asymmetric format: sub_elems * n_sub == 256.
struct AsymSpec {
    int sub_elems;  // values per sub-block (16 or 32)
    int n_sub;      // sub-blocks per super-block
    int qmax;       // quants in [0, qmax]
    int smax;       // sub-block scales and mins in [0, smax]
};

// An asymmetric super-block before bit packing.
struct AsymBlock {
    uint16_t d = 0, dmin = 0;  // fp16 bits
    uint8_t sc[16] = {};
    uint8_t m[16] = {};
    uint8_t q[kBlockElems] = {};
};

// Finds an encoding of x (256 values) minimising sum w (x - y)^2 (w: 256 non-negative weights).
// Returns the error of the result as measured during the search.
double search_asym(const AsymSpec& spec, const float* x, const float* w, AsymBlock& out);

struct SymSpec {
    int sub_elems;  // 16 for both Q3_K and Q6_K
    int n_sub;
    int qmin, qmax;  // quants in [qmin, qmax] (Q3_K: -4..3, Q6_K: -32..31)
    int smin, smax;  // signed sub-block scales (Q3_K: -32..31, Q6_K: -128..127)
};

struct SymBlock {
    uint16_t d = 0;
    int8_t sc[16] = {};
    int8_t q[kBlockElems] = {};
};

// The same for the symmetric formats.
double search_sym(const SymSpec& spec, const float* x, const float* w, SymBlock& out);

// ---- llama.cpp's Q4_K / Q5_K encoder -------------------------------------------------------
// quantize_row_q4_K_ref/_impl and quantize_row_q5_K_ref/_impl (ggml-quants.c) are one algorithm
// with different constants; this is that algorithm, reproduced operation for operation. Each
// format keeps its own quant bit layout: the quants come back unpacked.
struct LlamaScaleMinSpec {
    int qmax;                   // quants in [0, qmax]: 15 (Q4_K) or 31 (Q5_K)
    float plain_rmin;           // make_qkx2_quants rmin and nstep of the _ref path
    int plain_nstep;
    bool clamp_weighted_codes;  // _impl clamps the 6-bit scale/min codes to 63 (Q5_K) or packs them as they are (Q4_K)
};

struct LlamaScaleMinBlock {
    uint16_t d = 0, dmin = 0;  // fp16 bits
    uint8_t scales[12] = {};   // eight 6-bit scales and mins, pack_scale_min_k4 layout
    uint8_t q[kBlockElems] = {};
};

// qw == nullptr: the _ref path; otherwise the _impl path with the 256 importance weights qw.
void llama_scale_min_block(const LlamaScaleMinSpec& spec, const float* x, const float* qw, LlamaScaleMinBlock& out);

// ---- Candidate selection shared by the five formats ----------------------------------------

// Quantizes n values (a multiple of 256) block by block: llama(x, importance_or_null, block)
// writes llama.cpp's encoding, ours(x, weights, block) ours (weights are the importance or all
// ones), dequant(block, y) decodes one block. The block whose decoded values have the smaller
// weighted squared error is stored; ties keep llama.cpp's bytes. A non-finite llama.cpp result
// (fp16 scale overflow on huge inputs) always loses.
template <class Block, class Llama, class Ours, class Dequant>
void quantize_blocks_best_of(const float* src, Block* dst, int64_t n, const float* importance, Llama&& llama,
                             Ours&& ours, Dequant&& dequant) {
    float ones[kBlockElems];
    std::fill(ones, ones + kBlockElems, 1.0f);
    float y[kBlockElems];
    const int64_t n_blocks = n / kBlockElems;
    for (int64_t b = 0; b < n_blocks; ++b) {
        const float* x = src + b * kBlockElems;
        const float* imp = importance ? importance + b * kBlockElems : nullptr;
        Block from_llama, from_search;
        llama(x, imp, from_llama);
        dequant(from_llama, y);
        const double err_llama = weighted_sq_error(x, y, imp, kBlockElems);
        if (err_llama == 0) {  // exact already (zeros, some constants): nothing to win
            dst[b] = from_llama;
            continue;
        }
        ours(x, imp ? imp : ones, from_search);
        dequant(from_search, y);
        const double err_search = weighted_sq_error(x, y, imp, kBlockElems);
        dst[b] = (err_search < err_llama || !(err_llama == err_llama)) ? from_search : from_llama;
    }
}

}  // namespace qf::kquant
