// Writes small Hugging Face checkpoints with random weights for tests: config.json plus one
// model.safetensors or a sharded set with model.safetensors.index.json, in F32, F16 or BF16.
// Also builds raw safetensors bytes (valid or deliberately broken) for parser tests.
#pragma once
#include "hf/safetensors.h"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace qf::test {

struct RawTensor {
    std::string name;
    std::string dtype;             // safetensors spelling; any string (tests write "I8" too)
    std::vector<int64_t> shape;
    std::vector<std::byte> bytes;  // the data as stored
};

// A valid file: header in the given order (padded to 8 bytes like the reference writer), data
// packed in the same order. metadata goes to "__metadata__" unless null.
std::vector<std::byte> safetensors_bytes(const std::vector<RawTensor>& tensors,
                                         const nlohmann::json& metadata = {{"format", "pt"}});
// Any header text, used verbatim, followed by the data bytes (for malformed files).
std::vector<std::byte> safetensors_bytes_raw(std::string_view header, std::span<const std::byte> data);
void write_file(const std::string& path, std::span<const std::byte> bytes);
void write_text(const std::string& path, std::string_view text);

struct CheckpointSpec {
    std::string model_type = "llama";  // llama, mistral, qwen2 (q/k/v biases), qwen3 (q/k norms)
    uint32_t n_layer = 2, n_embd = 32, n_ff = 48, n_head = 4, n_head_kv = 2, vocab = 64;
    uint32_t head_dim = 0;             // 0: n_embd / n_head, and for llama/mistral/qwen2 not written
    uint32_t context_length = 128;
    bool tied = false;                 // tie_word_embeddings=true and no lm_head.weight
    bool attention_bias = false;       // llama: q/k/v/o biases
    bool mlp_bias = false;             // llama: gate/up/down biases
    nlohmann::json rope_scaling;       // null: none
    StDtype dtype = StDtype::F32;
    int shards = 1;                    // > 1: model-0000i-of-0000n.safetensors + index
    uint32_t seed = 1;
    nlohmann::json config_overrides = nlohmann::json::object();  // merged into config.json last
};

struct StoredTensor {
    std::vector<int64_t> shape;  // torch order
    std::vector<float> values;   // exactly the stored values (already rounded to the dtype)
    std::string file;            // shard path
};

struct Checkpoint {
    std::string dir;
    nlohmann::json config;
    std::vector<std::string> files;               // shard paths, in file-name order
    std::vector<std::string> names;               // every tensor, in writing (header) order
    std::map<std::string, StoredTensor> tensors;  // by HF name
};

// HF tensor names and torch shapes for the spec, in module order (embeddings, layers, norm, head):
// deliberately not sorted, so tests see that the mapper sorts per shard like the converter.
std::vector<std::pair<std::string, std::vector<int64_t>>> checkpoint_tensor_list(const CheckpointSpec& spec);
nlohmann::json checkpoint_config(const CheckpointSpec& spec);
// Creates dir (if needed) and writes config.json and the weights.
Checkpoint write_checkpoint(const std::string& dir, const CheckpointSpec& spec);

}  // namespace qf::test
