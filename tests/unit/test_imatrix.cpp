// Importance matrices: the collector against a naive computation (which weights, which
// products, the sums and the counts llama-imatrix would keep), and the writers' files read
// back field by field (GGUF keys, types, tensor order and shapes; the legacy .dat bytes laid
// out by hand from llama-imatrix's save_imatrix_legacy) and through load_imatrix.
// llama.cpp itself reading our files: tests/interop/test_imatrix_interop.cpp.
#include "common/error.h"
#include "eval/imatrix_collect.h"
#include "gguf/gguf_reader.h"
#include "pipeline/imatrix_file.h"
#include "support/test_paths.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace fs = std::filesystem;
using namespace qf;
using qf::test::read_file;

namespace {

std::vector<float> random_activations(size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

// Column sums of squares in double: the reference the float sums must approximate.
std::vector<double> naive_sums(const std::vector<std::vector<float>>& calls, size_t ne0) {
    std::vector<double> s(ne0, 0.0);
    for (const auto& x : calls)
        for (size_t i = 0; i < x.size(); ++i) s[i % ne0] += static_cast<double>(x[i]) * x[i];
    return s;
}

template <class T>
void append(std::string& out, T v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

ImatrixData sample_data() {
    ImatrixData d;
    d.datasets = {"calib.txt"};
    d.chunk_count = 3;
    d.chunk_size = 512;
    d.entries["blk.0.attn_q.weight"] = {{1.0f, 4.0f, 9.0f, 16.0f}, {1536}};
    d.entries["blk.0.attn_k.weight"] = {{2.0f, 0.5f, 8.0f, 3.0f}, {1024}};
    // Two matrices, the second never used: importance 1 there, as llama.cpp's loader says.
    d.entries["blk.1.ffn_up.weight"] = {{3.0f, 6.0f, 5.0f, 7.0f}, {3, 0}};
    return d;
}

}  // namespace

TEST(ImatrixCollector, SumsAndCountsMatchANaiveComputation) {
    ImatrixCollector c;
    const size_t ne_q = 64, ne_down = 96;
    std::vector<std::vector<float>> q_calls, down_calls;
    const int64_t q_rows[] = {32, 16, 100};
    uint32_t seed = 1;
    for (int64_t rows : q_rows) {
        q_calls.push_back(random_activations(ne_q * rows, seed++));
        c.observe("blk.0.attn_q.weight", q_calls.back(), rows);
        down_calls.push_back(random_activations(ne_down * rows, seed++, 3.0f));
        c.observe("blk.3.ffn_down.weight", down_calls.back(), rows);
    }
    // Not collected: fewer than 16 rows, non-block weights, output.weight without process_output.
    c.observe("blk.0.attn_q.weight", random_activations(ne_q * 15, 99), 15);
    c.observe("token_embd.weight", random_activations(ne_q * 32, 98), 32);
    c.observe("output.weight", random_activations(ne_q * 32, 97), 32);
    EXPECT_FALSE(c.collects("output.weight"));
    EXPECT_FALSE(c.collects("token_embd.weight"));
    EXPECT_TRUE(c.collects("blk.12.attn_output.weight"));

    const ImatrixData d = c.data(74, {"t.txt"});
    ASSERT_EQ(d.entries.size(), 2u);
    const auto& q = d.entries.at("blk.0.attn_q.weight");
    const auto& down = d.entries.at("blk.3.ffn_down.weight");
    EXPECT_EQ(q.counts, std::vector<int64_t>({148}));
    EXPECT_EQ(down.counts, std::vector<int64_t>({148}));
    EXPECT_EQ(d.chunk_count, 2u);  // 148 / 74
    EXPECT_EQ(d.chunk_size, 74u);
    EXPECT_EQ(d.datasets, std::vector<std::string>({"t.txt"}));
    const auto ref_q = naive_sums(q_calls, ne_q), ref_down = naive_sums(down_calls, ne_down);
    ASSERT_EQ(q.in_sum2.size(), ne_q);
    ASSERT_EQ(down.in_sum2.size(), ne_down);
    for (size_t j = 0; j < ne_q; ++j) EXPECT_NEAR(q.in_sum2[j], ref_q[j], 1e-5 * ref_q[j]) << j;
    for (size_t j = 0; j < ne_down; ++j) EXPECT_NEAR(down.in_sum2[j], ref_down[j], 1e-5 * ref_down[j]) << j;
}

TEST(ImatrixCollector, ProcessOutputCollectsOutputWeightOnly) {
    ImatrixCollector c(true);
    EXPECT_TRUE(c.collects("output.weight"));
    EXPECT_FALSE(c.collects("token_embd.weight"));  // a tied output is never collected (llama.cpp too)
    const auto x = random_activations(8 * 20, 5);
    c.observe("output.weight", x, 20);
    c.observe("token_embd.weight", x, 20);
    const ImatrixData d = c.data(10, {});
    ASSERT_EQ(d.entries.size(), 1u);
    EXPECT_EQ(d.entries.begin()->first, "output.weight");
    EXPECT_EQ(d.entries.begin()->second.counts[0], 20);
}

// The threaded path splits columns, never rows: each column is the same float sum in row
// order as llama-imatrix's single loop, bit for bit.
TEST(ImatrixCollector, ThreadedSumsAreBitIdenticalToTheSequentialLoop) {
    ImatrixCollector c;
    const size_t ne0 = 1000;
    const int64_t rows = 300;
    const auto x = random_activations(ne0 * rows, 11, 2.0f);
    c.observe("blk.0.ffn_up.weight", x, rows);
    c.observe("blk.0.ffn_up.weight", x, rows);
    std::vector<float> expect(ne0, 0.0f);
    for (int pass = 0; pass < 2; ++pass)
        for (int64_t r = 0; r < rows; ++r)
            for (size_t j = 0; j < ne0; ++j) {
                const float v = x[static_cast<size_t>(r) * ne0 + j];
                expect[j] += v * v;
            }
    const ImatrixData d = c.data(512, {});
    const auto& got = d.entries.at("blk.0.ffn_up.weight");
    ASSERT_EQ(got.in_sum2.size(), ne0);
    EXPECT_EQ(std::memcmp(got.in_sum2.data(), expect.data(), ne0 * sizeof(float)), 0);
    EXPECT_EQ(got.counts[0], 2 * rows);
}

TEST(ImatrixCollector, RefusesExpertsInconsistentRowsAndNonFiniteSums) {
    ImatrixCollector c;
    const auto x = random_activations(32 * 16, 3);
    EXPECT_TRUE(is_expert_weight("blk.0.ffn_gate_exps.weight"));
    EXPECT_TRUE(is_expert_weight("blk.0.ffn_down_exps.weight"));
    EXPECT_FALSE(is_expert_weight("blk.0.ffn_down.weight"));
    try {
        c.observe("blk.0.ffn_gate_exps.weight", x, 16);
        FAIL() << "expert weight accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("MoE"), std::string::npos) << e.what();
    }
    c.observe("blk.0.attn_v.weight", x, 16);  // ne0 = 32
    EXPECT_THROW(c.observe("blk.0.attn_v.weight", x, 32), Error);  // ne0 = 16 now
    EXPECT_THROW(c.observe("blk.0.attn_v.weight", std::span<const float>(x).first(32 * 16 - 1), 16), Error);
    std::vector<float> inf(32 * 16, 1e30f);
    EXPECT_THROW(c.observe("blk.1.attn_v.weight", inf, 16), Error);
}

TEST(ImatrixFile, GgufLayoutIsLlamaImatrixs) {
    const std::string path = test::scratch_dir() + "/imatrix.gguf";
    save_imatrix(sample_data(), path, false);
    EXPECT_FALSE(fs::exists(path + ".tmp"));
    GgufFile f(path);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.alignment(), 32u);
    const auto& kv = f.metadata().entries();
    ASSERT_EQ(kv.size(), 4u);
    EXPECT_EQ(kv[0].key, "general.type");
    EXPECT_EQ(kv[0].value.type, GgufValueType::STRING);
    EXPECT_EQ(kv[0].value.as_string(), "imatrix");
    EXPECT_EQ(kv[1].key, "imatrix.datasets");
    EXPECT_EQ(kv[1].value.type, GgufValueType::ARRAY);
    EXPECT_EQ(kv[1].value.elem_type, GgufValueType::STRING);
    ASSERT_EQ(kv[1].value.items.size(), 1u);
    EXPECT_EQ(kv[1].value.items[0].as_string(), "calib.txt");
    EXPECT_EQ(kv[2].key, "imatrix.chunk_count");
    EXPECT_EQ(kv[2].value.type, GgufValueType::U32);
    EXPECT_EQ(kv[2].value.as_u64(), 3u);
    EXPECT_EQ(kv[3].key, "imatrix.chunk_size");
    EXPECT_EQ(kv[3].value.type, GgufValueType::U32);
    EXPECT_EQ(kv[3].value.as_u64(), 512u);

    // Sorted by weight name, sums before counts; trailing 1-dimensions dropped (ggml_n_dims).
    const auto& t = f.tensors();
    ASSERT_EQ(t.size(), 6u);
    const char* names[] = {"blk.0.attn_k.weight.in_sum2", "blk.0.attn_k.weight.counts",
                           "blk.0.attn_q.weight.in_sum2", "blk.0.attn_q.weight.counts",
                           "blk.1.ffn_up.weight.in_sum2", "blk.1.ffn_up.weight.counts"};
    const std::vector<int64_t> shapes[] = {{4}, {1}, {4}, {1}, {2, 2}, {1, 2}};
    for (size_t i = 0; i < t.size(); ++i) {
        EXPECT_EQ(t[i].name, names[i]);
        EXPECT_EQ(t[i].shape, shapes[i]) << t[i].name;
        EXPECT_EQ(t[i].type, GgmlType::F32) << t[i].name;
    }
    auto floats = [&](const GgufTensorInfo& ti) {
        auto b = f.tensor_data(ti);
        std::vector<float> v(b.size() / 4);
        std::memcpy(v.data(), b.data(), b.size());
        return v;
    };
    EXPECT_EQ(floats(t[2]), std::vector<float>({1.0f, 4.0f, 9.0f, 16.0f}));
    EXPECT_EQ(floats(t[3]), std::vector<float>({1536.0f}));
    EXPECT_EQ(floats(t[5]), std::vector<float>({3.0f, 0.0f}));

    // And the quantizer's reader: importance = sums / count, ones for an unused matrix.
    const Imatrix im = load_imatrix(path);
    EXPECT_FALSE(im.legacy);
    EXPECT_EQ(im.chunk_count, 3);
    EXPECT_EQ(im.datasets, std::vector<std::string>({"calib.txt"}));
    ASSERT_EQ(im.entries.size(), 3u);
    EXPECT_EQ(*im.find("blk.0.attn_q.weight"),
              std::vector<float>({1.0f / 1536, 4.0f / 1536, 9.0f / 1536, 16.0f / 1536}));
    EXPECT_EQ(*im.find("blk.1.ffn_up.weight"), std::vector<float>({1.0f, 2.0f, 1.0f, 1.0f}));
}

TEST(ImatrixFile, LegacyDatBytesAndRoundTrip) {
    ImatrixData d = sample_data();
    d.entries["blk.2.attn_v.weight"] = {{5.0f, 5.0f}, {0}};  // no data at all: left out
    d.chunk_size = 1000;
    const std::string path = test::scratch_dir() + "/imatrix.dat";
    save_imatrix_legacy(d, path, false);

    // The bytes llama-imatrix's save_imatrix_legacy lays out, built here by hand.
    std::string expect;
    append<int32_t>(expect, 3);
    auto entry = [&](const std::string& name, int32_t ncall, std::vector<float> values) {
        append<int32_t>(expect, static_cast<int32_t>(name.size()));
        expect += name;
        append<int32_t>(expect, ncall);
        append<int32_t>(expect, static_cast<int32_t>(values.size()));
        for (float v : values) append<float>(expect, v);
    };
    // ncall = ceil(max count / chunk size); values = sum / count * ncall, 1 * ncall without data.
    entry("blk.0.attn_k.weight", 2, {2.0f / 1024 * 2, 0.5f / 1024 * 2, 8.0f / 1024 * 2, 3.0f / 1024 * 2});
    entry("blk.0.attn_q.weight", 2, {1.0f / 1536 * 2, 4.0f / 1536 * 2, 9.0f / 1536 * 2, 16.0f / 1536 * 2});
    entry("blk.1.ffn_up.weight", 1, {3.0f / 3, 6.0f / 3, 1.0f, 1.0f});
    append<int32_t>(expect, 3);  // chunk count
    append<int32_t>(expect, 9);
    expect += "calib.txt";
    EXPECT_EQ(read_file(path), expect);

    const Imatrix im = load_imatrix(path);
    EXPECT_TRUE(im.legacy);
    EXPECT_EQ(im.chunk_count, 3);
    EXPECT_EQ(im.datasets, std::vector<std::string>({"calib.txt"}));
    ASSERT_EQ(im.entries.size(), 3u);
    EXPECT_EQ(im.find("blk.2.attn_v.weight"), nullptr);
    const auto& q = *im.find("blk.0.attn_q.weight");
    const float q_sums[] = {1.0f, 4.0f, 9.0f, 16.0f};
    for (size_t i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(q[i], q_sums[i] / 1536) << i;
}

TEST(ImatrixFile, RefusesExistingOutputAndBadEntries) {
    const std::string dir = test::scratch_dir();
    const std::string path = dir + "/imatrix.gguf";
    save_imatrix(sample_data(), path, false);
    const std::string before = read_file(path);
    EXPECT_THROW(save_imatrix(sample_data(), path, false), Error);
    EXPECT_EQ(read_file(path), before);
    ImatrixData other = sample_data();
    other.chunk_count = 9;
    save_imatrix(other, path, true);
    EXPECT_EQ(load_imatrix(path).chunk_count, 9);
    EXPECT_FALSE(fs::exists(path + ".tmp"));

    ImatrixData bad = sample_data();
    bad.entries["blk.0.attn_q.weight"].in_sum2.pop_back();  // 3 sums for 1 count is fine; 3 for 2 is not
    bad.entries["blk.1.ffn_up.weight"].in_sum2.pop_back();
    EXPECT_THROW(save_imatrix(bad, dir + "/bad.gguf", false), Error);
    ImatrixData long_name = sample_data();
    long_name.entries[std::string(60, 'x')] = {{1.0f}, {1}};
    EXPECT_THROW(save_imatrix(long_name, dir + "/long.gguf", false), Error);
    ImatrixData nan = sample_data();
    nan.entries["blk.0.attn_q.weight"].in_sum2[0] = NAN;
    EXPECT_THROW(save_imatrix(nan, dir + "/nan.gguf", false), Error);
    EXPECT_THROW(save_imatrix(ImatrixData{}, dir + "/empty.gguf", false), Error);
    for (const char* f : {"bad.gguf", "long.gguf", "nan.gguf", "empty.gguf"}) {
        EXPECT_FALSE(fs::exists(dir + "/" + f)) << f;
        EXPECT_FALSE(fs::exists(dir + "/" + f + ".tmp")) << f;
    }
}
