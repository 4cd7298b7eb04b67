#include "pipeline/row_convert.h"

#include "common/error.h"

#include <algorithm>
#include <cmath>
#include <omp.h>

namespace qf {

namespace {
// Rows per chunk are chosen so a chunk holds about this many f32 values (16 MiB).
constexpr int64_t kChunkElements = 4 << 20;
}

RowConverter::RowConverter(int threads) : threads_(threads > 0 ? threads : omp_get_num_procs()) {}

void check_finite_rows(const std::string& tensor, const float* data, int64_t n_rows, int64_t n_per_row,
                       int64_t first_row) {
    for (int64_t r = 0; r < n_rows; ++r) {
        const float* row = data + r * n_per_row;
        for (int64_t c = 0; c < n_per_row; ++c) {
            if (!std::isfinite(row[c]))
                fail("{}: row {} has a non-finite value ({}) at column {}", tensor, first_row + r, row[c], c);
        }
    }
}

void RowConverter::convert_tensor(const MappedTensor& tensor, const ModelConfig& cfg, GgmlType type,
                                  const float* importance,
                                  const std::function<void(std::span<const std::byte>)>& sink,
                                  const std::function<void(uint64_t)>& on_progress) {
    const size_t n_importance = importance ? static_cast<size_t>(tensor.shape.at(0)) : 0;
    // One importance row shared by every row: a single "matrix" covering all rows.
    std::vector<int64_t> shape = tensor.shape;
    if (importance && shape.size() > 2) {
        int64_t rows = 1;
        for (size_t d = 1; d < shape.size(); ++d) rows *= shape[d];
        shape = {shape[0], rows};
    }
    convert_rows(
        tensor.gguf_name, shape, type, std::span<const float>(importance, n_importance),
        [&](int64_t first, int64_t count, float* dst) { read_rows_f32(tensor, cfg, first, count, dst); }, sink,
        on_progress);
}

void RowConverter::convert_rows(const std::string& name, std::span<const int64_t> shape, GgmlType type,
                                std::span<const float> importance, const RowReader& read_rows,
                                const std::function<void(std::span<const std::byte>)>& sink,
                                const std::function<void(uint64_t)>& on_progress, QuantizeRowFn quantize) {
    const TypeTraits& tt = traits(type);
    if (!quantize) quantize = tt.quantize;
    if (!quantize) fail("{}: qforge cannot write type {}", name, tt.name);
    const int64_t n_per_row = shape[0];
    int64_t n_rows = 1;
    for (size_t d = 1; d < shape.size(); ++d) n_rows *= shape[d];
    const int64_t rows_per_matrix = shape.size() > 1 ? std::max<int64_t>(1, shape[1]) : 1;
    const auto row_size = row_bytes(type, n_per_row);
    if (!row_size)
        fail("{}: row length {} is not a multiple of the {} block size {}", name, n_per_row, tt.name,
             tt.block_elems);
    if (!importance.empty() && n_rows > 0 &&
        static_cast<uint64_t>((n_rows - 1) / rows_per_matrix + 1) * static_cast<uint64_t>(n_per_row) > importance.size())
        fail("{}: importance has {} values, too few for {} rows of {}", name, importance.size(), n_rows, n_per_row);

    const int64_t rows_per_chunk = std::max<int64_t>(1, kChunkElements / std::max<int64_t>(1, n_per_row));
    for (int64_t first = 0; first < n_rows; first += rows_per_chunk) {
        const int64_t count = std::min(rows_per_chunk, n_rows - first);
        rows_f32_.resize(static_cast<size_t>(count * n_per_row));
        rows_out_.resize(static_cast<size_t>(count) * *row_size);
        read_rows(first, count, rows_f32_.data());
        check_finite_rows(name, rows_f32_.data(), count, n_per_row, first);
        const float* src = rows_f32_.data();
        std::byte* dst = rows_out_.data();
        const uint64_t rs = *row_size;
        const float* imp = importance.empty() ? nullptr : importance.data();
#pragma omp parallel for num_threads(threads_) schedule(static) if (count * n_per_row >= 65536)
        for (int64_t r = 0; r < count; ++r)
            quantize(src + r * n_per_row, dst + static_cast<uint64_t>(r) * rs, n_per_row,
                     imp ? imp + ((first + r) / rows_per_matrix) * n_per_row : nullptr);
        sink(std::span<const std::byte>(rows_out_.data(), rows_out_.size()));
        on_progress(static_cast<uint64_t>(count * n_per_row));
    }
}

}  // namespace qf
