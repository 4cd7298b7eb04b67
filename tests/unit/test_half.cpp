#include "common/half.h"

#include <gtest/gtest.h>
#include <immintrin.h>

#include <bit>
#include <cmath>
#include <random>
#include <vector>

// Our scalar f16 conversion must equal the hardware's (F16C, round to nearest even) on
// every finite value; ggml's NaN spelling is 0x7E00.
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f) {
    return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}

TEST(Half, F32ToF16MatchesHardwareOnEveryExponent) {
    if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "CPU without F16C";
    std::mt19937 rng(42);
    for (uint32_t hi = 0; hi < (1u << 9); ++hi) {  // sign + exponent
        for (int k = 0; k < 2000; ++k) {
            uint32_t bits = (hi << 23) | (rng() & 0x7FFFFFu);
            float f = std::bit_cast<float>(bits);
            if (std::isnan(f)) continue;
            ASSERT_EQ(qf::f32_to_f16(f), hw_f32_to_f16(f)) << std::hex << bits;
        }
    }
    EXPECT_EQ(qf::f32_to_f16(std::nanf("")), 0x7E00);
}

TEST(Half, F16RoundTripsEveryValue) {
    for (uint32_t h = 0; h < 65536; ++h) {
        float f = qf::f16_to_f32(static_cast<uint16_t>(h));
        if (std::isnan(f)) continue;
        ASSERT_EQ(qf::f32_to_f16(f), h) << h;
    }
}

TEST(Half, Bf16RoundsToNearestEven) {
    EXPECT_EQ(qf::f32_to_bf16(1.0f), 0x3F80);
    EXPECT_EQ(qf::f32_to_bf16(std::bit_cast<float>(0x3F808000u)), 0x3F80);  // tie -> even
    EXPECT_EQ(qf::f32_to_bf16(std::bit_cast<float>(0x3F818000u)), 0x3F82);  // tie -> even (up)
    EXPECT_EQ(qf::f32_to_bf16(std::bit_cast<float>(0x3F808001u)), 0x3F81);
    for (uint32_t h = 0; h < 65536; ++h) {
        float f = qf::bf16_to_f32(static_cast<uint16_t>(h));
        if (std::isnan(f)) continue;
        ASSERT_EQ(qf::f32_to_bf16(f), h);
    }
}

TEST(Half, NearestIntIsRoundHalfToEven) {
    EXPECT_EQ(qf::nearest_int(0.5f), 0);
    EXPECT_EQ(qf::nearest_int(1.5f), 2);
    EXPECT_EQ(qf::nearest_int(2.5f), 2);
    EXPECT_EQ(qf::nearest_int(-1.5f), -2);
    EXPECT_EQ(qf::nearest_int(-0.4f), 0);
    EXPECT_EQ(qf::nearest_int(7.6f), 8);
}

// The row conversion (F16C where the CPU has it) gives the scalar conversion's floats for every
// f16 value that is not a NaN, at any length and offset (the vector loop and its tail).
TEST(Half, F16RowConversionEqualsScalarForEveryValue) {
    std::vector<uint16_t> all;
    for (uint32_t h = 0; h < 65536; ++h)
        if (((h >> 10) & 0x1F) != 0x1F || (h & 0x3FF) == 0) all.push_back(static_cast<uint16_t>(h));  // no NaN
    std::vector<float> row(all.size());
    qf::f16_to_f32_row(all.data(), row.data(), static_cast<int64_t>(all.size()));
    for (size_t i = 0; i < all.size(); ++i)
        ASSERT_EQ(std::bit_cast<uint32_t>(row[i]), std::bit_cast<uint32_t>(qf::f16_to_f32(all[i]))) << all[i];
    for (int64_t n : {0, 1, 7, 8, 9, 15, 17}) {
        std::vector<float> part(static_cast<size_t>(n) + 1, -1.0f);
        qf::f16_to_f32_row(all.data() + 3, part.data(), n);
        for (int64_t i = 0; i < n; ++i) EXPECT_EQ(part[i], qf::f16_to_f32(all[3 + i]));
        EXPECT_EQ(part[n], -1.0f);  // nothing written past n
    }
}
