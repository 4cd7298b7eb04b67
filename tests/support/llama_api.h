// The real llama.cpp (libllama.v0.5.0.so of npm @node-llama-cpp/linux-x64@3.22.1, llama.cpp
// commit de3ff815), loaded with dlopen, for the interop tests and the benchmarks: load our
// GGUF files, tokenize, generate greedily, measure perplexity the way llama.cpp's perplexity
// tool does, quantize, and read the memory plan llama.cpp logs when it creates a context.
//
// The C declarations below are our own, written from that build's include/llama.h; only what
// is called is declared. Struct layouts must match the library byte for byte (the sizes are
// asserted at compile time, the field positions at run time by reading back the defaults the
// library fills in: tests/interop/test_llama_api.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace qf::test {

namespace llama_c {

struct llama_model;
struct llama_context;
struct llama_vocab;
struct llama_memory_i;

using llama_token = int32_t;
using llama_pos = int32_t;
using llama_seq_id = int32_t;

// ggml_log_callback: level is enum ggml_log_level (1 debug, 2 info, 3 warn, 4 error, 5 continuation).
using LogCallback = void (*)(int level, const char* text, void* user_data);
using ProgressCallback = bool (*)(float progress, void* user_data);

// Values of the enums we set or check (llama.h / ggml.h of that build).
inline constexpr int32_t kSplitModeLayer = 1;         // LLAMA_SPLIT_MODE_LAYER
inline constexpr int32_t kLoadModeAuto = -1;          // LLAMA_LOAD_MODE_AUTO
inline constexpr int32_t kLoadModeMmap = 1;           // LLAMA_LOAD_MODE_MMAP
inline constexpr int32_t kLazyModeAuto = 1;           // LLAMA_LAZY_MODE_AUTO
inline constexpr int32_t kFlashAttnAuto = -1;         // LLAMA_FLASH_ATTN_TYPE_AUTO
inline constexpr int32_t kRopeScalingUnspecified = -1;
inline constexpr int32_t kPoolingUnspecified = -1;
inline constexpr int32_t kAttentionUnspecified = -1;
inline constexpr int32_t kGgmlTypeF16 = 1;            // GGML_TYPE_F16
inline constexpr int32_t kGgmlTypeCount = 43;         // GGML_TYPE_COUNT: "no override" in quantize params
inline constexpr int32_t kFtypeMostlyQ8_0 = 7;        // LLAMA_FTYPE_MOSTLY_Q8_0
inline constexpr int32_t kKvOverrideInt = 0;          // LLAMA_KV_OVERRIDE_TYPE_INT
inline constexpr int32_t kKvOverrideStr = 3;          // LLAMA_KV_OVERRIDE_TYPE_STR

struct llama_model_kv_override {
    int32_t tag;  // enum llama_model_kv_override_type
    char key[128];
    union {
        int64_t val_i64;
        double val_f64;
        bool val_bool;
        char val_str[128];
    };
};
static_assert(sizeof(llama_model_kv_override) == 264);

struct llama_model_imatrix_data {  // quantize params' imatrix: array ended by name == nullptr
    const char* name;
    const float* data;
    size_t size;
};

struct llama_model_params {
    void* devices;                      // ggml_backend_dev_t*, nullptr = all
    const void* tensor_buft_overrides;  // const llama_model_tensor_buft_override*
    int32_t n_gpu_layers;
    int32_t split_mode;  // enum llama_split_mode
    int32_t load_mode;   // enum llama_load_mode (replaces use_mmap/use_mlock in this build)
    int32_t lazy_mode;   // enum llama_lazy_mode
    int32_t main_gpu;
    const float* tensor_split;
    ProgressCallback progress_callback;
    void* progress_callback_user_data;
    const llama_model_kv_override* kv_overrides;
    bool vocab_only;
    bool check_tensors;
    bool use_extra_bufts;
    bool no_host;
    bool no_alloc;
    bool load_mtp;
};
static_assert(sizeof(llama_model_params) == 80);

struct llama_context_params {
    uint32_t n_ctx;
    uint32_t n_batch;
    uint32_t n_ubatch;
    uint32_t n_seq_max;
    uint32_t n_rs_seq;
    uint32_t n_outputs_max;
    uint32_t n_outputs_max_per_seq;
    int32_t n_threads;
    int32_t n_threads_batch;
    int32_t ctx_type;           // enum llama_context_type
    int32_t rope_scaling_type;  // enum llama_rope_scaling_type
    int32_t pooling_type;       // enum llama_pooling_type
    int32_t attention_type;     // enum llama_attention_type
    int32_t flash_attn_type;    // enum llama_flash_attn_type
    float rope_freq_base;
    float rope_freq_scale;
    float yarn_ext_factor;
    float yarn_attn_factor;
    float yarn_beta_fast;
    float yarn_beta_slow;
    uint32_t yarn_orig_ctx;
    float defrag_thold;
    void* cb_eval;  // ggml_backend_sched_eval_callback
    void* cb_eval_user_data;
    int32_t type_k;  // enum ggml_type
    int32_t type_v;
    void* abort_callback;  // ggml_abort_callback
    void* abort_callback_data;
    bool embeddings;
    bool offload_kqv;
    bool no_perf;
    bool op_offload;
    bool swa_full;
    bool kv_unified;
    void* samplers;  // llama_sampler_seq_config*
    size_t n_samplers;
    llama_context* ctx_other;
};
static_assert(sizeof(llama_context_params) == 160);

struct llama_model_quantize_params {
    int32_t nthread;
    int32_t ftype;                 // enum llama_ftype
    int32_t output_tensor_type;    // enum ggml_type
    int32_t token_embedding_type;  // enum ggml_type
    bool allow_requantize;
    bool quantize_output_tensor;
    bool only_copy;
    bool pure;
    bool keep_split;
    bool dry_run;
    const llama_model_imatrix_data* imatrix;
    const llama_model_kv_override* kv_overrides;
    const void* tt_overrides;   // const llama_model_tensor_override*
    const int32_t* prune_layers;
    size_t max_buf_size;
};
static_assert(sizeof(llama_model_quantize_params) == 64);

struct llama_batch {
    int32_t n_tokens;
    llama_token* token;
    float* embd;
    llama_pos* pos;
    int32_t* n_seq_id;
    llama_seq_id** seq_id;
    int8_t* logits;  // "output" flags
};
static_assert(sizeof(llama_batch) == 56);

// The functions we call, resolved once with dlsym.
struct Functions {
    void* (*ggml_backend_load)(const char* path) = nullptr;  // returns ggml_backend_reg_t
    size_t (*ggml_backend_reg_count)() = nullptr;
    void (*llama_backend_init)() = nullptr;
    void (*llama_log_set)(LogCallback callback, void* user_data) = nullptr;
    llama_model_params (*llama_model_default_params)() = nullptr;
    llama_context_params (*llama_context_default_params)() = nullptr;
    llama_model_quantize_params (*llama_model_quantize_default_params)() = nullptr;
    llama_model* (*llama_model_load_from_file)(const char* path, llama_model_params params) = nullptr;
    void (*llama_model_free)(llama_model* model) = nullptr;
    const llama_vocab* (*llama_model_get_vocab)(const llama_model* model) = nullptr;
    int32_t (*llama_vocab_n_tokens)(const llama_vocab* vocab) = nullptr;
    llama_token (*llama_vocab_bos)(const llama_vocab* vocab) = nullptr;
    bool (*llama_vocab_get_add_bos)(const llama_vocab* vocab) = nullptr;
    int32_t (*llama_tokenize)(const llama_vocab* vocab, const char* text, int32_t text_len, llama_token* tokens,
                              int32_t n_tokens_max, bool add_special, bool parse_special) = nullptr;
    int32_t (*llama_token_to_piece)(const llama_vocab* vocab, llama_token token, char* buf, int32_t length,
                                    int32_t lstrip, bool special) = nullptr;
    llama_context* (*llama_init_from_model)(llama_model* model, llama_context_params params) = nullptr;
    void (*llama_free)(llama_context* ctx) = nullptr;
    llama_memory_i* (*llama_get_memory)(const llama_context* ctx) = nullptr;
    void (*llama_memory_clear)(llama_memory_i* memory, bool data) = nullptr;
    llama_batch (*llama_batch_init)(int32_t n_tokens, int32_t embd, int32_t n_seq_max) = nullptr;
    void (*llama_batch_free)(llama_batch batch) = nullptr;
    int32_t (*llama_decode)(llama_context* ctx, llama_batch batch) = nullptr;
    float* (*llama_get_logits_ith)(llama_context* ctx, int32_t i) = nullptr;
    uint32_t (*llama_model_quantize)(const char* in, const char* out, const llama_model_quantize_params* params) = nullptr;
};

}  // namespace llama_c

