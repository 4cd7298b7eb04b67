// The mixture rules of llama-quantize as a table (llama.cpp llama_tensor_get_type_impl).
//
// Each row says: for these file types, this tensor category, when this named condition
// holds, the tensor gets this type. Rows are read top to bottom and the first match
// decides, which reproduces llama.cpp's if/else chain: rows keep its order, a ternary
// becomes two rows, and a row that "claims" a file type unconditionally stops the later
// rows of its category. The letters (A..L) are the branches of that function as described
// in llama.cpp-quant-facts §4.4, so a plan line can be checked against the source.
//
// After an attn_v row (branch E) has chosen, the adjustments run in order (70B bump,
// 8-expert bump). Then, outside this table, the shape fallback (fallback_for) applies.
//
// Deciding is pure: the counters the conditions read (i_attention_wv, the FFN layer) are
// passed in the context by decide_tensor_types, which advances them in llama.cpp's order.
#pragma once
#include "recipe/recipe.h"

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>

namespace qf {

// Everything a condition may look at, for one tensor.
struct RuleContext {
    const RecipeModel& model;
    const RecipeOptions& options;
    GgmlType default_type;  // the file type's default (llama_ftype_get_default_type)
    int64_t n_columns;      // ne[0]
    int layer;              // FFN tensors: layer index (dense: running counter; MoE: from the name)
    int n_layer;
    int i_attention_wv;     // attn_v-like tensors decided so far
    int n_attention_wv;     // attn_v-like tensors in the file
};

struct Condition {
    const char* text;  // shown in plans, e.g. "use_more_bits(layer, n_layer)"
    bool (*holds)(const RuleContext&);
};

// A set of small enum ids (< 64) as a bit mask, written like a list in the tables.
template <class Enum>
struct EnumSet {
    uint64_t bits = 0;
    static constexpr EnumSet all() { return EnumSet{~uint64_t{0}}; }
    static constexpr EnumSet of(std::initializer_list<Enum> items) {
        EnumSet s;
        for (Enum e : items) s.bits |= uint64_t{1} << static_cast<uint32_t>(e);
        return s;
    }
    constexpr bool contains(Enum e) const {
        return static_cast<uint32_t>(e) < 64 && (bits >> static_cast<uint32_t>(e) & 1u);
    }
    constexpr bool is_all() const { return bits == ~uint64_t{0}; }
};
using FileTypeSet = EnumSet<FileType>;
using CategorySet = EnumSet<TensorCategory>;
using GgmlTypeSet = EnumSet<GgmlType>;

// What a row assigns.
enum class Pick : uint8_t {
    Type,                // the row's type
    Default,             // the file type's default type
    OutputTensorOption,  // --output-tensor-type (the row's condition checks it is set)
    TokenEmbeddingOption,  // --token-embedding-type (likewise)
};

struct MixRule {
    const char* id;          // branch letter + position, e.g. "E8"
    FileTypeSet ftypes;
    CategorySet categories;  // a tied token embedding is matched as Output (it is the output matrix)
    Condition when;
    Pick pick;
    GgmlType type;           // for Pick::Type
};

// Runs after a row of branch `after_branch` chose `from` (any type in the set).
struct MixAdjustment {
    const char* id;
    char after_branch;
    GgmlTypeSet from;
    Condition when;
    GgmlType to;
};

std::span<const MixRule> mix_rules();
std::span<const MixAdjustment> mix_adjustments();

// Human-readable row, e.g. "E8 attn_v [Q4_K_M Q5_K_M] use_more_bits(i_attention_wv, n_attention_wv) -> q6_K".
std::string describe(const MixRule& rule);
std::string describe(const MixAdjustment& adjustment);

// Shape fallback (llama.cpp tensor_type_fallback) for a type whose block does not divide the
// row length: a type of a smaller block, F16 when that does not fit either. nullopt when
// llama.cpp has no fallback and fails ("no tensor type fallback is defined for type").
std::optional<GgmlType> fallback_for(GgmlType chosen, int64_t n_columns);

}  // namespace qf
