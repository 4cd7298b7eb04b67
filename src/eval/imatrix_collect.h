// Importance-matrix collection as llama.cpp's llama-imatrix does it (tools/imatrix/imatrix.cpp):
//
//  - What is collected: the input of every 2-D weight product whose weight name starts with
//    "blk." (plus "output.weight" with process_output; a tied output that multiplies by
//    token_embd.weight is never collected, as in llama.cpp, where the product's weight is
//    named token_embd.weight). Products over fewer than 16 rows are ignored (llama-imatrix's
//    `src1->ne[1] < 16` test). MoE expert weights (ffn_*_exps) are refused.
//  - Per weight: in_sum2[j] += x[r][j]^2 over every row r, accumulated in float in row order
//    (as llama-imatrix's loop does), and one count += rows.
//  - Chunks: the text is tokenized with BOS (add_special), n_chunk = n_tokens / n_ctx (at most
//    max_chunks), chunk i = tokens [i*n_ctx, (i+1)*n_ctx) with its first token replaced by BOS
//    when the vocabulary adds one, decoded from an empty cache with every token's activations
//    counted. The text must hold at least 2 * n_ctx tokens (llama-imatrix refuses fewer).
//  - chunk_count = max count / chunk_size (llama-imatrix's m_last_chunk), chunk_size = n_ctx.
#pragma once
#include "model/model.h"
#include "pipeline/imatrix_file.h"

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

namespace qf {

// llama-imatrix ignores weight products over fewer rows than this.
inline constexpr int64_t kImatrixMinRows = 16;

// Accumulates the squared activations seen through an ActivationObserver.
class ImatrixCollector {
public:
    explicit ImatrixCollector(bool process_output = false) : process_output_(process_output) {}

    // True for the weights llama-imatrix collects (by name only; see the header comment).
    bool collects(std::string_view weight_name) const;
    // Adds one product's input: n_tokens rows of x.size() / n_tokens floats. Ignores weights it
    // does not collect and products of fewer than kImatrixMinRows rows. Throws qf::Error for
    // an expert weight, a row length that changes between calls, or non-finite sums.
    void observe(std::string_view weight_name, std::span<const float> x, int64_t n_tokens);
    // An observer for Transformer::forward that calls observe(); *this must outlive it.
    ActivationObserver observer();

    // The sums so far, with chunk_count = max count / chunk_size.
    ImatrixData data(uint32_t chunk_size, std::vector<std::string> datasets) const;
    size_t n_weights() const { return sums_.size(); }

private:
    bool process_output_;
    std::map<std::string, ImatrixSums, std::less<>> sums_;
};

struct ImatrixRunOptions {
    int64_t n_ctx = 512;
    int64_t max_chunks = -1;  // <= 0: every whole chunk of the text
    bool process_output = false;
    std::string dataset;  // recorded in imatrix.datasets (llama-imatrix records the -f path)
    // Called after each chunk: chunks done, chunks in all, seconds so far, running perplexity.
    std::function<void(int64_t done, int64_t total, double seconds, double ppl)> on_chunk;
};

struct ImatrixRunResult {
    ImatrixData data;
    int64_t chunks = 0;
    int64_t tokens = 0;    // tokens decoded (chunks * n_ctx)
    double seconds = 0;    // time in the forward passes and the collection
    double ppl = 0;        // llama-imatrix's running perplexity (second half of each chunk)
};

// Runs the model over the chunks of `tokens` (already tokenized with BOS as llama.cpp does)
// and collects the importance matrix. bos < 0: the first token of a chunk is kept as is.
// Throws qf::Error "LABEL: problem" (LABEL = the model's path) when the text is too short.
ImatrixRunResult collect_imatrix(const Transformer& model, std::span<const int32_t> tokens, int32_t bos,
                                 const ImatrixRunOptions& options);

// Names an MoE expert weight (ffn_gate_exps, ffn_up_exps, ffn_down_exps, ...).
bool is_expert_weight(std::string_view weight_name);

}  // namespace qf
