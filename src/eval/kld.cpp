#include "eval/kld.h"

#include "common/error.h"

#include <algorithm>
#include <cmath>

namespace qf {

void log_softmax(std::span<const float> logits, std::vector<double>& out) {
    out.resize(logits.size());
    double mx = -INFINITY;
    for (float v : logits) mx = std::max(mx, static_cast<double>(v));
    double sum = 0;
    for (float v : logits) sum += std::exp(static_cast<double>(v) - mx);
    const double lse = mx + std::log(sum);
    for (size_t i = 0; i < logits.size(); ++i) out[i] = static_cast<double>(logits[i]) - lse;
}

namespace {

struct PositionValues {
    double kld, nll_quant, nll_base;
    bool same_top;
};

// KLD(base || quant) = sum_i p_i (log p_i - log q_i), with q from the quant's raw logits.
PositionValues position_values(std::span<const double> base_lp, int32_t base_top, std::span<const float> quant_logits,
                               int32_t target) {
    double mx = -INFINITY;
    size_t top = 0;
    for (size_t i = 0; i < quant_logits.size(); ++i)
        if (quant_logits[i] > mx) {
            mx = quant_logits[i];
            top = i;
        }
    double sum = 0;
    for (float v : quant_logits) sum += std::exp(static_cast<double>(v) - mx);
    const double lse = mx + std::log(sum);
    double kld = 0;
    for (size_t i = 0; i < quant_logits.size(); ++i) {
        const double lp = base_lp[i];
        kld += std::exp(lp) * (lp - (static_cast<double>(quant_logits[i]) - lse));
    }
    const auto t = static_cast<size_t>(target);
    return {kld, lse - static_cast<double>(quant_logits[t]), -base_lp[t], static_cast<int32_t>(top) == base_top};
}

// mean and standard error as the tool computes them (0 error for fewer than 11 values).
std::pair<double, double> mean_and_uncertainty(double sum, double sum2, size_t count) {
    if (count < 1) return {0.0, 0.0};
    const double n = static_cast<double>(count);
    const double f = sum / n;
    const double df = sum2 / n - f * f;
    return {f, df > 0 && count > 10 ? std::sqrt(df / (n - 1)) : 0.0};
}

double covariance(double suma, double sumb, double sumab, size_t count) {
    if (count < 10) return 0.0;
    const double n = static_cast<double>(count);
    return (sumab / n - (suma / n) * (sumb / n)) / (n - 1);
}

double percentile(const std::vector<float>& sorted, double fraction) {
    if (sorted.empty()) return 0.0;
    if (fraction <= 0) return sorted.front();
    if (fraction >= 1) return sorted.back();
    double p = fraction * static_cast<double>(sorted.size() - 1);
    const size_t ip = static_cast<size_t>(p);
    p -= static_cast<double>(ip);
    return (1 - p) * sorted[ip] + p * sorted[std::min(ip + 1, sorted.size() - 1)];
}

}  // namespace

void KldAccumulator::add(std::span<const double> base_log_probs, int32_t base_top, std::span<const float> quant_logits,
                         int32_t target) {
    const PositionValues v = position_values(base_log_probs, base_top, quant_logits, target);
    add_values(v.kld, v.nll_quant, v.nll_base, v.same_top);
}

void KldAccumulator::add_values(double kld, double nll_quant, double nll_base, bool same_top) {
    sum_kld_ += kld;
    sum_kld2_ += kld * kld;
    sum_nll_ += nll_quant;
    sum_nll2_ += nll_quant * nll_quant;
    sum_nll_base_ += nll_base;
    sum_nll_base2_ += nll_base * nll_base;
    sum_nll_nll_base_ += nll_quant * nll_base;
    same_top_ += same_top ? 1 : 0;
    kld_values_.push_back(static_cast<float>(kld));
}

KldStats KldAccumulator::stats() const {
    KldStats s;
    s.count = kld_values_.size();
    if (s.count == 0) return s;
    const auto kl = mean_and_uncertainty(sum_kld_, sum_kld2_, s.count);
    s.kld_mean = kl.first;
    s.kld_stderr = kl.second;
    std::vector<float> sorted = kld_values_;
    std::sort(sorted.begin(), sorted.end());
    const size_t n = sorted.size();
    s.kld_median = n % 2 == 0 ? 0.5 * (static_cast<double>(sorted[n / 2]) + sorted[n / 2 - 1]) : sorted[n / 2];
    s.kld_p90 = percentile(sorted, 0.90);
    s.kld_p99 = percentile(sorted, 0.99);
    s.kld_p999 = percentile(sorted, 0.999);
    s.kld_max = sorted.back();
    s.kld_min = sorted.front();

    const double nd = static_cast<double>(s.count);
    s.same_top = static_cast<double>(same_top_) / nd;
    s.same_top_stderr = s.count > 1 ? std::sqrt(s.same_top * (1 - s.same_top) / (nd - 1)) : 0.0;

    const auto lp = mean_and_uncertainty(sum_nll_, sum_nll2_, s.count);
    const auto lb = mean_and_uncertainty(sum_nll_base_, sum_nll_base2_, s.count);
    s.ppl = std::exp(lp.first);
    s.ppl_stderr = s.ppl * lp.second;
    s.ppl_base = std::exp(lb.first);
    s.ppl_base_stderr = s.ppl_base * lb.second;
    const double cov = covariance(sum_nll_, sum_nll_base_, sum_nll_nll_base_, s.count);
    s.ppl_correlation = lp.second > 0 && lb.second > 0 ? cov / (lp.second * lb.second) : 0.0;
    s.ln_ppl_ratio = lp.first - lb.first;
    s.ln_ppl_ratio_stderr = std::sqrt(std::max(0.0, lp.second * lp.second + lb.second * lb.second - 2.0 * cov));
    const double ppl_cov = s.ppl * s.ppl_base * cov;
    s.ppl_diff = s.ppl - s.ppl_base;
    s.ppl_diff_stderr =
        std::sqrt(std::max(0.0, s.ppl_stderr * s.ppl_stderr + s.ppl_base_stderr * s.ppl_base_stderr - 2.0 * ppl_cov));
    return s;
}

std::vector<KldStats> kl_divergence(const Transformer& base, std::span<const Transformer* const> quants,
                                    std::span<const int32_t> tokens, int32_t bos, const ChunkPlan& plan,
                                    const std::string& label, const ChunkProgress& progress) {
    const int64_t n_vocab = base.hparams().n_vocab;
    for (const Transformer* q : quants)
        if (q->hparams().n_vocab != n_vocab)
            fail("{}: vocabulary of {} tokens, the base model {} has {}", q->file().path(), q->hparams().n_vocab,
                 base.file().path(), n_vocab);
    const int n_chunk = count_chunks(tokens.size(), plan, label);
    const int n_ctx = plan.n_ctx, first = first_scored(n_ctx);
    const size_t n_scored = static_cast<size_t>(n_ctx - 1 - first);
    const size_t V = static_cast<size_t>(n_vocab);

    std::vector<KldAccumulator> acc(quants.size());
    std::vector<float> base_logits(n_scored * V), quant_logits(n_scored * V);
    std::vector<double> base_lp(n_scored * V);
    std::vector<int32_t> base_top(n_scored);
    std::vector<PositionValues> values(n_scored);
    for (int c = 0; c < n_chunk; ++c) {
        const std::vector<int32_t> chunk = chunk_tokens(tokens, c, n_ctx, bos);
        const auto input = std::span<const int32_t>(chunk).first(static_cast<size_t>(n_ctx - 1));
        base.forward_from(input, static_cast<size_t>(first), base_logits);
#pragma omp parallel
        {
            std::vector<double> row;
#pragma omp for schedule(static)
            for (size_t r = 0; r < n_scored; ++r) {
                log_softmax(std::span<const float>(base_logits).subspan(r * V, V), row);
                std::copy(row.begin(), row.end(), base_lp.begin() + static_cast<ptrdiff_t>(r * V));
                base_top[r] = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
            }
        }
        for (size_t qi = 0; qi < quants.size(); ++qi) {
            quants[qi]->forward_from(input, static_cast<size_t>(first), quant_logits);
#pragma omp parallel for schedule(static)
            for (size_t r = 0; r < n_scored; ++r)
                values[r] = position_values(std::span<const double>(base_lp).subspan(r * V, V), base_top[r],
                                            std::span<const float>(quant_logits).subspan(r * V, V),
                                            chunk[static_cast<size_t>(first) + r + 1]);
            for (const PositionValues& v : values) acc[qi].add_values(v.kld, v.nll_quant, v.nll_base, v.same_top);
        }
        if (progress) progress(c + 1, n_chunk);
    }
    std::vector<KldStats> out;
    for (const auto& a : acc) out.push_back(a.stats());
    return out;
}

}  // namespace qf
