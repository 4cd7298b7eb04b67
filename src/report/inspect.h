// What `qforge inspect` shows for a GGUF file or a Hugging Face folder: metadata, every
// tensor's name, type, shape and bytes, and the bits per weight (tensor bytes * 8 / params,
// as llama.cpp's loader prints it).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace qf {

struct InspectTensor {
    std::string name;
    std::string type;              // ggml type name or safetensors dtype
    std::vector<int64_t> shape;    // GGUF ne order (innermost first)
    uint64_t bytes = 0;
    uint64_t offset = 0;           // GGUF: relative to the data section
};

struct InspectReport {
    std::string path;
    std::string format;            // "gguf" or "safetensors"
    uint64_t file_bytes = 0;
    uint32_t gguf_version = 0;
    uint32_t alignment = 0;
    uint64_t data_offset = 0;
    std::vector<std::pair<std::string, std::string>> metadata;  // key, display value (arrays shortened)
    std::vector<std::pair<std::string, std::string>> metadata_types;
    std::vector<InspectTensor> tensors;
    uint64_t n_params = 0;
    uint64_t tensor_bytes = 0;
    double bits_per_weight() const { return n_params ? 8.0 * static_cast<double>(tensor_bytes) / n_params : 0.0; }
};

InspectReport inspect_path(const std::string& path);  // GGUF file or HF folder
std::string render_inspect_text(const InspectReport& report);
nlohmann::json render_inspect_json(const InspectReport& report);

}  // namespace qf
