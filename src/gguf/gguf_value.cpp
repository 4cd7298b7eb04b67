#include "gguf/gguf_value.h"

#include "common/error.h"

#include <algorithm>
#include <bit>
#include <limits>

namespace qf {

const char* gguf_value_type_name(GgufValueType type) {
    // Spelled as ggml's gguf_type_name so messages match what llama.cpp prints.
    switch (type) {
        case GgufValueType::U8: return "u8";
        case GgufValueType::I8: return "i8";
        case GgufValueType::U16: return "u16";
        case GgufValueType::I16: return "i16";
        case GgufValueType::U32: return "u32";
        case GgufValueType::I32: return "i32";
        case GgufValueType::F32: return "f32";
        case GgufValueType::BOOL: return "bool";
        case GgufValueType::STRING: return "str";
        case GgufValueType::ARRAY: return "arr";
        case GgufValueType::U64: return "u64";
        case GgufValueType::I64: return "i64";
        case GgufValueType::F64: return "f64";
    }
    return "invalid";
}

uint64_t gguf_scalar_size(GgufValueType type) {
    switch (type) {
        case GgufValueType::U8:
        case GgufValueType::I8:
        case GgufValueType::BOOL: return 1;
        case GgufValueType::U16:
        case GgufValueType::I16: return 2;
        case GgufValueType::U32:
        case GgufValueType::I32:
        case GgufValueType::F32: return 4;
        case GgufValueType::U64:
        case GgufValueType::I64:
        case GgufValueType::F64: return 8;
        case GgufValueType::STRING:
        case GgufValueType::ARRAY: return 0;
    }
    return 0;
}

namespace {

bool is_unsigned_type(GgufValueType t) {
    return t == GgufValueType::U8 || t == GgufValueType::U16 || t == GgufValueType::U32 || t == GgufValueType::U64;
}
bool is_signed_type(GgufValueType t) {
    return t == GgufValueType::I8 || t == GgufValueType::I16 || t == GgufValueType::I32 || t == GgufValueType::I64;
}
bool is_float_type(GgufValueType t) { return t == GgufValueType::F32 || t == GgufValueType::F64; }

std::string quoted(const std::string& s, size_t max_chars) {
    std::string out = "\"";
    size_t shown = 0;
    for (char c : s) {
        if (shown++ == max_chars) {
            out += "...";
            break;
        }
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\t') {
            out += "\\t";
        } else if (u < 0x20 || u == 0x7F) {
            out += fmt::format("\\x{:02x}", u);
        } else {
            out += c;
        }
    }
    out += '"';
    return out;
}

std::string describe(const GgufValue& v) {
    if (v.type == GgufValueType::ARRAY) return fmt::format("array of {} {}", v.items.size(), gguf_value_type_name(v.elem_type));
    return fmt::format("{} {}", gguf_value_type_name(v.type), v.to_display_string(1));
}

}  // namespace

bool GgufValue::is_integer() const { return is_unsigned_type(type) || is_signed_type(type); }

uint64_t GgufValue::as_u64() const {
    if (is_unsigned_type(type)) return u;
    if (is_signed_type(type)) {
        if (i < 0) fail("GGUF value {} is negative, expected a non-negative integer", describe(*this));
        return static_cast<uint64_t>(i);
    }
    fail("GGUF value {} is not an integer", describe(*this));
}

int64_t GgufValue::as_i64() const {
    if (is_signed_type(type)) return i;
    if (is_unsigned_type(type)) {
        if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            fail("GGUF value {} does not fit a signed 64-bit integer", describe(*this));
        return static_cast<int64_t>(u);
    }
    fail("GGUF value {} is not an integer", describe(*this));
}

double GgufValue::as_f64() const {
    if (is_float_type(type)) return f;
    // Integers are accepted too: a number is a number when we only read it.
    if (is_unsigned_type(type)) return static_cast<double>(u);
    if (is_signed_type(type)) return static_cast<double>(i);
    fail("GGUF value {} is not a number", describe(*this));
}

bool GgufValue::as_bool() const {
    if (type != GgufValueType::BOOL) fail("GGUF value {} is not a bool", describe(*this));
    return u != 0;
}

const std::string& GgufValue::as_string() const {
    if (type != GgufValueType::STRING) fail("GGUF value {} is not a string", describe(*this));
    return str;
}

uint64_t GgufValue::encoded_size() const {
    switch (type) {
        case GgufValueType::STRING: return 8 + str.size();
        case GgufValueType::ARRAY: {
            uint64_t total = 4 + 8;  // element type, element count
            for (const auto& item : items) total += item.encoded_size();
            return total;
        }
        default: return gguf_scalar_size(type);
    }
}

std::string GgufValue::to_display_string(size_t max_items) const {
    switch (type) {
        case GgufValueType::U8:
        case GgufValueType::U16:
        case GgufValueType::U32:
        case GgufValueType::U64: return fmt::format("{}", u);
        case GgufValueType::I8:
        case GgufValueType::I16:
        case GgufValueType::I32:
        case GgufValueType::I64: return fmt::format("{}", i);
        case GgufValueType::F32: return fmt::format("{}", static_cast<float>(f));
        case GgufValueType::F64: return fmt::format("{}", f);
        case GgufValueType::BOOL: return u ? "true" : "false";
        case GgufValueType::STRING: return quoted(str, 200);
        case GgufValueType::ARRAY: {
            std::string out = "[";
            const size_t shown = std::min(items.size(), max_items);
            for (size_t k = 0; k < shown; ++k) {
                if (k) out += ", ";
                out += items[k].type == GgufValueType::STRING ? quoted(items[k].str, 40) : items[k].to_display_string(max_items);
            }
            if (shown < items.size()) out += shown ? ", ..." : "...";
            out += "]";
            if (shown < items.size()) out += fmt::format(" ({} items)", items.size());
            return out;
        }
    }
    return "<invalid>";
}

bool GgufValue::operator==(const GgufValue& other) const {
    if (type != other.type) return false;
    switch (type) {
        case GgufValueType::STRING: return str == other.str;
        case GgufValueType::ARRAY: return elem_type == other.elem_type && items == other.items;
        // Floats compare by the bits a file would hold, so NaNs round-trip as equal
        // and an F32 is judged at float precision.
        case GgufValueType::F32:
            return std::bit_cast<uint32_t>(static_cast<float>(f)) == std::bit_cast<uint32_t>(static_cast<float>(other.f));
        case GgufValueType::F64: return std::bit_cast<uint64_t>(f) == std::bit_cast<uint64_t>(other.f);
        case GgufValueType::BOOL: return (u != 0) == (other.u != 0);
        default: return is_signed_type(type) ? i == other.i : u == other.u;
    }
}

void GgufMetadata::set(std::string key, GgufValue value) {
    auto it = index_.find(key);
    if (it != index_.end()) {
        entries_[it->second].value = std::move(value);
        return;
    }
    index_.emplace(key, entries_.size());
    entries_.push_back(GgufKV{std::move(key), std::move(value)});
}

const GgufValue* GgufMetadata::find(std::string_view key) const {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &entries_[it->second].value;
}

const GgufValue& GgufMetadata::get(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) fail("metadata key '{}' is missing", key);
    return *v;
}

bool GgufMetadata::erase(std::string_view key) {
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    const size_t pos = it->second;
    index_.erase(it);
    entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(pos));
    for (auto& [k, idx] : index_)
        if (idx > pos) --idx;
    return true;
}

}  // namespace qf
