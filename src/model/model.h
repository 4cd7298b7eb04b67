// The llama-family forward pass (llama, mistral, qwen2, qwen3 as qforge converts them) over a
// GGUF file of any type qforge writes. Weights stay in their stored type in the mapped file
// and are dequantized panel by panel inside the matrix products; activations are f32.
// Used by `qforge eval` (perplexity, KL divergence) and `qforge imatrix`.
#pragma once
#include "gguf/gguf_reader.h"
#include "quant/types.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
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

    // The stages forward() runs, in its order, for callers that do work between them (sequential
    // calibration runs each stage over all its text before the next). x, xn: T x n_embd rows of
    // one causal sequence starting at position 0; each stage rounds activations as forward() does.
    void embed(std::span<const int32_t> tokens, float* x) const;                       // token rows
    void attention_input(int64_t layer, const float* x, int64_t T, float* xn) const;  // RMSNorm
    // q/k/v products (+ biases, q/k norms), RoPE, f16 K/V, causal attention: att is T x (n_head*head_dim).
    void attention(int64_t layer, const float* xn, int64_t T, float* att, const ActivationObserver* observer) const;
    void attention_output(int64_t layer, const float* att, int64_t T, float* x,
                          const ActivationObserver* observer) const;  // x += W_o att
    void ffn_input(int64_t layer, const float* x, int64_t T, float* xn) const;  // RMSNorm
    // h = silu(W_gate xn) * (W_up xn): T x n_ff.
    void ffn_hidden(int64_t layer, const float* xn, int64_t T, float* h, const ActivationObserver* observer) const;
    // x += W_down h; throws naming the layer when x holds a NaN or Inf afterwards.
    void ffn_output(int64_t layer, const float* h, int64_t T, float* x, const ActivationObserver* observer) const;
    void output_input(const float* x, int64_t T, float* xn) const;  // final RMSNorm
    // logits = W_out xn (T x n_vocab); throws when a logit is not finite.
    void output_logits(const float* xn, int64_t T, float* logits, const ActivationObserver* observer) const;

    // Multiplies by `data` (a whole matrix of `type`, rows as the file stores them) instead of
    // the mapped weight `name` until cleared: calibration swaps in each matrix as it quantizes
    // it. The bytes must outlive the override. Throws for an unknown name, a type that cannot be
    // evaluated or a size that does not match the shape. A tied output follows token_embd.
    void override_weight(std::string_view name, GgmlType type, std::span<const std::byte> data);
    void clear_overrides();
    // The row length (ne[0]) and row count of a weight product's matrix; nullopt for other names.
    std::optional<std::pair<int64_t, int64_t>> weight_shape(std::string_view name) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace qf
