#include "recipe/mix_rules.h"

#include <array>
#include <fmt/format.h>

namespace qf {
namespace {

using C = TensorCategory;
using F = FileType;
using T = GgmlType;

// ---------------------------------------------------------------- conditions
// Integer divisions below are llama.cpp's (n_layer/8 rounds down).

int n_gqa(const RecipeModel& m) { return m.n_head_kv == 0 ? 0 : static_cast<int>(m.n_head / m.n_head_kv); }
bool is_falcon(const RuleContext& c) { return c.model.arch == "falcon"; }
bool in_first_eighth(const RuleContext& c) { return c.layer < c.n_layer / 8; }
bool in_first_sixteenth(const RuleContext& c) { return c.layer < c.n_layer / 16; }
bool layer_more_bits(const RuleContext& c) { return use_more_bits(c.layer, c.n_layer); }
bool eight_experts(const RuleContext& c) { return c.model.n_expert == 8; }

constexpr Condition kAlways{"always", [](const RuleContext&) { return true; }};
constexpr Condition kOutputTypeGiven{"--output-tensor-type given",
                                     [](const RuleContext& c) { return c.options.output_tensor_type.has_value(); }};
constexpr Condition kTokenEmbdTypeGiven{"--token-embedding-type given",
                                        [](const RuleContext& c) { return c.options.token_embedding_type.has_value(); }};
constexpr Condition kFalconOrColumnsOffDefaultBlock{
    "arch == falcon || ne0 % block(default) != 0",
    [](const RuleContext& c) { return is_falcon(c) || c.n_columns % traits(c.default_type).block_elems != 0; }};
constexpr Condition kDefaultNotQ8_0{"default != q8_0", [](const RuleContext& c) { return c.default_type != T::Q8_0; }};

constexpr Condition kGqaAtLeast4{"n_gqa >= 4", [](const RuleContext& c) { return n_gqa(c.model) >= 4; }};
constexpr Condition kFirstTwoAttnV{"i_attention_wv < 2", [](const RuleContext& c) { return c.i_attention_wv < 2; }};
constexpr Condition kFirstFourAttnV{"i_attention_wv < 4", [](const RuleContext& c) { return c.i_attention_wv < 4; }};
constexpr Condition kAttnVMoreBits{"use_more_bits(i_attention_wv, n_attention_wv)", [](const RuleContext& c) {
                                       return use_more_bits(c.i_attention_wv, c.n_attention_wv);
                                   }};
constexpr Condition kIs70B{"model is 70B", [](const RuleContext& c) { return c.model.is_70b; }};
constexpr Condition kEightExperts{"n_expert == 8", eight_experts};

constexpr Condition kFirstEighth{"layer < n_layer/8", in_first_eighth};
constexpr Condition kFirstSixteenth{"layer < n_layer/16", in_first_sixteenth};
constexpr Condition kMoreBits{"use_more_bits(layer, n_layer)", layer_more_bits};
constexpr Condition kNotFalconOrMoreBits{"arch != falcon || use_more_bits(layer, n_layer)",
                                         [](const RuleContext& c) { return !is_falcon(c) || layer_more_bits(c); }};
constexpr Condition kFalcon{"arch == falcon", is_falcon};
constexpr Condition kNotFalcon{"arch != falcon", [](const RuleContext& c) { return !is_falcon(c); }};
constexpr Condition kFalconFirstSixteenth{"arch == falcon && layer < n_layer/16",
                                          [](const RuleContext& c) { return is_falcon(c) && in_first_sixteenth(c); }};
constexpr Condition kFalconMoreBits{"arch == falcon && use_more_bits(layer, n_layer)",
                                    [](const RuleContext& c) { return is_falcon(c) && layer_more_bits(c); }};
constexpr Condition kNotFalconFirstEighth{"arch != falcon && layer < n_layer/8",
                                          [](const RuleContext& c) { return !is_falcon(c) && in_first_eighth(c); }};
constexpr Condition kFirstEighthNoImatrix{"layer < n_layer/8 && no imatrix",
                                          [](const RuleContext& c) { return in_first_eighth(c) && !c.options.has_imatrix; }};
constexpr Condition kFirstEighthWithImatrix{"layer < n_layer/8 && imatrix",
                                            [](const RuleContext& c) { return in_first_eighth(c) && c.options.has_imatrix; }};
constexpr Condition kEightExpertsNotFalcon{"n_expert == 8 && arch != falcon",
                                           [](const RuleContext& c) { return eight_experts(c) && !is_falcon(c); }};

// ---------------------------------------------------------------- the table

constexpr FileTypeSet any_ftype = FileTypeSet::all();
constexpr FileTypeSet ft(std::initializer_list<F> l) { return FileTypeSet::of(l); }
constexpr CategorySet cat(std::initializer_list<C> l) { return CategorySet::of(l); }
constexpr CategorySet kAttnVLike = cat({C::AttnV, C::AttnQkv, C::AttnKvB});

constexpr MixRule type_rule(const char* id, FileTypeSet f, CategorySet c, Condition w, T t) {
    return {id, f, c, w, Pick::Type, t};
}
constexpr MixRule default_rule(const char* id, FileTypeSet f, CategorySet c, Condition w) {
    return {id, f, c, w, Pick::Default, T::F32};
}

// Rows in llama_tensor_get_type_impl's order. Rows for file types qforge does not offer yet
// (MXFP4_MOE, IQ1_*, IQ2_*, IQ3_*, TQ*) are marked where they belong.
const std::array kRules = {
    // A. The output matrix (and the token embedding when it is tied to it).
    MixRule{"A1", any_ftype, cat({C::Output}), kOutputTypeGiven, Pick::OutputTensorOption, T::F32},
    // A2: MXFP4_MOE -> q8_0.
    type_rule("A3", any_ftype, cat({C::Output}), kFalconOrColumnsOffDefaultBlock, T::Q8_0),
    // A4: IQ2_XXS, IQ2_XS, IQ3_XXS, IQ1_S, IQ2_S, IQ2_M, IQ1_M -> q5_K.
    type_rule("A5", any_ftype, cat({C::Output}), kDefaultNotQ8_0, T::Q6_K),
    default_rule("A6", any_ftype, cat({C::Output}), kAlways),

    // B: MXFP4_MOE, every other tensor: stacked experts -> mxfp4, the rest q8_0.

    // C. Token embedding (untied).
    MixRule{"C1", any_ftype, cat({C::TokenEmbd}), kTokenEmbdTypeGiven, Pick::TokenEmbeddingOption, T::F32},
    // C2-C5: IQ2_XXS/IQ2_XS/IQ1_S/IQ1_M -> q2_K; IQ2_S/IQ2_M/IQ3_XXS -> iq3_s; TQ1_0/TQ2_0 -> q4_K.
    default_rule("C6", any_ftype, cat({C::TokenEmbd}), kAlways),

    // D: IQ2_XXS, IQ2_XS, IQ1_S, IQ2_S, IQ2_M, IQ1_M: their own rows for every category
    //    (attn_v, attn_k with 8 experts, ffn_down of the first eighth, attn_output).

    // E. attn_v and the fused tensors holding it; then the adjustments below.
    type_rule("E1", ft({F::Q2_K}), kAttnVLike, kGqaAtLeast4, T::Q4_K),
    type_rule("E2", ft({F::Q2_K}), kAttnVLike, kAlways, T::Q3_K),
    type_rule("E3", ft({F::Q2_K_S}), kAttnVLike, kGqaAtLeast4, T::Q4_K),
    // IQ3_XXS, IQ3_XS/IQ3_S with n_gqa >= 4, IQ3_M.
    type_rule("E4", ft({F::Q3_K_M}), kAttnVLike, kFirstTwoAttnV, T::Q5_K),
    type_rule("E5", ft({F::Q3_K_M}), kAttnVLike, kAlways, T::Q4_K),
    type_rule("E6", ft({F::Q3_K_L}), kAttnVLike, kAlways, T::Q5_K),
    type_rule("E7", ft({F::IQ4_NL, F::IQ4_XS}), kAttnVLike, kGqaAtLeast4, T::Q5_K),
    type_rule("E8", ft({F::Q4_K_M, F::Q5_K_M}), kAttnVLike, kAttnVMoreBits, T::Q6_K),
    type_rule("E9", ft({F::Q4_K_S}), kAttnVLike, kFirstFourAttnV, T::Q5_K),
    default_rule("E10", any_ftype, kAttnVLike, kAlways),

    // F. attn_k.
    type_rule("F1", any_ftype, cat({C::AttnK}), kEightExperts, T::Q8_0),
    // F2, F3: IQ3_XS -> iq3_xxs, IQ3_XXS -> iq2_s.

    // G. attn_q: only IQ3_XS -> iq3_xxs, IQ3_XXS -> iq2_s.

    // H. ffn_down (layer: running counter, or the block number in MoE models).
    type_rule("H1", ft({F::Q2_K}), cat({C::FfnDown}), kAlways, T::Q3_K),
    type_rule("H2", ft({F::Q2_K_S}), cat({C::FfnDown}), kFirstEighth, T::Q4_K),
    default_rule("H3", ft({F::Q2_K_S}), cat({C::FfnDown}), kAlways),
    // IQ3_XXS without imatrix: layer < n_layer/8 ? q4_K : q3_K.
    type_rule("H4", ft({F::Q3_K_M}), cat({C::FfnDown}), kFirstSixteenth, T::Q5_K),
    type_rule("H5", ft({F::Q3_K_M}), cat({C::FfnDown}), kNotFalconOrMoreBits, T::Q4_K),
    type_rule("H6", ft({F::Q3_K_M}), cat({C::FfnDown}), kAlways, T::Q3_K),
    // IQ3_M with layer < n_layer/8 or (8 experts and use_more_bits) -> q4_K.
    type_rule("H7", ft({F::Q3_K_L}), cat({C::FfnDown}), kFalcon, T::Q4_K),
    type_rule("H8", ft({F::Q3_K_L}), cat({C::FfnDown}), kAlways, T::Q5_K),
    type_rule("H9", ft({F::Q4_K_M}), cat({C::FfnDown}), kFalconFirstSixteenth, T::Q6_K),
    type_rule("H10", ft({F::Q4_K_M}), cat({C::FfnDown}), kFalconMoreBits, T::Q5_K),
    type_rule("H11", ft({F::Q4_K_M}), cat({C::FfnDown}), kFalcon, T::Q4_K),
    type_rule("H12", ft({F::Q4_K_M}), cat({C::FfnDown}), kMoreBits, T::Q6_K),
    default_rule("H13", ft({F::Q4_K_M}), cat({C::FfnDown}), kAlways),
    type_rule("H14", ft({F::IQ4_NL, F::IQ4_XS}), cat({C::FfnDown}), kFirstEighthNoImatrix, T::Q5_K),
    type_rule("H15", ft({F::Q5_K_M}), cat({C::FfnDown}), kMoreBits, T::Q6_K),
    type_rule("H16", ft({F::Q4_K_S}), cat({C::FfnDown}), kNotFalconFirstEighth, T::Q5_K),
    // Guards the first ffn_down layers of Q4_0/Q5_0, only with an imatrix so that the
    // no-imatrix result stays what it always was (llama.cpp's comment).
    type_rule("H17", ft({F::Q4_0}), cat({C::FfnDown}), kFirstEighthWithImatrix, T::Q4_1),
    type_rule("H18", ft({F::Q5_0}), cat({C::FfnDown}), kFirstEighthWithImatrix, T::Q5_1),

    // I. attn_output. IQ3_XS, IQ3_XXS, IQ3_S, IQ3_M join I1; IQ3_XXS -> iq3_s and
    //    IQ3_M -> q4_K join I3-I5.
    type_rule("I1", ft({F::Q2_K, F::Q3_K_S, F::Q3_K_M, F::IQ4_NL, F::Q4_K_S, F::Q4_K_M, F::IQ4_XS}),
              cat({C::AttnOutput}), kEightExpertsNotFalcon, T::Q5_K),
    default_rule("I2", any_ftype, cat({C::AttnOutput}), kEightExpertsNotFalcon),
    type_rule("I3", ft({F::Q2_K}), cat({C::AttnOutput}), kNotFalcon, T::Q3_K),
    type_rule("I4", ft({F::Q3_K_M}), cat({C::AttnOutput}), kNotFalcon, T::Q4_K),
    type_rule("I5", ft({F::Q3_K_L}), cat({C::AttnOutput}), kNotFalcon, T::Q5_K),
    type_rule("I6", ft({F::Q3_K_L}), cat({C::AttnOutput}), kFalcon, T::Q4_K),

    // J: llama.cpp's separate attn_qkv branch is unreachable (attn_qkv is attn_v-like, E).
    // K. ffn_gate / ffn_up: only IQ3_XS, middle layers -> iq3_xxs.

    // L. Everything else keeps the default type.
    default_rule("L1", any_ftype, CategorySet::all(), kAlways),
};

const std::array kAdjustments = {
    // 70B: attn_v is 8x smaller than attn_q (8 heads share it), so more bits cost little.
    MixAdjustment{"E11", 'E', GgmlTypeSet::of({T::Q3_K, T::Q4_K}), kIs70B, T::Q5_K},
    // 8 experts: bumping attn_v to q8_0 costs about 128 MB (llama.cpp's comment).
    MixAdjustment{"E12", 'E', GgmlTypeSet::all(), kEightExperts, T::Q8_0},
};

struct ShapeFallback {
    T from, to;
};
// Toward a 32-element block of at least as many bits (the 2026 llama.cpp targets: q2_K and
// q3_K go to q4_0, not iq4_nl as in older builds).
constexpr std::array kShapeFallbacks = {
    ShapeFallback{T::IQ1_S, T::IQ4_NL},  ShapeFallback{T::IQ1_M, T::IQ4_NL},  ShapeFallback{T::IQ2_XXS, T::IQ4_NL},
    ShapeFallback{T::IQ2_XS, T::IQ4_NL}, ShapeFallback{T::IQ2_S, T::IQ4_NL},  ShapeFallback{T::IQ3_XXS, T::IQ4_NL},
    ShapeFallback{T::IQ3_S, T::IQ4_NL},  ShapeFallback{T::IQ4_XS, T::IQ4_NL}, ShapeFallback{T::Q2_K, T::Q4_0},
    ShapeFallback{T::Q3_K, T::Q4_0},     ShapeFallback{T::TQ1_0, T::Q4_0},    ShapeFallback{T::TQ2_0, T::Q4_0},
    ShapeFallback{T::Q4_K, T::Q5_0},     ShapeFallback{T::Q5_K, T::Q5_1},     ShapeFallback{T::Q6_K, T::Q8_0},
};

std::string ftypes_text(FileTypeSet set) {
    if (set.is_all()) return "any";
    std::string out;
    for (const FileTypeInfo& info : all_file_types()) {
        if (!set.contains(info.id)) continue;
        if (!out.empty()) out += ' ';
        out += info.name;
    }
    return out;
}

std::string categories_text(CategorySet set) {
    if (set.is_all()) return "any";
    std::string out;
    for (uint32_t i = 0; i <= static_cast<uint32_t>(C::Other); ++i) {
        if (!set.contains(static_cast<C>(i))) continue;
        if (!out.empty()) out += '/';
        out += category_name(static_cast<C>(i));
    }
    return out;
}

}  // namespace

std::span<const MixRule> mix_rules() { return kRules; }
std::span<const MixAdjustment> mix_adjustments() { return kAdjustments; }

std::string describe(const MixRule& rule) {
    std::string result;
    switch (rule.pick) {
        case Pick::Type: result = std::string(type_name(rule.type)); break;
        case Pick::Default: result = "default"; break;
        case Pick::OutputTensorOption: result = "--output-tensor-type"; break;
        case Pick::TokenEmbeddingOption: result = "--token-embedding-type"; break;
    }
    std::string when = rule.when.holds == kAlways.holds ? "" : fmt::format(" {}", rule.when.text);
    return fmt::format("{} {} [{}]{} -> {}", rule.id, categories_text(rule.categories), ftypes_text(rule.ftypes), when,
                       result);
}

std::string describe(const MixAdjustment& a) {
    std::string from;
    if (a.from.is_all()) {
        from = "any";
    } else {
        for (const TypeTraits& t : all_types()) {
            if (!a.from.contains(t.id)) continue;
            if (!from.empty()) from += '/';
            from += t.name;
        }
    }
    return fmt::format("{} after {}: {} && type {} -> {}", a.id, a.after_branch, a.when.text, from, type_name(a.to));
}

std::optional<GgmlType> fallback_for(GgmlType chosen, int64_t n_columns) {
    const int64_t block = traits(chosen).block_elems;
    if (n_columns % block == 0) return chosen;
    std::optional<GgmlType> target;
    for (const ShapeFallback& f : kShapeFallbacks)
        if (f.from == chosen) target = f.to;
    // A 32-element type has no smaller block to drop to; the F16 check below takes it.
    if (!target && block <= 32) target = chosen;
    if (!target) return std::nullopt;
    if (n_columns % traits(*target).block_elems != 0) return GgmlType::F16;
    return target;
}

}  // namespace qf
