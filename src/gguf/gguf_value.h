// A GGUF metadata value: a scalar, a string, or a flat array of scalars/strings.
// Value types are kept exactly (llama.cpp checks them: a u32 key written as i32 fails).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace qf {

enum class GgufValueType : uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};

const char* gguf_value_type_name(GgufValueType type);
// Bytes of one scalar element of this type in a file (0 for STRING/ARRAY: variable).
uint64_t gguf_scalar_size(GgufValueType type);

struct GgufValue {
    GgufValueType type = GgufValueType::U32;
    GgufValueType elem_type = GgufValueType::U8;  // for ARRAY only
    // Scalars: integers in u (unsigned) or i (signed), floats in f, BOOL in u (0/1).
    uint64_t u = 0;
    int64_t i = 0;
    double f = 0.0;
    std::string str;              // STRING
    std::vector<GgufValue> items;  // ARRAY elements (scalars or strings; ggml rejects nested arrays)

    // Constructors for the types llama.cpp expects.
    static GgufValue u8(uint8_t v) { return scalar_u(GgufValueType::U8, v); }
    static GgufValue u16(uint16_t v) { return scalar_u(GgufValueType::U16, v); }
    static GgufValue u32(uint32_t v) { return scalar_u(GgufValueType::U32, v); }
    static GgufValue u64(uint64_t v) { return scalar_u(GgufValueType::U64, v); }
    static GgufValue i8(int8_t v) { return scalar_i(GgufValueType::I8, v); }
    static GgufValue i16(int16_t v) { return scalar_i(GgufValueType::I16, v); }
    static GgufValue i32(int32_t v) { return scalar_i(GgufValueType::I32, v); }
    static GgufValue i64(int64_t v) { return scalar_i(GgufValueType::I64, v); }
    static GgufValue f32(float v) { GgufValue x; x.type = GgufValueType::F32; x.f = v; return x; }
    static GgufValue f64(double v) { GgufValue x; x.type = GgufValueType::F64; x.f = v; return x; }
    static GgufValue boolean(bool v) { return scalar_u(GgufValueType::BOOL, v ? 1 : 0); }
    static GgufValue string(std::string v) { GgufValue x; x.type = GgufValueType::STRING; x.str = std::move(v); return x; }
    static GgufValue array(GgufValueType elem, std::vector<GgufValue> items) {
        GgufValue x; x.type = GgufValueType::ARRAY; x.elem_type = elem; x.items = std::move(items); return x;
    }
    static GgufValue string_array(const std::vector<std::string>& v) {
        std::vector<GgufValue> it; it.reserve(v.size());
        for (const auto& s : v) it.push_back(string(s));
        return array(GgufValueType::STRING, std::move(it));
    }
    static GgufValue f32_array(const std::vector<float>& v) {
        std::vector<GgufValue> it; it.reserve(v.size());
        for (float s : v) it.push_back(f32(s));
        return array(GgufValueType::F32, std::move(it));
    }
    static GgufValue i32_array(const std::vector<int32_t>& v) {
        std::vector<GgufValue> it; it.reserve(v.size());
        for (int32_t s : v) it.push_back(i32(s));
        return array(GgufValueType::I32, std::move(it));
    }

    bool is_integer() const;
    // Checked conversions (throw qf::Error on a type that does not hold the value).
    uint64_t as_u64() const;
    int64_t as_i64() const;
    double as_f64() const;
    bool as_bool() const;
    const std::string& as_string() const;

    // Exact number of bytes this value occupies in a GGUF file (type field excluded).
    uint64_t encoded_size() const;
    // Human-readable, shortened for long arrays (used by `qforge inspect`).
    std::string to_display_string(size_t max_items = 8) const;

    bool operator==(const GgufValue& other) const;

private:
    static GgufValue scalar_u(GgufValueType t, uint64_t v) { GgufValue x; x.type = t; x.u = v; return x; }
    static GgufValue scalar_i(GgufValueType t, int64_t v) { GgufValue x; x.type = t; x.i = v; return x; }
};

struct GgufKV {
    std::string key;
    GgufValue value;
};

// Ordered metadata with lookup by key (order matters for byte-identical output).
class GgufMetadata {
public:
    void set(std::string key, GgufValue value);  // replaces in place if present, else appends
    const GgufValue* find(std::string_view key) const;
    const GgufValue& get(std::string_view key) const;  // throws qf::Error naming the missing key
    bool erase(std::string_view key);
    const std::vector<GgufKV>& entries() const { return entries_; }
    size_t size() const { return entries_.size(); }

private:
    std::vector<GgufKV> entries_;
    // key -> position in entries_, so lookups stay O(log n) even for hostile files with
    // millions of keys (the reader checks every key for duplicates).
    std::map<std::string, size_t, std::less<>> index_;
};

}  // namespace qf
