// Calibrated quantization of one weight matrix into a GGUF block format: GPTQ's error feedback
// (Frantar et al., "GPTQ", 2022) inside llama.cpp's blocks, so the file stays a plain GGUF.
//
// A product y = W x sees the quantization error of a row as (w - q) . x; over calibration
// inputs with second moment H = sum x x^T, the loss of a row is (w - q)^T H (w - q). Walking the
// columns (the input dimension, which is also the direction of GGUF blocks) in order, each value
// is rounded and its error is spread over the columns not yet rounded so that this loss stays
// small: with U the upper Cholesky factor of H^-1, after rounding column c
//     w[c+1:] -= (w[c] - q[c]) / U[c][c] * U[c][c+1:].
// The block formats add one constraint: a block's scales are chosen when the walk reaches its
// first column, from the weights as they stand then (the type's own encoder with importance =
// diag(H)), and its values are then re-rounded one at a time against those fixed scales
// (TypeTraits::set_codes / code_values). Because the block's own errors move its later values,
// the scales are chosen twice more from the values the columns had when they were rounded, and
// the block is walked again from the same state each time. Updates are applied lazily: within a batch of columns
// immediately, beyond it once per batch (a small matrix product), as GPTQ does.
#pragma once
#include "quant/types.h"

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace qf {

// U, the upper-triangular factor with U^T U = (H + damp * mean(diag H) * I)^-1, n x n row-major.
// Columns whose input was always zero (H[i][i] == 0) get H[i][i] = 1 first, as GPTQ does.
struct FeedbackFactor {
    int64_t n = 0;
    std::vector<float> u;      // n * n, lower triangle zero
    double damp_used = 0;      // relative dampening that made H positive definite
};

// H: n x n symmetric, row-major. Raises the dampening tenfold (up to 1.0) while the matrix is
// not numerically positive definite; throws qf::Error when even that fails (non-finite H).
FeedbackFactor feedback_factor(std::span<const double> H, int64_t n, double damp = 0.01);

// True when `type` can be written with error feedback (it has set_codes and code_values).
bool supports_error_feedback(GgmlType type);

// Quantizes `rows` rows of `cols` floats (row-major) into `type`, rows * row_bytes(type, cols)
// bytes at `out`. encode: the block encoder used when the walk reaches a block (a row
// quantizer of the type, called on one block at a time); importance: cols non-negative
// weights for it, or nullptr. f.n must equal cols. Rows run in parallel (OpenMP); the bytes do
// not depend on the thread count.
void quantize_with_feedback(GgmlType type, QuantizeRowFn encode, const float* weights, int64_t rows, int64_t cols,
                            const FeedbackFactor& f, const float* importance, std::byte* out);

}  // namespace qf
