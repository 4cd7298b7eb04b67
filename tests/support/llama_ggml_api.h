// The few functions of llama.cpp's libggml-base.so that the tests and benchmarks compare
// against, declared here in our own words and resolved with dlopen/dlsym.
#pragma once
#include "quant/types.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace qf::test {

class GgmlApi {
public:
    // Loads libggml-base.so from llama_lib_dir() once. available() is false (and
    // error() says why) when the library is missing, so tests can fail with the reason.
    static GgmlApi& get();
    bool available() const { return handle_ != nullptr; }
    const std::string& error() const { return error_; }

    // ggml_quantize_chunk: nrows rows of n_per_row floats starting at row `start`;
    // imatrix is nullptr or n_per_row weights. Returns bytes written.
    size_t quantize_chunk(GgmlType type, const float* src, void* dst, int64_t start, int64_t nrows,
                          int64_t n_per_row, const float* imatrix) const;
    // dequantize_row_<type> (or the f16/bf16 row converters); n a multiple of the block size.
    void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) const;
    bool requires_imatrix(GgmlType type) const;
    // ggml_validate_row_data over nbytes of one type's data.
    bool validate_row_data(GgmlType type, const void* data, size_t nbytes) const;

private:
    GgmlApi();
    void* sym(const char* name) const;
    void* handle_ = nullptr;
    std::string error_;
    using QuantizeChunkFn = size_t (*)(int, const float*, void*, int64_t, int64_t, int64_t, const float*);
    using RequiresImatrixFn = bool (*)(int);
    using ValidateFn = bool (*)(int, const void*, size_t);
    QuantizeChunkFn quantize_chunk_ = nullptr;
    RequiresImatrixFn requires_imatrix_ = nullptr;
    ValidateFn validate_ = nullptr;
};

}  // namespace qf::test
