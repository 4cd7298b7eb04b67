#include "gguf/gguf_reader.h"

#include "common/error.h"
#include "gguf/gguf_format.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <numeric>

namespace qf {

int64_t GgufTensorInfo::n_elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

int64_t GgufTensorInfo::n_rows() const {
    int64_t n = 1;
    for (size_t k = 1; k < shape.size(); ++k) n *= shape[k];
    return n;
}

namespace {

// Metadata arrays are held as one GgufValue per element (~100 bytes each), so a file made
// of huge u8 arrays would cost ~100x its size in memory. Real files hold well under a
// few million elements (vocabularies, merges, scores); this cap (16.7M) refuses hostile ones.
constexpr uint64_t kMaxTotalArrayElements = uint64_t{1} << 24;

// Bounds-checked little-endian reads from the file bytes. Every failure names the file,
// what was being read and where.
class Cursor {
public:
    Cursor(std::span<const std::byte> bytes, const std::string& label) : bytes_(bytes), label_(label) {}

    uint64_t pos() const { return pos_; }
    uint64_t remaining() const { return bytes_.size() - pos_; }

    void need(uint64_t n, std::string_view what) const {
        if (n > remaining())
            fail("{}: truncated: {} needs {} bytes but only {} remain (at byte {})", label_, what, n, remaining(), pos_);
    }

    template <class T>
    T read(std::string_view what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }

    std::string read_string(std::string_view what) {
        const uint64_t at = pos_;
        const auto len = read<uint64_t>(what);
        if (len > gguf::kMaxStringLength)
            fail("{}: {} has length {}, more than the GGUF limit of 2^30 (at byte {})", label_, what, len, at);
        need(len, what);
        std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), static_cast<size_t>(len));
        pos_ += len;
        return s;
    }

private:
    std::span<const std::byte> bytes_;
    const std::string& label_;
    uint64_t pos_ = 0;
};

bool is_valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufValueType::F64); }

GgufValue read_scalar(Cursor& c, GgufValueType type, std::string_view what) {
    GgufValue v;
    v.type = type;
    switch (type) {
        case GgufValueType::U8: v.u = c.read<uint8_t>(what); break;
        case GgufValueType::I8: v.i = c.read<int8_t>(what); break;
        case GgufValueType::U16: v.u = c.read<uint16_t>(what); break;
        case GgufValueType::I16: v.i = c.read<int16_t>(what); break;
        case GgufValueType::U32: v.u = c.read<uint32_t>(what); break;
        case GgufValueType::I32: v.i = c.read<int32_t>(what); break;
        case GgufValueType::F32: v.f = c.read<float>(what); break;
        case GgufValueType::BOOL: v.u = c.read<uint8_t>(what) != 0 ? 1 : 0; break;  // ggml: any non-zero is true
        case GgufValueType::U64: v.u = c.read<uint64_t>(what); break;
        case GgufValueType::I64: v.i = c.read<int64_t>(what); break;
        case GgufValueType::F64: v.f = c.read<double>(what); break;
        case GgufValueType::STRING: v.str = c.read_string(what); break;
        case GgufValueType::ARRAY: break;  // callers never pass ARRAY
    }
    return v;
}

std::string printable_magic(std::span<const std::byte> b) {
    std::string s;
    for (size_t k = 0; k < 4 && k < b.size(); ++k) {
        const auto ch = static_cast<unsigned char>(b[k]);
        s += std::isprint(ch) ? static_cast<char>(ch) : '?';
    }
    return s;
}

}  // namespace

GgufFile::GgufFile(const std::string& path) : path_(path), mapped_(path) {
    bytes_ = mapped_.bytes();
    parse();
}

