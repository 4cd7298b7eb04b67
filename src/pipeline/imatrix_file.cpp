#include "pipeline/imatrix_file.h"

#include "common/error.h"
#include "common/mapped_file.h"
#include "common/output_file.h"
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

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

// ---------------------------------------------------------------------------------------------
// Writers

namespace {

// ggml keeps tensor names in char[64]: llama-imatrix's ggml_format_name would cut a longer
// "<name>.in_sum2" silently and the sums would land under a wrong name. Refuse instead.
constexpr size_t kMaxTensorName = 63;

// Checks one entry and returns its row length ne0.
size_t checked_row_length(const std::string& path, const std::string& name, const ImatrixSums& sums) {
    if (name.empty()) fail("{}: imatrix entry with an empty name", path);
    if (name.size() + std::string_view(".in_sum2").size() > kMaxTensorName)
        fail("{}: weight name '{}' is too long for a GGUF imatrix tensor name ({} bytes at most)", path, name,
             kMaxTensorName - std::string_view(".in_sum2").size());
    if (sums.counts.empty() || sums.in_sum2.empty() || sums.in_sum2.size() % sums.counts.size() != 0)
        fail("{}: imatrix entry '{}' has {} sums for {} counts", path, name, sums.in_sum2.size(), sums.counts.size());
    if (sums.in_sum2.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
        fail("{}: imatrix entry '{}' has too many values ({})", path, name, sums.in_sum2.size());
    for (size_t i = 0; i < sums.in_sum2.size(); ++i)
        if (!std::isfinite(sums.in_sum2[i])) fail("{}: imatrix entry '{}' has a non-finite sum at {}", path, name, i);
    for (int64_t c : sums.counts)
        if (c < 0) fail("{}: imatrix entry '{}' has a negative count {}", path, name, c);
    return sums.in_sum2.size() / sums.counts.size();
}

// ggml_n_dims: the tensor info lists dimensions up to the last one larger than 1.
std::vector<int64_t> trimmed_shape(int64_t ne0, int64_t ne1) {
    if (ne1 > 1) return {ne0, ne1};
    return {ne0};
}

std::span<const std::byte> as_bytes_of(const std::vector<float>& v) {
    return std::as_bytes(std::span<const float>(v));
}

void write_i32(OutputFile& out, int32_t v) { out.write(&v, sizeof v); }

}  // namespace

void save_imatrix(const ImatrixData& data, const std::string& path, bool overwrite) {
    if (data.entries.empty()) fail("{}: no imatrix entries to write", path);
    GgufMetadata md;
    md.set("general.type", GgufValue::string("imatrix"));
    md.set("imatrix.datasets", GgufValue::string_array(data.datasets));
    md.set("imatrix.chunk_count", GgufValue::u32(data.chunk_count));
    md.set("imatrix.chunk_size", GgufValue::u32(data.chunk_size));

    // data.entries is a std::map over std::string: byte order, the std::sort order llama-imatrix uses.
    std::vector<GgufTensorPlan> layout;
    std::vector<std::vector<float>> counts_f32;
    for (const auto& [name, sums] : data.entries) {
        const size_t ne0 = checked_row_length(path, name, sums);
        const auto n_mat = static_cast<int64_t>(sums.counts.size());
        layout.push_back({name + ".in_sum2", trimmed_shape(static_cast<int64_t>(ne0), n_mat), GgmlType::F32});
        layout.push_back({name + ".counts", trimmed_shape(1, n_mat), GgmlType::F32});
        std::vector<float>& c = counts_f32.emplace_back();
        for (int64_t n : sums.counts) c.push_back(static_cast<float>(n));  // stored as float, as llama-imatrix does
    }

    OutputFile out(path, overwrite);
    GgufWriter writer(out, md, std::move(layout));
    size_t k = 0;
    for (const auto& [name, sums] : data.entries) {
        writer.write_tensor_data(as_bytes_of(sums.in_sum2));
        writer.write_tensor_data(as_bytes_of(counts_f32[k++]));
    }
    writer.finish();
    out.commit();
}

void save_imatrix_legacy(const ImatrixData& data, const std::string& path, bool overwrite) {
    if (data.chunk_size == 0) fail("{}: the legacy imatrix format needs a chunk size", path);
    const auto chunk_size = static_cast<int64_t>(data.chunk_size);
    // llama-imatrix leaves out entries that have no data at all (a count of 0 everywhere).
    std::vector<const std::pair<const std::string, ImatrixSums>*> stored;
    for (const auto& entry : data.entries) {
        checked_row_length(path, entry.first, entry.second);
        if (std::any_of(entry.second.counts.begin(), entry.second.counts.end(), [](int64_t c) { return c != 0; }))
            stored.push_back(&entry);
    }
    if (stored.empty()) fail("{}: no imatrix entry has any data", path);
    if (stored.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
        fail("{}: too many imatrix entries ({})", path, stored.size());

    OutputFile out(path, overwrite);
    write_i32(out, static_cast<int32_t>(stored.size()));
    for (const auto* entry : stored) {
        const std::string& name = entry->first;
        const ImatrixSums& sums = entry->second;
        write_i32(out, static_cast<int32_t>(name.size()));
        out.write(name.data(), name.size());
        // ncall: the chunk count rounded up, so a partial chunk does not read as zero calls.
        const int64_t max_count = *std::max_element(sums.counts.begin(), sums.counts.end());
        const int64_t ncall64 = (max_count + chunk_size - 1) / chunk_size;
        if (ncall64 > std::numeric_limits<int32_t>::max()) fail("{}: entry '{}' count {} is too large", path, name, max_count);
        const auto ncall = static_cast<int32_t>(ncall64);
        write_i32(out, ncall);
        write_i32(out, static_cast<int32_t>(sums.in_sum2.size()));
        const size_t ne0 = sums.in_sum2.size() / sums.counts.size();
        std::vector<float> values(sums.in_sum2.size());
        for (size_t i = 0; i < values.size(); ++i) {
            float count = static_cast<float>(sums.counts[i / ne0]);
            float value = sums.in_sum2[i];
            if (count == 0.0f) value = count = 1.0f;  // a matrix without data: importance 1
            values[i] = (value / count) * static_cast<float>(ncall);
        }
        out.write(values.data(), values.size() * sizeof(float));
    }
    write_i32(out, static_cast<int32_t>(data.chunk_count));
    // llama-imatrix stores the latest dataset (the text it just read) after the chunk count.
    const std::string dataset = data.datasets.empty() ? std::string() : data.datasets.back();
    if (dataset.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
        fail("{}: dataset name too long", path);
    write_i32(out, static_cast<int32_t>(dataset.size()));
    out.write(dataset.data(), dataset.size());
    out.commit();
}

}  // namespace qf
