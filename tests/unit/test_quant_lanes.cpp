// The lane-parallel searches (quant/lane_search.h) must return exactly what llama_ref's scalar
// functions return, group by group, bit for bit, on whatever SIMD path the dispatcher picked.
// Groups cover Gaussian and heavy-tailed values, outliers, constants, zeros, all-positive
// groups, tiny and huge magnitudes and denormals, with and without weights, and group counts
// that are not multiples of the lane count.
#include "quant/lane_search.h"
#include "quant/llama_reference.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

namespace qf {
namespace {

// count groups of n values of many kinds (the group index picks the kind).
std::vector<float> varied_groups(int count, int n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> gauss(0.f, 1.f);
    std::exponential_distribution<float> expo(1.f);
    std::uniform_real_distribution<float> uni(0.f, 1.f);
    std::vector<float> x(static_cast<size_t>(count) * n);
    for (int g = 0; g < count; ++g) {
        float* v = x.data() + static_cast<size_t>(g) * n;
        const int kind = g % 10;
        const float mag = std::pow(10.f, static_cast<float>(static_cast<int>(uni(rng) * 8) - 4));
        for (int i = 0; i < n; ++i) {
            switch (kind) {
                case 0: v[i] = gauss(rng) * mag; break;
                case 1: v[i] = (uni(rng) < 0.5f ? -1.f : 1.f) * expo(rng) * mag; break;
                case 2: v[i] = gauss(rng) * mag * (i == g % n ? 20.f : 1.f); break;
                case 3: v[i] = 0.37f * mag; break;   // constant
                case 4: v[i] = 0.f; break;
                case 5: v[i] = std::fabs(gauss(rng)) * mag + mag; break;  // all positive
                case 6: v[i] = -std::fabs(gauss(rng)) * mag; break;        // all negative
                case 7: v[i] = gauss(rng) * 1e-39f; break;                 // denormals
                case 8: v[i] = gauss(rng) * 1e30f; break;                  // huge
                default: v[i] = static_cast<float>(static_cast<int>(gauss(rng) * 3)) * mag; break;  // few levels
            }
        }
    }
    return x;
}

std::vector<float> positive_weights(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::lognormal_distribution<float> ln(0.f, 1.f);
    std::vector<float> w(n);
    for (auto& v : w) v = ln(rng);
    return w;
}

bool same_bits(float a, float b) { return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); }

struct QkxCase {
    bool qkx3;
    int n, nmax;
    float rmin, rdelta;
    int nstep;
    bool mad;
    bool weighted;
};

class LaneQkx : public ::testing::TestWithParam<QkxCase> {};

// Runs body once per SIMD path this CPU has, then restores the best one.
template <class F>
void on_every_path(F&& body) {
    for (const char* name : {"sse2", "avx2", "avx512f"}) {
        if (!lanes::use_path(name)) continue;
        SCOPED_TRACE(name);
        body();
    }
    lanes::use_path("best");
}

TEST_P(LaneQkx, EqualsScalarReferenceBitForBit) { on_every_path([&] {
    const QkxCase c = GetParam();
    const int count = 16 * 7 + 5;
    const auto x = varied_groups(count, c.n, 11 + c.n + c.nmax);
    std::vector<float> w;
    if (c.weighted || !c.qkx3) {
        w = positive_weights(x.size(), 5);
        if (!c.weighted)  // qkx2 always has weights; use llama's |x| + average style ones
            for (size_t i = 0; i < x.size(); ++i) w[i] = std::fabs(x[i]) + 0.5f;
    }
    std::vector<uint8_t> L(x.size());
    std::vector<float> scales(count), mins(count);
    lanes::make_qkx_quants(c.qkx3, count, c.n, c.nmax, x.data(), w.empty() ? nullptr : w.data(), L.data(),
                           scales.data(), mins.data(), c.rmin, c.rdelta, c.nstep, c.mad);
    for (int g = 0; g < count; ++g) {
        uint8_t Lr[32], Laux[32];
        float the_min = 0;
        const float* xg = x.data() + g * c.n;
        const float* wg = w.empty() ? nullptr : w.data() + g * c.n;
        const float s = c.qkx3 ? llama_ref::make_qkx3_quants(c.n, c.nmax, xg, wg, Lr, &the_min, Laux, c.rmin,
                                                             c.rdelta, c.nstep, c.mad)
                               : llama_ref::make_qkx2_quants(c.n, c.nmax, xg, wg, Lr, &the_min, Laux, c.rmin,
                                                             c.rdelta, c.nstep, c.mad);
        ASSERT_TRUE(same_bits(s, scales[g])) << "group " << g << " scale " << s << " vs " << scales[g];
        ASSERT_TRUE(same_bits(the_min, mins[g])) << "group " << g << " min " << the_min << " vs " << mins[g];
        ASSERT_EQ(0, std::memcmp(Lr, L.data() + g * c.n, c.n)) << "group " << g;
    }
}); }

INSTANTIATE_TEST_SUITE_P(
    LlamaCallSites, LaneQkx,
    ::testing::Values(QkxCase{false, 32, 15, -1.f, 0.1f, 20, false, false},   // Q4_K ref
                      QkxCase{false, 32, 31, -0.5f, 0.1f, 15, false, false},  // Q5_K ref
                      QkxCase{false, 16, 3, -0.5f, 0.1f, 15, true, false},    // Q2_K ref
                      QkxCase{true, 32, 15, -0.9f, 0.05f, 36, false, true},   // Q4_K/Q5_K/Q4_1 impl
                      QkxCase{true, 16, 3, -0.9f, 0.05f, 36, false, true},    // Q2_K impl
                      QkxCase{true, 32, 31, -0.9f, 0.05f, 36, false, false},  // qkx3 with x^2 weights
                      QkxCase{false, 32, 15, -1.f, 0.1f, 0, false, false}));  // no search steps

TEST(LaneQx, EqualsScalarReferenceBitForBit) { on_every_path([] {
    for (int n : {16, 32})
        for (int nmax : {4, 8, 16, 32})
            for (int rmse_type : {1, 2, 3, 4})
                for (bool weighted : {false, true}) {
                    const int count = 16 * 3 + 9;
                    const auto x = varied_groups(count, n, 100 + n + nmax + rmse_type);
                    const auto w = positive_weights(x.size(), 7);
                    std::vector<int8_t> L(x.size());
                    std::vector<float> scales(count);
                    lanes::make_qx_quants(count, n, nmax, x.data(), L.data(), rmse_type,
                                          weighted ? w.data() : nullptr, scales.data());
                    for (int g = 0; g < count; ++g) {
                        int8_t Lr[32];
                        const float s = llama_ref::make_qx_quants(n, nmax, x.data() + g * n, Lr, rmse_type,
                                                                  weighted ? w.data() + g * n : nullptr);
                        ASSERT_TRUE(same_bits(s, scales[g]))
                            << "n " << n << " nmax " << nmax << " type " << rmse_type << " group " << g;
                        ASSERT_EQ(0, std::memcmp(Lr, L.data() + g * n, n)) << "group " << g;
                    }
                }
}); }

TEST(LaneQ3, EqualsScalarReferenceBitForBit) { on_every_path([] {
    const int count = 16 * 9 + 3;
    const auto x = varied_groups(count, 16, 77);
    std::vector<int8_t> L(x.size());
    std::vector<float> scales(count);
    lanes::make_q3_quants(count, 16, 4, x.data(), L.data(), scales.data());
    for (int g = 0; g < count; ++g) {
        int8_t Lr[16];
        const float s = llama_ref::make_q3_quants(16, 4, x.data() + g * 16, Lr, true);
        ASSERT_TRUE(same_bits(s, scales[g])) << "group " << g;
        ASSERT_EQ(0, std::memcmp(Lr, L.data() + g * 16, 16)) << "group " << g;
    }
}); }

TEST(LaneDispatch, EveryPathTheCpuHasGivesTheSameBytes) {
    const int count = 16 * 5 + 7;
    const auto x = varied_groups(count, 32, 99);
    const auto w = positive_weights(x.size(), 3);
    std::vector<uint8_t> ref_L;
    std::vector<int8_t> ref_Q;
    int paths = 0;
    for (const char* name : {"sse2", "avx2", "avx512f"}) {
        if (!lanes::use_path(name)) continue;
        ++paths;
        EXPECT_STREQ(name, lanes::dispatch_path());
        std::vector<uint8_t> L(x.size());
        std::vector<int8_t> Q(x.size());
        std::vector<float> s(count), m(count), s2(count);
        lanes::make_qkx_quants(true, count, 32, 15, x.data(), w.data(), L.data(), s.data(), m.data(), -0.9f, 0.05f, 36,
                               false);
        lanes::make_qx_quants(count, 32, 8, x.data(), Q.data(), 1, nullptr, s2.data());
        if (ref_L.empty()) {
            ref_L = L;
            ref_Q = Q;
        }
        EXPECT_EQ(ref_L, L) << name;
        EXPECT_EQ(ref_Q, Q) << name;
    }
    lanes::use_path("best");
#if defined(__x86_64__)
    EXPECT_GE(paths, 1);
    std::printf("lane paths compared: %d (in use: %s)\n", paths, lanes::dispatch_path());
#endif
}

}  // namespace
}  // namespace qf
