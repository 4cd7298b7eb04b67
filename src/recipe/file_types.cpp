// The llama_ftype table: one row per file type qforge can write.
#include "common/error.h"
#include "common/strings.h"
#include "recipe/recipe.h"

#include <array>

namespace qf {
namespace {

using F = FileType;
using T = GgmlType;

// Names as llama-quantize's QUANT_OPTIONS spells them, descriptions as llama_ftype_name,
// default types as llama_ftype_get_default_type (llama.cpp de3ff815).
constexpr std::array kFileTypes = {
    FileTypeInfo{F::ALL_F32, "F32", "all F32", T::F32},
    FileTypeInfo{F::MOSTLY_F16, "F16", "F16", T::F16},
    FileTypeInfo{F::MOSTLY_BF16, "BF16", "BF16", T::BF16},
    FileTypeInfo{F::Q8_0, "Q8_0", "Q8_0", T::Q8_0},
    FileTypeInfo{F::Q6_K, "Q6_K", "Q6_K", T::Q6_K},
    FileTypeInfo{F::Q5_K_S, "Q5_K_S", "Q5_K - Small", T::Q5_K},
    FileTypeInfo{F::Q5_K_M, "Q5_K_M", "Q5_K - Medium", T::Q5_K},
    FileTypeInfo{F::Q4_K_S, "Q4_K_S", "Q4_K - Small", T::Q4_K},
    FileTypeInfo{F::Q4_K_M, "Q4_K_M", "Q4_K - Medium", T::Q4_K},
    FileTypeInfo{F::Q3_K_S, "Q3_K_S", "Q3_K - Small", T::Q3_K},
    FileTypeInfo{F::Q3_K_M, "Q3_K_M", "Q3_K - Medium", T::Q3_K},
    FileTypeInfo{F::Q3_K_L, "Q3_K_L", "Q3_K - Large", T::Q3_K},
    FileTypeInfo{F::Q2_K, "Q2_K", "Q2_K - Medium", T::Q2_K},
    FileTypeInfo{F::Q2_K_S, "Q2_K_S", "Q2_K - Small", T::Q2_K},
    FileTypeInfo{F::Q4_0, "Q4_0", "Q4_0", T::Q4_0},
    FileTypeInfo{F::Q4_1, "Q4_1", "Q4_1", T::Q4_1},
    FileTypeInfo{F::Q5_0, "Q5_0", "Q5_0", T::Q5_0},
    FileTypeInfo{F::Q5_1, "Q5_1", "Q5_1", T::Q5_1},
    FileTypeInfo{F::IQ4_NL, "IQ4_NL", "IQ4_NL - 4.5 bpw", T::IQ4_NL},
    FileTypeInfo{F::IQ4_XS, "IQ4_XS", "IQ4_XS - 4.25 bpw", T::IQ4_XS},
};

struct Alias {
    const char* name;
    F id;
};
// llama-quantize's short names for the medium mixes.
constexpr std::array kAliases = {Alias{"Q3_K", F::Q3_K_M}, Alias{"Q4_K", F::Q4_K_M}, Alias{"Q5_K", F::Q5_K_M}};

}  // namespace

std::span<const FileTypeInfo> all_file_types() { return kFileTypes; }

const FileTypeInfo* find_file_type(uint32_t id) {
    for (const FileTypeInfo& info : kFileTypes)
        if (static_cast<uint32_t>(info.id) == id) return &info;
    return nullptr;
}

const FileTypeInfo* find_file_type(std::string_view name) {
    for (const FileTypeInfo& info : kFileTypes)
        if (iequals(info.name, name)) return &info;
    for (const Alias& alias : kAliases)
        if (iequals(alias.name, name)) return find_file_type(static_cast<uint32_t>(alias.id));
    // A plain ftype id, as llama-quantize also accepts ("15" = Q4_K_M).
    if (name.empty() || name.size() > 4) return nullptr;
    uint32_t id = 0;
    for (char ch : name) {
        if (ch < '0' || ch > '9') return nullptr;
        id = id * 10 + static_cast<uint32_t>(ch - '0');
    }
    return find_file_type(id);
}

const FileTypeInfo& file_type_info(FileType id) {
    const FileTypeInfo* info = find_file_type(static_cast<uint32_t>(id));
    if (!info) fail("file type {}: not supported by qforge", static_cast<uint32_t>(id));
    return *info;
}

bool is_70b_model(std::string_view arch, uint32_t n_layer, uint32_t n_head, uint32_t n_head_kv, uint32_t n_expert) {
    if (arch == "llama" || arch == "llama-embed") return n_expert != 8 && n_layer == 80 && n_head != n_head_kv;
    if (arch == "qwen2" || arch == "deci" || arch == "olmo") return n_layer == 80;
    if (arch == "jais2") return n_layer == 68;
    return false;
}

}  // namespace qf
