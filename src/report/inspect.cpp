#include "report/inspect.h"

#include "common/error.h"
#include "gguf/gguf_reader.h"
#include "hf/safetensors.h"

#include <filesystem>
#include <fmt/ranges.h>
#include <map>

namespace qf {

namespace fs = std::filesystem;

namespace {

const char* dtype_name(StDtype d) {
    switch (d) {
        case StDtype::F32: return "F32";
        case StDtype::F16: return "F16";
        case StDtype::BF16: return "BF16";
    }
    return "?";
}

InspectReport inspect_gguf(const std::string& path) {
    GgufFile file(path);
    InspectReport r;
    r.path = path;
    r.format = "gguf";
    r.file_bytes = file.file_size();
    r.gguf_version = file.version();
    r.alignment = file.alignment();
    r.data_offset = file.data_offset();
    for (const auto& kv : file.metadata().entries()) {
        r.metadata.emplace_back(kv.key, kv.value.to_display_string());
        std::string t = gguf_value_type_name(kv.value.type);
        if (kv.value.type == GgufValueType::ARRAY)
            t = fmt::format("{}[{}]", gguf_value_type_name(kv.value.elem_type), kv.value.items.size());
        r.metadata_types.emplace_back(kv.key, t);
    }
    for (const auto& t : file.tensors()) {
        r.tensors.push_back({t.name, std::string(type_name(t.type)), t.shape, t.nbytes, t.offset});
        r.n_params += static_cast<uint64_t>(t.n_elements());
        r.tensor_bytes += t.nbytes;
    }
    return r;
}

InspectReport inspect_hf(const std::string& dir) {
    SafetensorsModel st = SafetensorsModel::open_dir(dir);
    InspectReport r;
    r.path = dir;
    r.format = "safetensors";
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec))
        if (entry.is_regular_file() && entry.path().extension() == ".safetensors") r.file_bytes += entry.file_size();
    for (const auto& t : st.tensors()) {
        std::vector<int64_t> ne(t.shape.rbegin(), t.shape.rend());
        r.tensors.push_back({t.name, dtype_name(t.dtype), ne, static_cast<uint64_t>(t.data.size()), 0});
        r.n_params += static_cast<uint64_t>(t.n_elements());
        r.tensor_bytes += t.data.size();
    }
    return r;
}

std::string human_bytes(uint64_t b) {
    if (b >= (1ull << 30)) return fmt::format("{:.2f} GiB", b / double(1ull << 30));
    if (b >= (1ull << 20)) return fmt::format("{:.2f} MiB", b / double(1ull << 20));
    if (b >= (1ull << 10)) return fmt::format("{:.2f} KiB", b / double(1ull << 10));
    return fmt::format("{} B", b);
}

}  // namespace

InspectReport inspect_path(const std::string& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) return inspect_hf(path);
    if (!fs::exists(path, ec)) fail("{}: no such file or folder", path);
    return inspect_gguf(path);
}

std::string render_inspect_text(const InspectReport& r) {
    std::string out;
    if (r.format == "gguf")
        out += fmt::format("{}: GGUF v{}, {} ({} bytes), alignment {}, data at offset {}\n", r.path, r.gguf_version,
                           human_bytes(r.file_bytes), r.file_bytes, r.alignment, r.data_offset);
    else
        out += fmt::format("{}: Hugging Face safetensors, {} ({} bytes)\n", r.path, human_bytes(r.file_bytes),
                           r.file_bytes);
    if (!r.metadata.empty()) {
        out += fmt::format("\nmetadata ({} keys):\n", r.metadata.size());
        size_t w = 0;
        for (const auto& [k, v] : r.metadata) w = std::max(w, k.size());
        for (size_t i = 0; i < r.metadata.size(); ++i)
            out += fmt::format("  {:<{}}  {:<12} {}\n", r.metadata[i].first, w, r.metadata_types[i].second,
                               r.metadata[i].second);
    }
    out += fmt::format("\ntensors ({}):\n", r.tensors.size());
    size_t w = 4;
    for (const auto& t : r.tensors) w = std::max(w, t.name.size());
    out += fmt::format("  {:<{}}  {:<8} {:<22} {:>12}\n", "name", w, "type", "shape (ne)", "bytes");
    std::map<std::string, int> per_type;
    for (const auto& t : r.tensors) {
        out += fmt::format("  {:<{}}  {:<8} {:<22} {:>12}\n", t.name, w, t.type, fmt::format("[{}]", fmt::join(t.shape, ", ")),
                           t.bytes);
        per_type[t.type]++;
    }
    std::string types;
    for (const auto& [name, n] : per_type) types += fmt::format("{}{}: {}", types.empty() ? "" : ", ", name, n);
    out += fmt::format("\ntensor types: {}\n", types);
    out += fmt::format("parameters: {} ({:.2f} M), tensor data: {} ({} bytes), {:.4f} bits per weight\n", r.n_params,
                       r.n_params / 1e6, human_bytes(r.tensor_bytes), r.tensor_bytes, r.bits_per_weight());
    return out;
}

nlohmann::json render_inspect_json(const InspectReport& r) {
    nlohmann::ordered_json j;
    j["path"] = r.path;
    j["format"] = r.format;
    j["file_bytes"] = r.file_bytes;
    if (r.format == "gguf") {
        j["version"] = r.gguf_version;
        j["alignment"] = r.alignment;
        j["data_offset"] = r.data_offset;
    }
    nlohmann::ordered_json md = nlohmann::ordered_json::array();
    for (size_t i = 0; i < r.metadata.size(); ++i)
        md.push_back({{"key", r.metadata[i].first}, {"type", r.metadata_types[i].second}, {"value", r.metadata[i].second}});
    j["metadata"] = md;
    nlohmann::ordered_json ts = nlohmann::ordered_json::array();
    for (const auto& t : r.tensors)
        ts.push_back({{"name", t.name}, {"type", t.type}, {"shape", t.shape}, {"bytes", t.bytes}, {"offset", t.offset}});
    j["tensors"] = ts;
    j["n_params"] = r.n_params;
    j["tensor_bytes"] = r.tensor_bytes;
    j["bits_per_weight"] = r.bits_per_weight();
    return nlohmann::json::parse(j.dump());
}

}  // namespace qf
