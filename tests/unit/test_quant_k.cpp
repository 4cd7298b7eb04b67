// K-quant formats (Q2_K .. Q6_K) without llama.cpp:
//  * layout: blocks assembled here bit by bit from the documented layout (ggml-common.h) decode
//    to the values the formula gives; the scale packers agree with hand-packed bytes;
//  * round trips: error bounds on Gaussian rows, importance weights lowering the weighted
//    error, zeros and constants, power-of-two scale invariance, huge inputs staying finite;
//  * determinism: the same bytes however rows are split over threads.
// Comparisons with llama.cpp itself are in tests/interop/test_quant_k_interop.cpp.
#include "common/half.h"
#include "quant/kquant_common.h"
#include "quant/lane_search.h"
#include "quant/q2_k.h"
#include "quant/q3_k.h"
#include "quant/q4_k.h"
#include "quant/q5_k.h"
#include "quant/q6_k.h"
#include "quant/types.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace qf {
namespace {

constexpr GgmlType kKQuants[] = {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

// Sets bit `bit` of byte array b.
void set_bit(uint8_t* b, int byte, int bit) { b[byte] = static_cast<uint8_t>(b[byte] | (1u << bit)); }
// Writes the `width`-bit value v at bit offset `shift` of b[byte].
void put_bits(uint8_t* b, int byte, int shift, int width, int v) {
    b[byte] = static_cast<uint8_t>(b[byte] | ((v & ((1 << width) - 1)) << shift));
}

std::vector<float> gaussian(int64_t n, uint32_t seed, float sigma = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.0f, sigma);
    std::vector<float> v(n);
    for (float& x : v) x = g(rng);
    return v;
}

std::vector<uint8_t> quantize(GgmlType type, const std::vector<float>& x, const float* importance = nullptr) {
    const TypeTraits& t = traits(type);
    std::vector<uint8_t> q(*row_bytes(type, static_cast<int64_t>(x.size())));
    t.quantize(x.data(), q.data(), static_cast<int64_t>(x.size()), importance);
    return q;
}

std::vector<float> dequantize(GgmlType type, const std::vector<uint8_t>& q, int64_t n) {
    std::vector<float> y(n);
    traits(type).dequantize(q.data(), y.data(), n);
    return y;
}

double rmse(const std::vector<float>& x, const std::vector<float>& y, const float* w = nullptr) {
    double e = 0, sw = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        const double wi = w ? w[i % 1024] : 1.0;
        e += wi * (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
        sw += wi;
    }
    return std::sqrt(e / sw);
}

// ---- Layout: blocks built from the documented bit positions --------------------------------

TEST(QuantKLayout, Q4KScalePackingMatchesHandPackedBytes) {
    // Scales above 15 and mins above 15 for j >= 4 exercise the top-two-bit fields.
    const uint8_t sc[8] = {1, 2, 3, 4, 17, 18, 35, 63};
    const uint8_t m[8] = {0, 5, 10, 15, 20, 40, 50, 62};
    // Bytes 0-3: sc[j] | (sc[j+4]>>4)<<6; 4-7: m[j] | (m[j+4]>>4)<<6; 8-11: sc[j+4]&15 | (m[j+4]&15)<<4.
    const uint8_t expected[12] = {65, 66, 131, 196, 64, 133, 202, 207, 65, 130, 35, 239};
    uint8_t packed[12];
    kquant::pack_scale_min_k4(sc, m, packed);
    EXPECT_EQ(std::memcmp(packed, expected, 12), 0);
    uint8_t sc2[8], m2[8];
    kquant::unpack_scale_min_k4(expected, sc2, m2);
    for (int j = 0; j < 8; ++j) {
        EXPECT_EQ(sc2[j], sc[j]) << j;
        EXPECT_EQ(m2[j], m[j]) << j;
    }
}

TEST(QuantKLayout, ScalePackersRoundTripEveryValue) {
    std::mt19937 rng(5);
    for (int trial = 0; trial < 200; ++trial) {
        uint8_t sc[8], m[8], bytes[12], sc2[8], m2[8];
        for (int j = 0; j < 8; ++j) {
            sc[j] = static_cast<uint8_t>(rng() % 64);
            m[j] = static_cast<uint8_t>(rng() % 64);
        }
        kquant::pack_scale_min_k4(sc, m, bytes);
        kquant::unpack_scale_min_k4(bytes, sc2, m2);
        ASSERT_EQ(std::memcmp(sc, sc2, 8), 0);
        ASSERT_EQ(std::memcmp(m, m2, 8), 0);
    }
    for (int v = -32; v <= 31; ++v) {
        int8_t sc[16], sc2[16];
        for (int j = 0; j < 16; ++j) sc[j] = static_cast<int8_t>(((v + 32 + 7 * j) % 64) - 32);
        uint8_t bytes[12];
        kquant::pack_scales_q3_k(sc, bytes);
        kquant::unpack_scales_q3_k(bytes, sc2);
        ASSERT_EQ(std::memcmp(sc, sc2, 16), 0) << v;
    }
}

TEST(QuantKLayout, Q4KDecodesHandBuiltBlock) {
    const uint8_t sc[8] = {1, 2, 3, 4, 17, 18, 35, 63};
    const uint8_t m[8] = {0, 5, 10, 15, 20, 40, 50, 62};
    const uint8_t scale_bytes[12] = {65, 66, 131, 196, 64, 133, 202, 207, 65, 130, 35, 239};
    uint8_t block[144] = {};
    const uint16_t d = f32_to_f16(1.0f), dmin = f32_to_f16(0.5f);
    std::memcpy(block + 0, &d, 2);
    std::memcpy(block + 2, &dmin, 2);
    std::memcpy(block + 4, scale_bytes, 12);
    // Value e = 64c + 32h + l sits in qs[32c + l] (at offset 16), low nibble for h = 0.
    auto q_of = [](int e) { return (e * 7 + 3) % 16; };
    for (int e = 0; e < 256; ++e) put_bits(block, 16 + 32 * (e / 64) + e % 32, 4 * ((e / 32) % 2), 4, q_of(e));
    float y[256];
    dequantize_row_q4_K(block, y, 256);
    for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], 1.0f * sc[e / 32] * q_of(e) - 0.5f * m[e / 32]) << e;
}

