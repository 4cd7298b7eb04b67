// Error feedback (quant/error_feedback.h): the factor inverts the dampened statistics, every
// block format's set_codes/code_values contract holds, and on correlated inputs the feedback
// lowers the output error x^T (w - q) of every type it supports, with bytes independent of
// the thread count.
#include "common/error.h"
#include "quant/error_feedback.h"
#include "quant/types.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <random>
#include <vector>

using namespace qf;

namespace {

std::vector<const TypeTraits*> feedback_types() {
    std::vector<const TypeTraits*> out;
    for (const auto& t : all_types())
        if (supports_error_feedback(t.id)) out.push_back(&t);
    return out;
}

// T x n inputs with correlated features (x = z A, A random) and a few loud channels.
std::vector<float> correlated_inputs(int64_t T, int64_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> a(static_cast<size_t>(n * n)), z(static_cast<size_t>(n)), x(static_cast<size_t>(T * n));
    for (auto& v : a) v = g(rng) / std::sqrt(static_cast<float>(n));
    for (int64_t i = 0; i < n; ++i) a[static_cast<size_t>(i * n + i)] += 1.0f;
    for (int64_t t = 0; t < T; ++t) {
        for (auto& v : z) v = g(rng);
        for (int64_t j = 0; j < n; ++j) {
            float s = 0;
            for (int64_t k = 0; k < n; ++k) s += z[static_cast<size_t>(k)] * a[static_cast<size_t>(k * n + j)];
            x[static_cast<size_t>(t * n + j)] = s * (j % 61 == 0 ? 6.0f : 1.0f);
        }
    }
    return x;
}

std::vector<double> second_moment(const std::vector<float>& x, int64_t T, int64_t n) {
    std::vector<double> h(static_cast<size_t>(n * n), 0.0);
    for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < n; ++j)
                h[static_cast<size_t>(i * n + j)] += static_cast<double>(x[static_cast<size_t>(t * n + i)]) * x[static_cast<size_t>(t * n + j)];
    return h;
}

// sum over rows of (w - q)^T H (w - q): the squared output error over the inputs behind H.
double output_error(const TypeTraits& t, const std::vector<std::byte>& bytes, const std::vector<float>& w, int64_t rows,
                    int64_t cols, const std::vector<double>& h) {
    std::vector<float> q(static_cast<size_t>(cols));
    const uint64_t rb = *row_bytes(t.id, cols);
    double total = 0;
    for (int64_t r = 0; r < rows; ++r) {
        t.dequantize(bytes.data() + r * rb, q.data(), cols);
        std::vector<double> d(static_cast<size_t>(cols));
        for (int64_t i = 0; i < cols; ++i) d[static_cast<size_t>(i)] = w[static_cast<size_t>(r * cols + i)] - q[static_cast<size_t>(i)];
        for (int64_t i = 0; i < cols; ++i) {
            double s = 0;
            for (int64_t j = 0; j < cols; ++j) s += h[static_cast<size_t>(i * cols + j)] * d[static_cast<size_t>(j)];
            total += d[static_cast<size_t>(i)] * s;
        }
    }
    return total;
}

}  // namespace

TEST(ErrorFeedback, FactorInvertsTheDampenedStatistics) {
    const int64_t n = 24, T = 200;
    const std::vector<float> x = correlated_inputs(T, n, 7);
    std::vector<double> h = second_moment(x, T, n);
    h[5 * n + 5] = 0;  // a dead input column: GPTQ sets its diagonal to 1
    for (int64_t j = 0; j < n; ++j) h[static_cast<size_t>(5 * n + j)] = h[static_cast<size_t>(j * n + 5)] = 0;
    const FeedbackFactor f = feedback_factor(h, n, 0.01);
    ASSERT_EQ(f.n, n);
    double mean = 0;
    for (int64_t i = 0; i < n; ++i) mean += i == 5 ? 1.0 : h[static_cast<size_t>(i * n + i)];
    mean /= n;
    for (int64_t i = 0; i < n; ++i) h[static_cast<size_t>(i * n + i)] = (i == 5 ? 1.0 : h[static_cast<size_t>(i * n + i)]) + 0.01 * mean;
    // (U^T U) H = I, and U is upper triangular with a positive diagonal.
    for (int64_t i = 0; i < n; ++i) {
        EXPECT_GT(f.u[static_cast<size_t>(i * n + i)], 0.0f);
        for (int64_t j = 0; j < i; ++j) EXPECT_EQ(f.u[static_cast<size_t>(i * n + j)], 0.0f);
        for (int64_t j = 0; j < n; ++j) {
            double s = 0;
            for (int64_t k = 0; k < n; ++k) {
                double hinv = 0;
                for (int64_t m = 0; m < n; ++m)
                    hinv += static_cast<double>(f.u[static_cast<size_t>(m * n + i)]) * f.u[static_cast<size_t>(m * n + k)];
                s += hinv * h[static_cast<size_t>(k * n + j)];
            }
            EXPECT_NEAR(s, i == j ? 1.0 : 0.0, 2e-4) << i << "," << j;
        }
    }
}

