// decide_tensor_types: llama-quantize's per-tensor pipeline (llama_tensor_get_type) around
// the rule table of mix_rules.cpp:
//   1. tensors llama.cpp never quantizes keep their type;
//   2. --token-embedding-type / --output-tensor-type name those two tensors directly;
//   3. F32/F16/BF16 file types give every other weight matrix the default type;
//   4. else a --tensor-type pattern, or (unless --pure) the mixture rules, choose;
//   5. the shape fallback replaces a type whose block does not divide the row length.
#include "recipe/recipe.h"

#include "common/error.h"
#include "recipe/mix_rules.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <climits>
#include <regex>

namespace qf {
namespace {

// sscanf(name, "blk.%d.", &n) == 1, as llama.cpp parses block numbers (its weight order
// and the MoE layer lookup): "blk." then an optionally signed decimal; what follows the
// digits is not checked.
std::optional<int> block_number(std::string_view name) {
    if (!name.starts_with("blk.")) return std::nullopt;
    size_t i = 4;
    while (i < name.size() && std::isspace(static_cast<unsigned char>(name[i]))) ++i;
    bool negative = false;
    if (i < name.size() && (name[i] == '+' || name[i] == '-')) negative = name[i++] == '-';
    if (i >= name.size() || !std::isdigit(static_cast<unsigned char>(name[i]))) return std::nullopt;
    int64_t value = 0;
    for (; i < name.size() && std::isdigit(static_cast<unsigned char>(name[i])); ++i)
        value = std::min<int64_t>(value * 10 + (name[i] - '0'), int64_t{INT_MAX} + 1);
    value = negative ? -value : value;
    return static_cast<int>(std::clamp<int64_t>(value, INT_MIN, INT_MAX));
}

bool contains(std::string_view name, std::string_view part) { return name.find(part) != std::string_view::npos; }

// ggml_n_dims: trailing dimensions of size 1 do not count, so [4096, 1] is 1-D.
int n_dims(const std::vector<int64_t>& shape) {
    int n = 1;
    for (size_t i = 1; i < shape.size(); ++i)
        if (shape[i] > 1) n = static_cast<int>(i) + 1;
    return n;
}

// Name parts llama.cpp never quantizes (tensor_allows_quantization), with the reason.
struct Exclusion {
    const char* part;
    const char* why;
};
constexpr std::array kExcludedParts = {
    Exclusion{"_norm.weight", "norm"},
    Exclusion{"ffn_gate_inp.weight", "MoE router"},
    Exclusion{"ffn_gate_tid2eid.weight", "token-to-expert table"},
    Exclusion{"altup", "small altup weight"},
    Exclusion{"laurel", "small laurel weight"},
    Exclusion{"per_layer_model_proj", "per-layer projection"},
    Exclusion{"ssm_conv1d", "small conv1d"},
    Exclusion{"shortconv.conv.weight", "small conv1d"},
    Exclusion{"indexer.k_proj.weight", "small indexer projection"},
    Exclusion{"indexer.q_proj.weight", "small indexer projection"},
    Exclusion{"time_mix_first.weight", "small RWKV weight"},
    Exclusion{"time_mix_w0.weight", "small RWKV weight"},
    Exclusion{"time_mix_w1.weight", "small RWKV weight"},
    Exclusion{"time_mix_w2.weight", "small RWKV weight"},
    Exclusion{"time_mix_v0.weight", "small RWKV weight"},
    Exclusion{"time_mix_v1.weight", "small RWKV weight"},
    Exclusion{"time_mix_v2.weight", "small RWKV weight"},
    Exclusion{"time_mix_a0.weight", "small RWKV weight"},
    Exclusion{"time_mix_a1.weight", "small RWKV weight"},
    Exclusion{"time_mix_a2.weight", "small RWKV weight"},
    Exclusion{"time_mix_g1.weight", "small RWKV weight"},
    Exclusion{"time_mix_g2.weight", "small RWKV weight"},
    Exclusion{"time_mix_decay_w1.weight", "small RWKV weight"},
    Exclusion{"time_mix_decay_w2.weight", "small RWKV weight"},
    Exclusion{"time_mix_lerp_fused.weight", "small RWKV weight"},
    Exclusion{"attn_rel_b.weight", "relative position bias"},
    Exclusion{".position_embd", "positional embedding"},
    Exclusion{"sam.pos_embd", "positional embedding"},
    Exclusion{"sam.neck.", "vision encoder part"},
    Exclusion{"sam.net_", "vision encoder part"},
    Exclusion{".rel_pos", "relative position table"},
    Exclusion{".patch_embd", "patch embedding"},
    Exclusion{".patch_merger", "patch merger"},
    Exclusion{"a.rvq.codebook", "audio codebook"},
    Exclusion{"mm.a.code_embd", "audio codebook"},
};

// nullptr when llama-quantize may change the tensor's type, else why not.
const char* why_kept(const RecipeTensor& tensor, const RecipeOptions& options) {
    if (n_dims(tensor.shape) < 2) return "1-D tensor";
    const std::string_view name = tensor.name;
    // llama.cpp tests name.rfind("weight") == name.size() - 6; for a 5-character name both
    // sides are npos, so such a name counts as a weight. Kept for exactness.
    if (!name.ends_with("weight") && name.size() != 5) return "not a weight";
    for (const Exclusion& e : kExcludedParts)
        if (contains(name, e.part)) return e.why;
    if (options.leave_output_tensor && name == "output.weight") return "--leave-output-tensor";
    // LLM_TN(arch)(POS_EMBD / TOKEN_TYPES, "weight") is the same for every architecture.
    if (name == "position_embd.weight") return "positional embedding";
    if (name == "token_types.weight") return "token type embedding";
    return nullptr;
}

struct CompiledOverride {
    std::regex regex;
    const TensorTypeOverride* source;
};

const CompiledOverride* first_override(const std::vector<CompiledOverride>& overrides, const std::string& name) {
    for (const CompiledOverride& o : overrides)
        if (std::regex_search(name, o.regex)) return &o;
    return nullptr;
}

// The counters llama.cpp keeps while deciding, advanced each time the mixture rules run
// for a tensor of their category.
struct Counters {
    int i_attention_wv = 0, i_ffn_down = 0, i_ffn_gate = 0, i_ffn_up = 0;
};

bool is_ffn(TensorCategory c) {
    return c == TensorCategory::FfnDown || c == TensorCategory::FfnGate || c == TensorCategory::FfnUp;
}

struct Decider {
    const RecipeModel& model;
    const RecipeOptions& options;
    const FileTypeInfo& ftype;
    std::vector<CompiledOverride> overrides;
    int n_attention_wv = 0;
    bool tied_embeddings = true;
    Counters counters;