TEST(QuantKLayout, Q5KDecodesHandBuiltBlock) {
    const uint8_t sc[8] = {1, 2, 3, 4, 17, 18, 35, 63};
    const uint8_t m[8] = {0, 5, 10, 15, 20, 40, 50, 62};
    const uint8_t scale_bytes[12] = {65, 66, 131, 196, 64, 133, 202, 207, 65, 130, 35, 239};
    uint8_t block[176] = {};
    const uint16_t d = f32_to_f16(0.25f), dmin = f32_to_f16(2.0f);
    std::memcpy(block + 0, &d, 2);
    std::memcpy(block + 2, &dmin, 2);
    std::memcpy(block + 4, scale_bytes, 12);
    // Low nibbles as Q4_K in qs (offset 48); the fifth bit of value 64c + 32h + l is bit 2c + h
    // of qh[l] (offset 16).
    auto q_of = [](int e) { return (e * 13 + 5) % 32; };
    for (int e = 0; e < 256; ++e) {
        const int c = e / 64, h = (e / 32) % 2, l = e % 32;
        put_bits(block, 48 + 32 * c + l, 4 * h, 4, q_of(e) & 15);
        if (q_of(e) & 16) set_bit(block, 16 + l, 2 * c + h);
    }
    float y[256];
    dequantize_row_q5_K(block, y, 256);
    for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], 0.25f * sc[e / 32] * q_of(e) - 2.0f * m[e / 32]) << e;
}

