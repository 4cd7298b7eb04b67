// The statistics of src/eval (perplexity and KL divergence) on hand-made numbers.
#include "common/error.h"
#include "eval/kld.h"
#include "eval/perplexity.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace qf;

TEST(EvalStats, TokenNllIsMinusLogSoftmax) {
    const std::vector<float> logits = {1.0f, 2.0f, 3.0f};
    const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
    EXPECT_NEAR(token_nll(logits, 0), -std::log(std::exp(1.0) / z), 1e-12);
    EXPECT_NEAR(token_nll(logits, 2), -std::log(std::exp(3.0) / z), 1e-12);
    // Large logits do not overflow (max subtraction).
    const std::vector<float> big = {1000.0f, 1000.0f};
    EXPECT_NEAR(token_nll(big, 1), std::log(2.0), 1e-12);
}

TEST(EvalStats, NllStatsUseTheToolsFormulas) {
    NllStats s;
    for (double v : {1.0, 2.0, 4.0}) s.add(v);
    const double mean = 7.0 / 3;
    EXPECT_NEAR(s.ppl(), std::exp(mean), 1e-12);
    const double var = (1.0 + 4.0 + 16.0) / 3 - mean * mean;  // population variance ...
    EXPECT_NEAR(s.mean_stderr(), std::sqrt(var / 2), 1e-12);  // ... over count - 1
    NllStats one;
    one.add(3.0);
    EXPECT_EQ(one.mean_stderr(), 0.0);
}

TEST(EvalStats, ChunksAndBos) {
    EXPECT_EQ(count_chunks(1024, ChunkPlan{512, -1}, "t"), 2);
    EXPECT_EQ(count_chunks(5000, ChunkPlan{512, -1}, "t"), 9);
    EXPECT_EQ(count_chunks(5000, ChunkPlan{512, 3}, "t"), 3);
    EXPECT_THROW(count_chunks(1023, ChunkPlan{512, -1}, "t"), Error);
    EXPECT_THROW(count_chunks(100, ChunkPlan{2, -1}, "t"), Error);
    const std::vector<int32_t> tokens = {5, 6, 7, 8, 9, 10};
    EXPECT_EQ(chunk_tokens(tokens, 1, 3, 1), (std::vector<int32_t>{1, 9, 10}));
    EXPECT_EQ(chunk_tokens(tokens, 1, 3, -1), (std::vector<int32_t>{8, 9, 10}));
    EXPECT_EQ(first_scored(512), 256);
}

TEST(EvalStats, KldOfKnownDistributions) {
    // p = (0.5, 0.25, 0.25) as base log-probs, q from logits log(0.25, 0.25, 0.5).
    const std::vector<double> lp = {std::log(0.5), std::log(0.25), std::log(0.25)};
    const std::vector<float> q_logits = {std::log(0.25f), std::log(0.25f), std::log(0.5f)};
    KldAccumulator acc;
    acc.add(lp, 0, q_logits, 1);
    const KldStats s = acc.stats();
    const double expected = 0.5 * std::log(0.5 / 0.25) + 0.25 * std::log(1.0) + 0.25 * std::log(0.25 / 0.5);
    EXPECT_NEAR(s.kld_mean, expected, 1e-7);
    EXPECT_EQ(s.same_top, 0.0);  // base prefers 0, quant prefers 2
    EXPECT_NEAR(std::log(s.ppl), -std::log(0.25), 1e-6);
    EXPECT_NEAR(std::log(s.ppl_base), -std::log(0.25), 1e-12);

    std::vector<double> same;
    log_softmax(q_logits, same);
    KldAccumulator zero;
    zero.add(same, 2, q_logits, 0);
    EXPECT_NEAR(zero.stats().kld_mean, 0.0, 1e-7);
    EXPECT_EQ(zero.stats().same_top, 1.0);
}

TEST(EvalStats, MedianPercentilesAndErrors) {
    KldAccumulator acc;
    // KLD values 0..99 (shuffled order), nll of both models equal except a constant offset.
    for (int i = 0; i < 100; ++i) {
        const int v = (i * 37) % 100;
        acc.add_values(v, 2.0 + 0.01 * v, 1.0 + 0.01 * v, v % 4 == 0);
    }
    const KldStats s = acc.stats();
    EXPECT_EQ(s.count, 100u);
    EXPECT_NEAR(s.kld_mean, 49.5, 1e-9);
    EXPECT_NEAR(s.kld_median, 49.5, 1e-9);
    EXPECT_NEAR(s.kld_p99, 0.99 * 99, 1e-4);  // linear interpolation between sorted values
    EXPECT_EQ(s.kld_max, 99.0);
    EXPECT_EQ(s.kld_min, 0.0);
    EXPECT_NEAR(s.kld_stderr, std::sqrt((99.0 * 100 * 199 / 6 / 100 - 49.5 * 49.5) / 99), 1e-6);
    EXPECT_NEAR(s.same_top, 0.25, 1e-12);
    EXPECT_NEAR(s.same_top_stderr, std::sqrt(0.25 * 0.75 / 99), 1e-12);
    // The nll series differ by exactly 1: ln(PPL ratio) = 1 with no uncertainty (correlation 1).
    EXPECT_NEAR(s.ln_ppl_ratio, 1.0, 1e-9);
    EXPECT_NEAR(s.ln_ppl_ratio_stderr, 0.0, 1e-6);
    EXPECT_NEAR(s.ppl_correlation, 1.0, 1e-6);
    EXPECT_NEAR(s.ppl / s.ppl_base, std::exp(1.0), 1e-9);
}
