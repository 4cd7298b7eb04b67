#include "support/llama_api.h"

#include "common/error.h"
#include "gguf/gguf_reader.h"
#include "support/llama_dir.h"

#include <dlfcn.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <unordered_map>

namespace qf::test {

using namespace llama_c;

// ---------------------------------------------------------------------------------------------
// Loading

LlamaApi& LlamaApi::get() {
    // Deliberately never destroyed: llama.cpp may log (into this object) from its own static
    // destructors and threads at exit, after a function-local static would be gone.
    static LlamaApi* api = new LlamaApi();
    return *api;
}

namespace {

template <class Fn>
bool resolve(void* handle, const char* lib, const char* name, Fn& out, std::string& error) {
    void* p = ::dlsym(handle, name);
    if (!p) {
        if (error.empty()) error = fmt::format("{}: missing symbol {}", lib, name);
        return false;
    }
    out = reinterpret_cast<Fn>(p);
    return true;
}

}  // namespace

LlamaApi::LlamaApi() {
    const char* echo = std::getenv("QFORGE_LLAMA_LOG");
    echo_log_ = echo && *echo && std::strcmp(echo, "0") != 0;

    const std::string dir = llama_lib_dir();
    // Dependencies first, by full path, so libllama finds them already loaded whatever its
    // RUNPATH says.
    for (const char* lib : {"libggml-base.so", "libggml.v0.5.0.so", "libllama.v0.5.0.so"}) {
        const std::string path = dir + "/" + lib;
        void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            const char* e = ::dlerror();
            error_ = fmt::format("{}: cannot load ({}); run scripts/setup.sh", path, e ? e : "?");
            return;
        }
        handles_.push_back(h);
    }
    void* ggml = handles_[1];
    void* llama = handles_[2];
    const char* ggml_name = "libggml.v0.5.0.so";
    const char* llama_name = "libllama.v0.5.0.so";
    std::string err;
    resolve(ggml, ggml_name, "ggml_backend_load", fn_.ggml_backend_load, err);
    resolve(ggml, ggml_name, "ggml_backend_reg_count", fn_.ggml_backend_reg_count, err);
    resolve(llama, llama_name, "llama_backend_init", fn_.llama_backend_init, err);
    resolve(llama, llama_name, "llama_log_set", fn_.llama_log_set, err);
    resolve(llama, llama_name, "llama_model_default_params", fn_.llama_model_default_params, err);
    resolve(llama, llama_name, "llama_context_default_params", fn_.llama_context_default_params, err);
    resolve(llama, llama_name, "llama_model_quantize_default_params", fn_.llama_model_quantize_default_params, err);
    resolve(llama, llama_name, "llama_model_load_from_file", fn_.llama_model_load_from_file, err);
    resolve(llama, llama_name, "llama_model_free", fn_.llama_model_free, err);
    resolve(llama, llama_name, "llama_model_get_vocab", fn_.llama_model_get_vocab, err);
    resolve(llama, llama_name, "llama_vocab_n_tokens", fn_.llama_vocab_n_tokens, err);
    resolve(llama, llama_name, "llama_vocab_bos", fn_.llama_vocab_bos, err);
    resolve(llama, llama_name, "llama_vocab_get_add_bos", fn_.llama_vocab_get_add_bos, err);
    resolve(llama, llama_name, "llama_tokenize", fn_.llama_tokenize, err);
    resolve(llama, llama_name, "llama_token_to_piece", fn_.llama_token_to_piece, err);
    resolve(llama, llama_name, "llama_init_from_model", fn_.llama_init_from_model, err);
    resolve(llama, llama_name, "llama_free", fn_.llama_free, err);
    resolve(llama, llama_name, "llama_get_memory", fn_.llama_get_memory, err);
    resolve(llama, llama_name, "llama_memory_clear", fn_.llama_memory_clear, err);
    resolve(llama, llama_name, "llama_batch_init", fn_.llama_batch_init, err);
    resolve(llama, llama_name, "llama_batch_free", fn_.llama_batch_free, err);
    resolve(llama, llama_name, "llama_decode", fn_.llama_decode, err);
    resolve(llama, llama_name, "llama_get_logits_ith", fn_.llama_get_logits_ith, err);
    resolve(llama, llama_name, "llama_model_quantize", fn_.llama_model_quantize, err);
    if (!err.empty()) {
        error_ = fmt::format("{}/{}", dir, err);
        return;
    }

