// Recipes: which ggml type each tensor gets for a llama.cpp file type (Q4_K_M, ...).
//
// The answer must equal llama-quantize's (llama.cpp commit de3ff815, src/llama-quant.cpp)
// tensor for tensor, because `qforge quantize` writes byte-compatible files and
// `qforge plan` predicts their size. The per-ftype mixes are data (mix_rules.h: a table of
// rule rows read first-match, in llama.cpp's order), so the planner can show which row
// chose each type; this header is the entry point both of them call.
//
// Goals: exact agreement with llama-quantize for the file types listed in all_file_types(),
// including its tensor order, counters and shape fallbacks. Non-goals: --prune-layers,
// --keep-split, --only-copy (the pipeline's business), MXFP4_MOE and the IQ1/IQ2/IQ3/TQ
// file types (their rows slot into the same table once their kernels exist).
#pragma once
#include "quant/types.h"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qf {

// llama_ftype ids exactly as written to general.file_type (llama.h enum llama_ftype).
enum class FileType : uint32_t {
    ALL_F32 = 0, MOSTLY_F16 = 1, Q4_0 = 2, Q4_1 = 3, Q8_0 = 7, Q5_0 = 8, Q5_1 = 9,
    Q2_K = 10, Q3_K_S = 11, Q3_K_M = 12, Q3_K_L = 13, Q4_K_S = 14, Q4_K_M = 15,
    Q5_K_S = 16, Q5_K_M = 17, Q6_K = 18, Q2_K_S = 21, IQ4_NL = 25, IQ4_XS = 30, MOSTLY_BF16 = 32,
};

struct FileTypeInfo {
    FileType id;
    const char* name;         // as llama-quantize accepts it, e.g. "Q4_K_M"
    const char* description;  // llama_ftype_name text, e.g. "Q4_K - Medium"
    GgmlType default_type;    // llama_ftype_get_default_type
};

std::span<const FileTypeInfo> all_file_types();
// Case-insensitive; also takes llama-quantize's aliases ("Q4_K" = Q4_K_M, "Q3_K", "Q5_K")
// and a decimal ftype id ("15"). nullptr if unknown.
const FileTypeInfo* find_file_type(std::string_view name);
// Throws qf::Error for an id outside all_file_types().
const FileTypeInfo& file_type_info(FileType id);
// nullptr for an id outside all_file_types() (e.g. general.file_type read from a file).
const FileTypeInfo* find_file_type(uint32_t id);

struct RecipeModel {
    std::string arch;        // general.architecture ("llama", "qwen2", "falcon", ...)
    uint32_t n_layer = 0;    // {arch}.block_count
    uint32_t n_head = 0;     // {arch}.attention.head_count (layer 0)
    uint32_t n_head_kv = 0;  // {arch}.attention.head_count_kv (layer 0)
    uint32_t n_expert = 0;   // {arch}.expert_count, 0 for dense models
    bool is_70b = false;     // llama.cpp's LLM_TYPE_70B: see is_70b_model()
};

// llama.cpp's LLM_TYPE_70B as its model loader sets it (llama-quantize loads the model through
// it): llama / llama-embed with 80 layers, grouped-query attention and not 8 experts (the
// 8-expert llama is 8x7B/8x22B); qwen2, deci and olmo with 80 layers; jais2 with 68.
// (llama_quant_model_from_metadata, a test helper, only knows the llama case.)
bool is_70b_model(std::string_view arch, uint32_t n_layer, uint32_t n_head, uint32_t n_head_kv, uint32_t n_expert);

struct RecipeTensor {
    std::string name;            // GGUF name, e.g. "blk.3.attn_v.weight"
    std::vector<int64_t> shape;  // ne, innermost (columns) first
    GgmlType source_type;        // type in the input file
};

struct TensorTypeOverride {
    std::string pattern;  // ECMAScript std::regex, searched in the name; first match wins
    GgmlType type;
};

struct RecipeOptions {
    FileType ftype = FileType::Q4_K_M;
    bool has_imatrix = false;
    std::optional<GgmlType> output_tensor_type, token_embedding_type;
    std::vector<TensorTypeOverride> overrides;
    bool pure = false, leave_output_tensor = false;
};

struct TensorDecision {
    GgmlType type;
    bool quantized;     // false: copied unchanged (1-D, norms, not allowed, or already that type)
    bool fallback;      // the shape fallback replaced the chosen type
    std::string note;   // e.g. "q4_K -> q5_0: 896 columns not a multiple of 256"
    std::string rule;   // what chose the type, e.g. "E8 attn_v [Q4_K_M Q5_K_M] use_more_bits(i_attention_wv, n_attention_wv) -> q6_K"
};

// Broad tensor roles the rules compare (llama.cpp tensor_get_category), classified once by name.
enum class TensorCategory : uint8_t {
    TokenEmbd, Output, AttnQ, AttnK, AttnV, AttnQkv, AttnKvB, AttnOutput, FfnUp, FfnGate, FfnDown, Other,
};
TensorCategory tensor_category(std::string_view name);
std::string_view category_name(TensorCategory category);  // "attn_v", "ffn_down", ...
// attn_v and the fused tensors that contain it (attn_qkv, attn_kv_b) share the attn_v rules and counter.
inline bool is_attn_v_like(TensorCategory c) {
    return c == TensorCategory::AttnV || c == TensorCategory::AttnQkv || c == TensorCategory::AttnKvB;
}

// Whether llama-quantize may change this tensor's type at all (tensor_allows_quantization):
// 2-D or more, a ".weight"-like name, not a norm, router, positional table and so on.
bool tensor_allows_quantization(const RecipeTensor& tensor, const RecipeOptions& options);

// Layers that get more bits in the *_M mixes: the first and last eighth, and every third in between.
bool use_more_bits(int i_layer, int n_layers);

// llama-quantize refuses to run without an importance matrix when a quantized tensor gets one
// of these types (tensor_requires_imatrix): iq1_s, iq1_m, iq2_xxs, iq2_xs, iq2_s, iq3_xxs, and
// q2_K inside a Q2_K_S file; never for token_embd / output. Checked on the decided type.
bool tensor_requires_imatrix(std::string_view name, GgmlType type, FileType ftype);

// Tensors in the INPUT file's order; the result is index-aligned with the input. The
// counters (i_attention_wv, i_ffn_down, ...) advance in llama-quantize's iteration order
// (llama_quantize_order) regardless of the input order, exactly as llama.cpp does.
// Throws qf::Error for what makes llama-quantize fail (duplicate names, an MoE FFN tensor
// without a layer number, a forced type that does not fit the row length).
std::vector<TensorDecision> decide_tensor_types(const RecipeModel& model, const std::vector<RecipeTensor>& tensors,
                                                const RecipeOptions& options);

// The order llama-quantize writes tensors in (its loader's weights_map): tensors outside
// blocks first, then block 0, 1, 2, ... (numeric); by name inside each group. Returns
// indices into tensors. Throws qf::Error on duplicate names.
std::vector<size_t> llama_quantize_order(const std::vector<RecipeTensor>& tensors);

}  // namespace qf