GgufFile GgufFile::from_bytes(std::span<const std::byte> bytes, std::string label) {
    GgufFile f;
    f.path_ = std::move(label);
    f.bytes_ = bytes;
    f.parse();
    return f;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const std::byte> GgufFile::tensor_data(const GgufTensorInfo& t) const {
    // Tensors of this file were checked at open; this guards against a foreign info.
    uint64_t start, end;
    if (add_overflows(data_offset_, t.offset, &start) || add_overflows(start, t.nbytes, &end) || end > bytes_.size())
        fail("{}: tensor '{}' data ({} bytes at offset {}) lies outside the file", path_, t.name, t.nbytes, t.offset);
    return bytes_.subspan(static_cast<size_t>(start), static_cast<size_t>(t.nbytes));
}

void GgufFile::parse() {
    const std::string& label = path_;
    Cursor c(bytes_, label);

    // --- header ---
    if (bytes_.size() < 4) fail("{}: not a GGUF file: only {} bytes long", label, bytes_.size());
    if (c.read<uint32_t>("magic") != gguf::kMagic)
        fail("{}: not a GGUF file: magic is '{}', expected 'GGUF' (at byte 0)", label, printable_magic(bytes_));

    version_ = c.read<uint32_t>("version");
    if (version_ == 0) fail("{}: bad GGUF version 0 (at byte 4)", label);
    if ((version_ & 0xFFFFu) == 0)
        fail("{}: GGUF version {:#x} is implausible: wrong endianness (big-endian file?) (at byte 4)", label, version_);
    if (version_ == 1) fail("{}: GGUF version 1 is no longer supported (at byte 4)", label);
    if (version_ > gguf::kVersion)
        fail("{}: GGUF version {} is newer than the supported version {} (at byte 4)", label, version_, gguf::kVersion);

    const auto n_tensors = c.read<uint64_t>("tensor count");
    const auto n_kv = c.read<uint64_t>("key-value count");
    // Plausibility before anything is allocated: every KV needs at least 13 bytes
    // (key length 8 + type 4 + a 1-byte value), every tensor info at least 24.
    {
        uint64_t kv_min, ti_min, total;
        if (mul_overflows(n_kv, 13, &kv_min) || kv_min > c.remaining())
            fail("{}: key-value count {} cannot fit in the remaining {} bytes (at byte 16)", label, n_kv, c.remaining());
        if (mul_overflows(n_tensors, 24, &ti_min) || ti_min > c.remaining())
            fail("{}: tensor count {} cannot fit in the remaining {} bytes (at byte 8)", label, n_tensors,
                 c.remaining());
        if (add_overflows(kv_min, ti_min, &total) || total > c.remaining())
            fail("{}: {} key-value pairs and {} tensors cannot fit in the remaining {} bytes (at byte 8)", label, n_kv,
                 n_tensors, c.remaining());
    }

    // --- key-value pairs ---
    uint64_t total_array_elements = 0;
    for (uint64_t k = 0; k < n_kv; ++k) {
        const uint64_t key_at = c.pos();
        std::string key = c.read_string(fmt::format("key {}", k));
        if (key.empty()) fail("{}: key {} is empty (at byte {})", label, k, key_at);
        if (metadata_.find(key)) fail("{}: duplicate key '{}' (at byte {})", label, key, key_at);

        const std::string what = fmt::format("value of key '{}'", key);
        const uint64_t type_at = c.pos();
        const auto type_id = c.read<uint32_t>(what);
        if (!is_valid_value_type(type_id))
            fail("{}: key '{}' has invalid value type {} (at byte {})", label, key, type_id, type_at);
        const auto type = static_cast<GgufValueType>(type_id);

        GgufValue value;
        if (type != GgufValueType::ARRAY) {
            value = read_scalar(c, type, what);
        } else {
            const uint64_t elem_at = c.pos();
            const auto elem_id = c.read<uint32_t>(what);
            if (elem_id == static_cast<uint32_t>(GgufValueType::ARRAY))
                fail("{}: key '{}' is an array of arrays, which GGUF readers reject (at byte {})", label, key, elem_at);
            if (!is_valid_value_type(elem_id))
                fail("{}: key '{}' has invalid array element type {} (at byte {})", label, key, elem_id, elem_at);
            const auto elem = static_cast<GgufValueType>(elem_id);
            const uint64_t count_at = c.pos();
            const auto count = c.read<uint64_t>(what);
            if (count > gguf::kMaxArrayElements)
                fail("{}: key '{}' array has {} elements, more than the GGUF limit of 2^30 (at byte {})", label, key,
                     count, count_at);
            // Strings need at least their 8-byte length each.
            const uint64_t min_elem = elem == GgufValueType::STRING ? 8 : gguf_scalar_size(elem);
            if (count * min_elem > c.remaining())  // count <= 2^30, min_elem <= 8: no overflow
                fail("{}: key '{}' array of {} {} cannot fit in the remaining {} bytes (at byte {})", label, key, count,
                     gguf_value_type_name(elem), c.remaining(), count_at);
            total_array_elements += count;
            if (total_array_elements > kMaxTotalArrayElements)
                fail("{}: metadata arrays hold more than {} elements in total (at byte {})", label,
                     kMaxTotalArrayElements, count_at);
            value.type = GgufValueType::ARRAY;
            value.elem_type = elem;
            value.items.reserve(static_cast<size_t>(count));
            for (uint64_t j = 0; j < count; ++j) value.items.push_back(read_scalar(c, elem, what));
        }
        metadata_.set(std::move(key), std::move(value));
    }

    // --- alignment ---
    alignment_ = gguf::kDefaultAlignment;
    if (const GgufValue* a = metadata_.find(gguf::kAlignmentKey)) {
        if (a->type != GgufValueType::U32)
            fail("{}: key '{}' must be of type u32 but is {}", label, gguf::kAlignmentKey,
                 gguf_value_type_name(a->type));
        if (!gguf::is_power_of_two(a->u))
            fail("{}: key '{}' is {}, not a power of two", label, gguf::kAlignmentKey, a->u);
        alignment_ = static_cast<uint32_t>(a->u);
    }

    // --- tensor infos ---
    std::vector<uint64_t> info_at;  // where each record starts, for messages
    for (uint64_t k = 0; k < n_tensors; ++k) {
        GgufTensorInfo t;
        info_at.push_back(c.pos());
        t.name = c.read_string(fmt::format("name of tensor {}", k));
        if (t.name.size() > gguf::kMaxTensorName)
            fail("{}: tensor {} name '{}...' is {} bytes long, at most {} allowed (at byte {})", label, k,
                 t.name.substr(0, 32), t.name.size(), gguf::kMaxTensorName, info_at.back());
        if (tensor_index_.count(t.name))
            fail("{}: duplicate tensor name '{}' (at byte {})", label, t.name, info_at.back());

        const std::string what = fmt::format("info of tensor '{}'", t.name);
        const uint64_t dims_at = c.pos();
        const auto n_dims = c.read<uint32_t>(what);
        if (n_dims < 1 || n_dims > gguf::kMaxDims)
            fail("{}: tensor '{}' has {} dimensions, expected 1 to {} (at byte {})", label, t.name, n_dims,
                 gguf::kMaxDims, dims_at);
        for (uint32_t d = 0; d < n_dims; ++d) {
            const uint64_t ne_at = c.pos();
            const auto ne = c.read<int64_t>(what);
            if (ne < 0) fail("{}: tensor '{}' dimension {} is negative: {} (at byte {})", label, t.name, d, ne, ne_at);
            t.shape.push_back(ne);
        }
        int64_t n_elements;
        if (!gguf::checked_element_count(t.shape, &n_elements))
            fail("{}: tensor '{}' has too many elements: the shape product overflows a signed 64-bit count (at byte {})",
                 label, t.name, dims_at);

        const uint64_t type_at = c.pos();
        const auto type_id = c.read<uint32_t>(what);
        const TypeTraits* traits = find_type(type_id);
        if (!traits || traits->block_elems <= 0 || traits->block_bytes <= 0)
            fail("{}: tensor '{}' has unknown ggml type id {} (at byte {})", label, t.name, type_id, type_at);
        t.type = traits->id;
        if (t.shape[0] % traits->block_elems != 0)
            fail("{}: tensor '{}' of type {} has rows of {} elements, not a multiple of the block size {} (at byte {})",
                 label, t.name, traits->name, t.shape[0], traits->block_elems, type_at);
        if (!gguf::checked_tensor_nbytes(*traits, t.shape, &t.nbytes))
            fail("{}: tensor '{}' byte size overflows (at byte {})", label, t.name, type_at);

        t.offset = c.read<uint64_t>(what);
        tensor_index_.emplace(t.name, tensors_.size());
        tensors_.push_back(std::move(t));
    }
    metadata_end_ = c.pos();

    // --- data section ---
    uint64_t padded_end;
    if (!gguf::checked_pad(metadata_end_, alignment_, &padded_end))
        fail("{}: data section offset overflows (at byte {})", label, metadata_end_);
    if (padded_end <= bytes_.size()) {
        data_offset_ = padded_end;
    } else if (tensors_.empty()) {
        data_offset_ = metadata_end_;  // ggml pads only when there are tensors
    } else {
        fail("{}: truncated: the data section should start at byte {} but the file has {} bytes", label, padded_end,
             bytes_.size());
    }

    uint64_t expected_offset = 0;  // llama.cpp's layout: running sum of padded sizes
    for (size_t k = 0; k < tensors_.size(); ++k) {
        const GgufTensorInfo& t = tensors_[k];
        const uint64_t record_end = (k + 1 < info_at.size() ? info_at[k + 1] : metadata_end_);
        const uint64_t offset_at = record_end - 8;
        if (t.offset % alignment_ != 0)
            fail("{}: tensor '{}' offset {} is not a multiple of the alignment {} (at byte {})", label, t.name,
                 t.offset, alignment_, offset_at);
        uint64_t start, end;
        if (add_overflows(data_offset_, t.offset, &start) || add_overflows(start, t.nbytes, &end) ||
            end > bytes_.size())
            fail("{}: tensor '{}' data ({} bytes at offset {}) extends past the end of the file ({} bytes) (at byte {})",
                 label, t.name, t.nbytes, t.offset, bytes_.size(), offset_at);
        if (t.offset != expected_offset) llama_layout_ = false;
        uint64_t padded = 0;
        // Cannot overflow: nbytes <= file size, alignment <= 2^31.
        gguf::checked_pad(t.nbytes, alignment_, &padded);
        if (llama_layout_ && add_overflows(expected_offset, padded, &expected_offset)) llama_layout_ = false;
    }

    // Tensors must not share bytes. Sorting by offset makes overlap a neighbour check.
    std::vector<size_t> order(tensors_.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::erase_if(order, [&](size_t k) { return tensors_[k].nbytes == 0; });
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return tensors_[a].offset < tensors_[b].offset; });
    for (size_t k = 1; k < order.size(); ++k) {
        const GgufTensorInfo& prev = tensors_[order[k - 1]];
        const GgufTensorInfo& next = tensors_[order[k]];
        if (prev.offset + prev.nbytes > next.offset)  // both bounded by the file size: no overflow
            fail("{}: tensor '{}' (data offset {}, {} bytes) overlaps tensor '{}' (data offset {})", label, prev.name,
                 prev.offset, prev.nbytes, next.name, next.offset);
    }
}

}  // namespace qf
