// Sanity of our dlopen declarations: ggml's own Q8_0 round trip through them is exact
// on values that Q8_0 represents exactly.
#include "support/llama_ggml_api.h"

#include <gtest/gtest.h>

#include <vector>

TEST(GgmlApi, LoadsAndRoundTripsQ8_0) {
    auto& api = qf::test::GgmlApi::get();
    ASSERT_TRUE(api.available()) << api.error();
    std::vector<float> row(64);
    for (int i = 0; i < 64; ++i) row[i] = static_cast<float>((i % 32) - 16) * 0.5f + (i == 0 ? -63.5f + 8.0f : 0.0f);
    row[0] = -63.5f;  // max |x| = 63.5 -> d = 0.5, every value a multiple of d
    std::vector<uint8_t> q(2 * 34);
    ASSERT_EQ(api.quantize_chunk(qf::GgmlType::Q8_0, row.data(), q.data(), 0, 1, 64, nullptr), 68u);
    std::vector<float> back(64);
    api.dequantize_row(qf::GgmlType::Q8_0, q.data(), back.data(), 64);
    for (int i = 0; i < 32; ++i) EXPECT_FLOAT_EQ(back[i], row[i]) << i;
    EXPECT_TRUE(api.validate_row_data(qf::GgmlType::Q8_0, q.data(), q.size()));
}
