// Hyperparameters of a Hugging Face llama-family checkpoint (config.json), validated and
// completed with the defaults transformers' config classes apply (convert_hf_to_gguf.py reads
// config.json through transformers.AutoConfig, so a key missing from the file takes the
// class default there, e.g. Qwen3's head_dim 128).
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace qf {

enum class HfArch { Llama, Mistral, Qwen2, Qwen3 };

struct RopeScaling {
    std::string type;  // "" = none, "linear", "yarn", "llama3" (HF "rope_type", or legacy "type")
    float factor = 1.0f;
    float low_freq_factor = 1.0f;   // llama3
    float high_freq_factor = 4.0f;  // llama3
    uint32_t original_context_length = 0;  // llama3 (default 8192), yarn
    // yarn only; written to the GGUF only when the config has them
    std::optional<float> yarn_ext_factor, yarn_attn_factor, yarn_beta_fast, yarn_beta_slow;
};

// Values of generation_config.json that convert_hf_to_gguf.py copies to general.sampling.*.
struct SamplingDefaults {
    std::optional<std::string> sequence;
    std::optional<int32_t> top_k, penalty_last_n, mirostat;
    std::optional<float> top_p, min_p, xtc_probability, xtc_threshold, temp, penalty_repeat, mirostat_tau, mirostat_eta;
};

struct ModelConfig {
    HfArch arch = HfArch::Llama;
    std::string model_type;  // "llama", "mistral", "qwen2", "qwen3"
    std::string gguf_arch;   // "llama" (llama, mistral), "qwen2", "qwen3"
    uint32_t n_layer = 0, n_embd = 0, n_ff = 0, n_head = 0, n_head_kv = 0, head_dim = 0, vocab_size = 0, context_length = 0;
    float rms_norm_eps = 1e-6f, rope_theta = 10000.0f;
    RopeScaling rope_scaling;
    bool tied_embeddings = false;  // tie_word_embeddings (what lm_head's absence means is decided by the tensors)
    bool qkv_bias = false;         // q/k/v biases: qwen2 always, llama attention_bias
    bool o_bias = false;           // o_proj bias: llama attention_bias
    bool mlp_bias = false;         // gate/up/down biases: llama mlp_bias
    bool qk_norm = false;          // qwen3 q_norm / k_norm
    bool permute_qk = false;       // llama/mistral (ggml NORM rope) yes; qwen (NEOX rope) no
    // The converter writes attention.key_length/value_length when its hparams hold head_dim:
    // transformers fills it for llama, mistral and qwen3, qwen2 only has it when config.json does.
    bool write_head_dim = false;
    std::optional<uint32_t> bos_token_id, eos_token_id;  // integers in config.json (a list is ignored)
    std::string name;           // folder name (general.name fallback)
    std::optional<std::string> name_or_path;  // config.json "_name_or_path" (general.* naming heuristics)
    SamplingDefaults sampling;  // generation_config.json next to config.json
};

// Accepts the model folder or the path of its config.json; also reads generation_config.json
// from the same folder when present.
ModelConfig load_model_config(const std::string& hf_dir_or_config_json);
// Errors are one line "LABEL: problem"; name is stored as ModelConfig::name.
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& label, const std::string& name);
// generation_config.json values (wrong types are ignored, as a missing file is).
SamplingDefaults parse_generation_config(const nlohmann::json& j);

const char* hf_arch_name(HfArch arch);

}  // namespace qf
