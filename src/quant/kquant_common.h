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
#include <type_traits>
#include <cmath>
#include <cstdlib>
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

// ---- Polishing llama.cpp's encoding (the fast default) ----------------------------------------
// Start from an encoding (llama.cpp's) and improve it cheaply: the least-squares fp16
// super-scale(s) for its integer sub-block scales (and mins) and their re-rounded quants, then
// every sub-block's integers re-fitted for those (one step to the best neighbour), the quants
// at their nearest levels. The caller keeps the result only if it decodes closer.

// True when a super-scale is zero, not finite, or so small that fp16 keeps fewer than 6 bits
// of it (below 64 subnormal steps, 3.8e-6): llama.cpp's encoding of a block of tiny or huge
// values, which polishing cannot rescue (the wide search starts afresh instead). Ordinary
// weights have subnormal but precise enough super-scales (Q6_K: about 2e-5 = 330 steps).
inline bool needs_wide_search(uint16_t f16_bits) {
    const uint16_t magnitude = f16_bits & 0x7FFF;
    return magnitude < 0x0040 || magnitude >= 0x7C00;
}

// True when some sub-block lies entirely above zero. llama.cpp's encoding (min <= 0) wastes
// the range below such a sub-block's values; the wide search's mirrored family (negative dmin)
// fits it, so those blocks go to the wide search. On zero-centred weights this almost never
// happens (all 32 values of a sub-block positive), so it costs nothing there.
inline bool has_positive_sub_block(const float* x, int sub_elems, int n_sub) {
    for (int j = 0; j < n_sub; ++j) {
        bool all_positive = true;
        for (int i = 0; i < sub_elems; ++i) all_positive &= x[j * sub_elems + i] > 0;
        if (all_positive) return true;
    }
    return false;
}

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

// What llama.cpp's per-sub-block searches return for one super-block. The searches of many
// blocks run together on SIMD lanes (lane_search.h) before each block is finished on its own.
struct GroupSearch {
    float scales[16];
    float mins[16];
    float sw[16];             // sum of the search weights per sub-block (the _impl paths)
    uint8_t L[kBlockElems];   // levels as llama_ref writes them (signed formats: int8 bits)
};

// Blocks processed together: enough groups to fill the widest SIMD path several times.
inline constexpr int kBatchBlocks = 16;

// qw == nullptr: the _ref path; otherwise the _impl path with the 256 importance weights qw.
// The searches of nb <= kBatchBlocks consecutive blocks, then one block finished from them.
void llama_scale_min_groups(const LlamaScaleMinSpec& spec, const float* x, const float* qw, int nb, GroupSearch* gs);
void llama_scale_min_finish(const LlamaScaleMinSpec& spec, const float* x, const float* qw, const GroupSearch& gs,
                            LlamaScaleMinBlock& out);
void llama_scale_min_block(const LlamaScaleMinSpec& spec, const float* x, const float* qw, LlamaScaleMinBlock& out);

// Runs a format's llama.cpp encoder over a row: groups(x, qw, nb, gs) for up to kBatchBlocks
// blocks at a time, then finish(x, qw, gs, block) per block. Same bytes as block by block.
template <class Block, class Groups, class Finish>
void llama_rows(const float* src, Block* dst, int64_t n, const float* importance, Groups&& groups, Finish&& finish) {
    GroupSearch gs[kBatchBlocks];
    const int64_t n_blocks = n / kBlockElems;
    for (int64_t b0 = 0; b0 < n_blocks; b0 += kBatchBlocks) {
        const int nb = static_cast<int>(std::min<int64_t>(kBatchBlocks, n_blocks - b0));
        const float* x = src + b0 * kBlockElems;
        const float* qw = importance ? importance + b0 * kBlockElems : nullptr;
        groups(x, qw, nb, gs);
        for (int b = 0; b < nb; ++b)
            finish(x + b * kBlockElems, qw ? qw + b * kBlockElems : nullptr, gs[b], dst[b0 + b]);
    }
}

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

// Batched polish: io[0..nb) hold llama.cpp's encodings of nb consecutive blocks of x (d, dmin,
// sc, m; q is not read) and receive the candidates. The sub-block re-fits of all nb blocks run
// on SIMD lanes (lanes::asym_refit / sym_refit). w: nb * 256 weights.
void polish_asym_batch(const AsymSpec& spec, const float* x, const float* w, int nb, AsymBlock* io);
void polish_sym_batch(const SymSpec& spec, const float* x, const float* w, int nb, SymBlock* io);