TEST(QuantKLayout, Q2KDecodesHandBuiltBlock) {
    uint8_t block[84] = {};
    auto sc_of = [](int j) { return (j * 5 + 1) % 16; };
    auto m_of = [](int j) { return 15 - j; };
    for (int j = 0; j < 16; ++j) block[j] = static_cast<uint8_t>(sc_of(j) | (m_of(j) << 4));
    // Value e = 128h + 32s + l: bits 2s, 2s+1 of qs[32h + l] (offset 16).
    auto q_of = [](int e) { return (e * 3 + e / 7) % 4; };
    for (int e = 0; e < 256; ++e) put_bits(block, 16 + 32 * (e / 128) + e % 32, 2 * ((e % 128) / 32), 2, q_of(e));
    const uint16_t d = f32_to_f16(0.25f), dmin = f32_to_f16(1.5f);
    std::memcpy(block + 80, &d, 2);
    std::memcpy(block + 82, &dmin, 2);
    float y[256];
    dequantize_row_q2_K(block, y, 256);
    for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], 0.25f * sc_of(e / 16) * q_of(e) - 1.5f * m_of(e / 16)) << e;
}

TEST(QuantKLayout, Q3KDecodesHandBuiltBlock) {
    uint8_t block[110] = {};
    // Scales s_j = j - 8, stored as u = s + 32: low nibble in byte j%8 (high half for j >= 8) at
    // offset 96, top two bits at bit 2*(j/4) of byte 8 + j%4.
    for (int j = 0; j < 16; ++j) {
        const int u = (j - 8) + 32;
        put_bits(block, 96 + j % 8, 4 * (j / 8), 4, u & 15);
        put_bits(block, 96 + 8 + j % 4, 2 * (j / 4), 2, u >> 4);
    }
    // Quant q in [-4, 3]: low two bits of q + 4 as in Q2_K (qs at offset 32); hmask bit e/32 of
    // byte e%32 is SET when q >= 0.
    auto q_of = [](int e) { return (e * 5 + e / 11) % 8 - 4; };
    for (int e = 0; e < 256; ++e) {
        const int v = q_of(e) + 4;
        put_bits(block, 32 + 32 * (e / 128) + e % 32, 2 * ((e % 128) / 32), 2, v & 3);
        if (v >= 4) set_bit(block, e % 32, e / 32);
    }
    const uint16_t d = f32_to_f16(0.5f);
    std::memcpy(block + 108, &d, 2);
    float y[256];
    dequantize_row_q3_K(block, y, 256);
    for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], 0.5f * (e / 16 - 8) * q_of(e)) << e;
}

TEST(QuantKLayout, Q6KDecodesHandBuiltBlock) {
    uint8_t block[210] = {};
    auto sc_of = [](int j) { return j * 17 - 128; };  // -128 .. 127
    for (int j = 0; j < 16; ++j) block[192 + j] = static_cast<uint8_t>(static_cast<int8_t>(sc_of(j)));
    // Value e = 128h + 32k + l (q + 32 stored): low nibble in ql[64h + 32(k%2) + l], high nibble
    // half for k >= 2; top two bits at bit 2k of qh[32h + l] (offset 128).
    auto q_of = [](int e) { return (e * 11 + e / 5) % 64 - 32; };
    for (int e = 0; e < 256; ++e) {
        const int h = e / 128, k = (e % 128) / 32, l = e % 32, v = q_of(e) + 32;
        put_bits(block, 64 * h + 32 * (k % 2) + l, 4 * (k / 2), 4, v & 15);
        put_bits(block, 128 + 32 * h + l, 2 * k, 2, v >> 4);
    }
    const uint16_t d = f32_to_f16(0.125f);
    std::memcpy(block + 208, &d, 2);
    float y[256];
    dequantize_row_q6_K(block, y, 256);
    for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], 0.125f * sc_of(e / 16) * q_of(e)) << e;
}

TEST(QuantKLayout, TypeTableRowsPointAtTheKernels) {
    for (GgmlType type : kKQuants) {
        const TypeTraits& t = traits(type);
        EXPECT_EQ(t.block_elems, 256);
        EXPECT_NE(t.quantize, nullptr) << t.name;
        EXPECT_NE(t.dequantize, nullptr) << t.name;
        EXPECT_TRUE(t.uses_importance) << t.name;
    }
    EXPECT_EQ(sizeof(BlockQ2K), 84u);
    EXPECT_EQ(sizeof(BlockQ3K), 110u);
    EXPECT_EQ(sizeof(BlockQ4K), 144u);
    EXPECT_EQ(sizeof(BlockQ5K), 176u);
    EXPECT_EQ(sizeof(BlockQ6K), 210u);
}

