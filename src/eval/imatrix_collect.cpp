#include "eval/imatrix_collect.h"

#include "common/error.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace qf {

bool is_expert_weight(std::string_view weight_name) {
    // llama.cpp names merged expert tensors blk.N.ffn_{gate,up,down,gate_up}_exps.weight.
    return weight_name.find("_exps.") != std::string_view::npos ||
           (weight_name.size() >= 5 && weight_name.substr(weight_name.size() - 5) == "_exps");
}

bool ImatrixCollector::collects(std::string_view weight_name) const {
    return weight_name.starts_with("blk.") || (process_output_ && weight_name == "output.weight");
}

void ImatrixCollector::observe(std::string_view weight_name, std::span<const float> x, int64_t n_tokens) {
    if (!collects(weight_name)) return;
    if (is_expert_weight(weight_name))
        fail("{}: MoE expert weights (ffn_*_exps) are not supported by qforge imatrix", weight_name);
    if (n_tokens < kImatrixMinRows) return;  // llama-imatrix skips small batches the same way
    if (x.empty() || x.size() % static_cast<size_t>(n_tokens) != 0)
        fail("{}: activation of {} floats is not {} rows", weight_name, x.size(), n_tokens);
    const size_t ne0 = x.size() / static_cast<size_t>(n_tokens);

    auto it = sums_.find(weight_name);
    if (it == sums_.end()) {
        it = sums_.emplace(std::string(weight_name), ImatrixSums{}).first;
        it->second.in_sum2.assign(ne0, 0.0f);
        it->second.counts.assign(1, 0);
    } else if (it->second.in_sum2.size() != ne0) {
        fail("{}: inconsistent activation row length ({} after {})", weight_name, ne0, it->second.in_sum2.size());
    }
    float* acc = it->second.in_sum2.data();
    const float* data = x.data();

    // Each column's sum runs over the rows in order, in float, like llama-imatrix's loop, so
    // splitting the columns between threads does not change a single bit of the result.
    const auto n_cols = static_cast<int64_t>(ne0);
    constexpr int64_t kColumnBlock = 256;
    const int64_t n_blocks = (n_cols + kColumnBlock - 1) / kColumnBlock;
    const bool parallel = n_tokens * n_cols >= (int64_t{1} << 16) && n_blocks > 1;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t b = 0; b < n_blocks; ++b) {
        const int64_t j0 = b * kColumnBlock;
        const int64_t j1 = std::min(n_cols, j0 + kColumnBlock);
        for (int64_t r = 0; r < n_tokens; ++r) {
            const float* row = data + r * n_cols;
            for (int64_t j = j0; j < j1; ++j) acc[j] += row[j] * row[j];
        }
    }
    for (int64_t j = 0; j < n_cols; ++j)
        if (!std::isfinite(acc[j])) fail("{}: non-finite squared-activation sum in column {}", weight_name, j);
    it->second.counts[0] += n_tokens;
}

ActivationObserver ImatrixCollector::observer() {
    return [this](std::string_view name, std::span<const float> x, int64_t n_tokens) { observe(name, x, n_tokens); };
}

ImatrixData ImatrixCollector::data(uint32_t chunk_size, std::vector<std::string> datasets) const {
    ImatrixData d;
    d.entries = sums_;
    d.datasets = std::move(datasets);
    d.chunk_size = chunk_size;
    int64_t max_count = 0;
    for (const auto& [name, s] : sums_)
        for (int64_t c : s.counts) max_count = std::max(max_count, c);
    const int64_t chunks = chunk_size > 0 ? max_count / chunk_size : 0;
    d.chunk_count = static_cast<uint32_t>(std::min<int64_t>(chunks, std::numeric_limits<uint32_t>::max()));
    return d;
}

}  // namespace qf
