// Maps the tensors of a Hugging Face llama-family checkpoint to the GGUF tensors that
// convert_hf_to_gguf.py writes: names, shapes (reversed), order, which stay F32, the q/k row
// permutation for the llama architecture, and the generated rope_freqs of Llama 3.1+.
#pragma once
#include "hf/model_config.h"
#include "hf/safetensors.h"

#include <cstdint>
#include <string>
#include <vector>

namespace qf {

struct MappedTensor {
    std::string gguf_name;               // e.g. "blk.3.attn_q.weight"
    const StTensor* source = nullptr;    // nullptr for generated tensors (rope_freqs)
    std::vector<float> generated;        // data of a generated tensor
    std::vector<int64_t> shape;          // GGUF ne, innermost first (reversed torch shape)
    enum class Permute { None, Q, K } permute = Permute::None;
    bool keep_f32 = false;               // 1-D tensors, *_norm.weight, biases: always F32 in the output

    int64_t n_elements() const;
    int64_t row_size() const { return shape.empty() ? 1 : shape[0]; }  // ne[0]
    int64_t n_rows() const;              // product of ne[1..]
};

// In the converter's order: generated tensors first, then the shards in file-name order and,
// within a shard, tensors sorted by name (its SafetensorsLocal sorts them). Drops
// rotary_emb.inv_freq, attention.bias and attention.masked_bias. Errors name the file and tensor:
// an unexpected name, a shape that disagrees with the config (expected and actual), a missing
// tensor. lm_head.weight absent: no output.weight (tied). lm_head present: output.weight is
// written even when tie_word_embeddings is true, as the converter does.
std::vector<MappedTensor> map_hf_tensors(const ModelConfig& cfg, const SafetensorsModel& st);

// Rows [first_row, first_row + n_rows) of the GGUF tensor (row = ne[0] values) as f32, with
// the q/k permutation applied (GGUF row h*D + 2j + t <- HF row h*D + t*D/2 + j, D = head_dim,
// heads = n_head for Q, n_head_kv for K; a 1-D bias is permuted element-wise the same way).
void read_rows_f32(const MappedTensor& t, const ModelConfig& cfg, int64_t first_row, int64_t n_rows, float* dst);

// rope_freqs.weight for rope_scaling type "llama3": head_dim/2 factors, computed in float32 step
// by step as LlamaModel.generate_extra_tensors does with torch float32 tensors.
std::vector<float> llama3_rope_factors(const ModelConfig& cfg);

// Sum of element counts: the converter's total parameter count (general.size_label).
uint64_t count_parameters(const std::vector<MappedTensor>& tensors);

}  // namespace qf
