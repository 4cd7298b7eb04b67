#include "quant/types.h"

#include "common/error.h"
#include "common/strings.h"
#include "quant/float_types.h"
#include "quant/iq4.h"
#include "quant/q2_k.h"
#include "quant/q3_k.h"
#include "quant/q4_0.h"
#include "quant/q4_1.h"
#include "quant/q4_k.h"
#include "quant/q5_0.h"
#include "quant/q5_1.h"
#include "quant/q5_k.h"
#include "quant/q6_k.h"
#include "quant/q8_0.h"

#include <array>

namespace qf {
namespace {

// One row per type: id, name, elements per block, bytes per block, kernels, importance, and
// the codes error feedback stores.
// Sizes from ggml-common.h (see ../shared/reference/llamacpp-quant-facts.md §2.1).
const std::array kTypes = {
    TypeTraits{GgmlType::F32, "f32", 1, 4, dequantize_row_f32, quantize_row_f32, false},
    TypeTraits{GgmlType::F16, "f16", 1, 2, dequantize_row_f16, quantize_row_f16, false},
    TypeTraits{GgmlType::Q4_0, "q4_0", 32, 18, dequantize_row_q4_0, quantize_row_q4_0, true, set_codes_q4_0, kCodeValues_q4_0},
    TypeTraits{GgmlType::Q4_1, "q4_1", 32, 20, dequantize_row_q4_1, quantize_row_q4_1, true, set_codes_q4_1, kCodeValues_q4_1},
    TypeTraits{GgmlType::Q5_0, "q5_0", 32, 22, dequantize_row_q5_0, quantize_row_q5_0, true, set_codes_q5_0, kCodeValues_q5_0},
    TypeTraits{GgmlType::Q5_1, "q5_1", 32, 24, dequantize_row_q5_1, quantize_row_q5_1, true, set_codes_q5_1, kCodeValues_q5_1},
    TypeTraits{GgmlType::Q8_0, "q8_0", 32, 34, dequantize_row_q8_0, quantize_row_q8_0, true, set_codes_q8_0, kCodeValues_q8_0},
    TypeTraits{GgmlType::Q8_1, "q8_1", 32, 36, nullptr, nullptr, false},
    TypeTraits{GgmlType::Q2_K, "q2_K", 256, 84, dequantize_row_q2_K, quantize_row_q2_K, true, set_codes_q2_K, kCodeValues_q2_K},
    TypeTraits{GgmlType::Q3_K, "q3_K", 256, 110, dequantize_row_q3_K, quantize_row_q3_K, true, set_codes_q3_K, kCodeValues_q3_K},
    TypeTraits{GgmlType::Q4_K, "q4_K", 256, 144, dequantize_row_q4_K, quantize_row_q4_K, true, set_codes_q4_K, kCodeValues_q4_K},
    TypeTraits{GgmlType::Q5_K, "q5_K", 256, 176, dequantize_row_q5_K, quantize_row_q5_K, true, set_codes_q5_K, kCodeValues_q5_K},
    TypeTraits{GgmlType::Q6_K, "q6_K", 256, 210, dequantize_row_q6_K, quantize_row_q6_K, true, set_codes_q6_K, kCodeValues_q6_K},
    TypeTraits{GgmlType::Q8_K, "q8_K", 256, 292, nullptr, nullptr, false},
    TypeTraits{GgmlType::IQ2_XXS, "iq2_xxs", 256, 66, nullptr, nullptr, true},
    TypeTraits{GgmlType::IQ2_XS, "iq2_xs", 256, 74, nullptr, nullptr, true},
    TypeTraits{GgmlType::IQ3_XXS, "iq3_xxs", 256, 98, nullptr, nullptr, true},
    TypeTraits{GgmlType::IQ1_S, "iq1_s", 256, 50, nullptr, nullptr, true},
    TypeTraits{GgmlType::IQ4_NL, "iq4_nl", 32, 18, dequantize_row_iq4_nl, quantize_row_iq4_nl, true, set_codes_iq4_nl, kCodeValues_iq4},
    TypeTraits{GgmlType::IQ3_S, "iq3_s", 256, 110, nullptr, nullptr, true},
    TypeTraits{GgmlType::IQ2_S, "iq2_s", 256, 82, nullptr, nullptr, true},
    TypeTraits{GgmlType::IQ4_XS, "iq4_xs", 256, 136, dequantize_row_iq4_xs, quantize_row_iq4_xs, true, set_codes_iq4_xs, kCodeValues_iq4},
    TypeTraits{GgmlType::I8, "i8", 1, 1, nullptr, nullptr, false},
    TypeTraits{GgmlType::I16, "i16", 1, 2, nullptr, nullptr, false},
    TypeTraits{GgmlType::I32, "i32", 1, 4, nullptr, nullptr, false},
    TypeTraits{GgmlType::I64, "i64", 1, 8, nullptr, nullptr, false},
    TypeTraits{GgmlType::F64, "f64", 1, 8, nullptr, nullptr, false},
    TypeTraits{GgmlType::IQ1_M, "iq1_m", 256, 56, nullptr, nullptr, true},
    TypeTraits{GgmlType::BF16, "bf16", 1, 2, dequantize_row_bf16, quantize_row_bf16, false},
    TypeTraits{GgmlType::TQ1_0, "tq1_0", 256, 54, nullptr, nullptr, false},
    TypeTraits{GgmlType::TQ2_0, "tq2_0", 256, 66, nullptr, nullptr, false},
    TypeTraits{GgmlType::MXFP4, "mxfp4", 32, 17, nullptr, nullptr, false},
};

}  // namespace

std::span<const TypeTraits> all_types() { return kTypes; }

const TypeTraits* find_type(uint32_t id) {
    for (const auto& t : kTypes)
        if (static_cast<uint32_t>(t.id) == id) return &t;
    return nullptr;
}

const TypeTraits& traits(GgmlType type) {
    const TypeTraits* t = find_type(static_cast<uint32_t>(type));
    if (!t) fail("internal: ggml type {} missing from the type table", static_cast<uint32_t>(type));
    return *t;
}

const TypeTraits* find_type_by_name(std::string_view name) {
    for (const auto& t : kTypes)
        if (iequals(t.name, name)) return &t;
    return nullptr;
}

std::optional<uint64_t> row_bytes(GgmlType type, int64_t n) {
    const TypeTraits& t = traits(type);
    if (n < 0 || n % t.block_elems != 0) return std::nullopt;
    return static_cast<uint64_t>(n / t.block_elems) * static_cast<uint64_t>(t.block_bytes);
}

}  // namespace qf
