// The general.* and {arch}.* GGUF keys convert_hf_to_gguf.py writes for llama / mistral /
// qwen2 / qwen3, in its order and with its value types (counts U32, floats F32, strings STRING):
//   general.architecture, general.type, general.sampling.* (generation_config.json),
//   general.name / version / organization / finetune / basename / size_label (gguf.Metadata
//   heuristics over config.json "_name_or_path" and the folder name, size from the parameter
//   count), the hyperparameters (TextModel / LlamaModel.set_gguf_parameters, general.file_type
//   among them), general.quantization_version. Tokenizer keys come after, from elsewhere.
// Not reproduced: keys the converter takes from a README.md model card (license, tags,
// base_model.*, ...) or from --metadata overrides.
#pragma once
#include "gguf/gguf_value.h"
#include "hf/model_config.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qf {

// total_params: the element count of every tensor written (count_parameters of the mapped
// tensors); when absent it is derived from the config, assuming output.weight exists exactly
// when tie_word_embeddings is false.
void add_arch_metadata(const ModelConfig& cfg, uint32_t file_type, GgufMetadata& md,
                       std::optional<uint64_t> total_params = std::nullopt);

// Parameter count implied by the config (see above).
uint64_t config_parameter_count(const ModelConfig& cfg);

// gguf.size_label for a dense model: "6.8M", "1.2B", "260K", ...
std::string size_label_for_count(uint64_t total_params);

// gguf.Metadata.get_model_id_components: a HF id "org/Name-7B-Instruct-v0.2" or a folder name
// split into name parts. Absent parts are nullopt (an empty string is a present part).
struct ModelIdComponents {
    std::optional<std::string> full_name, organization, basename, finetune, version, size_label;
};
ModelIdComponents model_id_components(const std::optional<std::string>& model_id, int64_t total_params);

// gguf.Metadata.id_to_title: "prose-tiny" -> "Prose Tiny" (acronyms, versions kept).
std::string id_to_title(std::string_view id);

}  // namespace qf