    // Capture the log before anything can print (llama_log_set also sets ggml's logger).
    fn_.llama_log_set(&LlamaApi::on_log, this);

    // The CPU backend is a plug-in. Pin one variant so figures do not drift with whatever
    // ggml would pick: the AVX2 "haswell" build where the CPU has AVX2/FMA/F16C (about 8x
    // faster than the baseline, which matters for full-text perplexity runs), else the
    // baseline x64. Variants differ only in the last digits of perplexity (~1e-4 relative).
    // QFORGE_LLAMA_CPU=<variant> overrides (e.g. x64 for the slow bit-stable baseline).
    std::string variant = (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                           __builtin_cpu_supports("f16c"))
                              ? "haswell"
                              : "x64";
    if (const char* env = std::getenv("QFORGE_LLAMA_CPU"); env && *env) variant = env;
    const std::string cpu = dir + "/libggml-cpu-" + variant + ".so";
    if (!fn_.ggml_backend_load(cpu.c_str())) {
        std::string why;
        for (const auto& line : take_log()) why += (why.empty() ? "" : "; ") + line;
        error_ = fmt::format("{}: ggml_backend_load failed ({})", cpu, why.empty() ? "no reason logged" : why);
        return;
    }
    fn_.llama_backend_init();
}

void LlamaApi::require() const {
    if (!available()) throw Error(error_);
}

// ---------------------------------------------------------------------------------------------
// Log capture

void LlamaApi::on_log(int /*level*/, const char* text, void* self) {
    if (text) static_cast<LlamaApi*>(self)->append_log(text);
}

void LlamaApi::append_log(const char* text) {
    std::lock_guard lock(log_mutex_);
    if (echo_log_) std::fputs(text, stderr);
    // Messages arrive in pieces (level CONT continues the previous one): join, split on '\n'.
    log_partial_ += text;
    size_t start = 0;
    for (size_t nl; (nl = log_partial_.find('\n', start)) != std::string::npos; start = nl + 1)
        log_lines_.emplace_back(log_partial_, start, nl - start);
    log_partial_.erase(0, start);
    if (log_lines_.size() > 2 * kMaxLogLines)  // amortised trim to the newest lines
        log_lines_.erase(log_lines_.begin(), log_lines_.end() - static_cast<ptrdiff_t>(kMaxLogLines));
}

std::vector<std::string> LlamaApi::take_log() {
    std::lock_guard lock(log_mutex_);
    std::vector<std::string> out;
    out.swap(log_lines_);
    if (!log_partial_.empty()) {
        out.push_back(std::move(log_partial_));
        log_partial_.clear();
    }
    if (out.size() > kMaxLogLines) out.erase(out.begin(), out.end() - static_cast<ptrdiff_t>(kMaxLogLines));
    return out;
}

