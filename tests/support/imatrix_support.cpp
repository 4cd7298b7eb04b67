#include "support/imatrix_support.h"

#include "common/error.h"
#include "support/llama_dir.h"

#include <dlfcn.h>

#include <cstring>
#include <memory>

namespace qf::test {

namespace {

// struct ggml_tensor of the pinned build (ggml/include/ggml.h: GGML_MAX_DIMS 4, GGML_MAX_SRC 10,
// GGML_MAX_OP_PARAMS 64, GGML_MAX_NAME 64), declared in our own words. Checked at run time
// against ggml_tensor_overhead(), ggml_get_name() and ggml_nelements() before any use.
struct GgmlTensor {
    int32_t type;  // enum ggml_type
    void* buffer;  // ggml_backend_buffer_t
    int64_t ne[4];
    size_t nb[4];
    int32_t op;  // enum ggml_op
    int32_t op_params[16];
    int32_t flags;
    GgmlTensor* src[10];
    GgmlTensor* view_src;
    size_t view_offs;
    void* data;
    char name[64];
    void* extra;
    char padding[8];
};
static_assert(sizeof(GgmlTensor) == 336);
constexpr size_t kGgmlObjectSize = 32;  // struct ggml_object: offs, size, next, type, padding[4]
constexpr int32_t kGgmlTypeF32 = 0;

struct GgmlFunctions {
    size_t (*tensor_overhead)() = nullptr;
    const char* (*get_name)(const GgmlTensor*) = nullptr;
    int64_t (*nelements)(const GgmlTensor*) = nullptr;
    int64_t (*nrows)(const GgmlTensor*) = nullptr;
    const char* (*op_name)(int32_t) = nullptr;
    bool (*buffer_is_host)(void*) = nullptr;
    void (*tensor_get)(const GgmlTensor*, void*, size_t, size_t) = nullptr;
};

const GgmlFunctions& ggml() {
    static const GgmlFunctions fns = [] {
        LlamaApi::get().require();  // loads libggml-base first
        const std::string path = llama_lib_dir() + "/libggml-base.so";
        void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!h) fail("{}: cannot load", path);
        GgmlFunctions f;
        auto bind = [&](auto& fn, const char* name) {
            void* p = ::dlsym(h, name);
            if (!p) fail("{}: missing symbol {}", path, name);
            fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
        };
        bind(f.tensor_overhead, "ggml_tensor_overhead");
        bind(f.get_name, "ggml_get_name");
        bind(f.nelements, "ggml_nelements");
        bind(f.nrows, "ggml_nrows");
        bind(f.op_name, "ggml_op_name");
        bind(f.buffer_is_host, "ggml_backend_buffer_is_host");
        bind(f.tensor_get, "ggml_backend_tensor_get");
        if (f.tensor_overhead() != kGgmlObjectSize + sizeof(GgmlTensor))
            fail("{}: ggml_tensor_overhead() is {}, expected {}: struct ggml_tensor differs from our declaration", path,
                 f.tensor_overhead(), kGgmlObjectSize + sizeof(GgmlTensor));
        return f;
    }();
    return fns;
}

// llama-imatrix's filter_tensor_name: "CUDA0#blk.0.attn_k.weight#0" -> "blk.0.attn_k.weight".
std::string filter_tensor_name(const char* name) {
    const char* p = std::strchr(name, '#');
    if (!p) return name;
    ++p;
    const char* q = std::strchr(p, '#');
    return q ? std::string(p, q) : std::string(p);
}

struct Collector {
    bool process_output = false;
    LlamaImatrix* out = nullptr;
    std::string error;  // the first layout or content problem seen (the callback cannot throw)
    std::vector<char> host_copy;
};

bool check_layout(const GgmlTensor* t, std::string& error) {
    const auto& g = ggml();
    int64_t n = 1;
    for (int64_t d : t->ne) n *= d;
    if (g.get_name(t) != t->name || g.nelements(t) != n) {
        error = "struct ggml_tensor layout of the loaded ggml differs from our declaration";
        return false;
    }
    return true;
}

// ggml_backend_sched_eval_callback: ask = "do you want this node's data?", then the call
// with ask = false holds the computed node. Mirrors IMatrixCollector::collect_imatrix for
// dense weights (MUL_MAT_ID, MoE, is refused: qforge does not collect it either).
bool on_eval(GgmlTensor* t, bool ask, void* user_data) {
    auto& c = *static_cast<Collector*>(user_data);
    const auto& g = ggml();
    if (!check_layout(t, c.error)) return false;
    const GgmlTensor* src0 = t->src[0];
    const GgmlTensor* src1 = t->src[1];
    const char* op = g.op_name(t->op);
    if (ask) {
        if (std::strcmp(op, "MUL_MAT_ID") == 0) {
            if (c.error.empty()) c.error = "MUL_MAT_ID (MoE) in the graph";
            return false;
        }
        if (std::strcmp(op, "MUL_MAT") != 0) return false;
        if (src1->ne[1] < 16 || src1->type != kGgmlTypeF32) return false;
        const std::string wname = filter_tensor_name(src0->name);
        return wname.rfind("blk.", 0) == 0 || (c.process_output && wname == "output.weight");
    }
    if (std::strcmp(op, "MUL_MAT") != 0) return true;
    const std::string wname = filter_tensor_name(src0->name);
    const char* data = static_cast<const char*>(src1->data);
    if (!g.buffer_is_host(src1->buffer)) {
        size_t nbytes = src1->nb[3] * static_cast<size_t>(src1->ne[3]);
        c.host_copy.resize(nbytes);
        g.tensor_get(src1, c.host_copy.data(), 0, nbytes);
        data = c.host_copy.data();
    }
    if (src1->nb[0] != sizeof(float)) {
        if (c.error.empty()) c.error = wname + ": non-contiguous activation rows";
        return false;
    }
    const int64_t n_mat = src0->ne[2] * src0->ne[3];
    const int64_t ne0 = src1->ne[0];
    auto& e = c.out->entries[wname];
    if (e.in_sum2.empty()) e.in_sum2.assign(static_cast<size_t>(ne0 * n_mat), 0.0f);
    if (e.in_sum2.size() != static_cast<size_t>(ne0 * n_mat)) {
        if (c.error.empty()) c.error = wname + ": inconsistent activation size";
        return false;
    }
    for (int64_t i3 = 0; i3 < src1->ne[3]; ++i3)
        for (int64_t i2 = 0; i2 < src1->ne[2]; ++i2) {
            const int64_t mat = (i3 % src0->ne[3]) * src0->ne[2] + (i2 % src0->ne[2]);
            float* acc = e.in_sum2.data() + mat * ne0;
            for (int64_t row = 0; row < src1->ne[1]; ++row) {
                const auto* x = reinterpret_cast<const float*>(data + static_cast<size_t>(row) * src1->nb[1] +
                                                               static_cast<size_t>(i2) * src1->nb[2] +
                                                               static_cast<size_t>(i3) * src1->nb[3]);
                for (int64_t j = 0; j < ne0; ++j) acc[j] += x[j] * x[j];
            }
        }
    e.count += g.nrows(src1) / n_mat;
    return true;
}

}  // namespace

