#include "eval/perplexity.h"

#include "common/error.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>

namespace qf {

int count_chunks(size_t n_tokens, const ChunkPlan& plan, const std::string& label) {
    if (plan.n_ctx < 4) fail("{}: a context of at least 4 tokens is needed, got {}", label, plan.n_ctx);
    const size_t need = 2 * static_cast<size_t>(plan.n_ctx);
    if (n_tokens < need)
        fail("{}: the text has {} tokens; context {} needs at least {} (2 x context)", label, n_tokens, plan.n_ctx, need);
    int n = static_cast<int>(std::min<size_t>(n_tokens / static_cast<size_t>(plan.n_ctx), INT_MAX));
    if (plan.max_chunks > 0) n = std::min(n, plan.max_chunks);
    return n;
}

std::vector<int32_t> chunk_tokens(std::span<const int32_t> tokens, int chunk, int n_ctx, int32_t bos) {
    const size_t start = static_cast<size_t>(chunk) * static_cast<size_t>(n_ctx);
    std::vector<int32_t> out(tokens.begin() + static_cast<ptrdiff_t>(start),
                             tokens.begin() + static_cast<ptrdiff_t>(start + static_cast<size_t>(n_ctx)));
    if (bos >= 0) out[0] = bos;
    return out;
}

double token_nll(std::span<const float> logits, int32_t target) {
    double mx = -INFINITY;
    for (float v : logits) mx = std::max(mx, static_cast<double>(v));
    double sum = 0;
    for (float v : logits) sum += std::exp(static_cast<double>(v) - mx);
    return mx + std::log(sum) - static_cast<double>(logits[static_cast<size_t>(target)]);
}

double NllStats::ppl() const { return std::exp(mean()); }

double NllStats::mean_stderr() const {
    if (count < 2) return 0.0;
    const double n = static_cast<double>(count);
    const double var = sum2 / n - mean() * mean();
    return var > 0 ? std::sqrt(var / (n - 1)) : 0.0;
}

PerplexityResult perplexity(const Transformer& model, std::span<const int32_t> tokens, int32_t bos, const ChunkPlan& plan,
                            const std::string& label, const ChunkLogitsCallback& on_chunk, const ChunkProgress& progress) {
    const int n_chunk = count_chunks(tokens.size(), plan, label);
    const int n_ctx = plan.n_ctx;
    const int64_t n_vocab = model.hparams().n_vocab;
    const int first = first_scored(n_ctx);
    const size_t n_scored = static_cast<size_t>(n_ctx - 1 - first);

    PerplexityResult r;
    NllStats stats;
    std::vector<float> logits(n_scored * static_cast<size_t>(n_vocab));
    std::vector<int32_t> targets(n_scored);
    const auto start = std::chrono::steady_clock::now();
    for (int c = 0; c < n_chunk; ++c) {
        const std::vector<int32_t> chunk = chunk_tokens(tokens, c, n_ctx, bos);
        // Logits for the scored positions only (the last one, n_ctx-1, predicts nothing).
        model.forward_from(std::span<const int32_t>(chunk).first(static_cast<size_t>(n_ctx - 1)), static_cast<size_t>(first),
                           logits);
        // The target is the text's own next token (chunk[j+1] equals it: only position 0 changes).
        for (size_t r_i = 0; r_i < n_scored; ++r_i) {
            const size_t j = static_cast<size_t>(first) + r_i;
            targets[r_i] = chunk[j + 1];
            stats.add(token_nll(std::span<const float>(logits).subspan(r_i * static_cast<size_t>(n_vocab),
                                                                       static_cast<size_t>(n_vocab)),
                                targets[r_i]));
        }
        if (on_chunk)
            on_chunk(c, logits, targets);
        r.evaluated += static_cast<size_t>(n_ctx);
        if (progress) progress(c + 1, n_chunk);
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    r.chunks = n_chunk;
    r.scored = stats.count;
    r.nll = stats.mean();
    r.nll_stderr = stats.mean_stderr();
    r.ppl = stats.ppl();
    r.ppl_stderr = r.ppl * r.nll_stderr;
    return r;
}

}  // namespace qf
