// The llama-family forward pass (llama, mistral, qwen2, qwen3 as qforge converts them) over a
// GGUF file of any type qforge writes. Weights stay in their stored type in the mapped file
// and are dequantized panel by panel inside the matrix products; activations are f32.
// Used by `qforge eval` (perplexity, KL divergence) and `qforge imatrix`.
#pragma once
#include "gguf/gguf_reader.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace qf {

struct ModelHparams {
    std::string arch;  // general.architecture
    int64_t n_vocab = 0, n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_ff = 0;
    int64_t n_ctx_train = 0;
    float rms_eps = 1e-5f;
    float rope_theta = 10000.0f;
};

// Sees the input of every 2-D weight product before it is multiplied: `x` holds n_tokens
// rows of the weight's row length (ne[0]) floats, row-major. Called from one thread at a time.
// weight_name is the GGUF tensor multiplied: "blk.N.attn_q.weight" ... "blk.N.ffn_down.weight",
// then "output.weight", or "token_embd.weight" for a tied output (as llama.cpp names the
// product's weight). q, k and v each get their own call with the same input. `x` is the f32
// activation, before the rounding to the weight's dot-product type described below.
using ActivationObserver =
    std::function<void(std::string_view weight_name, std::span<const float> x, int64_t n_tokens)>;

// Arithmetic: weights are dequantized to f32 panel by panel; products accumulate in f32.
// Like llama.cpp's CPU backend, the input of each weight product is first rounded to the
// weight type's dot-product type (f16 for F16, bf16 for BF16, 8-bit blocks Q8_0 for the legacy
// quants, Q8_K for k- and i-quants), and K/V are rounded to f16 (llama.cpp's default KV cache),
// so perplexity and KL divergence are the figures llama.cpp users get.
class Transformer {
public:
    // Maps the file and checks every tensor the architecture needs (names, shapes, types);
    // throws qf::Error "PATH: problem" for unsupported architectures or tensor types.
    explicit Transformer(const std::string& gguf_path);
    ~Transformer();
    Transformer(Transformer&&) noexcept;
    Transformer& operator=(Transformer&&) noexcept;

    const ModelHparams& hparams() const;
    const GgufFile& file() const;

    // One causal sequence starting at position 0: logits.size() must be
    // tokens.size() * n_vocab (row r = the distribution after tokens[0..r]).
    // Threads: OpenMP (omp_set_num_threads / OMP_NUM_THREADS).
    void forward(std::span<const int32_t> tokens, std::span<float> logits,
                 const ActivationObserver* observer = nullptr) const;
    // The same pass with logits for positions [first_output, tokens.size()) only:
    // logits.size() must be (tokens.size() - first_output) * n_vocab. Perplexity scores the
    // second half of each chunk, so the output product runs over half the rows (llama.cpp's
    // perplexity tool asks for those rows only, too).
    void forward_from(std::span<const int32_t> tokens, size_t first_output, std::span<float> logits,
                      const ActivationObserver* observer = nullptr) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace qf