    TensorDecision decide(const RecipeTensor& tensor) {
        const TensorCategory category = tensor_category(tensor.name);
        if (const char* why = why_kept(tensor, options))
            return {tensor.source_type, false, false, "", fmt::format("kept: {}", why)};

        // A forced type for these two is returned as is, without the shape fallback.
        if (options.token_embedding_type && category == TensorCategory::TokenEmbd) {
            // per_layer_token_embd is a large table of its own: a --tensor-type naming it wins.
            const bool named = tensor.name == "per_layer_token_embd.weight" && first_override(overrides, tensor.name);
            if (!named) return forced(tensor, *options.token_embedding_type, "--token-embedding-type");
        }
        if (options.output_tensor_type && category == TensorCategory::Output)
            return forced(tensor, *options.output_tensor_type, "--output-tensor-type");

        if (!is_quantized(ftype.default_type)) {
            return finish(tensor, ftype.default_type,
                          fmt::format("{} file type: default {}", ftype.name, type_name(ftype.default_type)));
        }

        if (const CompiledOverride* o = first_override(overrides, tensor.name)) {
            return finish(tensor, o->source->type,
                          fmt::format("--tensor-type {}={}", o->source->pattern, type_name(o->source->type)));
        }
        if (options.pure) {
            return finish(tensor, ftype.default_type, fmt::format("--pure: default {}", type_name(ftype.default_type)));
        }
        std::string rule;
        const GgmlType type = apply_mix_rules(tensor, category, rule);
        return finish(tensor, type, rule);
    }