// nb * 256 ones: the weights of the polish when no importance is given.
const float* unit_weights();

// The default K-quant encoder: llama.cpp's (its sub-block searches batched on SIMD lanes), then
// polish(x, weights, nb, llama_blocks, candidates) proposes improved blocks for a batch; per
// block, the one whose decoded values have the smaller weighted squared error is stored (ties
// and non-finite candidates keep llama.cpp's bytes). Never worse than llama.cpp per block.
// Weights: all ones without importance; with importance, the weights llama.cpp's own search
// uses for the format: importance * sqrt(sigma2 + x^2) with sigma2 = sigma2_factor * mean(x^2)
// of the block (Q2_K 1, Q3_K/Q4_K/Q5_K 2), or the importance itself (sigma2_factor 0: Q6_K).
// Measured on prose-tiny (KLD vs F16, 40 chunks of valid.txt, imatrix from calib.txt): with the
// plain importance as the metric our Q2_K was 3% worse than llama.cpp's with the same imatrix
// (0.1168 vs 0.1130); with llama.cpp's weights 2.5% better (0.1102), Q3_K_M/Q4_K_M unchanged
// within 1%. The importance-weighted RMSE stays below llama.cpp's (bench/RESULTS.md).
template <class Block, class Groups, class Finish, class Polish, class Dequant>
void quantize_blocks_polished(const float* src, Block* dst, int64_t n, const float* importance, Groups&& groups,
                              Finish&& finish, Polish&& polish, Dequant&& dequant, float sigma2_factor = 0) {
    GroupSearch gs[kBatchBlocks];
    Block cand[kBatchBlocks];
    double err_llama[kBatchBlocks];
    float y[kBlockElems];
    float weff[kBatchBlocks * kBlockElems];
    const int64_t n_blocks = n / kBlockElems;
    for (int64_t b0 = 0; b0 < n_blocks; b0 += kBatchBlocks) {
        const int nb = static_cast<int>(std::min<int64_t>(kBatchBlocks, n_blocks - b0));
        const float* x = src + b0 * kBlockElems;
        const float* imp = importance ? importance + b0 * kBlockElems : nullptr;
        groups(x, imp, nb, gs);
        const float* qw = imp;
        if (imp && sigma2_factor > 0) {
            for (int b = 0; b < nb; ++b) {
                const float* xb = x + b * kBlockElems;
                float sum_x2 = 0;
                for (int i = 0; i < kBlockElems; ++i) sum_x2 += xb[i] * xb[i];
                const float sigma2 = sigma2_factor * sum_x2 / kBlockElems;
                for (int i = 0; i < kBlockElems; ++i)
                    weff[b * kBlockElems + i] = imp[b * kBlockElems + i] * std::sqrt(sigma2 + xb[i] * xb[i]);
            }
            qw = weff;
        }
        bool any_error = false;
        for (int b = 0; b < nb; ++b) {
            const float* xb = x + b * kBlockElems;
            const float* qb = qw ? qw + b * kBlockElems : nullptr;
            finish(xb, imp ? imp + b * kBlockElems : nullptr, gs[b], dst[b0 + b]);
            dequant(dst[b0 + b], y);
            err_llama[b] = weighted_sq_error(xb, y, qb, kBlockElems);
            any_error |= err_llama[b] != 0;
        }
        if (!any_error) continue;  // exact already (zeros, some constants): nothing to win
        polish(x, qw ? qw : unit_weights(), nb, dst + b0, cand);
        for (int b = 0; b < nb; ++b) {
            if (err_llama[b] == 0) continue;
            dequant(cand[b], y);
            const double err = weighted_sq_error(x + b * kBlockElems, y, qw ? qw + b * kBlockElems : nullptr,
                                                 kBlockElems);
            if (err < err_llama[b] || !(err_llama[b] == err_llama[b])) dst[b0 + b] = cand[b];
        }
    }
}

// ---- Per-format glue of the default and --thorough encoders --------------------------------
// A format gives to_rep(block, rep): its super-scale(s) and integer sub-block scales (and mins),
// unpacked; and store(rep, block): everything, quants included, packed. Rep is AsymBlock for
// an AsymSpec, SymBlock for a SymSpec; the overloads below pick the matching search and polish.
template <class Spec>
using RepOf = std::conditional_t<std::is_same_v<Spec, AsymSpec>, AsymBlock, SymBlock>;