// ---- Round trips ------------------------------------------------------------------------------

class QuantKRoundTrip : public ::testing::TestWithParam<GgmlType> {};

// Unit Gaussian, 16 rows of 1024: RMSE / sigma stays below a bound about 10% above what the
// search reaches (llama.cpp's own quantizers: 0.30, 0.152, 0.072, 0.036, 0.018).
TEST_P(QuantKRoundTrip, GaussianErrorBound) {
    const GgmlType type = GetParam();
    const double bound = type == GgmlType::Q2_K   ? 0.29
                         : type == GgmlType::Q3_K ? 0.16
                         : type == GgmlType::Q4_K ? 0.078
                         : type == GgmlType::Q5_K ? 0.038
                                                  : 0.019;
    const std::vector<float> x = gaussian(16 * 1024, 1);
    const std::vector<float> y = dequantize(type, quantize(type, x), static_cast<int64_t>(x.size()));
    EXPECT_LT(rmse(x, y), bound) << type_name(type);
    // Every value within a few quantization steps of the original: no scrambled positions.
    double max_err = 0;
    for (size_t i = 0; i < x.size(); ++i) max_err = std::max(max_err, std::fabs(static_cast<double>(x[i]) - y[i]));
    EXPECT_LT(max_err, 12 * bound) << type_name(type);
}

TEST_P(QuantKRoundTrip, ImportanceLowersTheWeightedError) {
    const GgmlType type = GetParam();
    const std::vector<float> x = gaussian(16 * 1024, 2);
    std::mt19937 rng(3);
    std::lognormal_distribution<float> ln(0.0f, 1.5f);
    std::vector<float> imp(16 * 1024);
    for (int i = 0; i < 1024; ++i) imp[i] = ln(rng);
    for (int r = 1; r < 16; ++r) std::copy(imp.begin(), imp.begin() + 1024, imp.begin() + 1024 * r);
    std::vector<float> y_plain(x.size()), y_imp(x.size());
    const TypeTraits& t = traits(type);
    const uint64_t rb = *row_bytes(type, 1024);
    std::vector<uint8_t> q(rb);
    for (int r = 0; r < 16; ++r) {
        t.quantize(x.data() + 1024 * r, q.data(), 1024, nullptr);
        t.dequantize(q.data(), y_plain.data() + 1024 * r, 1024);
        t.quantize(x.data() + 1024 * r, q.data(), 1024, imp.data());
        t.dequantize(q.data(), y_imp.data() + 1024 * r, 1024);
    }
    EXPECT_LT(rmse(x, y_imp, imp.data()), 0.9 * rmse(x, y_plain, imp.data())) << type_name(type);
}

TEST_P(QuantKRoundTrip, ZerosDecodeToZeros) {
    const GgmlType type = GetParam();
    const std::vector<float> x(512, 0.0f);
    for (const float v : dequantize(type, quantize(type, x), 512)) EXPECT_EQ(v, 0.0f) << type_name(type);
}

TEST_P(QuantKRoundTrip, ConstantRowsAreNearlyExact) {
    const GgmlType type = GetParam();
    for (const float c : {0.37f, -1.25f, 12.3456789f, -0.001234f}) {
        const std::vector<float> x(512, c);
        const std::vector<float> y = dequantize(type, quantize(type, x), 512);
        EXPECT_LT(rmse(x, y), 2e-3 * std::fabs(c)) << type_name(type) << " " << c;
    }
}

TEST_P(QuantKRoundTrip, PowerOfTwoScalingScalesTheResultExactly) {
    // Every step of the search is exact under scaling by 4 as long as the fp16 super-scales stay
    // normal numbers (sigma 1 gives Q6_K's d about 7e-4, above the subnormal range), so the
    // chosen encoding is the same and only the super-scales' exponents change.
    const GgmlType type = GetParam();
    std::vector<float> x = gaussian(2048, 4, 1.0f);
    std::vector<float> x4(x.size());
    for (size_t i = 0; i < x.size(); ++i) x4[i] = 4.0f * x[i];
    const std::vector<float> y = dequantize(type, quantize(type, x), 2048);
    const std::vector<float> y4 = dequantize(type, quantize(type, x4), 2048);
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(y4[i], 4.0f * y[i]) << type_name(type) << " at " << i;
}