LlamaImatrix llama_collect_imatrix(const LlamaModel& model, std::string text, int n_ctx, int max_chunks,
                                   bool process_output, int n_threads) {
    const auto& fn = LlamaApi::get().fn();
    (void)ggml();
    if (!text.empty() && text.back() == '\n') text.pop_back();
    const std::vector<int32_t> tokens = tokenize(model, text, true, false);
    LlamaImatrix result;
    result.n_tokens = static_cast<int64_t>(tokens.size());
    if (tokens.size() < 2 * static_cast<size_t>(n_ctx))
        fail("{}: text of {} tokens is too short for imatrix chunks of {}", model.path, tokens.size(), n_ctx);
    int n_chunk = static_cast<int>(tokens.size() / static_cast<size_t>(n_ctx));
    if (max_chunks > 0) n_chunk = std::min(n_chunk, max_chunks);

    Collector collector;
    collector.process_output = process_output;
    collector.out = &result;

    llama_c::llama_context_params p = fn.llama_context_default_params();
    p.n_ctx = static_cast<uint32_t>(n_ctx);
    p.n_batch = static_cast<uint32_t>(n_ctx);
    p.n_ubatch = std::min<uint32_t>(static_cast<uint32_t>(n_ctx), 512);
    p.n_seq_max = 1;
    p.n_threads = n_threads;
    p.n_threads_batch = n_threads;
    p.no_perf = true;
    p.cb_eval = reinterpret_cast<void*>(&on_eval);
    p.cb_eval_user_data = &collector;
    auto free_ctx = [&](llama_c::llama_context* ctx) { fn.llama_free(ctx); };
    std::unique_ptr<llama_c::llama_context, decltype(free_ctx)> ctx(fn.llama_init_from_model(model.model, p), free_ctx);
    if (!ctx) fail("{}: llama.cpp cannot create a context for imatrix collection", model.path);

    const bool add_bos = fn.llama_vocab_get_add_bos(model.vocab);
    const int32_t bos = fn.llama_vocab_bos(model.vocab);
    llama_c::llama_batch batch = fn.llama_batch_init(n_ctx, 0, 1);
    auto free_batch = [&](llama_c::llama_batch* b) { fn.llama_batch_free(*b); };
    std::unique_ptr<llama_c::llama_batch, decltype(free_batch)> batch_guard(&batch, free_batch);
    for (int i = 0; i < n_chunk; ++i) {
        fn.llama_memory_clear(fn.llama_get_memory(ctx.get()), true);
        batch.n_tokens = n_ctx;
        for (int k = 0; k < n_ctx; ++k) {
            const size_t at = static_cast<size_t>(i) * static_cast<size_t>(n_ctx) + static_cast<size_t>(k);
            batch.token[k] = (k == 0 && add_bos) ? bos : tokens[at];
            batch.pos[k] = k;
            batch.n_seq_id[k] = 1;
            batch.seq_id[k][0] = 0;
            batch.logits[k] = 1;  // llama-imatrix asks for every output
        }
        const int32_t rc = fn.llama_decode(ctx.get(), batch);
        if (!collector.error.empty()) fail("{}: {}", model.path, collector.error);
        if (rc != 0) fail("{}: llama_decode failed with status {}", model.path, rc);
        result.chunks = i + 1;
    }
    return result;
}

}  // namespace qf::test
