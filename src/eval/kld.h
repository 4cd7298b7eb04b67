// KL divergence of quantized models' next-token distributions from a base model's, with the
// statistics llama.cpp's perplexity tool prints for --kl-divergence (tools/perplexity/
// perplexity.cpp, kl_divergence()): mean KLD with its standard error, median and
// percentiles (linear interpolation between sorted values), maximum, the share of positions
// where both models rank the same token first ("same top p") with sqrt(p(1-p)/(n-1)), both
// perplexities, ln(PPL(Q)/PPL(base)) and PPL(Q)-PPL(base) with errors from the covariance of
// the two nll series.
//
// Differences from the tool, on purpose: both models run side by side chunk by chunk (no
// logits file), the base log-probabilities stay in double (the tool stores them as 16-bit
// steps), and every vocabulary entry counts in the sum (the tool skips log p < -16).
#pragma once
#include "eval/perplexity.h"
#include "model/model.h"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace qf {

struct KldStats {
    size_t count = 0;  // positions scored
    double kld_mean = 0, kld_stderr = 0;
    double kld_median = 0, kld_p90 = 0, kld_p99 = 0, kld_p999 = 0, kld_max = 0, kld_min = 0;
    double same_top = 0, same_top_stderr = 0;  // fraction 0..1
    double ppl_base = 0, ppl_base_stderr = 0, ppl = 0, ppl_stderr = 0;
    double ln_ppl_ratio = 0, ln_ppl_ratio_stderr = 0;
    double ppl_diff = 0, ppl_diff_stderr = 0;  // PPL(Q) - PPL(base)
    double ppl_correlation = 0;                 // of the two ln(PPL) estimates
};

// log-softmax of one row, in double.
void log_softmax(std::span<const float> logits, std::vector<double>& out);

// Accumulates positions in order; stats() may be called at any time.
class KldAccumulator {
public:
    // One position: the base model's log-probabilities (log_softmax) and its argmax, the
    // quantized model's raw logits, and the token that came next in the text.
    void add(std::span<const double> base_log_probs, int32_t base_top, std::span<const float> quant_logits, int32_t target);
    // The same from precomputed per-position figures (KLD, both nll, same argmax or not).
    void add_values(double kld, double nll_quant, double nll_base, bool same_top);
    KldStats stats() const;

private:
    double sum_kld_ = 0, sum_kld2_ = 0;
    double sum_nll_ = 0, sum_nll2_ = 0, sum_nll_base_ = 0, sum_nll_base2_ = 0, sum_nll_nll_base_ = 0;
    size_t same_top_ = 0;
    std::vector<float> kld_values_;
};

// Runs the base model and every quant over the same chunks (ChunkPlan as for perplexity) and
// returns one KldStats per quant. The models must share the vocabulary (the caller checks
// the tokenizers; here only the sizes are compared). `label` names the text in errors.
std::vector<KldStats> kl_divergence(const Transformer& base, std::span<const Transformer* const> quants,
                                    std::span<const int32_t> tokens, int32_t bos, const ChunkPlan& plan,
                                    const std::string& label, const ChunkProgress& progress = {});

}  // namespace qf