TEST_P(QuantKRoundTrip, HugeAndTinyInputsStayFinite) {
    const GgmlType type = GetParam();
    for (const float sigma : {1e9f, 1e6f, 1e-6f, 1e-30f}) {
        const std::vector<float> x = gaussian(512, 6, sigma);
        const std::vector<float> y = dequantize(type, quantize(type, x), 512);
        for (const float v : y) ASSERT_TRUE(std::isfinite(v)) << type_name(type) << " sigma " << sigma;
        // 1e-30 is below the smallest fp16 step (6e-8): zeros are the best there is.
        if (sigma >= 1e-6f && sigma <= 1e6f) {
            EXPECT_LT(rmse(x, y), 0.5 * sigma) << type_name(type) << " sigma " << sigma;
        }
    }
}

TEST_P(QuantKRoundTrip, ZeroImportanceColumnsAreAllowed) {
    const GgmlType type = GetParam();
    const std::vector<float> x = gaussian(1024, 7);
    std::vector<float> imp(1024, 1.0f);
    for (int i = 0; i < 1024; i += 2) imp[i] = 0.0f;   // every other column ignored
    for (int i = 512; i < 768; ++i) imp[i] = 0.0f;     // and one whole super-block
    const std::vector<float> y = dequantize(type, quantize(type, x, imp.data()), 1024);
    for (const float v : y) ASSERT_TRUE(std::isfinite(v));
    EXPECT_LT(rmse(x, y, imp.data()), 0.35) << type_name(type);
}

TEST_P(QuantKRoundTrip, SameBytesForAnyRowSplitAndThreadCount) {
    const GgmlType type = GetParam();
    const int64_t n = 1024, rows = 12;
    const std::vector<float> x = gaussian(n * rows, 8);
    const TypeTraits& t = traits(type);
    const uint64_t rb = *row_bytes(type, n);
    std::vector<uint8_t> whole(rb * rows), per_row(rb * rows), threaded(rb * rows);
    t.quantize(x.data(), whole.data(), n * rows, nullptr);  // all rows as one long row
    for (int64_t r = 0; r < rows; ++r) t.quantize(x.data() + r * n, per_row.data() + r * rb, n, nullptr);
#pragma omp parallel for num_threads(4) schedule(dynamic, 1)
    for (int64_t r = 0; r < rows; ++r) t.quantize(x.data() + r * n, threaded.data() + r * rb, n, nullptr);
    EXPECT_EQ(whole, per_row) << type_name(type);
    EXPECT_EQ(threaded, per_row) << type_name(type);
}

// The three encoders of each K-quant: llama.cpp's (bit-exact re-expression, lane-parallel), the
// default (llama.cpp's polished) and --thorough. Per block neither of ours may be worse than
// llama.cpp's, and on Gaussian data both must be better overall; every SIMD path must give the
// default's bytes.
struct KEncoders {
    QuantizeRowFn llama, thorough;
};
KEncoders encoders(GgmlType type) {
    switch (type) {
        case GgmlType::Q2_K: return {quantize_row_q2_K_llama, quantize_row_q2_K_thorough};
        case GgmlType::Q3_K: return {quantize_row_q3_K_llama, quantize_row_q3_K_thorough};
        case GgmlType::Q4_K: return {quantize_row_q4_K_llama, quantize_row_q4_K_thorough};
        case GgmlType::Q5_K: return {quantize_row_q5_K_llama, quantize_row_q5_K_thorough};
        default: return {quantize_row_q6_K_llama, quantize_row_q6_K_thorough};
    }
}

float sigma2_factor(GgmlType type) {
    switch (type) {
        case GgmlType::Q2_K: return 1.0f;
        case GgmlType::Q6_K: return 0.0f;
        default: return 2.0f;
    }
}

