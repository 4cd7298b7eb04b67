#include "pipeline/imatrix_file.h"

#include "common/error.h"
#include "common/mapped_file.h"
#include "gguf/gguf_reader.h"

#include <cmath>
#include <cstring>

namespace qf {

namespace {

bool strip_suffix(std::string& s, std::string_view suffix) {
    if (s.size() < suffix.size() || s.compare(s.size() - suffix.size(), suffix.size(), suffix) != 0) return false;
    s.resize(s.size() - suffix.size());
    return true;
}

std::vector<float> f32_values(const GgufFile& file, const GgufTensorInfo& t) {
    if (t.type != GgmlType::F32) fail("{}: imatrix tensor '{}' must be F32, not {}", file.path(), t.name, type_name(t.type));
    auto bytes = file.tensor_data(t);
    std::vector<float> v(bytes.size() / sizeof(float));
    std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
    return v;
}

Imatrix load_gguf_imatrix(const std::string& path) {
    GgufFile file(path);
    const GgufMetadata& md = file.metadata();
    const GgufValue* datasets = md.find("imatrix.datasets");
    const GgufValue* chunk_count = md.find("imatrix.chunk_count");
    const GgufValue* chunk_size = md.find("imatrix.chunk_size");
    if (!datasets || !chunk_count || !chunk_size)
        fail("{}: missing imatrix metadata (imatrix.datasets, imatrix.chunk_count, imatrix.chunk_size)", path);
    if (file.tensors().empty()) fail("{}: no data in the imatrix", path);

    Imatrix im;
    im.path = path;
    if (datasets->type == GgufValueType::ARRAY && datasets->elem_type == GgufValueType::STRING)
        for (const auto& item : datasets->items) im.datasets.push_back(item.as_string());
    if (chunk_count->type != GgufValueType::U32) fail("{}: imatrix.chunk_count must be u32", path);
    im.chunk_count = static_cast<int64_t>(chunk_count->as_u64());

    std::map<std::string, std::pair<const GgufTensorInfo*, const GgufTensorInfo*>> sums_counts;
    for (const auto& t : file.tensors()) {
        std::string name = t.name;
        if (strip_suffix(name, ".in_sum2")) sums_counts[name].first = &t;
        else if (strip_suffix(name, ".counts")) sums_counts[name].second = &t;
    }
    for (const auto& [name, sc] : sums_counts) {
        if (!sc.first || !sc.second) fail("{}: mismatched sums and counts for {}", path, name);
        const std::vector<float> sums = f32_values(file, *sc.first);
        const std::vector<float> counts = f32_values(file, *sc.second);
        if (counts.empty() || sums.size() % counts.size() != 0)
            fail("{}: {} has {} sums for {} counts", path, name, sums.size(), counts.size());
        const size_t ne0 = sums.size() / counts.size();
        std::vector<float> importance(sums.size());
        for (size_t j = 0; j < counts.size(); ++j) {
            // llama.cpp's loader rounds each count to an integer; the division is in float.
            const auto count = static_cast<float>(std::lround(counts[j]));
            for (size_t i = 0; i < ne0; ++i)
                importance[j * ne0 + i] = count > 0.0f ? sums[j * ne0 + i] / count : 1.0f;
        }
        im.entries.emplace(name, std::move(importance));
    }
    return im;
}

// Sequential little-endian reader over untrusted bytes.
struct Cursor {
    std::span<const std::byte> bytes;
    size_t pos = 0;
    const std::string& path;
    bool has(size_t n) const { return n <= bytes.size() - pos; }
    int32_t i32(const char* what) {
        if (!has(4)) fail("{}: truncated legacy imatrix reading {} (at byte {})", path, what, pos);
        int32_t v;
        std::memcpy(&v, bytes.data() + pos, 4);
        pos += 4;
        return v;
    }
    void read(void* dst, size_t n, const char* what) {
        if (!has(n)) fail("{}: truncated legacy imatrix reading {} (at byte {})", path, what, pos);
        std::memcpy(dst, bytes.data() + pos, n);
        pos += n;
    }
};

Imatrix load_legacy_imatrix(const std::string& path) {
    MappedFile file(path);
    Cursor in{file.bytes(), 0, path};
    Imatrix im;
    im.path = path;
    im.legacy = true;
    const int32_t n_entries = in.i32("the entry count");
    if (n_entries < 1) fail("{}: no data in the imatrix", path);
    for (int32_t e = 0; e < n_entries; ++e) {
        const int32_t len = in.i32("a name length");
        if (len < 0 || !in.has(static_cast<size_t>(len)))
            fail("{}: entry {} has a bad name length {} (at byte {})", path, e, len, in.pos - 4);
        std::string name(static_cast<size_t>(len), '\0');
        in.read(name.data(), name.size(), "a name");
        name.resize(std::strlen(name.c_str()));  // llama.cpp reads the name as a C string
        const int32_t ncall = in.i32("ncall");
        const int32_t nval = in.i32("the value count");
        if (nval < 1 || !in.has(static_cast<size_t>(nval) * 4))
            fail("{}: entry '{}' has a bad value count {}", path, name, nval);
        std::vector<float> values(static_cast<size_t>(nval));
        in.read(values.data(), values.size() * 4, "values");
        if (ncall > 0)
            for (float& v : values) v /= static_cast<float>(ncall);
        im.entries[name] = std::move(values);  // a repeated name replaces the earlier entry, as in llama.cpp
    }
    if (in.has(4)) {
        im.chunk_count = in.i32("the chunk count");
        if (in.has(4)) {
            const int32_t len = in.i32("the dataset length");
            if (len > 0 && in.has(static_cast<size_t>(len))) {
                std::string dataset(static_cast<size_t>(len), '\0');
                in.read(dataset.data(), dataset.size(), "the dataset");
                dataset.resize(std::strlen(dataset.c_str()));
                im.datasets.push_back(std::move(dataset));
            }
        }
    }
    return im;
}

}  // namespace

Imatrix load_imatrix(const std::string& path) {
    Imatrix im;
    {
        MappedFile probe(path);
        const bool is_gguf = probe.size() >= 4 && std::memcmp(probe.data(), "GGUF", 4) == 0;
        im = is_gguf ? load_gguf_imatrix(path) : load_legacy_imatrix(path);
    }
    for (const auto& [name, values] : im.entries)
        for (size_t i = 0; i < values.size(); ++i)
            if (!std::isfinite(values[i])) fail("{}: imatrix entry '{}' has a non-finite value at {}", path, name, i);
    return im;
}

}  // namespace qf