class LlamaApi {
public:
    // Loads libggml-base, libggml, libllama and the pinned CPU plug-in (libggml-cpu-x64.so, so
    // numbers are bit-stable across CI machines) from llama_lib_dir() once, then
    // llama_backend_init(). Never unloaded: worker threads and static objects inside the
    // libraries outlive any destructor we could run.
    static LlamaApi& get();
    bool available() const { return error_.empty(); }
    // Why loading failed; tests report it and FAIL (the arbiter missing is an error, not a skip).
    const std::string& error() const { return error_; }
    // Throws qf::Error(error()) when the library is not available.
    void require() const;
    const llama_c::Functions& fn() const { return fn_; }

    // Everything llama.cpp and ggml log is captured here (never printed, unless the environment
    // variable QFORGE_LLAMA_LOG is set). Returns the lines logged since the last call, a
    // trailing unterminated line included, and empties the buffer. Only the newest
    // kMaxLogLines are kept.
    std::vector<std::string> take_log();
    void clear_log() { (void)take_log(); }
    static constexpr size_t kMaxLogLines = 20000;

private:
    LlamaApi();
    static void on_log(int level, const char* text, void* self);
    void append_log(const char* text);

    std::vector<void*> handles_;
    llama_c::Functions fn_;
    std::string error_;
    bool echo_log_ = false;
    std::mutex log_mutex_;
    std::vector<std::string> log_lines_;
    std::string log_partial_;
};

