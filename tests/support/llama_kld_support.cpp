#include "support/llama_kld_support.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <span>

namespace qf::test {

int test_threads() {
    if (const char* env = std::getenv("QFORGE_TEST_THREADS"); env && *env) return std::max(1, std::atoi(env));
    return kDefaultThreads;
}

int kld_chunks() {
    if (const char* env = std::getenv("QFORGE_KLD_CHUNKS"); env && *env) return std::max(1, std::atoi(env));
    return 6;
}

namespace {

// log-softmax of one row, in double as llama.cpp's perplexity tool does.
void log_softmax(std::span<const float> logits, std::vector<double>& out) {
    out.resize(logits.size());
    double mx = -INFINITY;
    for (float v : logits) mx = std::max(mx, static_cast<double>(v));
    double sum = 0;
    for (float v : logits) sum += std::exp(static_cast<double>(v) - mx);
    const double lse = mx + std::log(sum);
    for (size_t i = 0; i < logits.size(); ++i) out[i] = static_cast<double>(logits[i]) - lse;
}

}  // namespace

BaseLogProbs base_log_probs(const LlamaModel& model, const std::string& text, int chunks) {
    BaseLogProbs b;
    b.n_vocab = n_vocab(model);
    std::vector<double> lp;
    perplexity(model, text, 512, chunks, test_threads(), [&](int, std::span<const float> logits, std::span<const int32_t> targets) {
        for (size_t r = 0; r < targets.size(); ++r) {
            log_softmax(logits.subspan(r * b.n_vocab, b.n_vocab), lp);
            b.argmax.push_back(static_cast<int>(std::max_element(lp.begin(), lp.end()) - lp.begin()));
            b.rows.push_back(lp);
        }
    });
    return b;
}

Divergence divergence(const LlamaModel& model, const std::string& text, int chunks, const BaseLogProbs& base) {
    Divergence d;
    std::vector<double> lq;
    size_t row = 0;
    double sum = 0, sum2 = 0;
    size_t same_top = 0;
    PerplexityResult r = perplexity(model, text, 512, chunks, test_threads(),
                                    [&](int, std::span<const float> logits, std::span<const int32_t> targets) {
        for (size_t i = 0; i < targets.size(); ++i, ++row) {
            log_softmax(logits.subspan(i * base.n_vocab, base.n_vocab), lq);
            const auto& lp = base.rows.at(row);
            double kld = 0;
            for (int v = 0; v < base.n_vocab; ++v) kld += std::exp(lp[v]) * (lp[v] - lq[v]);
            sum += kld;
            sum2 += kld * kld;
            const int top = static_cast<int>(std::max_element(lq.begin(), lq.end()) - lq.begin());
            same_top += (top == base.argmax[row]);
        }
    });
    const double n = static_cast<double>(row);
    d.kld_mean = sum / n;
    d.kld_stderr = std::sqrt(std::max(0.0, sum2 / n - d.kld_mean * d.kld_mean) / (n - 1));
    d.ppl = r.ppl;
    d.top1 = static_cast<double>(same_top) / n;
    return d;
}

Divergence divergence_of_file(const std::string& path, const std::string& text, int chunks, const BaseLogProbs& base) {
    auto m = load_model(path);
    return divergence(*m, text, chunks, base);
}

}  // namespace qf::test