    TensorDecision forced(const RecipeTensor& tensor, GgmlType type, const char* option) {
        const int64_t columns = tensor.shape.empty() ? 1 : tensor.shape[0];
        if (type != tensor.source_type && columns % traits(type).block_elems != 0) {
            // llama-quantize does not fall back here; ggml would abort on the row size.
            fail("{}: {} {} needs a row length that is a multiple of {}, the tensor has {} columns", tensor.name, option,
                 type_name(type), traits(type).block_elems, columns);
        }
        return {type, type != tensor.source_type, false, "", fmt::format("{} {}", option, type_name(type))};
    }

    TensorDecision finish(const RecipeTensor& tensor, GgmlType chosen, std::string rule) {
        const int64_t columns = tensor.shape.empty() ? 1 : tensor.shape[0];
        const std::optional<GgmlType> type = fallback_for(chosen, columns);
        if (!type) {
            fail("{}: {} does not fit {} columns and llama.cpp defines no fallback for it", tensor.name,
                 type_name(chosen), columns);
        }
        TensorDecision d{*type, *type != tensor.source_type, *type != chosen, "", std::move(rule)};
        if (d.fallback) {
            const int64_t block = traits(chosen).block_elems;
            d.note = *type == GgmlType::F16 && block > 32
                         ? fmt::format("{} -> f16: {} columns not a multiple of {} nor of 32", type_name(chosen), columns,
                                       block)
                         : fmt::format("{} -> {}: {} columns not a multiple of {}", type_name(chosen), type_name(*type),
                                       columns, block);
        }
        return d;
    }

    GgmlType apply_mix_rules(const RecipeTensor& tensor, TensorCategory category, std::string& rule_text) {
        const int n_layer = static_cast<int>(model.n_layer);
        int layer = 0;
        if (is_ffn(category)) layer = ffn_layer(tensor, category, n_layer);
        const RuleContext context{model, options, ftype.default_type, tensor.shape.empty() ? 1 : tensor.shape[0],
                                  layer, n_layer, counters.i_attention_wv, n_attention_wv};

        // The token embedding doubles as the output matrix when there is no output.weight.
        const TensorCategory rule_category =
            tied_embeddings && category == TensorCategory::TokenEmbd ? TensorCategory::Output : category;

        const MixRule* match = nullptr;
        for (const MixRule& r : mix_rules()) {
            if (r.ftypes.contains(ftype.id) && r.categories.contains(rule_category) && r.when.holds(context)) {
                match = &r;
                break;
            }
        }
        if (!match) fail("internal: no mixture rule for {}", tensor.name);  // L1 matches everything

        GgmlType type = ftype.default_type;
        switch (match->pick) {
            case Pick::Type: type = match->type; break;
            case Pick::Default: break;
            case Pick::OutputTensorOption: type = *options.output_tensor_type; break;
            case Pick::TokenEmbeddingOption: type = *options.token_embedding_type; break;
        }
        rule_text = describe(*match);
        for (const MixAdjustment& a : mix_adjustments()) {
            if (a.after_branch == match->id[0] && a.from.contains(type) && a.when.holds(context)) {
                type = a.to;
                rule_text += fmt::format("; {}", describe(a));
            }
        }

        if (is_attn_v_like(category)) ++counters.i_attention_wv;
        if (category == TensorCategory::FfnDown) ++counters.i_ffn_down;
        if (category == TensorCategory::FfnGate) ++counters.i_ffn_gate;
        if (category == TensorCategory::FfnUp) ++counters.i_ffn_up;
        return type;
    }

