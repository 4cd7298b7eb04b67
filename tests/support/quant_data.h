// Test data for the quantization tests: synthetic rows of several shapes of distribution,
// real weight rows from Hugging Face checkpoints, imatrix-like importance weights, and an
// accumulator for (importance-weighted) RMSE.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qf::test {

struct RowSet {
    std::string name;  // "synthetic:gaussian", "prose-tiny:model.layers.0.mlp.up_proj.weight", ...
    int64_t n_per_row = 0;
    std::vector<float> data;  // n_rows() * n_per_row values, row-major
    int64_t n_rows() const { return static_cast<int64_t>(data.size()) / n_per_row; }
};

// One RowSet per kind, each with rows_each rows of n_per_row values: gaussian, laplace,
// student_t3 (heavier tails), outliers (gaussian plus a few 20-sigma values), shifted (all
// positive), constant, zeros, tiny (~1e-6), huge (~1e3, block maxima well inside fp16),
// denormals (float subnormals). Deterministic for a given seed.
std::vector<RowSet> synthetic_rowsets(int64_t n_per_row, int64_t rows_each, uint32_t seed);

// Every >= 2-D weight tensor of an HF model folder (safetensors, read with qforge's reader) as
// f32 rows of its innermost dimension; at most max_rows_per_tensor rows per tensor, spread
// evenly over the tensor. One RowSet per tensor, named "<model>:<tensor>".
std::vector<RowSet> model_rowsets(const std::string& hf_dir, int64_t max_rows_per_tensor);

// n positive per-column weights, heavy-tailed like an importance matrix (log-normal with a few
// columns far above the rest). Deterministic for a given seed.
std::vector<float> random_importance(int64_t n, uint32_t seed);

struct ErrorStats {
    double sum_w_err2 = 0, sum_w = 0;
    double rmse() const;  // sqrt(sum_w_err2 / sum_w); 0 when empty
    // Adds n values: original x, decoded y, weights w (nullptr = all ones).
    void add(const float* x, const float* y, const float* w, int64_t n);
};

}  // namespace qf::test