TEST(ErrorFeedback, NonFiniteStatisticsAreRefused) {
    std::vector<double> h = {1, 0, 0, NAN};
    EXPECT_THROW(feedback_factor(h, 2, 0.01), Error);
}

// Code k decodes to step * code_values[k] + offset at every position, whatever the other codes.
TEST(ErrorFeedback, SetCodesFollowsTheGridOfEveryFormat) {
    std::mt19937 rng(3);
    std::normal_distribution<float> g(0.0f, 1.0f);
    const auto types = feedback_types();
    ASSERT_GE(types.size(), 12u);  // Q4_0..Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS
    for (const TypeTraits* t : types) {
        SCOPED_TRACE(t->name);
        const int64_t be = t->block_elems;
        const size_t nc = t->code_values.size();
        std::vector<float> x(static_cast<size_t>(be)), y0(static_cast<size_t>(be)), y1(static_cast<size_t>(be)), y(static_cast<size_t>(be));
        for (auto& v : x) v = g(rng);
        std::vector<std::byte> block(static_cast<size_t>(t->block_bytes));
        t->quantize(x.data(), block.data(), be, nullptr);
        std::vector<uint8_t> codes(static_cast<size_t>(be), 0);
        t->set_codes(block.data(), codes.data());
        t->dequantize(block.data(), y0.data(), be);
        std::fill(codes.begin(), codes.end(), uint8_t{1});
        t->set_codes(block.data(), codes.data());
        t->dequantize(block.data(), y1.data(), be);
        std::uniform_int_distribution<int> pick(0, static_cast<int>(nc) - 1);
        for (auto& c : codes) c = static_cast<uint8_t>(pick(rng));
        t->set_codes(block.data(), codes.data());
        t->dequantize(block.data(), y.data(), be);
        const float span = t->code_values[1] - t->code_values[0];
        for (int64_t i = 0; i < be; ++i) {
            const float step = (y1[i] - y0[i]) / span;
            const float want = step * t->code_values[codes[static_cast<size_t>(i)]] + (y0[i] - step * t->code_values[0]);
            EXPECT_NEAR(y[i], want, 1e-4f * (1.0f + std::fabs(want))) << "position " << i;
        }
    }
}

TEST(ErrorFeedback, LowersTheOutputErrorOfEveryTypeAndIgnoresThreads) {
    const int64_t rows = 24, cols = 512, T = 1024;
    const std::vector<float> x = correlated_inputs(T, cols, 11);
    const std::vector<double> h = second_moment(x, T, cols);
    std::vector<float> importance(static_cast<size_t>(cols));
    for (int64_t i = 0; i < cols; ++i) importance[static_cast<size_t>(i)] = static_cast<float>(h[static_cast<size_t>(i * cols + i)] / T);
    std::mt19937 rng(5);
    std::normal_distribution<float> g(0.0f, 0.02f);
    std::vector<float> w(static_cast<size_t>(rows * cols));
    for (auto& v : w) v = g(rng);
    const FeedbackFactor f = feedback_factor(h, cols, 0.01);
    for (const TypeTraits* t : feedback_types()) {
        SCOPED_TRACE(t->name);
        const uint64_t rb = *row_bytes(t->id, cols);
        std::vector<std::byte> plain(rb * rows), fed(rb * rows), fed1(rb * rows);
        for (int64_t r = 0; r < rows; ++r) t->quantize(w.data() + r * cols, plain.data() + r * rb, cols, importance.data());
        quantize_with_feedback(t->id, t->quantize, w.data(), rows, cols, f, importance.data(), fed.data());
        const int threads = omp_get_max_threads();
        omp_set_num_threads(1);
        quantize_with_feedback(t->id, t->quantize, w.data(), rows, cols, f, importance.data(), fed1.data());
        omp_set_num_threads(threads);
        EXPECT_EQ(fed, fed1) << "bytes depend on the thread count";
        const double e_plain = output_error(*t, plain, w, rows, cols, h);
        const double e_fed = output_error(*t, fed, w, rows, cols, h);
        std::printf("[ feedback ] %-7s output error with feedback / without: %.3f\n", t->name, e_fed / e_plain);
        EXPECT_LT(e_fed, 0.9 * e_plain);
    }
}