TEST_P(QuantKRoundTrip, DefaultAndThoroughNeverWorseThanLlamaPerBlock) {
    const GgmlType type = GetParam();
    const TypeTraits& t = traits(type);
    const int64_t n = 256 * 64;
    std::vector<float> x = gaussian(n, 21);
    for (int64_t i = 0; i < n; i += 97) x[i] *= 8.0f;  // some outliers
    std::vector<float> imp = gaussian(n, 22);
    for (float& v : imp) v = v * v + 0.01f;
    for (const float* w : {static_cast<const float*>(nullptr), static_cast<const float*>(imp.data())}) {
        const uint64_t rb = *row_bytes(type, n);
        std::vector<uint8_t> ql(rb), qd(rb), qt(rb);
        encoders(type).llama(x.data(), ql.data(), n, w);
        t.quantize(x.data(), qd.data(), n, w);
        encoders(type).thorough(x.data(), qt.data(), n, w);
        const auto yl = dequantize(type, ql, n), yd = dequantize(type, qd, n), yt = dequantize(type, qt, n);
        // The default judges blocks with the weights llama.cpp's search uses for the format
        // (importance * sqrt(f * mean(x^2) + x^2)); --thorough with the importance itself.
        const float factor = sigma2_factor(type);
        double el_all = 0, ed_all = 0, et_all = 0;
        for (int64_t b = 0; b < n / 256; ++b) {
            float sum_x2 = 0;
            for (int64_t i = b * 256; i < (b + 1) * 256; ++i) sum_x2 += x[i] * x[i];
            double el = 0, ed = 0, et = 0, el_d = 0, ed_d = 0;
            for (int64_t i = b * 256; i < (b + 1) * 256; ++i) {
                const double wi = w ? w[i] : 1.0;
                const double wd = (w && factor > 0) ? w[i] * std::sqrt(factor * sum_x2 / 256 + x[i] * x[i]) : wi;
                el += wi * (x[i] - yl[i]) * (x[i] - yl[i]);
                ed += wi * (x[i] - yd[i]) * (x[i] - yd[i]);
                et += wi * (x[i] - yt[i]) * (x[i] - yt[i]);
                el_d += wd * (x[i] - yl[i]) * (x[i] - yl[i]);
                ed_d += wd * (x[i] - yd[i]) * (x[i] - yd[i]);
            }
            ASSERT_LE(ed_d, el_d * (1 + 1e-6)) << type_name(type) << " block " << b;
            ASSERT_LE(et, el) << type_name(type) << " block " << b;
            el_all += el;
            ed_all += ed;
            et_all += et;
        }
        // Overall, both are better than llama.cpp by the plain (importance-weighted) error too.
        EXPECT_LT(ed_all, 0.995 * el_all) << type_name(type) << (w ? " with importance" : "");
        EXPECT_LT(et_all, 0.995 * el_all) << type_name(type) << (w ? " with importance" : "");
    }
}

TEST_P(QuantKRoundTrip, EverySimdPathGivesTheSameBytes) {
    const GgmlType type = GetParam();
    const int64_t n = 256 * 40;
    const std::vector<float> x = gaussian(n, 31);
    const std::vector<float> imp = gaussian(n, 32);
    std::vector<float> w(n);
    for (int64_t i = 0; i < n; ++i) w[i] = imp[i] * imp[i];
    std::vector<uint8_t> first_plain, first_weighted;
    for (const char* path : {"sse2", "avx2", "avx512f"}) {
        if (!lanes::use_path(path)) continue;
        const auto plain = quantize(type, x), weighted = quantize(type, x, w.data());
        if (first_plain.empty()) {
            first_plain = plain;
            first_weighted = weighted;
        }
        EXPECT_EQ(first_plain, plain) << type_name(type) << " " << path;
        EXPECT_EQ(first_weighted, weighted) << type_name(type) << " " << path;
    }
    lanes::use_path("best");
}

INSTANTIATE_TEST_SUITE_P(KQuants, QuantKRoundTrip, ::testing::ValuesIn(kKQuants),
                         [](const ::testing::TestParamInfo<GgmlType>& info) { return std::string(type_name(info.param)); });

}  // namespace
}  // namespace qf
