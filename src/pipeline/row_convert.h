// Turns one source tensor into output bytes of a ggml type, chunk by chunk: read rows
// as f32 (permutation applied), refuse non-finite values (naming tensor and row),
// quantize rows in parallel, hand the bytes over in row order. Memory stays bounded by
// one chunk, whatever the model size; the bytes do not depend on the thread count.
#pragma once
#include "hf/tensor_map.h"
#include "quant/types.h"

#include <cstddef>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace qf {

class RowConverter {
public:
    explicit RowConverter(int threads);  // 0: all cores
    // importance: nullptr or ne[0] weights shared by every row (an imatrix entry).
    void convert_tensor(const MappedTensor& tensor, const ModelConfig& cfg, GgmlType type, const float* importance,
                        const std::function<void(std::span<const std::byte>)>& sink,
                        const std::function<void(uint64_t elements_done)>& on_progress);
    // The general form: rows come from `read_rows(first_row, n_rows, dst)` as f32. importance is
    // empty or holds ne[0] weights per matrix, matrix m serving rows [m*ne[1], (m+1)*ne[1])
    // (one per expert of a 3-D MoE tensor, as llama-quantize slices an imatrix). quantize:
    // the row kernel, nullptr for the type table's (traits(type).quantize).
    using RowReader = std::function<void(int64_t first_row, int64_t n_rows, float* dst)>;
    void convert_rows(const std::string& name, std::span<const int64_t> shape, GgmlType type,
                      std::span<const float> importance, const RowReader& read_rows,
                      const std::function<void(std::span<const std::byte>)>& sink,
                      const std::function<void(uint64_t elements_done)>& on_progress,
                      QuantizeRowFn quantize = nullptr);
    int threads() const { return threads_; }

private:
    int threads_;
    std::vector<float> rows_f32_;
    std::vector<std::byte> rows_out_;
};

// Throws "TENSOR: row R has a non-finite value (nan/inf) at column C" if any value is not finite.
void check_finite_rows(const std::string& tensor, const float* data, int64_t n_rows, int64_t n_per_row, int64_t first_row);

}  // namespace qf
