// Perplexity with llama.cpp's procedure (tools/perplexity/perplexity.cpp, perplexity()):
//  - the text is tokenized with BOS (the caller does it: qf::Tokenizer::encode);
//  - n_chunk = n_tokens / n_ctx, at most max_chunks when that is > 0; the text must hold at
//    least 2 * n_ctx tokens (the tool refuses fewer);
//  - chunk i is tokens [i*n_ctx, (i+1)*n_ctx) with its first token replaced by BOS when the
//    vocabulary adds one, run as one causal sequence from position 0;
//  - positions j in [n_ctx/2, n_ctx-1) predict token j+1: nll = -log softmax(logits_j)[t],
//    the log-softmax in double;
//  - ppl = exp(mean nll), error = ppl * sqrt((mean(nll^2) - mean(nll)^2) / (count - 1)).
#pragma once
#include "model/model.h"

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace qf {

struct ChunkPlan {
    int n_ctx = 512;
    int max_chunks = -1;  // <= 0: every whole chunk of the text
};

// Number of chunks the procedure scores; throws qf::Error "LABEL: the text has N tokens;
// context C needs at least 2C" when the text is too short (label names the text file).
int count_chunks(size_t n_tokens, const ChunkPlan& plan, const std::string& label);

// The tokens of chunk i (first token := bos when bos >= 0).
std::vector<int32_t> chunk_tokens(std::span<const int32_t> tokens, int chunk, int n_ctx, int32_t bos);

// First scored position of a chunk (n_ctx/2); positions first..n_ctx-2 are scored.
inline int first_scored(int n_ctx) { return n_ctx / 2; }

// Negative log-likelihood of `target` under softmax(logits), in double.
double token_nll(std::span<const float> logits, int32_t target);

// Running sums of nll and nll^2 with llama.cpp's final formulas.
struct NllStats {
    double sum = 0, sum2 = 0;
    size_t count = 0;
    void add(double nll) {
        sum += nll;
        sum2 += nll * nll;
        ++count;
    }
    double mean() const { return count ? sum / static_cast<double>(count) : 0.0; }
    double ppl() const;
    // Standard error of the mean nll (0 when it cannot be computed); ppl * this is the ±.
    double mean_stderr() const;
};

struct PerplexityResult {
    double ppl = 0, ppl_stderr = 0;  // exp(mean nll) and its ± as llama.cpp prints it
    double nll = 0, nll_stderr = 0;
    int chunks = 0;
    size_t scored = 0;        // tokens scored
    size_t evaluated = 0;     // tokens run through the model (chunks * n_ctx)
    double seconds = 0;       // forward passes and scoring
    double tokens_per_second() const { return seconds > 0 ? static_cast<double>(evaluated) / seconds : 0.0; }
};

// Called after each chunk with the logits of its scored positions (targets.size() rows of
// n_vocab floats, row r predicting targets[r]).
using ChunkLogitsCallback = std::function<void(int chunk, std::span<const float> logits, std::span<const int32_t> targets)>;
// Called after each chunk with (chunks done, chunks total) for progress displays.
using ChunkProgress = std::function<void(int done, int total)>;

// `tokens`: the whole text with BOS; `bos`: the id that replaces each chunk's first token, or
// -1 when the vocabulary adds none. `label` names the text in errors.
PerplexityResult perplexity(const Transformer& model, std::span<const int32_t> tokens, int32_t bos, const ChunkPlan& plan,
                            const std::string& label, const ChunkLogitsCallback& on_chunk = {},
                            const ChunkProgress& progress = {});

}  // namespace qf
