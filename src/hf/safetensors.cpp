#include "hf/safetensors.h"

#include "common/error.h"
#include "common/half.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>

namespace qf {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

const char* st_dtype_name(StDtype dtype) {
    switch (dtype) {
        case StDtype::F32: return "F32";
        case StDtype::F16: return "F16";
        case StDtype::BF16: return "BF16";
    }
    return "?";
}

size_t st_dtype_size(StDtype dtype) { return dtype == StDtype::F32 ? 4 : 2; }

int64_t StTensor::n_elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;  // validated against overflow when parsed
    return n;
}

std::string printable_name(std::string_view s) {
    std::string out;
    for (char c : s.substr(0, 120)) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
    if (s.size() > 120) out += "...";
    return out;
}

namespace {

std::string printable(std::string_view s) { return printable_name(s); }

uint64_t read_u64_le(const std::byte* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
    return v;
}

bool parse_dtype(const std::string& s, StDtype* out) {
    if (s == "F32") *out = StDtype::F32;
    else if (s == "F16") *out = StDtype::F16;
    else if (s == "BF16") *out = StDtype::BF16;
    else return false;
    return true;
}

// A JSON value that must be a non-negative integer (JSON numbers beyond u64 parse as floats).
bool as_index(const ojson& v, uint64_t* out) {
    if (v.is_number_unsigned()) {
        *out = v.get<uint64_t>();
        return true;
    }
    if (v.is_number_integer() && v.get<int64_t>() >= 0) {
        *out = static_cast<uint64_t>(v.get<int64_t>());
        return true;
    }
    return false;
}

}  // namespace

