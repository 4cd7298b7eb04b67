// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, IQ4_XS without llama.cpp: byte layouts decoded from
// hand-built blocks (expected values worked out from the format description), exact
// representation of representable blocks, zeros, round-trip error bounds, the effect of
// importance weights, fp16 scale limits, determinism across threads.
#include "common/half.h"
#include "quant/iq4.h"
#include "quant/q4_0.h"
#include "quant/q4_1.h"
#include "quant/q5_0.h"
#include "quant/q5_1.h"
#include "quant/q8_0.h"
#include "quant/types.h"
#include "support/quant_data.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

namespace qf {
namespace {

constexpr GgmlType kLegacyFormats[] = {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                                       GgmlType::Q8_0, GgmlType::IQ4_NL, GgmlType::IQ4_XS};

std::vector<uint8_t> encode(GgmlType type, const std::vector<float>& x, int64_t n_per_row, const float* importance) {
    const uint64_t rb = *row_bytes(type, n_per_row);
    std::vector<uint8_t> out(rb * (x.size() / n_per_row));
    for (size_t r = 0; r < x.size() / n_per_row; ++r)
        traits(type).quantize(x.data() + r * n_per_row, out.data() + r * rb, n_per_row, importance);
    return out;
}

std::vector<float> decode(GgmlType type, const std::vector<uint8_t>& bytes, int64_t n) {
    std::vector<float> y(n);
    traits(type).dequantize(bytes.data(), y.data(), n);
    return y;
}

void put_u16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
    b[at] = static_cast<uint8_t>(v & 0xFF);
    b[at + 1] = static_cast<uint8_t>(v >> 8);
}

uint16_t h(float v) {
    const uint16_t bits = f32_to_f16(v);
    EXPECT_EQ(f16_to_f32(bits), v) << "test constant not representable in fp16";
    return bits;
}

// ------------------------------------------------------------------ type table wiring

TEST(QuantLegacy, TypeTableHasTheKernels) {
    EXPECT_EQ(traits(GgmlType::Q4_0).quantize, &quantize_row_q4_0);
    EXPECT_EQ(traits(GgmlType::Q4_0).dequantize, &dequantize_row_q4_0);
    EXPECT_EQ(traits(GgmlType::Q4_1).quantize, &quantize_row_q4_1);
    EXPECT_EQ(traits(GgmlType::Q5_0).quantize, &quantize_row_q5_0);
    EXPECT_EQ(traits(GgmlType::Q5_1).quantize, &quantize_row_q5_1);
    EXPECT_EQ(traits(GgmlType::Q8_0).quantize, &quantize_row_q8_0);
    EXPECT_EQ(traits(GgmlType::IQ4_NL).dequantize, &dequantize_row_iq4_nl);
    EXPECT_EQ(traits(GgmlType::IQ4_XS).dequantize, &dequantize_row_iq4_xs);
    EXPECT_EQ(*row_bytes(GgmlType::IQ4_XS, 512), 272u);
}

// ------------------------------------------------------------------ layouts (decoding)

TEST(QuantLegacy, Q4_0Layout) {
    std::vector<uint8_t> b(18, 0x88);  // every code 8 -> 0
    put_u16(b, 0, h(1.5f));
    b[2 + 0] = 0x9F;   // elem 0: code 15 -> +7; elem 16: code 9 -> +1
    b[2 + 15] = 0x0F;  // elem 15: 15 -> +7; elem 31: 0 -> -8
    const std::vector<float> y = decode(GgmlType::Q4_0, b, 32);
    EXPECT_EQ(y[0], 7 * 1.5f);
    EXPECT_EQ(y[16], 1 * 1.5f);
    EXPECT_EQ(y[15], 7 * 1.5f);
    EXPECT_EQ(y[31], -8 * 1.5f);
    EXPECT_EQ(y[5], 0.0f);
}

TEST(QuantLegacy, Q4_1Layout) {
    std::vector<uint8_t> b(20, 0);
    put_u16(b, 0, h(0.5f));
    put_u16(b, 2, h(-1.0f));
    b[4 + 3] = 0x2A;  // elem 3: 10 -> 4; elem 19: 2 -> 0
    const std::vector<float> y = decode(GgmlType::Q4_1, b, 32);
    EXPECT_EQ(y[3], 4.0f);
    EXPECT_EQ(y[19], 0.0f);
    EXPECT_EQ(y[0], -1.0f);
}

TEST(QuantLegacy, Q5_0Layout) {
    std::vector<uint8_t> b(22, 0);
    put_u16(b, 0, h(2.0f));
    const uint32_t qh = (1u << 5) | (1u << 21) | (1u << 31);
    std::memcpy(b.data() + 2, &qh, 4);  // little-endian host, as the format
    b[6 + 5] = 0x31;                    // elem 5: 1 | 16 -> +1; elem 21: 3 | 16 -> +3
    b[6 + 15] = 0xF0;                   // elem 15: 0 -> -16; elem 31: 15 | 16 -> +15
    const std::vector<float> y = decode(GgmlType::Q5_0, b, 32);
    EXPECT_EQ(y[5], 2.0f);
    EXPECT_EQ(y[21], 6.0f);
    EXPECT_EQ(y[15], -32.0f);
    EXPECT_EQ(y[31], 30.0f);
    EXPECT_EQ(y[0], -32.0f);
}

TEST(QuantLegacy, Q5_1Layout) {
    std::vector<uint8_t> b(24, 0);
    put_u16(b, 0, h(0.25f));
    put_u16(b, 2, h(10.0f));
    const uint32_t qh = 1u << 17;
    std::memcpy(b.data() + 4, &qh, 4);
    b[8 + 1] = 0x7C;  // elem 1: 12 -> 13; elem 17: 7 | 16 = 23 -> 15.75
    const std::vector<float> y = decode(GgmlType::Q5_1, b, 32);
    EXPECT_EQ(y[1], 13.0f);
    EXPECT_EQ(y[17], 15.75f);
    EXPECT_EQ(y[0], 10.0f);
}

TEST(QuantLegacy, Q8_0Layout) {
    std::vector<uint8_t> b(34, 0);
    put_u16(b, 0, h(0.25f));
    b[2 + 7] = 0x80;   // -128
    b[2 + 31] = 0x7F;  // 127
    b[2 + 0] = 0xFF;   // -1
    const std::vector<float> y = decode(GgmlType::Q8_0, b, 32);
    EXPECT_EQ(y[7], -32.0f);
    EXPECT_EQ(y[31], 31.75f);
    EXPECT_EQ(y[0], -0.25f);
    EXPECT_EQ(y[1], 0.0f);
}

TEST(QuantLegacy, Iq4NlLayout) {
    std::vector<uint8_t> b(18, 0x88);
    put_u16(b, 0, h(0.5f));
    b[2 + 0] = 0xF0;  // elem 0: table[0] = -127; elem 16: table[15] = 113
    const std::vector<float> y = decode(GgmlType::IQ4_NL, b, 32);
    EXPECT_EQ(y[0], -63.5f);
    EXPECT_EQ(y[16], 56.5f);
    EXPECT_EQ(y[1], 0.5f);  // table[8] = 1
}

TEST(QuantLegacy, Iq4XsLayout) {
    std::vector<uint8_t> b(136, 0x88);
    put_u16(b, 0, h(1.0f));
    // Sub-block 3: low nibble 5 in the high half of scales_l[1], high bits 2 at bits 6-7 of
    // scales_h: ls = 5 | 2 << 4 = 37 -> scale 5. All other sub-blocks: ls = 0x8 -> -24.
    const uint16_t scales_h = 2u << 6;
    put_u16(b, 2, scales_h);
    b[4 + 1] = 0x58;
    b[8 + 16 * 3 + 2] = 0x81;  // elem 98: table[1] = -104; elem 114: table[8] = 1
    const std::vector<float> y = decode(GgmlType::IQ4_XS, b, 256);
    EXPECT_EQ(y[98], -520.0f);
    EXPECT_EQ(y[114], 5.0f);
    EXPECT_EQ(y[96], 5.0f);
    EXPECT_EQ(y[0], -24.0f);   // sub-block 0: ls = 8 -> -24, table[8] = 1
    EXPECT_EQ(y[64], -24.0f);  // sub-block 2: low nibble of scales_l[1] = 8, high bits 0
}

// ------------------------------------------------------------------ encoding

// Rows built from values the format represents exactly (with every extreme level present)
// must come back exactly, with and without importance.
std::vector<float> representable_row(GgmlType type, int64_t n, uint32_t seed) {
    std::vector<float> x(n);
    uint32_t s = seed;
    auto next = [&](int mod) {
        s = s * 1664525u + 1013904223u;
        return static_cast<int>((s >> 8) % static_cast<uint32_t>(mod));
    };
    const float scales[] = {0.015625f, 0.5f, 3.0f, 0.0078125f};
    for (int64_t b = 0; b < n / 32; ++b) {
        // IQ4_XS shares one fp16 scale over 8 blocks of 32.
        const float d = scales[(type == GgmlType::IQ4_XS ? b / 8 : b) % 4];
        float* xb = x.data() + b * 32;
        for (int j = 0; j < 32; ++j) {
            switch (type) {
                case GgmlType::Q4_0: xb[j] = static_cast<float>(j == 3 ? -8 : next(16) - 8) * d; break;
                case GgmlType::Q5_0: xb[j] = static_cast<float>(j == 3 ? -16 : next(32) - 16) * d; break;
                case GgmlType::Q8_0: xb[j] = static_cast<float>(j == 3 ? -127 : next(255) - 127) * d; break;
                case GgmlType::Q4_1: xb[j] = static_cast<float>(j == 3 ? 0 : j == 4 ? 15 : next(16)) * d + -2.0f; break;
                case GgmlType::Q5_1: xb[j] = static_cast<float>(j == 3 ? 0 : j == 4 ? 31 : next(32)) * d + 1.5f; break;
                case GgmlType::IQ4_NL: xb[j] = d * static_cast<float>(kIq4nlValues[j == 3 ? 0 : next(16)]); break;
                case GgmlType::IQ4_XS: {
                    // d_super = d, sub-block scale l in [-32, 31]; sub-block 0 of each super-block uses -32.
                    const int l = (b % 8 == 0) ? -32 : (static_cast<int>(b * 7 % 60) - 28);
                    xb[j] = (d * static_cast<float>(l)) * static_cast<float>(kIq4nlValues[j == 3 ? 0 : next(16)]);
                    break;
                }
                default: ADD_FAILURE();
            }
        }
    }
    return x;
}

class LegacyFormat : public ::testing::TestWithParam<GgmlType> {};

TEST_P(LegacyFormat, RepresentableRowsComeBackExactly) {
    const GgmlType type = GetParam();
    const int64_t n = 512;
    const std::vector<float> imp = test::random_importance(n, 3);
    for (uint32_t seed = 1; seed <= 8; ++seed) {
        const std::vector<float> x = representable_row(type, n, seed);
        for (const float* importance : {static_cast<const float*>(nullptr), imp.data()}) {
            const std::vector<float> y = decode(type, encode(type, x, n, importance), n);
            for (int64_t j = 0; j < n; ++j)
                ASSERT_EQ(y[j], x[j]) << type_name(type) << " seed " << seed << " element " << j
                                      << (importance ? " with importance" : "");
        }
    }
}

TEST_P(LegacyFormat, ZerosEncodeToZeros) {
    const GgmlType type = GetParam();
    const int64_t n = 256;
    const std::vector<float> x(n, 0.0f), imp = test::random_importance(n, 5);
    for (const float* importance : {static_cast<const float*>(nullptr), imp.data()}) {
        const std::vector<float> y = decode(type, encode(type, x, n, importance), n);
        for (float v : y) ASSERT_EQ(v, 0.0f) << type_name(type);
    }
}

// Relative RMSE on Gaussian rows against bounds from the level count (uniform step over the
// block range, RMSE ~ step / sqrt(12), with margin), plus a per-element bound.
TEST_P(LegacyFormat, GaussianRoundTripWithinBounds) {
    const GgmlType type = GetParam();
    double bound = 0;
    switch (type) {
        case GgmlType::Q4_0: bound = 0.12; break;
        case GgmlType::Q4_1: bound = 0.11; break;
        case GgmlType::Q5_0: bound = 0.06; break;
        case GgmlType::Q5_1: bound = 0.055; break;
        case GgmlType::Q8_0: bound = 0.008; break;
        case GgmlType::IQ4_NL: bound = 0.12; break;
        case GgmlType::IQ4_XS: bound = 0.12; break;
        default: FAIL();
    }
    const int64_t n = 1024;
    const auto sets = test::synthetic_rowsets(n, 8, 21);
    const test::RowSet& gauss = sets[0];
    ASSERT_EQ(gauss.name, "synthetic:gaussian");
    for (int64_t r = 0; r < gauss.n_rows(); ++r) {
        const std::vector<float> x(gauss.data.begin() + r * n, gauss.data.begin() + (r + 1) * n);
        const std::vector<float> y = decode(type, encode(type, x, n, nullptr), n);
        double err2 = 0, sig2 = 0;
        for (int64_t j = 0; j < n; ++j) {
            err2 += (x[j] - y[j]) * static_cast<double>(x[j] - y[j]);
            sig2 += x[j] * static_cast<double>(x[j]);
        }
        EXPECT_LT(std::sqrt(err2 / sig2), bound) << type_name(type) << " row " << r;
        for (int64_t b = 0; b < n / 32; ++b) {  // no element further off than half its block's range
            float amax = 0;
            for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
            for (int j = 0; j < 32; ++j) ASSERT_LE(std::fabs(x[b * 32 + j] - y[b * 32 + j]), 0.5f * amax) << b << " " << j;
        }
    }
}

// Importance weights must steer the search: the weighted error with the weights is lower than
// the weighted error of the encoding made without them.
TEST_P(LegacyFormat, ImportanceLowersWeightedError) {
    const GgmlType type = GetParam();
    const int64_t n = 1024;
    const auto sets = test::synthetic_rowsets(n, 8, 23);
    const std::vector<float> imp = test::random_importance(n, 9);
    test::ErrorStats with, without;
    for (const test::RowSet& s : sets) {
        if (s.name != "synthetic:gaussian" && s.name != "synthetic:laplace") continue;
        const std::vector<float> yw = decode(type, encode(type, s.data, n, imp.data()), static_cast<int64_t>(s.data.size()));
        const std::vector<float> yo = decode(type, encode(type, s.data, n, nullptr), static_cast<int64_t>(s.data.size()));
        for (int64_t r = 0; r < s.n_rows(); ++r) {
            with.add(s.data.data() + r * n, yw.data() + r * n, imp.data(), n);
            without.add(s.data.data() + r * n, yo.data() + r * n, imp.data(), n);
        }
    }
    EXPECT_LT(with.rmse(), 0.9 * without.rmse()) << type_name(type);
}

// Values far beyond fp16: the stored scales stay finite (ggml would store inf and then reject
// the data in ggml_validate_row_data).
TEST_P(LegacyFormat, ScalesStayFiniteForHugeValues) {
    const GgmlType type = GetParam();
    const int64_t n = 256;
    std::vector<float> x(n);
    for (int64_t j = 0; j < n; ++j) x[j] = static_cast<float>((j % 7) - 3) * 3e6f;
    const std::vector<float> y = decode(type, encode(type, x, n, nullptr), n);
    for (float v : y) ASSERT_TRUE(std::isfinite(v)) << type_name(type);
}

// Same bytes whether rows are encoded one after another or by several threads at once, and
// on a repeated call.
TEST_P(LegacyFormat, BytesDoNotDependOnThreads) {
    const GgmlType type = GetParam();
    const int64_t n = 512, rows = 32;
    const auto sets = test::synthetic_rowsets(n, rows, 29);
    const test::RowSet& s = sets[1];
    const std::vector<float> imp = test::random_importance(n, 4);
    const std::vector<uint8_t> serial = encode(type, s.data, n, imp.data());
    EXPECT_EQ(encode(type, s.data, n, imp.data()), serial);
    const uint64_t rb = *row_bytes(type, n);
    std::vector<uint8_t> parallel(serial.size());
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int64_t r = t; r < rows; r += 4)
                traits(type).quantize(s.data.data() + r * n, parallel.data() + r * rb, n, imp.data());
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(parallel, serial);
}

INSTANTIATE_TEST_SUITE_P(Formats, LegacyFormat, ::testing::ValuesIn(kLegacyFormats),
                         [](const ::testing::TestParamInfo<GgmlType>& info) { return std::string(type_name(info.param)); });

}  // namespace
}  // namespace qf