namespace {

const Functions& api() {
    auto& a = LlamaApi::get();
    a.require();
    return a.fn();
}

// The last few non-empty log lines joined into one, for one-line error messages.
std::string log_tail(size_t max_lines = 4) {
    auto lines = LlamaApi::get().take_log();
    std::vector<std::string> kept;
    for (auto it = lines.rbegin(); it != lines.rend() && kept.size() < max_lines; ++it) {
        std::string s = *it;
        while (!s.empty() && (s.back() == '\r' || s.back() == ' ')) s.pop_back();
        if (!s.empty()) kept.push_back(std::move(s));
    }
    std::string out;
    for (auto it = kept.rbegin(); it != kept.rend(); ++it) out += (out.empty() ? "" : " | ") + *it;
    return out.empty() ? "nothing logged" : out;
}

struct ContextDeleter {
    void operator()(llama_context* ctx) const { LlamaApi::get().fn().llama_free(ctx); }
};
using ContextPtr = std::unique_ptr<llama_context, ContextDeleter>;

struct ContextSettings {
    uint32_t n_ctx = 512;
    uint32_t n_batch = 512;
    uint32_t n_ubatch = 512;
    int n_threads = kDefaultThreads;
    int type_k = kGgmlTypeF16;
    int type_v = kGgmlTypeF16;
    int flash_attn_type = kFlashAttnAuto;
};

ContextPtr make_context(const LlamaModel& model, const ContextSettings& s) {
    const auto& fn = api();
    llama_context_params p = fn.llama_context_default_params();
    p.n_ctx = s.n_ctx;
    p.n_batch = s.n_batch;
    p.n_ubatch = s.n_ubatch;
    p.n_seq_max = 1;
    p.n_threads = s.n_threads;
    p.n_threads_batch = s.n_threads;
    p.type_k = s.type_k;
    p.type_v = s.type_v;
    p.flash_attn_type = s.flash_attn_type;
    p.no_perf = true;
    ContextPtr ctx(fn.llama_init_from_model(model.model, p));
    if (!ctx) fail("{}: llama.cpp cannot create a context (n_ctx {}): {}", model.path, s.n_ctx, log_tail());
    return ctx;
}

// A llama_batch for one sequence, freed on scope exit.
class Batch {
public:
    explicit Batch(int32_t capacity) : capacity_(capacity), b_(api().llama_batch_init(capacity, 0, 1)) {
        if (!b_.token) fail("llama_batch_init: cannot allocate {} tokens", capacity);
    }
    ~Batch() { LlamaApi::get().fn().llama_batch_free(b_); }
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;