std::vector<StTensor> parse_safetensors(std::span<const std::byte> file, const std::string& label) {
    if (file.size() < 8) fail("{}: truncated: {} bytes, a safetensors file starts with an 8-byte header length", label, file.size());
    const uint64_t header_len = read_u64_le(file.data());
    if (header_len > file.size() - 8)
        fail("{}: header length {} exceeds the file size ({} bytes after the length field)", label, header_len, file.size() - 8);
    const char* header = reinterpret_cast<const char*>(file.data() + 8);
    const std::span<const std::byte> data_area = file.subspan(8 + header_len);

    ojson root = ojson::parse(header, header + header_len, nullptr, /*allow_exceptions=*/false);
    if (root.is_discarded()) fail("{}: header is not valid JSON", label);
    if (!root.is_object()) fail("{}: header is not a JSON object", label);

    std::vector<StTensor> tensors;
    tensors.reserve(root.size());
    struct Range { uint64_t begin, end; size_t index; };
    std::vector<Range> ranges;
    for (const auto& [name, entry] : root.items()) {
        if (name == "__metadata__") {
            if (!entry.is_object()) fail("{}: '__metadata__' is not a JSON object", label);
            continue;
        }
        const std::string shown = printable(name);
        if (name.empty()) fail("{}: a tensor has an empty name", label);
        if (!entry.is_object()) fail("{}: tensor '{}': entry is not a JSON object", label, shown);

        auto dtype_it = entry.find("dtype");
        if (dtype_it == entry.end() || !dtype_it->is_string()) fail("{}: tensor '{}': missing string 'dtype'", label, shown);
        StTensor t;
        t.name = name;
        t.file = label;
        const std::string dtype_str = dtype_it->get<std::string>();
        if (!parse_dtype(dtype_str, &t.dtype))
            fail("{}: tensor '{}': unsupported dtype '{}' (supported: F32, F16, BF16)", label, shown, printable(dtype_str));

        auto shape_it = entry.find("shape");
        if (shape_it == entry.end() || !shape_it->is_array()) fail("{}: tensor '{}': missing array 'shape'", label, shown);
        uint64_t n_elements = 1;
        for (const auto& d : *shape_it) {
            uint64_t dim = 0;
            if (!as_index(d, &dim)) fail("{}: tensor '{}': shape {} has a dimension that is not a non-negative integer", label, shown, printable(shape_it->dump()));
            if (mul_overflows(n_elements, dim, &n_elements) || n_elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
                fail("{}: tensor '{}': shape {} has too many elements (overflow)", label, shown, printable(shape_it->dump()));
            t.shape.push_back(static_cast<int64_t>(dim));
        }
        uint64_t n_bytes = 0;
        if (mul_overflows(n_elements, st_dtype_size(t.dtype), &n_bytes))
            fail("{}: tensor '{}': shape {} has too many bytes (overflow)", label, shown, printable(shape_it->dump()));

        auto off_it = entry.find("data_offsets");
        uint64_t begin = 0, end = 0;
        if (off_it == entry.end() || !off_it->is_array() || off_it->size() != 2 || !as_index((*off_it)[0], &begin) ||
            !as_index((*off_it)[1], &end))
            fail("{}: tensor '{}': 'data_offsets' must be two non-negative integers [begin, end]", label, shown);
        if (begin > end) fail("{}: tensor '{}': data_offsets [{}, {}] end before begin", label, shown, begin, end);
        if (end > data_area.size())
            fail("{}: tensor '{}': data_offsets [{}, {}] outside the data area ({} bytes)", label, shown, begin, end, data_area.size());
        if (end - begin != n_bytes)
            fail("{}: tensor '{}': data_offsets [{}, {}] hold {} bytes but shape {} {} needs {}", label, shown, begin, end, end - begin,
                 printable(shape_it->dump()), dtype_str, n_bytes);
        t.data = data_area.subspan(begin, n_bytes);
        if (n_bytes > 0) ranges.push_back({begin, end, tensors.size()});
        tensors.push_back(std::move(t));
    }

    // Two tensors sharing bytes would be silently aliased; the format forbids it.
    std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
    for (size_t i = 1; i < ranges.size(); ++i) {
        if (ranges[i].begin < ranges[i - 1].end)
            fail("{}: tensor '{}': data_offsets [{}, {}] overlap tensor '{}' [{}, {}]", label, printable(tensors[ranges[i].index].name),
                 ranges[i].begin, ranges[i].end, printable(tensors[ranges[i - 1].index].name), ranges[i - 1].begin, ranges[i - 1].end);
    }
    return tensors;
}

void convert_to_f32(const StTensor& t, int64_t first_element, int64_t count, float* dst) {
    const int64_t n = t.n_elements();
    if (first_element < 0 || count < 0 || first_element > n || count > n - first_element)
        fail("{}: tensor '{}': elements [{}, {}) requested, the tensor has {}", t.file, printable_name(t.name), first_element, first_element + count, n);
    const std::byte* src = t.data.data();
    switch (t.dtype) {
        case StDtype::F32:
            if (count > 0) std::memcpy(dst, src + first_element * 4, static_cast<size_t>(count) * 4);
            break;
        case StDtype::F16:
            if (reinterpret_cast<uintptr_t>(src) % alignof(uint16_t) == 0) {  // always, in a valid file
                f16_to_f32_row(reinterpret_cast<const uint16_t*>(src) + first_element, dst, count);
                break;
            }
            for (int64_t i = 0; i < count; ++i) {
                uint16_t h;
                std::memcpy(&h, src + (first_element + i) * 2, 2);
                dst[i] = f16_to_f32(h);
            }
            break;
        case StDtype::BF16:
            for (int64_t i = 0; i < count; ++i) {
                uint16_t h;
                std::memcpy(&h, src + (first_element + i) * 2, 2);
                dst[i] = bf16_to_f32(h);
            }
            break;
    }
}

// ---------------------------------------------------------------------------------------------
// SafetensorsModel

void SafetensorsModel::add_file(const std::string& path) {
    MappedFile map(path);
    std::vector<StTensor> parsed = parse_safetensors(map.bytes(), path);
    for (auto& t : parsed) {
        auto [it, inserted] = by_name_.emplace(t.name, tensors_.size());
        if (!inserted)
            fail("{}: tensor '{}' is also in {}", path, printable(t.name), tensors_[it->second].file);
        tensors_.push_back(std::move(t));
    }
    maps_.push_back(std::move(map));
}

SafetensorsModel SafetensorsModel::open_file(const std::string& path) {
    SafetensorsModel m;
    m.source_ = path;
    m.add_file(path);
    return m;
}

SafetensorsModel SafetensorsModel::open_dir(const std::string& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) fail("{}: not a directory", dir);
    SafetensorsModel m;
    m.source_ = dir;

    const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
    if (fs::exists(index_path, ec)) {
        const std::string index_label = index_path.string();
        MappedFile index_file(index_label);
        const auto bytes = index_file.bytes();
        const char* text = reinterpret_cast<const char*>(bytes.data());
        ojson index = ojson::parse(text, text + bytes.size(), nullptr, /*allow_exceptions=*/false);
        if (index.is_discarded()) fail("{}: not valid JSON", index_label);
        if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
            fail("{}: no 'weight_map' object", index_label);

        // tensor name -> shard file, as the index claims
        std::map<std::string, std::string> claimed;
        std::set<std::string> shards;
        for (const auto& [name, shard] : index["weight_map"].items()) {
            if (!shard.is_string()) fail("{}: weight_map entry '{}' is not a file name", index_label, printable(name));
            const std::string file = shard.get<std::string>();
            const fs::path p(file);
            if (file.empty() || p.is_absolute() || std::any_of(p.begin(), p.end(), [](const fs::path& c) { return c == ".."; }))
                fail("{}: tensor '{}': shard name '{}' is not a file inside the model folder", index_label, printable(name), printable(file));
            claimed[name] = file;
            shards.insert(file);
        }
        if (shards.empty()) fail("{}: 'weight_map' lists no tensors", index_label);
        for (const auto& shard : shards) {
            const fs::path p = fs::path(dir) / shard;
            if (!fs::is_regular_file(p, ec)) {
                const auto first = std::find_if(claimed.begin(), claimed.end(), [&](const auto& kv) { return kv.second == shard; });
                fail("{}: shard '{}' (listed for tensor '{}') does not exist", index_label, printable(shard), printable(first->first));
            }
            m.add_file(p.string());
        }
        for (const auto& [name, shard] : claimed) {
            const StTensor* t = m.find(name);
            const std::string expected = (fs::path(dir) / shard).string();
            if (!t) fail("{}: tensor '{}' is listed in shard '{}' but no shard contains it", index_label, printable(name), printable(shard));
            if (t->file != expected)
                fail("{}: tensor '{}' is listed in shard '{}' but that shard does not contain it (found in {})", index_label,
                     printable(name), printable(shard), t->file);
        }
        for (const auto& t : m.tensors_) {
            if (!claimed.count(t.name)) fail("{}: tensor '{}' is not listed in {}", t.file, printable(t.name), index_label);
        }
        return m;
    }

    const fs::path single = fs::path(dir) / "model.safetensors";
    if (fs::exists(single, ec)) {
        m.add_file(single.string());
        return m;
    }

    std::vector<std::string> parts;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        const std::string fname = entry.path().filename().string();
        if (fname.size() > 12 && fname.ends_with(".safetensors") && entry.is_regular_file(ec)) parts.push_back(fname);
    }
    if (ec) fail("{}: cannot list the folder: {}", dir, ec.message());
    if (parts.empty()) fail("{}: no model.safetensors.index.json, model.safetensors or *.safetensors file", dir);
    std::sort(parts.begin(), parts.end());
    for (const auto& part : parts) m.add_file((fs::path(dir) / part).string());
    return m;
}

const StTensor* SafetensorsModel::find(std::string_view name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

std::vector<std::string> SafetensorsModel::files() const {
    std::vector<std::string> out;
    for (const auto& map : maps_) out.push_back(map.path());
    return out;
}

}  // namespace qf