inline double wide_search(const AsymSpec& s, const float* x, const float* w, AsymBlock& r) { return search_asym(s, x, w, r); }
inline double wide_search(const SymSpec& s, const float* x, const float* w, SymBlock& r) { return search_sym(s, x, w, r); }
inline void polish_batch(const AsymSpec& s, const float* x, const float* w, int nb, AsymBlock* io) {
    polish_asym_batch(s, x, w, nb, io);
}
inline void polish_batch(const SymSpec& s, const float* x, const float* w, int nb, SymBlock* io) {
    polish_sym_batch(s, x, w, nb, io);
}
// Blocks the polish cannot rescue start afresh with the wide search: tiny or huge values, and
// (formats with a per-sub-block minimum) a sub-block entirely above zero.
inline bool needs_wide_search(const AsymSpec& s, uint16_t d, const float* x) {
    return needs_wide_search(d) || has_positive_sub_block(x, s.sub_elems, s.n_sub);
}
inline bool needs_wide_search(const SymSpec&, uint16_t d, const float*) { return needs_wide_search(d); }

// The wide search for one block (--thorough's candidate).
template <class Spec, class Block, class Store>
void search_block(const Spec& spec, const float* x, const float* w, Block& b, Store&& store) {
    RepOf<Spec> r;
    wide_search(spec, x, w, r);
    store(r, b);
}

// The default's polish of a batch of llama.cpp's blocks (from) into candidates (to).
template <class Spec, class Block, class ToRep, class Store>
void polish_blocks(const Spec& spec, const float* x, const float* w, int nb, const Block* from, Block* to,
                   ToRep&& to_rep, Store&& store) {
    RepOf<Spec> rep[kBatchBlocks];
    for (int b = 0; b < nb; ++b) to_rep(from[b], rep[b]);
    polish_batch(spec, x, w, nb, rep);
    for (int b = 0; b < nb; ++b) {
        const float* xb = x + b * kBlockElems;
        if (needs_wide_search(spec, from[b].d, xb)) search_block(spec, xb, w + b * kBlockElems, to[b], store);
        else store(rep[b], to[b]);
    }
}

// ---- Q4_K and Q5_K: one header layout (d, dmin, twelve bytes of 6-bit scales and mins) -----
// Only the quant bits differ; pack_quants(levels, block) stores those.
template <class Block>
void scale_min_k4_to_rep(const Block& b, AsymBlock& a) {
    a.d = b.d;
    a.dmin = b.dmin;
    unpack_scale_min_k4(b.scales, a.sc, a.m);
}

template <class Block, class PackQuants>
void store_scale_min_k4(const AsymBlock& a, Block& b, PackQuants&& pack_quants) {
    b.d = a.d;
    b.dmin = a.dmin;
    pack_scale_min_k4(a.sc, a.m, b.scales);
    pack_quants(a.q, b);
}

// llama.cpp's encoder for a row of Q4_K / Q5_K blocks, and the default built on it.
template <class Block, class PackQuants>
void store_llama_scale_min(const LlamaScaleMinBlock& l, Block& b, PackQuants&& pack_quants) {
    b.d = l.d;
    b.dmin = l.dmin;
    std::copy(l.scales, l.scales + 12, b.scales);
    pack_quants(l.q, b);
}

template <class Block, class PackQuants, class Dequant>
void quantize_scale_min_k4(const LlamaScaleMinSpec& llama_spec, const AsymSpec& spec, const float* src, Block* dst,
                           int64_t n, const float* importance, bool polish, PackQuants&& pack_quants,
                           Dequant&& dequant) {
    auto groups = [&](const float* x, const float* qw, int nb, GroupSearch* gs) {
        llama_scale_min_groups(llama_spec, x, qw, nb, gs);
    };
    auto finish = [&](const float* x, const float* qw, const GroupSearch& gs, Block& b) {
        LlamaScaleMinBlock l;
        llama_scale_min_finish(llama_spec, x, qw, gs, l);
        store_llama_scale_min(l, b, pack_quants);
    };
    if (!polish) return llama_rows(src, dst, n, importance, groups, finish);
    quantize_blocks_polished(
        src, dst, n, importance, groups, finish,
        [&](const float* x, const float* w, int nb, const Block* from, Block* to) {
            polish_blocks(spec, x, w, nb, from, to, scale_min_k4_to_rep<Block>,
                          [&](const AsymBlock& a, Block& b) { store_scale_min_k4(a, b, pack_quants); });
        },
        dequant, 2.0f);
}

}  // namespace qf::kquant