    void clear() { b_.n_tokens = 0; }
    void add(llama_token token, llama_pos pos, bool output) {
        if (b_.n_tokens >= capacity_) fail("llama batch: more than {} tokens", capacity_);
        const int32_t i = b_.n_tokens++;
        b_.token[i] = token;
        b_.pos[i] = pos;
        b_.n_seq_id[i] = 1;
        b_.seq_id[i][0] = 0;
        b_.logits[i] = output ? 1 : 0;
    }
    const llama_batch& get() const { return b_; }

private:
    int32_t capacity_;
    llama_batch b_;
};

void decode(const LlamaModel& model, llama_context* ctx, const Batch& batch) {
    const int32_t rc = api().llama_decode(ctx, batch.get());
    if (rc != 0) fail("{}: llama_decode failed with status {}: {}", model.path, rc, log_tail());
}

const float* logits_row(const LlamaModel& model, llama_context* ctx, int32_t i) {
    const float* row = api().llama_get_logits_ith(ctx, i);
    if (!row) fail("{}: llama.cpp has no logits for batch row {}", model.path, i);
    return row;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Model, vocabulary

LlamaModel::LlamaModel(llama_model* m, std::string p) : model(m), path(std::move(p)) {
    vocab = LlamaApi::get().fn().llama_model_get_vocab(model);
}

LlamaModel::~LlamaModel() {
    if (model) LlamaApi::get().fn().llama_model_free(model);
}

std::unique_ptr<LlamaModel> load_model(const std::string& path) {
    const auto& fn = api();
    llama_model_params p = fn.llama_model_default_params();
    p.n_gpu_layers = 0;
    p.load_mode = kLoadModeMmap;
    LlamaApi::get().clear_log();
    llama_model* m = fn.llama_model_load_from_file(path.c_str(), p);
    if (!m) fail("{}: llama.cpp cannot load the model: {}", path, log_tail());
    return std::make_unique<LlamaModel>(m, path);
}

int32_t n_vocab(const LlamaModel& model) { return api().llama_vocab_n_tokens(model.vocab); }

std::vector<int32_t> tokenize(const LlamaModel& model, const std::string& text, bool add_special, bool parse_special) {
    const auto& fn = api();
    if (text.size() > static_cast<size_t>(INT32_MAX)) fail("{}: text of {} bytes is too long to tokenize", model.path, text.size());
    const auto len = static_cast<int32_t>(text.size());
    std::vector<int32_t> tokens(std::min<size_t>(text.size() + 2, INT32_MAX));
    int32_t n = fn.llama_tokenize(model.vocab, text.data(), len, tokens.data(), static_cast<int32_t>(tokens.size()),
                                  add_special, parse_special);
    if (n < 0) {
        if (n == INT32_MIN) fail("{}: llama_tokenize: token count overflows int32", model.path);
        tokens.resize(static_cast<size_t>(-static_cast<int64_t>(n)));
        n = fn.llama_tokenize(model.vocab, text.data(), len, tokens.data(), static_cast<int32_t>(tokens.size()),
                              add_special, parse_special);
        if (n < 0) fail("{}: llama_tokenize failed ({})", model.path, n);
    }
    tokens.resize(static_cast<size_t>(n));
    return tokens;
}

std::string token_to_piece(const LlamaModel& model, int32_t token) {
    const auto& fn = api();
    std::string piece(32, '\0');
    int32_t n = fn.llama_token_to_piece(model.vocab, token, piece.data(), static_cast<int32_t>(piece.size()), 0, true);
    if (n < 0) {
        piece.resize(static_cast<size_t>(-static_cast<int64_t>(n)));
        n = fn.llama_token_to_piece(model.vocab, token, piece.data(), static_cast<int32_t>(piece.size()), 0, true);
        if (n < 0) fail("{}: llama_token_to_piece failed for token {}", model.path, token);
    }
    piece.resize(static_cast<size_t>(n));
    return piece;
}

// ---------------------------------------------------------------------------------------------
// Generation and perplexity

std::vector<int32_t> greedy_generate(const LlamaModel& model, const std::vector<int32_t>& prompt, int n_predict,
                                     int n_threads) {
    if (prompt.empty()) fail("{}: greedy_generate needs a non-empty prompt", model.path);
    if (n_predict <= 0) return {};
    const int32_t vocab = n_vocab(model);
    const uint64_t total = prompt.size() + static_cast<uint64_t>(n_predict);
    if (total > static_cast<uint64_t>(INT32_MAX / 2)) fail("{}: prompt plus {} tokens is too long", model.path, n_predict);

    ContextSettings s;
    s.n_ctx = static_cast<uint32_t>(total);
    s.n_batch = static_cast<uint32_t>(prompt.size());
    s.n_ubatch = std::min<uint32_t>(s.n_batch, 512);
    s.n_threads = n_threads;
    ContextPtr ctx = make_context(model, s);

    Batch batch(static_cast<int32_t>(prompt.size()));
    for (size_t i = 0; i < prompt.size(); ++i) batch.add(prompt[i], static_cast<llama_pos>(i), i + 1 == prompt.size());
    decode(model, ctx.get(), batch);

    std::vector<int32_t> out;
    out.reserve(static_cast<size_t>(n_predict));
    for (int k = 0; k < n_predict; ++k) {
        const float* logits = logits_row(model, ctx.get(), -1);
        // argmax, first maximum wins (llama.cpp's greedy sampler does the same)
        int32_t best = 0;
        for (int32_t t = 1; t < vocab; ++t)
            if (logits[t] > logits[best]) best = t;
        out.push_back(best);
        if (k + 1 == n_predict) break;
        batch.clear();
        batch.add(best, static_cast<llama_pos>(prompt.size() + static_cast<size_t>(k)), true);
        decode(model, ctx.get(), batch);
    }
    return out;
}

PerplexityResult perplexity(const LlamaModel& model, const std::string& text, int n_ctx, int max_chunks, int n_threads,
                            const PerplexityChunkCallback& on_chunk) {
    const auto& fn = api();
    if (n_ctx < 4) fail("{}: perplexity needs a context of at least 4 tokens, got {}", model.path, n_ctx);
    const std::vector<int32_t> tokens = tokenize(model, text, true, false);
    if (tokens.size() < 2 * static_cast<size_t>(n_ctx))
        fail("{}: the text tokenizes to {} tokens; perplexity with context {} needs at least {}", model.path,
             tokens.size(), n_ctx, 2 * static_cast<size_t>(n_ctx));

    int n_chunk = static_cast<int>(std::min<size_t>(tokens.size() / static_cast<size_t>(n_ctx), INT_MAX));
    if (max_chunks > 0) n_chunk = std::min(n_chunk, max_chunks);
    const int32_t vocab = fn.llama_vocab_n_tokens(model.vocab);
    const bool add_bos = fn.llama_vocab_get_add_bos(model.vocab);
    const llama_token bos = fn.llama_vocab_bos(model.vocab);

    ContextSettings s;
    s.n_ctx = static_cast<uint32_t>(n_ctx);
    s.n_batch = static_cast<uint32_t>(n_ctx);  // one decode per chunk
    s.n_ubatch = std::min<uint32_t>(s.n_ctx, 512);  // the tool's default physical batch
    s.n_threads = n_threads;
    ContextPtr ctx = make_context(model, s);

    const int first = n_ctx / 2;
    const int n_scored = n_ctx - 1 - first;
    Batch batch(n_ctx);
    std::vector<float> chunk_logits;
    if (on_chunk) chunk_logits.resize(static_cast<size_t>(n_scored) * static_cast<size_t>(vocab));

    double nll = 0, nll2 = 0;
    size_t count = 0;
    for (int i = 0; i < n_chunk; ++i) {
        const size_t start = static_cast<size_t>(i) * static_cast<size_t>(n_ctx);
        fn.llama_memory_clear(fn.llama_get_memory(ctx.get()), true);
        batch.clear();
        for (int k = 0; k < n_ctx; ++k) {
            const llama_token t = (k == 0 && add_bos) ? bos : tokens[start + static_cast<size_t>(k)];
            batch.add(t, k, k >= first);
        }
        decode(model, ctx.get(), batch);

        const int32_t* targets = tokens.data() + start + static_cast<size_t>(first) + 1;
        for (int r = 0; r < n_scored; ++r) {
            const float* row = logits_row(model, ctx.get(), first + r);
            // The tool's log_softmax: float max and differences, exp in float, sum in double.
            float max_logit = row[0];
            for (int32_t t = 1; t < vocab; ++t) max_logit = std::max(max_logit, row[t]);
            double sum_exp = 0.0;
            for (int32_t t = 0; t < vocab; ++t) sum_exp += std::exp(row[t] - max_logit);
            const int32_t target = targets[r];
            if (target < 0 || target >= vocab) fail("{}: token id {} outside the vocabulary", model.path, target);
            const double log_prob = (row[target] - max_logit) - std::log(sum_exp);
            nll -= log_prob;
            nll2 += log_prob * log_prob;
            if (on_chunk)
                std::copy(row, row + vocab, chunk_logits.begin() + static_cast<ptrdiff_t>(r) * vocab);
        }
        count += static_cast<size_t>(n_scored);
        if (on_chunk)
            on_chunk(i, std::span<const float>(chunk_logits),
                     std::span<const int32_t>(targets, static_cast<size_t>(n_scored)));
    }

    PerplexityResult result;
    result.chunks = n_chunk;
    result.scored = count;
    if (count == 0) return result;
    result.nll = nll / static_cast<double>(count);
    result.ppl = std::exp(result.nll);
    const double variance = nll2 / static_cast<double>(count) - result.nll * result.nll;
    if (variance > 0 && count > 1) result.nll_stderr = std::sqrt(variance / static_cast<double>(count - 1));
    return result;
}

// ---------------------------------------------------------------------------------------------
// Quantization

namespace {

// An importance matrix as llama-quantize hands it over (tools/quantize/quantize.cpp, load_imatrix).
struct LoadedImatrix {
    std::unordered_map<std::string, std::vector<float>> entries;
    std::vector<std::string> datasets;
    int64_t chunk_count = 0;
};

bool strip_suffix(std::string& s, std::string_view suffix) {
    if (s.size() < suffix.size() || s.compare(s.size() - suffix.size(), suffix.size(), suffix) != 0) return false;
    s.resize(s.size() - suffix.size());
    return true;
}

std::vector<float> read_f32(const GgufFile& file, const GgufTensorInfo& t) {
    if (t.type != GgmlType::F32) fail("{}: tensor '{}' must be F32", file.path(), t.name);
    auto bytes = file.tensor_data(t);
    std::vector<float> v(bytes.size() / sizeof(float));
    std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
    return v;
}

// Deliberately separate from qforge's own loader (src/pipeline/imatrix_file.cpp): this one
// mirrors what llama-quantize does when it reads the file, so the interop tests that feed the
// same imatrix to both tools compare two independent readings, not one reader with itself.
LoadedImatrix load_imatrix(const std::string& path) {
    GgufFile file(path);
    const auto& md = file.metadata();
    const GgufValue* datasets = md.find("imatrix.datasets");
    const GgufValue* chunk_count = md.find("imatrix.chunk_count");
    const GgufValue* chunk_size = md.find("imatrix.chunk_size");
    // llama-quantize refuses a GGUF imatrix without these three keys.
    if (!datasets || !chunk_count || !chunk_size)
        fail("{}: missing imatrix metadata (imatrix.datasets, imatrix.chunk_count, imatrix.chunk_size)", path);
    if (file.tensors().empty()) fail("{}: no data in the imatrix", path);

    LoadedImatrix out;
    if (datasets->type == GgufValueType::ARRAY && datasets->elem_type == GgufValueType::STRING)
        for (const auto& item : datasets->items) out.datasets.push_back(item.as_string());
    out.chunk_count = static_cast<int64_t>(chunk_count->as_u64());

    std::map<std::string, std::pair<const GgufTensorInfo*, const GgufTensorInfo*>> sums_counts;
    for (const auto& t : file.tensors()) {
        std::string name = t.name;
        if (name.empty()) continue;
        if (strip_suffix(name, ".in_sum2")) sums_counts[name].first = &t;
        else if (strip_suffix(name, ".counts")) sums_counts[name].second = &t;
    }
    for (const auto& [name, sc] : sums_counts) {
        if (!sc.first || !sc.second) fail("{}: mismatched sums and counts for {}", path, name);
        const std::vector<float> sums = read_f32(file, *sc.first);
        const std::vector<float> counts = read_f32(file, *sc.second);
        if (counts.empty() || sums.size() % counts.size() != 0)
            fail("{}: {} has {} sums for {} counts", path, name, sums.size(), counts.size());
        const size_t ne0 = sums.size() / counts.size();
        std::vector<float> importance(sums.size());
        for (size_t j = 0; j < counts.size(); ++j) {
            // The loader rounds counts to integers, the consumer divides by them as float.
            const auto count = static_cast<float>(std::lround(counts[j]));
            for (size_t i = 0; i < ne0; ++i)
                importance[j * ne0 + i] = count > 0.0f ? sums[j * ne0 + i] / count : 1.0f;
        }
        out.entries.emplace(name, std::move(importance));
    }
    return out;
}

llama_model_kv_override kv_string(const char* key, const std::string& value) {
    llama_model_kv_override o{};
    o.tag = kKvOverrideStr;
    std::snprintf(o.key, sizeof o.key, "%s", key);
    std::snprintf(o.val_str, sizeof o.val_str, "%s", value.c_str());  // truncated to 127 like the tool
    return o;
}

llama_model_kv_override kv_int(const char* key, int64_t value) {
    llama_model_kv_override o{};
    o.tag = kKvOverrideInt;
    std::snprintf(o.key, sizeof o.key, "%s", key);
    o.val_i64 = value;
    return o;
}

}  // namespace

int model_quantize(const std::string& in, const std::string& out, const QuantizeOptions& opt) {
    const auto& fn = api();
    llama_model_quantize_params p = fn.llama_model_quantize_default_params();
    p.nthread = opt.nthread;
    p.ftype = opt.ftype;
    p.allow_requantize = opt.allow_requantize;
    p.quantize_output_tensor = opt.quantize_output_tensor;
    p.only_copy = opt.only_copy;
    p.pure = opt.pure;
    if (opt.output_tensor_type >= 0) p.output_tensor_type = opt.output_tensor_type;
    if (opt.token_embedding_type >= 0) p.token_embedding_type = opt.token_embedding_type;

    // Kept alive until llama_model_quantize returns: the params point into them.
    LoadedImatrix imatrix;
    std::vector<llama_model_imatrix_data> imatrix_view;
    std::vector<llama_model_kv_override> overrides;
    if (!opt.imatrix_path.empty()) {
        imatrix = load_imatrix(opt.imatrix_path);
        if (!imatrix.entries.empty()) {
            imatrix_view.reserve(imatrix.entries.size() + 1);
            for (const auto& [name, values] : imatrix.entries)
                imatrix_view.push_back({name.c_str(), values.data(), values.size()});
            imatrix_view.push_back({nullptr, nullptr, 0});
            p.imatrix = imatrix_view.data();
            // The same keys, in the same order, as llama-quantize adds.
            overrides.push_back(kv_string("quantize.imatrix.file", opt.imatrix_path));
            if (!imatrix.datasets.empty()) overrides.push_back(kv_string("quantize.imatrix.dataset", imatrix.datasets[0]));
            overrides.push_back(kv_int("quantize.imatrix.entries_count", static_cast<int64_t>(imatrix.entries.size())));
            if (imatrix.chunk_count > 0) overrides.push_back(kv_int("quantize.imatrix.chunks_count", imatrix.chunk_count));
        }
    }
    if (!overrides.empty()) {
        overrides.push_back(llama_model_kv_override{});  // key[0] == 0 ends the list
        p.kv_overrides = overrides.data();
    }

    LlamaApi::get().clear_log();
    return static_cast<int>(fn.llama_model_quantize(in.c_str(), out.c_str(), &p));
}

// ---------------------------------------------------------------------------------------------
// Memory planning

std::vector<std::string> create_context_log(const LlamaModel& model, int n_ctx, int n_batch, int n_ubatch, int type_k,
                                            int type_v, int flash_attn_type) {
    if (n_ctx <= 0 || n_batch <= 0 || n_ubatch <= 0)
        fail("{}: context sizes must be positive (n_ctx {}, n_batch {}, n_ubatch {})", model.path, n_ctx, n_batch, n_ubatch);
    ContextSettings s;
    s.n_ctx = static_cast<uint32_t>(n_ctx);
    s.n_batch = static_cast<uint32_t>(n_batch);
    s.n_ubatch = static_cast<uint32_t>(n_ubatch);
    s.type_k = type_k;
    s.type_v = type_v;
    s.flash_attn_type = flash_attn_type;
    LlamaApi::get().clear_log();
    {
        ContextPtr ctx = make_context(model, s);
    }
    return LlamaApi::get().take_log();
}

}  // namespace qf::test
