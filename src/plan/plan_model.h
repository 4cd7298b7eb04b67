// What the memory planner knows about a model before any weight exists: the hyperparameters
// of config.json and the GGUF tensor set llama.cpp's converter would write from them; or,
// for a GGUF file, the hyperparameters of its metadata and its own tensors.
//
// llama / mistral / qwen2 / qwen3 go through hf/model_config (the converter's own parser, so
// the metadata can be built exactly); mixtral, qwen3_moe, gemma2 and phi3 are read here with
// the few keys their tensor shapes need. The tensor set follows convert_hf_to_gguf.py and
// llama.cpp's loader (facts §5.2, §5.7): names, GGUF shapes (ne, innermost first) and the
// type the converter gives each tensor (1-D, norms, biases, routers F32; the rest the float
// type asked for).
#pragma once
#include "gguf/gguf_writer.h"
#include "hf/model_config.h"
#include "quant/types.h"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qf {

struct FileTypeInfo;

// A GGUF file given to the planner: what requantizing it starts from. llama-quantize keeps
// the metadata (re-setting general.quantization_version and general.file_type, dropping
// split.*) and the tensor names and shapes; only the types change.
struct PlanGgufFile {
    std::string path;
    uint64_t file_bytes = 0;    // actual size on disk
    uint64_t data_offset = 0;   // header + KVs + tensor infos + padding
    GgufMetadata metadata;
    std::vector<GgufTensorPlan> tensors;  // in file order, with the file's types
    std::optional<uint32_t> file_type_id;  // general.file_type, if present
    const FileTypeInfo* file_type = nullptr;  // nullptr: absent or not one of all_file_types()
    bool has_quantized_tensors() const;
};

struct PlanModel {
    std::string model_type;  // config.json model_type ("llama", "mixtral", "gemma2", ...)
    std::string gguf_arch;   // general.architecture ("llama", "qwen3moe", "gemma2", "phi3", ...)
    std::string dir;         // folder holding config.json (tokenizer files are looked for there)
    bool config_only = false;  // config values without a folder (catalogue, pasted): no tokenizer files read
    uint32_t n_layer = 0, n_embd = 0, n_ff = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_vocab = 0;
    uint32_t head_dim_v = 0;  // V head size when it differs from K's (GGUF value_length); 0 = head_dim
    uint32_t context_length = 0;  // max_position_embeddings (n_ctx_train)
    uint32_t n_expert = 0, n_expert_used = 0, n_ff_exp = 0;  // MoE; 0 for dense models
    uint32_t n_swa = 0;      // sliding window of the SWA layers (gemma2: every even layer), 0 = none
    bool tied = false;       // no output.weight: the loader duplicates token_embd as the output matrix
    bool qkv_bias = false, qk_norm = false;
    bool rope_freqs = false;        // llama3 rope scaling: generated rope_freqs.weight [head_dim/2]
    bool rope_factors_long_short = false;  // phi3 longrope: rope_factors_long/short [head_dim/2]
    std::optional<ModelConfig> hf;  // set for the archs hf/model_config supports (exact metadata)
    std::shared_ptr<const PlanGgufFile> gguf;  // set when MODEL was a GGUF file

    uint32_t v_head_dim() const { return head_dim_v ? head_dim_v : head_dim; }
    uint32_t n_embd_k_gqa() const { return head_dim * n_head_kv; }
    uint32_t n_embd_v_gqa() const { return v_head_dim() * n_head_kv; }
    bool is_swa_layer(uint32_t il) const { return n_swa > 0 && il % 2 == 0; }
};

// Accepts a model folder, the path of its config.json, or a GGUF file (recognised by its
// magic). Errors are one line naming the file; an unsupported model_type or GGUF
// architecture names it and lists the supported ones.
PlanModel load_plan_model(const std::string& model_path);

// True when the file starts with the GGUF magic (false for folders and unreadable paths).
bool is_gguf_file(const std::string& path);
// The hyperparameters from {arch}.* metadata (llama, qwen2, qwen3, qwen3moe, gemma2, phi3);
// the tensor set is the file's own. Throws qf::Error "PATH: problem".
PlanModel load_plan_model_from_gguf(const std::string& path);
PlanModel parse_plan_model(const nlohmann::json& j, const std::string& label, const std::string& dir);

// The tensors the converter writes for `float_type` (F32, F16 or BF16): 1-D tensors, norms,
// biases and MoE routers stay F32, every other tensor gets float_type. Blocks in order, the
// model-level tensors first; order does not change any size. For a GGUF model: the file's
// tensors with their own types (float_type ignored).
std::vector<GgufTensorPlan> plan_tensors(const PlanModel& model, GgmlType float_type = GgmlType::F16);

uint64_t tensor_elements(const GgufTensorPlan& t);

}  // namespace qf
