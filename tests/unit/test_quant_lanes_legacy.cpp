// The SIMD encoders of the 32-element formats (quant/lane_legacy.h):
//  - polish level 0 must write exactly the bytes of our scalar re-expressions of llama.cpp
//    (quantize_row_*_llama, themselves checked against libggml in tests/interop), on every SIMD
//    path, with and without importance;
//  - every polish level must give the same bytes on every path;
//  - no polished block may decode worse than llama.cpp's block (double-precision error), and
//    on ordinary data the polish must actually lower the total error.
// Rows cover Gaussian and heavy-tailed values, outliers, ties between +max and -max, constants,
// zeros, all-positive rows, tiny, denormal and huge magnitudes, values on few levels, narrow
// spreads far from zero and blocks of mostly tiny values with a few large ones.
#include "quant/iq4.h"
#include "quant/lane_legacy.h"
#include "quant/lane_search.h"
#include "quant/q4_0.h"
#include "quant/q4_1.h"
#include "quant/q5_0.h"
#include "quant/q5_1.h"
#include "quant/q8_0.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace qf {
namespace {

using legacy_lanes::Format;

using RowFn = void (*)(const float*, void*, int64_t, const float*);
using DequantFn = void (*)(const void*, float*, int64_t);

struct FormatCase {
    Format format;
    const char* name;
    int block_elems, block_bytes;
    RowFn llama;
    RowFn fast;
    DequantFn dequant;
    RowFn thorough;
};

const FormatCase kCases[] = {
    {Format::Q4_0, "q4_0", 32, 18, quantize_row_q4_0_llama, quantize_row_q4_0, dequantize_row_q4_0,
     quantize_row_q4_0_thorough},
    {Format::Q4_1, "q4_1", 32, 20, quantize_row_q4_1_llama, quantize_row_q4_1, dequantize_row_q4_1,
     quantize_row_q4_1_thorough},
    {Format::Q5_0, "q5_0", 32, 22, quantize_row_q5_0_llama, quantize_row_q5_0, dequantize_row_q5_0,
     quantize_row_q5_0_thorough},
    {Format::Q5_1, "q5_1", 32, 24, quantize_row_q5_1_llama, quantize_row_q5_1, dequantize_row_q5_1,
     quantize_row_q5_1_thorough},
    {Format::Q8_0, "q8_0", 32, 34, quantize_row_q8_0_llama, quantize_row_q8_0, dequantize_row_q8_0,
     quantize_row_q8_0_thorough},
    {Format::IQ4_NL, "iq4_nl", 32, 18, quantize_row_iq4_nl_llama, quantize_row_iq4_nl, dequantize_row_iq4_nl,
     quantize_row_iq4_nl_thorough},
    {Format::IQ4_XS, "iq4_xs", 256, 136, quantize_row_iq4_xs_llama, quantize_row_iq4_xs, dequantize_row_iq4_xs,
     quantize_row_iq4_xs_thorough},
};

constexpr int64_t kRowLen = 1024;  // 32 blocks of 32, 4 super-blocks of 256

// One row per kind; the kind also varies inside the row so that blocks differ.
std::vector<float> varied_row(int kind, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> gauss(0.f, 1.f);
    std::exponential_distribution<float> expo(1.f);
    std::uniform_real_distribution<float> uni(0.f, 1.f);
    std::vector<float> x(kRowLen);
    for (int64_t i = 0; i < kRowLen; ++i) {
        const float mag = std::pow(10.f, static_cast<float>((i / 32) % 5) - 2.f);
        float v = 0;
        switch (kind) {
            case 0: v = gauss(rng) * mag; break;
            case 1: v = (uni(rng) < 0.5f ? -1.f : 1.f) * expo(rng) * mag; break;
            case 2: v = gauss(rng) * mag * (i % 37 == 0 ? 25.f : 1.f); break;  // outliers
            case 3: v = (i % 32 == 5 ? 2.f : (i % 32 == 9 ? -2.f : gauss(rng) * 0.5f)) * mag; break;  // +-max tie
            case 4: v = 0.37f * mag; break;                                                  // constant
            case 5: v = (i / 32) % 3 == 0 ? 0.f : gauss(rng); break;                         // zero blocks
            case 6: v = std::fabs(gauss(rng)) * mag + 3 * mag; break;                        // all positive
            case 7: v = gauss(rng) * 1e-39f; break;                                          // denormals
            case 8: v = gauss(rng) * 1e-9f; break;                                           // tiny
            case 9: v = gauss(rng) * 3e5f; break;                                            // huge
            case 10: v = static_cast<float>(static_cast<int>(gauss(rng) * 3)) * mag; break;  // few levels
            case 11: v = 50.f * mag + gauss(rng) * mag * 0.01f; break;  // narrow spread far from zero
            default: v = gauss(rng) * mag * (uni(rng) < 0.1f ? 100.f : 0.01f); break;  // mostly tiny, few big
        }
        x[static_cast<size_t>(i)] = v;
    }
    return x;
}
constexpr int kKinds = 13;

std::vector<float> positive_weights(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::lognormal_distribution<float> ln(0.f, 1.f);
    std::vector<float> w(n);
    for (auto& v : w) v = ln(rng);
    return w;
}

std::vector<uint8_t> encode_lanes(const FormatCase& c, int polish, const std::vector<float>& x, const float* imp) {
    std::vector<uint8_t> out(static_cast<size_t>(kRowLen / c.block_elems * c.block_bytes));
    legacy_lanes::quantize_row(c.format, polish, x.data(), out.data(), kRowLen, imp);
    return out;
}

// Runs body once per SIMD path this CPU has (both dispatchers switched), then restores the best.
template <class F>
int on_every_path(F&& body) {
    int paths = 0;
    for (const char* name : {"sse2", "avx2", "avx512f"}) {
        if (!legacy_lanes::use_path(name)) continue;
        if (!lanes::use_path(name)) ADD_FAILURE() << "lane_search lacks path " << name;
        ++paths;
        SCOPED_TRACE(name);
        body(name);
    }
    legacy_lanes::use_path("best");
    lanes::use_path("best");
    return paths;
}

class LegacyLanes : public ::testing::TestWithParam<FormatCase> {};

TEST_P(LegacyLanes, PolishZeroIsLlamaCppBytesOnEveryPath) {
    const FormatCase& c = GetParam();
    const int paths = on_every_path([&](const char*) {
        for (int kind = 0; kind < kKinds; ++kind) {
            const auto x = varied_row(kind, 100 + static_cast<uint32_t>(kind));
            const auto w = positive_weights(x.size(), 7 + static_cast<uint32_t>(kind));
            for (const float* imp : {static_cast<const float*>(nullptr), w.data()}) {
                std::vector<uint8_t> want(static_cast<size_t>(kRowLen / c.block_elems * c.block_bytes));
                c.llama(x.data(), want.data(), kRowLen, imp);
                const auto got = encode_lanes(c, 0, x, imp);
                for (size_t i = 0; i < want.size(); ++i)
                    ASSERT_EQ(want[i], got[i]) << c.name << " kind " << kind << (imp ? " with importance" : "")
                                               << ": byte " << i << " (block " << i / c.block_bytes << ")";
            }
        }
    });
    EXPECT_GE(paths, 1);
}

TEST_P(LegacyLanes, EveryPolishLevelGivesTheSameBytesOnEveryPath) {
    const FormatCase& c = GetParam();
    for (int polish = 1; polish <= 3; ++polish) {
        for (int kind = 0; kind < kKinds; ++kind) {
            const auto x = varied_row(kind, 200 + static_cast<uint32_t>(kind));
            const auto w = positive_weights(x.size(), 9);
            for (const float* imp : {static_cast<const float*>(nullptr), w.data()}) {
                std::vector<uint8_t> first;
                on_every_path([&](const char* name) {
                    const auto got = encode_lanes(c, polish, x, imp);
                    if (first.empty()) first = got;
                    ASSERT_EQ(first, got) << c.name << " polish " << polish << " kind " << kind
                                          << (imp ? " with importance" : "") << " on " << name;
                });
            }
        }
    }
}

double block_error(const float* x, const float* y, const float* w, int n) {
    double e = 0;
    for (int j = 0; j < n; ++j) {
        const double d = static_cast<double>(x[j]) - static_cast<double>(y[j]);
        e += (w ? static_cast<double>(w[j]) : 1.0) * d * d;
    }
    return e;
}

// Per block, decoded as the dequantizer does: polished error <= llama.cpp's; and on the
// ordinary kinds the total error drops.
TEST_P(LegacyLanes, PolishNeverDecodesWorseThanLlamaCppAndHelps) {
    const FormatCase& c = GetParam();
    for (int polish = 0; polish <= 3; ++polish) {
        double total_llama = 0, total_ours = 0;
        for (int kind = 0; kind < kKinds; ++kind) {
            if (kind == 7) continue;  // denormals: no fp16 scale can represent them (all zero)
            const auto x = varied_row(kind, 300 + static_cast<uint32_t>(kind));
            const auto w = positive_weights(x.size(), 11);
            for (const float* imp : {static_cast<const float*>(nullptr), w.data()}) {
                std::vector<uint8_t> ref(static_cast<size_t>(kRowLen / c.block_elems * c.block_bytes));
                c.llama(x.data(), ref.data(), kRowLen, imp);
                const auto ours = encode_lanes(c, polish, x, imp);
                std::vector<float> yr(kRowLen), yo(kRowLen);
                c.dequant(ref.data(), yr.data(), kRowLen);
                c.dequant(ours.data(), yo.data(), kRowLen);
                for (int64_t b = 0; b < kRowLen / c.block_elems; ++b) {
                    const int64_t o = b * c.block_elems;
                    const double el = block_error(x.data() + o, yr.data() + o, imp ? imp + o : nullptr, c.block_elems);
                    const double eo = block_error(x.data() + o, yo.data() + o, imp ? imp + o : nullptr, c.block_elems);
                    if (!std::isfinite(el)) continue;
                    ASSERT_LE(eo, el) << c.name << " polish " << polish << " kind " << kind
                                      << (imp ? " with importance" : "") << " block " << b;
                    if (kind <= 3) {
                        total_llama += el;
                        total_ours += eo;
                    }
                }
            }
        }
        if (polish == 0) EXPECT_EQ(total_ours, total_llama) << c.name;
        else EXPECT_LT(total_ours, total_llama * 0.999) << c.name << " polish " << polish;
        std::printf("%-7s polish %d: error ratio %.4f\n", c.name, polish, total_ours / total_llama);
    }
}

// The format's default quantizer: never worse than llama.cpp per block, identical on every path.
TEST_P(LegacyLanes, DefaultQuantizerBeatsLlamaCppAndIsPathIndependent) {
    const FormatCase& c = GetParam();
    for (int kind = 0; kind < kKinds; ++kind) {
        const auto x = varied_row(kind, 400 + static_cast<uint32_t>(kind));
        const auto w = positive_weights(x.size(), 13);
        for (const float* imp : {static_cast<const float*>(nullptr), w.data()}) {
            std::vector<uint8_t> first;
            on_every_path([&](const char*) {
                std::vector<uint8_t> out(static_cast<size_t>(kRowLen / c.block_elems * c.block_bytes));
                c.fast(x.data(), out.data(), kRowLen, imp);
                if (first.empty()) first = out;
                ASSERT_EQ(first, out) << c.name << " kind " << kind;
            });
            std::vector<uint8_t> ref(first.size());
            c.llama(x.data(), ref.data(), kRowLen, imp);
            std::vector<float> yr(kRowLen), yo(kRowLen);
            c.dequant(ref.data(), yr.data(), kRowLen);
            c.dequant(first.data(), yo.data(), kRowLen);
            for (int64_t b = 0; b < kRowLen / c.block_elems; ++b) {
                const int64_t o = b * c.block_elems;
                const double el = block_error(x.data() + o, yr.data() + o, imp ? imp + o : nullptr, c.block_elems);
                const double eo = block_error(x.data() + o, yo.data() + o, imp ? imp + o : nullptr, c.block_elems);
                ASSERT_TRUE(std::isfinite(eo)) << c.name << " kind " << kind << " block " << b;
                if (std::isfinite(el)) {
                    ASSERT_LE(eo, el) << c.name << " kind " << kind << " block " << b;
                }
            }
        }
    }
}

// The wide search kept for --thorough: also never worse than llama.cpp per block, and at least
// as good as the fast default in total on ordinary data.
TEST_P(LegacyLanes, ThoroughSearchIsNeverWorse) {
    const FormatCase& c = GetParam();
    double total_fast = 0, total_thorough = 0;
    for (int kind : {0, 1, 2, 3, 6, 11}) {
        const auto x = varied_row(kind, 500 + static_cast<uint32_t>(kind));
        const auto w = positive_weights(x.size(), 17);
        for (const float* imp : {static_cast<const float*>(nullptr), w.data()}) {
            const size_t bytes = static_cast<size_t>(kRowLen / c.block_elems * c.block_bytes);
            std::vector<uint8_t> ref(bytes), fast(bytes), thorough(bytes);
            c.llama(x.data(), ref.data(), kRowLen, imp);
            c.fast(x.data(), fast.data(), kRowLen, imp);
            c.thorough(x.data(), thorough.data(), kRowLen, imp);
            std::vector<float> yr(kRowLen), yf(kRowLen), yt(kRowLen);
            c.dequant(ref.data(), yr.data(), kRowLen);
            c.dequant(fast.data(), yf.data(), kRowLen);
            c.dequant(thorough.data(), yt.data(), kRowLen);
            for (int64_t b = 0; b < kRowLen / c.block_elems; ++b) {
                const int64_t o = b * c.block_elems;
                const float* wb = imp ? imp + o : nullptr;
                const double el = block_error(x.data() + o, yr.data() + o, wb, c.block_elems);
                const double et = block_error(x.data() + o, yt.data() + o, wb, c.block_elems);
                ASSERT_LE(et, el) << c.name << " kind " << kind << " block " << b;
                total_thorough += et;
                total_fast += block_error(x.data() + o, yf.data() + o, wb, c.block_elems);
            }
        }
    }
    EXPECT_LE(total_thorough, total_fast) << c.name;
}

INSTANTIATE_TEST_SUITE_P(Formats, LegacyLanes, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<FormatCase>& info) { return std::string(info.param.name); });

TEST(LegacyLanesDispatch, ReportsThePathInUse) {
    int paths = 0;
    for (const char* name : {"sse2", "avx2", "avx512f"}) {
        if (!legacy_lanes::use_path(name)) continue;
        ++paths;
        EXPECT_STREQ(name, legacy_lanes::dispatch_path());
    }
    EXPECT_TRUE(legacy_lanes::use_path("best"));
    EXPECT_FALSE(legacy_lanes::use_path("no-such-path"));
#if defined(__x86_64__)
    EXPECT_GE(paths, 1);
#endif
    std::printf("legacy lane paths: %d (in use: %s)\n", paths, legacy_lanes::dispatch_path());
}

}  // namespace
}  // namespace qf
