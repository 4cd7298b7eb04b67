// The chunked run of llama-imatrix (compute_imatrix): kept apart from the collector so the
// collector builds and tests without the forward pass.
#include "eval/imatrix_collect.h"

#include "common/error.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <vector>

namespace qf {

namespace {

// -log p(target) from one row of logits, as llama-imatrix's log_softmax computes it: float
// maximum and differences, exp in float, the sum and the log in double.
double negative_log_prob(std::span<const float> logits, int32_t target) {
    float max_logit = logits[0];
    for (float v : logits) max_logit = std::max(max_logit, v);
    double sum_exp = 0.0;
    for (float v : logits) sum_exp += std::exp(v - max_logit);
    return -((logits[static_cast<size_t>(target)] - max_logit) - std::log(sum_exp));
}

}  // namespace

ImatrixRunResult collect_imatrix(const Transformer& model, std::span<const int32_t> tokens, int32_t bos,
                                 const ImatrixRunOptions& options) {
    const std::string& label = model.file().path();
    const int64_t n_ctx = options.n_ctx;
    if (n_ctx < kImatrixMinRows)
        fail("{}: context {} is too small: llama-imatrix ignores products of fewer than {} tokens", label, n_ctx,
             kImatrixMinRows);
    if (n_ctx > std::numeric_limits<uint32_t>::max()) fail("{}: context {} is too large", label, n_ctx);
    const auto n_tokens = static_cast<int64_t>(tokens.size());
    if (n_tokens < 2 * n_ctx)
        fail("{}: the text tokenizes to {} tokens; a context of {} needs at least {} (llama-imatrix's minimum)",
             label, n_tokens, n_ctx, 2 * n_ctx);
    int64_t n_chunk = n_tokens / n_ctx;
    if (options.max_chunks > 0) n_chunk = std::min(n_chunk, options.max_chunks);

    const int64_t n_vocab = model.hparams().n_vocab;
    if (n_vocab <= 0) fail("{}: model has no vocabulary size", label);
    ImatrixCollector collector(options.process_output);
    const ActivationObserver observer = collector.observer();
    std::vector<int32_t> chunk(static_cast<size_t>(n_ctx));
    std::vector<float> logits(static_cast<size_t>(n_ctx) * static_cast<size_t>(n_vocab));

    ImatrixRunResult result;
    double nll = 0;
    int64_t scored = 0;
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < n_chunk; ++i) {
        const auto first_token = tokens.begin() + i * n_ctx;
        std::copy(first_token, first_token + n_ctx, chunk.begin());
        if (bos >= 0) chunk[0] = bos;
        model.forward(chunk, logits, &observer);

        // llama-imatrix's perplexity: positions [n_ctx/2, n_ctx-1) predict the next original token.
        for (int64_t p = n_ctx / 2; p < n_ctx - 1; ++p) {
            const int32_t target = first_token[p + 1];
            if (target < 0 || target >= n_vocab) fail("{}: token id {} outside the vocabulary", label, target);
            nll += negative_log_prob(
                std::span<const float>(logits).subspan(static_cast<size_t>(p * n_vocab), static_cast<size_t>(n_vocab)),
                target);
            ++scored;
        }
        result.chunks = i + 1;
        result.tokens += n_ctx;
        result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        result.ppl = scored > 0 ? std::exp(nll / static_cast<double>(scored)) : 0.0;
        if (options.on_chunk) options.on_chunk(result.chunks, n_chunk, result.seconds, result.ppl);
    }
    if (collector.n_weights() == 0) fail("{}: no weight product was collected (no blk.* weights?)", label);
    std::vector<std::string> datasets;
    if (!options.dataset.empty()) datasets.push_back(options.dataset);
    result.data = collector.data(static_cast<uint32_t>(n_ctx), std::move(datasets));
    return result;
}

}  // namespace qf
