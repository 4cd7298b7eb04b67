// The single table of ggml tensor types. The GGUF reader/writer, the recipes, the
// pipeline and the planner all read sizes and kernels from here. Adding a block format
// means one new file in src/quant/ plus one row in types.cpp.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace qf {

// Ids exactly as in GGUF / ggml (ggml.h enum ggml_type). Removed ids (4, 5, 31-33, 36-38) are absent.
enum class GgmlType : uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
    I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
    TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

// Dequantize n values (n a multiple of block_elems) from src to dst.
using DequantizeRowFn = void (*)(const void* src, float* dst, int64_t n);
// Quantize one row of n values (n a multiple of block_elems) into dst. importance is
// nullptr or n non-negative per-column weights (an importance matrix row); the block
// search minimises the importance-weighted squared error. Must be deterministic and
// produce the same bytes on every CPU path.
using QuantizeRowFn = void (*)(const float* src, void* dst, int64_t n, const float* importance);
// Stores one code per value (0 .. code_values.size()-1) into an encoded block, leaving its
// scales as they are. Calibrated quantization (error feedback) encodes a block, then re-rounds
// its values one at a time against that block's fixed scales and stores the codes with this.
using SetCodesFn = void (*)(void* block, const uint8_t* codes);

struct TypeTraits {
    GgmlType id;
    const char* name;      // ggml_type_name spelling, e.g. "q4_K"
    int64_t block_elems;   // elements per block (1 for plain types)
    int64_t block_bytes;   // bytes per block
    DequantizeRowFn dequantize;  // nullptr: reading only (sizes known, values not)
    QuantizeRowFn quantize;      // nullptr: cannot be written by qforge
    bool uses_importance;        // quantize() looks at importance weights
    // Error feedback (quant/error_feedback.h): code k of a block decodes, at each position, to
    // step * code_values[k] + offset, where step and offset come from the block's scales;
    // code_values ascend. nullptr/empty: the type cannot be written with error feedback.
    SetCodesFn set_codes = nullptr;
    std::span<const float> code_values = {};
};

std::span<const TypeTraits> all_types();
const TypeTraits* find_type(uint32_t id);              // nullptr for unknown or removed ids
const TypeTraits& traits(GgmlType type);
const TypeTraits* find_type_by_name(std::string_view name);  // case-insensitive ("Q4_K", "q4_k", "bf16")

inline std::string_view type_name(GgmlType t) { return traits(t).name; }
inline bool is_quantized(GgmlType t) {
    return t != GgmlType::F32 && t != GgmlType::F16 && t != GgmlType::BF16 && t != GgmlType::F64 &&
           t != GgmlType::I8 && t != GgmlType::I16 && t != GgmlType::I32 && t != GgmlType::I64;
}
// Bytes of a row of n elements; nullopt when n is not a multiple of the block size.
std::optional<uint64_t> row_bytes(GgmlType type, int64_t n);

}  // namespace qf
