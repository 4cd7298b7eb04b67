// What the memory planner knows about a model before any weight exists: the hyperparameters
// of config.json and the GGUF tensor set llama.cpp's converter would write from them.
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
#include <optional>
#include <string>
#include <vector>

namespace qf {

struct PlanModel {
    std::string model_type;  // config.json model_type ("llama", "mixtral", "gemma2", ...)
    std::string gguf_arch;   // general.architecture ("llama", "qwen3moe", "gemma2", "phi3", ...)
    std::string dir;         // folder holding config.json (tokenizer files are looked for there)
    uint32_t n_layer = 0, n_embd = 0, n_ff = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_vocab = 0;
    uint32_t context_length = 0;  // max_position_embeddings (n_ctx_train)
    uint32_t n_expert = 0, n_expert_used = 0, n_ff_exp = 0;  // MoE; 0 for dense models
    uint32_t n_swa = 0;      // sliding window of the SWA layers (gemma2: every even layer), 0 = none
    bool tied = false;       // no output.weight: the loader duplicates token_embd as the output matrix
    bool qkv_bias = false, qk_norm = false;
    bool rope_freqs = false;        // llama3 rope scaling: generated rope_freqs.weight [head_dim/2]
    bool rope_factors_long_short = false;  // phi3 longrope: rope_factors_long/short [head_dim/2]
    std::optional<ModelConfig> hf;  // set for the archs hf/model_config supports (exact metadata)

    uint32_t n_embd_k_gqa() const { return head_dim * n_head_kv; }
    uint32_t n_embd_v_gqa() const { return head_dim * n_head_kv; }
    bool is_swa_layer(uint32_t il) const { return n_swa > 0 && il % 2 == 0; }
};

// Accepts a model folder or the path of its config.json. Errors are one line naming the file;
// an unsupported model_type names it and lists the supported ones.
PlanModel load_plan_model(const std::string& dir_or_config_json);
PlanModel parse_plan_model(const nlohmann::json& j, const std::string& label, const std::string& dir);

// The tensors the converter writes for `float_type` (F32, F16 or BF16): 1-D tensors, norms,
// biases and MoE routers stay F32, every other tensor gets float_type. Blocks in order, the
// model-level tensors first; order does not change any size.
std::vector<GgufTensorPlan> plan_tensors(const PlanModel& model, GgmlType float_type = GgmlType::F16);

uint64_t tensor_elements(const GgufTensorPlan& t);

}  // namespace qf