    // Dense models: the running count of that FFN tensor kind. MoE models: the block number
    // in the name, because expert tensors need not come one per layer.
    int ffn_layer(const RecipeTensor& tensor, TensorCategory category, int n_layer) const {
        if (model.n_expert <= 1) {
            return category == TensorCategory::FfnDown   ? counters.i_ffn_down
                   : category == TensorCategory::FfnGate ? counters.i_ffn_gate
                                                         : counters.i_ffn_up;
        }
        const std::optional<int> block = block_number(tensor.name);
        if (!block) fail("{}: cannot determine the layer of this MoE tensor", tensor.name);
        if (*block < 0 || *block >= n_layer) fail("{}: layer {} outside [0, {})", tensor.name, *block, n_layer);
        return *block;
    }
};

}  // namespace

TensorCategory tensor_category(std::string_view name) {
    using C = TensorCategory;
    if (name == "output.weight") return C::Output;
    if (name == "token_embd.weight" || name == "per_layer_token_embd.weight") return C::TokenEmbd;
    if (contains(name, "attn_qkv.weight")) return C::AttnQkv;
    if (contains(name, "attn_kv_b.weight")) return C::AttnKvB;
    if (contains(name, "attn_v.weight")) return C::AttnV;
    if (contains(name, "attn_k.weight")) return C::AttnK;
    if (contains(name, "attn_q.weight")) return C::AttnQ;
    if (contains(name, "attn_output.weight")) return C::AttnOutput;
    if (contains(name, "ffn_up")) return C::FfnUp;
    if (contains(name, "ffn_gate")) return C::FfnGate;
    if (contains(name, "ffn_down")) return C::FfnDown;
    return C::Other;
}

std::string_view category_name(TensorCategory category) {
    static constexpr std::array kNames = {"token_embd", "output",  "attn_q",   "attn_k",   "attn_v",  "attn_qkv",
                                          "attn_kv_b",  "attn_output", "ffn_up", "ffn_gate", "ffn_down", "other"};
    return kNames.at(static_cast<size_t>(category));
}

bool tensor_allows_quantization(const RecipeTensor& tensor, const RecipeOptions& options) {
    return why_kept(tensor, options) == nullptr;
}

bool use_more_bits(int i_layer, int n_layers) {
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

bool tensor_requires_imatrix(std::string_view name, GgmlType type, FileType ftype) {
    if (tensor_category(name) == TensorCategory::TokenEmbd || name == "output.weight") return false;
    switch (type) {
        case GgmlType::IQ1_S:
        case GgmlType::IQ1_M:
        case GgmlType::IQ2_XXS:
        case GgmlType::IQ2_XS:
        case GgmlType::IQ2_S:
        case GgmlType::IQ3_XXS: return true;
        // The k-quants work without one, except q2_K tensors of a Q2_K_S file.
        case GgmlType::Q2_K: return ftype == FileType::Q2_K_S;
        default: return false;
    }
}

std::vector<size_t> llama_quantize_order(const std::vector<RecipeTensor>& tensors) {
    struct Key {
        int block;
        size_t index;
    };
    std::vector<Key> keys;
    keys.reserve(tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) keys.push_back({block_number(tensors[i].name).value_or(-1), i});
    std::sort(keys.begin(), keys.end(), [&](const Key& a, const Key& b) {
        if (a.block != b.block) return a.block < b.block;
        return tensors[a.index].name < tensors[b.index].name;
    });
    for (size_t i = 1; i < keys.size(); ++i) {
        if (tensors[keys[i].index].name == tensors[keys[i - 1].index].name)
            fail("{}: tensor name appears twice", tensors[keys[i].index].name);
    }
    std::vector<size_t> order;
    order.reserve(keys.size());
    for (const Key& k : keys) order.push_back(k.index);
    return order;
}

std::vector<TensorDecision> decide_tensor_types(const RecipeModel& model, const std::vector<RecipeTensor>& tensors,
                                                const RecipeOptions& options) {
    Decider decider{model, options, file_type_info(options.ftype), {}, 0, true, {}};
    for (const TensorTypeOverride& o : options.overrides) {
        try {
            decider.overrides.push_back({std::regex(o.pattern), &o});
        } catch (const std::regex_error& e) {
            fail("--tensor-type {}: not a valid regular expression ({})", o.pattern, e.what());
        }
    }
    for (const RecipeTensor& t : tensors) {
        if (is_attn_v_like(tensor_category(t.name))) ++decider.n_attention_wv;
        if (t.name == "output.weight") decider.tied_embeddings = false;
    }

    std::vector<TensorDecision> decisions(tensors.size());
    for (size_t index : llama_quantize_order(tensors)) decisions[index] = decider.decide(tensors[index]);
    return decisions;
}

}  // namespace qf