// RAII: llama_model_free on destruction.
struct LlamaModel {
    llama_c::llama_model* model = nullptr;
    const llama_c::llama_vocab* vocab = nullptr;
    std::string path;

    LlamaModel(llama_c::llama_model* m, std::string p);
    ~LlamaModel();
    LlamaModel(const LlamaModel&) = delete;
    LlamaModel& operator=(const LlamaModel&) = delete;
};

// Loads a GGUF on the CPU (n_gpu_layers 0, mmap). Throws qf::Error "PATH: llama.cpp cannot
// load the model: <its last log lines>" on failure. On success llama.cpp's load log stays in
// LlamaApi::take_log() (cleared first).
std::unique_ptr<LlamaModel> load_model(const std::string& path);

int32_t n_vocab(const LlamaModel& model);
std::vector<int32_t> tokenize(const LlamaModel& model, const std::string& text, bool add_special, bool parse_special);
// The piece of one token, control tokens rendered (as common_token_to_piece does by default).
std::string token_to_piece(const LlamaModel& model, int32_t token);

// Thread count default: 1. ggml's CPU threads meet at spinning barriers after every op, so
// on an oversubscribed machine (parallel builds and tests on 2 cores) two threads took 56 s
// for what one thread does in 0.05 s (stories260K, 45 tokens). Ask for more only on an idle
// machine and a model large enough to gain from it.
inline constexpr int kDefaultThreads = 1;

// Greedy (argmax, lowest id on ties) decoding of exactly n_predict tokens after the prompt,
// in a fresh context; does not stop at end-of-generation tokens. Returns the generated ids.
std::vector<int32_t> greedy_generate(const LlamaModel& model, const std::vector<int32_t>& prompt, int n_predict,
                                     int n_threads = kDefaultThreads);

struct PerplexityResult {
    double ppl = 0;         // exp(nll)
    double nll = 0;         // mean negative log-likelihood per scored token
    double nll_stderr = 0;  // standard error of that mean (the tool prints ppl * this as "+/-")
    int chunks = 0;
    size_t scored = 0;      // tokens scored
};

// Receives one chunk's scored logits (targets.size() rows of n_vocab floats, row r predicting
// targets[r]) so callers can compute KL divergence against another model.
using PerplexityChunkCallback =
    std::function<void(int chunk, std::span<const float> logits, std::span<const int32_t> targets)>;

// llama.cpp's perplexity procedure (tools/perplexity/perplexity.cpp, perplexity()): the whole
// text tokenized with BOS; n_chunk = n_tokens / n_ctx (at most max_chunks when > 0); chunk i
// is tokens [i*n_ctx, (i+1)*n_ctx) with its first token replaced by BOS (when the vocabulary
// adds BOS), decoded in one sequence from an empty KV cache; positions j in [n_ctx/2, n_ctx-1)
// predict token j+1, scored by a log-softmax summed in double. Throws qf::Error when the text
// has fewer than 2*n_ctx tokens (the tool refuses too) or decoding fails. Context settings are
// the tool's defaults (F16 KV cache, flash attention auto, physical batch min(n_ctx, 512)).
PerplexityResult perplexity(const LlamaModel& model, const std::string& text, int n_ctx = 512, int max_chunks = -1,
                            int n_threads = kDefaultThreads, const PerplexityChunkCallback& on_chunk = {});

struct QuantizeOptions {
    int ftype = llama_c::kFtypeMostlyQ8_0;  // enum llama_ftype
    int nthread = 2;
    bool allow_requantize = false;
    bool quantize_output_tensor = true;
    bool only_copy = false;
    bool pure = false;
    int output_tensor_type = -1;    // ggml_type id, -1 = llama.cpp's choice
    int token_embedding_type = -1;  // ggml_type id, -1 = llama.cpp's choice
    // A GGUF importance matrix (llama-imatrix's default format). Loaded as llama-quantize does:
    // importance = in_sum2 / round(count) per matrix (all ones where the count is 0), and the
    // quantize.imatrix.{file,dataset,entries_count,chunks_count} keys added to the output.
    std::string imatrix_path;
};

// llama_model_quantize(in, out, params). Returns its status (0 = success). The log is cleared
// first and left in LlamaApi::take_log(). Throws qf::Error only for an unreadable imatrix.
int model_quantize(const std::string& in, const std::string& out, const QuantizeOptions& opt);

// Creates (and frees) a context with these settings and returns what llama.cpp logged while
// doing so (KV cache and compute buffer sizes are read from it by callers). flash_attn_type:
// -1 auto, 0 off, 1 on. Throws qf::Error (with the log's last lines) when creation fails.
std::vector<std::string> create_context_log(const LlamaModel& model, int n_ctx, int n_batch, int n_ubatch, int type_k,
                                            int type_v, int flash_attn_type);

}  // namespace qf::test
