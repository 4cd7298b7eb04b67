// Our own declarations of the few gguf.h functions of llama.cpp's libggml-base.so that the
// interop tests call (ggml: include/gguf.h), resolved with dlopen: llama.cpp's own GGUF reader.
#pragma once
#include "support/test_paths.h"

#include <cstddef>
#include <cstdint>
#include <dlfcn.h>
#include <string>

namespace qf::test {

// Our own declarations of the few gguf.h functions used (ggml: include/gguf.h).
struct GgufContext;
struct GgmlContext;
struct GgufInitParams {
    bool no_alloc;
    GgmlContext** ctx;
};

class GgufApi {
public:
    static GgufApi& get() {
        static GgufApi api;
        return api;
    }
    bool available() const { return handle_ != nullptr; }
    const std::string& error() const { return error_; }

    GgufContext* (*init_from_file)(const char*, GgufInitParams) = nullptr;
    void (*free)(GgufContext*) = nullptr;
    uint32_t (*get_version)(const GgufContext*) = nullptr;
    size_t (*get_alignment)(const GgufContext*) = nullptr;
    size_t (*get_data_offset)(const GgufContext*) = nullptr;
    int64_t (*get_n_kv)(const GgufContext*) = nullptr;
    const char* (*get_key)(const GgufContext*, int64_t) = nullptr;
    int (*get_kv_type)(const GgufContext*, int64_t) = nullptr;
    int (*get_arr_type)(const GgufContext*, int64_t) = nullptr;
    const char* (*get_val_str)(const GgufContext*, int64_t) = nullptr;
    const void* (*get_val_data)(const GgufContext*, int64_t) = nullptr;
    size_t (*get_arr_n)(const GgufContext*, int64_t) = nullptr;
    const void* (*get_arr_data)(const GgufContext*, int64_t) = nullptr;
    const char* (*get_arr_str)(const GgufContext*, int64_t, size_t) = nullptr;
    int64_t (*get_n_tensors)(const GgufContext*) = nullptr;
    const char* (*get_tensor_name)(const GgufContext*, int64_t) = nullptr;
    int (*get_tensor_type)(const GgufContext*, int64_t) = nullptr;
    size_t (*get_tensor_offset)(const GgufContext*, int64_t) = nullptr;
    const int64_t* (*get_tensor_ne)(const GgufContext*, int64_t) = nullptr;
    size_t (*get_tensor_size)(const GgufContext*, int64_t) = nullptr;

private:
    GgufApi() {
        const std::string path = llama_dir() + "/libggml-base.so";
        handle_ = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!handle_) {
            const char* e = ::dlerror();
            error_ = path + ": cannot load (" + (e ? e : "?") + "); run scripts/setup.sh";
            return;
        }
        bind(init_from_file, "gguf_init_from_file");
        bind(free, "gguf_free");
        bind(get_version, "gguf_get_version");
        bind(get_alignment, "gguf_get_alignment");
        bind(get_data_offset, "gguf_get_data_offset");
        bind(get_n_kv, "gguf_get_n_kv");
        bind(get_key, "gguf_get_key");
        bind(get_kv_type, "gguf_get_kv_type");
        bind(get_arr_type, "gguf_get_arr_type");
        bind(get_val_str, "gguf_get_val_str");
        bind(get_val_data, "gguf_get_val_data");
        bind(get_arr_n, "gguf_get_arr_n");
        bind(get_arr_data, "gguf_get_arr_data");
        bind(get_arr_str, "gguf_get_arr_str");
        bind(get_n_tensors, "gguf_get_n_tensors");
        bind(get_tensor_name, "gguf_get_tensor_name");
        bind(get_tensor_type, "gguf_get_tensor_type");
        bind(get_tensor_offset, "gguf_get_tensor_offset");
        bind(get_tensor_ne, "gguf_get_tensor_ne");
        bind(get_tensor_size, "gguf_get_tensor_size");
    }
    template <class F>
    void bind(F& fn, const char* name) {
        void* p = ::dlsym(handle_, name);
        if (!p) {
            error_ = std::string("libggml-base.so: missing symbol ") + name;
            handle_ = nullptr;
            return;
        }
        fn = reinterpret_cast<F>(p);
    }
    void* handle_ = nullptr;
    std::string error_;
};

// Owns a gguf_context from ggml's reader.
struct GgmlGguf {
    explicit GgmlGguf(const std::string& path)
        : ctx(GgufApi::get().init_from_file(path.c_str(), GgufInitParams{true, nullptr})) {}
    ~GgmlGguf() {
        if (ctx) GgufApi::get().free(ctx);
    }
    GgmlGguf(const GgmlGguf&) = delete;
    GgmlGguf& operator=(const GgmlGguf&) = delete;
    GgufContext* ctx;
};

}  // namespace qf::test
