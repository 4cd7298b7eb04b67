#include "gguf/gguf_writer.h"

#include "common/error.h"
#include "gguf/gguf_format.h"

#include <limits>
#include <set>
#include <string_view>

namespace qf {
namespace {

// Everything the sizes and the writer need, computed once from the plan after checking
// that llama.cpp's reader would accept the result. `label` starts every error message.
struct Layout {
    uint32_t alignment = gguf::kDefaultAlignment;
    bool append_alignment_key = false;
    std::vector<uint64_t> nbytes;
    uint64_t data_offset = 0;
    uint64_t file_bytes = 0;
};

bool fits(const GgufValue& v) {
    switch (v.type) {
        case GgufValueType::U8: return v.u <= std::numeric_limits<uint8_t>::max();
        case GgufValueType::U16: return v.u <= std::numeric_limits<uint16_t>::max();
        case GgufValueType::U32: return v.u <= std::numeric_limits<uint32_t>::max();
        case GgufValueType::I8: return v.i >= std::numeric_limits<int8_t>::min() && v.i <= std::numeric_limits<int8_t>::max();
        case GgufValueType::I16:
            return v.i >= std::numeric_limits<int16_t>::min() && v.i <= std::numeric_limits<int16_t>::max();
        case GgufValueType::I32:
            return v.i >= std::numeric_limits<int32_t>::min() && v.i <= std::numeric_limits<int32_t>::max();
        case GgufValueType::BOOL: return v.u <= 1;
        default: return true;
    }
}

bool is_known_value_type(GgufValueType t) { return static_cast<uint32_t>(t) <= static_cast<uint32_t>(GgufValueType::F64); }

void check_scalar_or_string(std::string_view label, const std::string& key, const GgufValue& v) {
    if (!is_known_value_type(v.type))
        fail("{}: metadata key '{}' has invalid value type {}", label, key, static_cast<uint32_t>(v.type));
    if (v.type == GgufValueType::STRING && v.str.size() > gguf::kMaxStringLength)
        fail("{}: metadata key '{}' holds a string of {} bytes, more than the GGUF limit of 2^30", label, key,
             v.str.size());
    if (!fits(v))
        fail("{}: metadata key '{}' value {} does not fit type {}", label, key,
             v.type == GgufValueType::BOOL || v.type == GgufValueType::U8 || v.type == GgufValueType::U16 ||
                     v.type == GgufValueType::U32
                 ? std::to_string(v.u)
                 : std::to_string(v.i),
             gguf_value_type_name(v.type));
}

void check_value(std::string_view label, const std::string& key, const GgufValue& v) {
    if (v.type != GgufValueType::ARRAY) return check_scalar_or_string(label, key, v);
    if (v.elem_type == GgufValueType::ARRAY)
        fail("{}: metadata key '{}' is an array of arrays, which llama.cpp's reader rejects", label, key);
    if (!is_known_value_type(v.elem_type))
        fail("{}: metadata key '{}' has invalid array element type {}", label, key, static_cast<uint32_t>(v.elem_type));
    if (v.items.size() > gguf::kMaxArrayElements)
        fail("{}: metadata key '{}' array has {} elements, more than the GGUF limit of 2^30", label, key, v.items.size());
    for (size_t k = 0; k < v.items.size(); ++k) {
        const GgufValue& item = v.items[k];
        if (item.type == GgufValueType::ARRAY)
            fail("{}: metadata key '{}' item {} is an array: nested arrays are not allowed", label, key, k);
        if (item.type != v.elem_type)
            fail("{}: metadata key '{}' item {} has type {}, but the array holds {}", label, key, k,
                 gguf_value_type_name(item.type), gguf_value_type_name(v.elem_type));
        check_scalar_or_string(label, key, item);
    }
}

uint64_t tensor_bytes_checked(std::string_view label, const GgufTensorPlan& t) {
    if (t.shape.empty() || t.shape.size() > gguf::kMaxDims)
        fail("{}: tensor '{}' has {} dimensions, expected 1 to {}", label, t.name, t.shape.size(), gguf::kMaxDims);
    for (size_t d = 0; d < t.shape.size(); ++d)
        if (t.shape[d] < 0) fail("{}: tensor '{}' dimension {} is negative: {}", label, t.name, d, t.shape[d]);
    int64_t n_elements;
    if (!gguf::checked_element_count(t.shape, &n_elements))
        fail("{}: tensor '{}' has too many elements: the shape product overflows", label, t.name);
    const TypeTraits* traits = find_type(static_cast<uint32_t>(t.type));
    if (!traits) fail("{}: tensor '{}' has unknown ggml type id {}", label, t.name, static_cast<uint32_t>(t.type));
    if (t.shape[0] % traits->block_elems != 0)
        fail("{}: tensor '{}' of type {} has rows of {} elements, not a multiple of the block size {}", label, t.name,
             traits->name, t.shape[0], traits->block_elems);
    uint64_t nbytes;
    if (!gguf::checked_tensor_nbytes(*traits, t.shape, &nbytes))
        fail("{}: tensor '{}' byte size overflows", label, t.name);
    return nbytes;
}

Layout plan_layout(const GgufMetadata& md, const std::vector<GgufTensorPlan>& tensors, uint32_t alignment,
                   std::string_view label) {
    Layout layout;
    if (!gguf::is_power_of_two(alignment)) fail("{}: alignment {} is not a power of two", label, alignment);
    if (const GgufValue* a = md.find(gguf::kAlignmentKey)) {
        if (a->type != GgufValueType::U32)
            fail("{}: metadata key '{}' must be of type u32 but is {}", label, gguf::kAlignmentKey,
                 gguf_value_type_name(a->type));
        if (!gguf::is_power_of_two(a->u) || a->u > std::numeric_limits<uint32_t>::max())
            fail("{}: metadata key '{}' is {}, not a power of two", label, gguf::kAlignmentKey, a->u);
        if (alignment != gguf::kDefaultAlignment && alignment != a->u)
            fail("{}: alignment {} requested but metadata key '{}' says {}", label, alignment, gguf::kAlignmentKey,
                 a->u);
        layout.alignment = static_cast<uint32_t>(a->u);
    } else {
        layout.alignment = alignment;
        layout.append_alignment_key = alignment != gguf::kDefaultAlignment;
    }

    uint64_t meta = gguf::kHeaderBytes;
    std::set<std::string_view> keys;
    for (const GgufKV& kv : md.entries()) {
        if (kv.key.empty()) fail("{}: metadata has an empty key, which llama.cpp's reader rejects", label);
        if (kv.key.size() > gguf::kMaxStringLength) fail("{}: metadata key of {} bytes is too long", label, kv.key.size());
        if (!keys.insert(kv.key).second) fail("{}: duplicate metadata key '{}'", label, kv.key);
        check_value(label, kv.key, kv.value);
        meta += 8 + kv.key.size() + 4 + kv.value.encoded_size();
    }
    if (layout.append_alignment_key) meta += 8 + std::string_view(gguf::kAlignmentKey).size() + 4 + 4;

    std::set<std::string_view> names;
    for (const GgufTensorPlan& t : tensors) {
        if (t.name.size() > gguf::kMaxTensorName)
            fail("{}: tensor name '{}' is {} bytes long, at most {} allowed", label, t.name, t.name.size(),
                 gguf::kMaxTensorName);
        if (!names.insert(t.name).second) fail("{}: duplicate tensor name '{}'", label, t.name);
        layout.nbytes.push_back(tensor_bytes_checked(label, t));
        meta += 8 + t.name.size() + 4 + 8 * t.shape.size() + 4 + 8;
    }

    if (!gguf::checked_pad(meta, layout.alignment, &layout.data_offset))
        fail("{}: metadata size overflows", label);
    layout.file_bytes = layout.data_offset;
    for (size_t k = 0; k < tensors.size(); ++k) {
        uint64_t padded = 0;
        if (!gguf::checked_pad(layout.nbytes[k], layout.alignment, &padded) ||
            add_overflows(layout.file_bytes, padded, &layout.file_bytes))
            fail("{}: total file size overflows at tensor '{}'", label, tensors[k].name);
    }
    return layout;
}

template <class T>
void put(OutputFile& out, T v) {
    out.write(&v, sizeof v);
}

void put_string(OutputFile& out, std::string_view s) {
    put<uint64_t>(out, s.size());
    out.write(s.data(), s.size());
}

void put_scalar(OutputFile& out, const GgufValue& v) {
    switch (v.type) {
        case GgufValueType::U8: put(out, static_cast<uint8_t>(v.u)); break;
        case GgufValueType::I8: put(out, static_cast<int8_t>(v.i)); break;
        case GgufValueType::U16: put(out, static_cast<uint16_t>(v.u)); break;
        case GgufValueType::I16: put(out, static_cast<int16_t>(v.i)); break;
        case GgufValueType::U32: put(out, static_cast<uint32_t>(v.u)); break;
        case GgufValueType::I32: put(out, static_cast<int32_t>(v.i)); break;
        case GgufValueType::F32: put(out, static_cast<float>(v.f)); break;
        case GgufValueType::BOOL: put(out, static_cast<uint8_t>(v.u != 0)); break;
        case GgufValueType::U64: put(out, v.u); break;
        case GgufValueType::I64: put(out, v.i); break;
        case GgufValueType::F64: put(out, v.f); break;
        case GgufValueType::STRING: put_string(out, v.str); break;
        case GgufValueType::ARRAY: break;  // checked before: never an array here
    }
}

void put_value(OutputFile& out, const GgufValue& v) {
    put(out, static_cast<uint32_t>(v.type));
    if (v.type != GgufValueType::ARRAY) return put_scalar(out, v);
    put(out, static_cast<uint32_t>(v.elem_type));
    put<uint64_t>(out, v.items.size());
    for (const GgufValue& item : v.items) put_scalar(out, item);
}

}  // namespace

uint64_t gguf_metadata_bytes(const GgufMetadata& md, const std::vector<GgufTensorPlan>& tensors, uint32_t alignment) {
    return plan_layout(md, tensors, alignment, "GGUF plan").data_offset;
}

uint64_t gguf_file_bytes(const GgufMetadata& md, const std::vector<GgufTensorPlan>& tensors, uint32_t alignment) {
    return plan_layout(md, tensors, alignment, "GGUF plan").file_bytes;
}

uint64_t gguf_tensor_bytes(const GgufTensorPlan& tensor) { return tensor_bytes_checked("GGUF plan", tensor); }

GgufWriter::GgufWriter(OutputFile& out, const GgufMetadata& md, std::vector<GgufTensorPlan> tensors,
                       uint32_t alignment)
    : out_(out), tensors_(std::move(tensors)) {
    Layout layout = plan_layout(md, tensors_, alignment, out_.path());
    nbytes_ = std::move(layout.nbytes);
    alignment_ = layout.alignment;
    data_offset_ = layout.data_offset;
    file_bytes_ = layout.file_bytes;
    start_ = out_.bytes_written();

    put(out_, gguf::kMagic);
    put(out_, gguf::kVersion);
    put<uint64_t>(out_, tensors_.size());
    put<uint64_t>(out_, md.size() + (layout.append_alignment_key ? 1 : 0));
    for (const GgufKV& kv : md.entries()) {
        put_string(out_, kv.key);
        put_value(out_, kv.value);
    }
    if (layout.append_alignment_key) {
        put_string(out_, gguf::kAlignmentKey);
        put_value(out_, GgufValue::u32(alignment_));
    }
    uint64_t offset = 0;
    for (size_t k = 0; k < tensors_.size(); ++k) {
        const GgufTensorPlan& t = tensors_[k];
        put_string(out_, t.name);
        put<uint32_t>(out_, static_cast<uint32_t>(t.shape.size()));
        for (int64_t ne : t.shape) put(out_, ne);
        put(out_, static_cast<uint32_t>(t.type));
        put(out_, offset);
        uint64_t padded = 0;
        gguf::checked_pad(nbytes_[k], alignment_, &padded);  // checked in plan_layout
        offset += padded;
    }
    const uint64_t written = out_.bytes_written() - start_;
    if (written > data_offset_)
        fail("{}: internal: metadata took {} bytes, planned {}", out_.path(), written, data_offset_);
    out_.write_zeros(static_cast<size_t>(data_offset_ - written));
    complete_finished_tensors();
}

uint64_t GgufWriter::current_tensor_bytes_missing() const {
    return current_ < tensors_.size() ? nbytes_[current_] - received_ : 0;
}

void GgufWriter::complete_finished_tensors() {
    while (current_ < tensors_.size() && received_ == nbytes_[current_]) {
        uint64_t padded = 0;
        gguf::checked_pad(nbytes_[current_], alignment_, &padded);
        out_.write_zeros(static_cast<size_t>(padded - nbytes_[current_]));
        ++current_;
        received_ = 0;
    }
}

void GgufWriter::write_tensor_data(std::span<const std::byte> bytes) {
    if (bytes.empty()) return;
    if (current_ >= tensors_.size())
        fail("{}: {} tensor bytes arrived after all {} tensors were complete", out_.path(), bytes.size(),
             tensors_.size());
    const uint64_t missing = nbytes_[current_] - received_;
    if (bytes.size() > missing)
        fail("{}: tensor '{}' got {} bytes but only {} of its {} bytes were still missing", out_.path(),
             tensors_[current_].name, bytes.size(), missing, nbytes_[current_]);
    out_.write(bytes);
    received_ += bytes.size();
    complete_finished_tensors();
}

void GgufWriter::finish() {
    if (current_ < tensors_.size())
        fail("{}: tensor '{}' got {} of its {} bytes ({} of {} tensors complete)", out_.path(),
             tensors_[current_].name, received_, nbytes_[current_], current_, tensors_.size());
    const uint64_t written = out_.bytes_written() - start_;
    if (written != file_bytes_)
        fail("{}: internal: wrote {} bytes, planned {}", out_.path(), written, file_bytes_);
}

}  // namespace qf
