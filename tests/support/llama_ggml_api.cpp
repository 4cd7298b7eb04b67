#include "support/llama_ggml_api.h"

#include "common/error.h"
#include "support/llama_dir.h"

#include <dlfcn.h>

namespace qf::test {

GgmlApi& GgmlApi::get() {
    static GgmlApi api;
    return api;
}

GgmlApi::GgmlApi() {
    std::string path = llama_lib_dir() + "/libggml-base.so";
    handle_ = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle_) {
        const char* e = ::dlerror();
        error_ = fmt::format("{}: cannot load ({}); run scripts/setup.sh", path, e ? e : "?");
        return;
    }
    quantize_chunk_ = reinterpret_cast<QuantizeChunkFn>(sym("ggml_quantize_chunk"));
    requires_imatrix_ = reinterpret_cast<RequiresImatrixFn>(sym("ggml_quantize_requires_imatrix"));
    validate_ = reinterpret_cast<ValidateFn>(sym("ggml_validate_row_data"));
}

void* GgmlApi::sym(const char* name) const {
    void* p = ::dlsym(handle_, name);
    if (!p) fail("libggml-base.so: missing symbol {}", name);
    return p;
}

size_t GgmlApi::quantize_chunk(GgmlType type, const float* src, void* dst, int64_t start, int64_t nrows,
                               int64_t n_per_row, const float* imatrix) const {
    if (!handle_) fail("{}", error_);
    return quantize_chunk_(static_cast<int>(type), src, dst, start, nrows, n_per_row, imatrix);
}

void GgmlApi::dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) const {
    if (!handle_) fail("{}", error_);
    std::string name;
    if (type == GgmlType::F16) name = "ggml_fp16_to_fp32_row";
    else if (type == GgmlType::BF16) name = "ggml_bf16_to_fp32_row";
    else name = std::string("dequantize_row_") + traits(type).name;
    using Fn = void (*)(const void*, float*, int64_t);
    reinterpret_cast<Fn>(sym(name.c_str()))(src, dst, n);
}

bool GgmlApi::requires_imatrix(GgmlType type) const {
    if (!handle_) fail("{}", error_);
    return requires_imatrix_(static_cast<int>(type));
}

bool GgmlApi::validate_row_data(GgmlType type, const void* data, size_t nbytes) const {
    if (!handle_) fail("{}", error_);
    return validate_(static_cast<int>(type), data, nbytes);
}

}  // namespace qf::test
