// Our block quantizers against llama.cpp's (ggml_quantize_chunk / dequantize_row_* from
// libggml-base.so, loaded with dlopen):
//  * decoding is bit-identical: on our bytes, on ggml's bytes and on random bytes;
//  * our bytes pass ggml_validate_row_data;
//  * accuracy: on synthetic rows and on every weight matrix of the test models, our RMSE is never
//    above llama.cpp's, without importance (plain RMSE) and with random imatrix-like importance
//    weights (importance-weighted RMSE); a table of the ratios is printed;
//  * our re-expression of llama.cpp's own search (one of the candidates our quantizers keep)
//    gives exactly ggml's bytes, which is what makes the accuracy guarantee hold.
#include "quant/iq4.h"
#include "quant/q4_0.h"
#include "quant/q4_1.h"
#include "quant/q5_0.h"
#include "quant/q5_1.h"
#include "quant/q2_k.h"
#include "quant/q3_k.h"
#include "quant/q4_k.h"
#include "quant/q5_k.h"
#include "quant/q6_k.h"
#include "quant/q8_0.h"
#include "quant/types.h"
#include "support/llama_ggml_api.h"
#include "support/quant_data.h"
#include "support/test_paths.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

namespace qf::test {
namespace {

// FORMAT LIST: every block format compared with llama.cpp here. Adding a format is one line;
// its kernels come from the type table (src/quant/types.cpp).
constexpr GgmlType kFormats[] = {
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
};

// Formats whose quantizer exposes its re-expression of llama.cpp's search: type -> function.
struct LlamaSearch {
    GgmlType type;
    QuantizeRowFn quantize_like_llama;
};
constexpr LlamaSearch kLlamaSearches[] = {
    {GgmlType::Q4_0, quantize_row_q4_0_llama},     {GgmlType::Q4_1, quantize_row_q4_1_llama},
    {GgmlType::Q5_0, quantize_row_q5_0_llama},     {GgmlType::Q5_1, quantize_row_q5_1_llama},
    {GgmlType::Q8_0, quantize_row_q8_0_llama},     {GgmlType::IQ4_NL, quantize_row_iq4_nl_llama},
    {GgmlType::IQ4_XS, quantize_row_iq4_xs_llama},
    {GgmlType::Q2_K, quantize_row_q2_K_llama},     {GgmlType::Q3_K, quantize_row_q3_K_llama},
    {GgmlType::Q4_K, quantize_row_q4_K_llama},     {GgmlType::Q5_K, quantize_row_q5_K_llama},
    {GgmlType::Q6_K, quantize_row_q6_K_llama},
};

constexpr int64_t kRowsPerTensor = 32;   // keeps the whole run (all formats) well under a minute
constexpr int64_t kByteExactRows = 8;    // rows per row set for the byte-for-byte comparison
constexpr int64_t kSyntheticRows = 16;   // per kind
constexpr int64_t kSyntheticRowLength = 512;

// A labelled group of row sets: one synthetic kind, or all tensors of one model.
struct DataGroup {
    std::string label;
    std::vector<RowSet> sets;
};

uint32_t name_seed(const std::string& name) {  // FNV-1a: a fixed importance vector per row set
    uint32_t h = 2166136261u;
    for (char c : name) h = (h ^ static_cast<uint8_t>(c)) * 16777619u;
    return h;
}

const std::vector<DataGroup>& data_groups() {
    static const std::vector<DataGroup> groups = [] {
        std::vector<DataGroup> g;
        for (RowSet& s : synthetic_rowsets(kSyntheticRowLength, kSyntheticRows, 7)) {
            std::string label = s.name;
            g.push_back({label, {std::move(s)}});
        }
        std::vector<std::pair<std::string, std::string>> models;
        if (auto shared = shared_dir()) {
            models = {{"prose-tiny", *shared + "/models/prose-tiny"},
                      {"prose-base", *shared + "/models/prose-base"},
                      {"stories260k", *shared + "/models/stories260k/hf"}};
        } else {
            models = {{"prose-tiny", bundled_model("prose-tiny")}, {"stories260k", bundled_model("stories260k")}};
        }
        for (const auto& [label, dir] : models) {
            if (!std::filesystem::exists(dir)) continue;
            g.push_back({label, model_rowsets(dir, kRowsPerTensor)});
        }
        return g;
    }();
    return groups;
}

bool same_bits(float a, float b) {
    if (std::isnan(a) && std::isnan(b)) return true;
    return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
}

// Index of the first value whose bits differ, or -1.
int64_t first_difference(const std::vector<float>& a, const std::vector<float>& b) {
    for (size_t i = 0; i < a.size(); ++i)
        if (!same_bits(a[i], b[i])) return static_cast<int64_t>(i);
    return -1;
}

struct Encoded {
    std::vector<uint8_t> bytes;
    std::vector<float> decoded;
};

Encoded encode_ours(const TypeTraits& t, const RowSet& s, const float* importance) {
    const uint64_t row_bytes = *qf::row_bytes(t.id, s.n_per_row);
    Encoded e{std::vector<uint8_t>(row_bytes * s.n_rows()), std::vector<float>(s.data.size())};
    for (int64_t r = 0; r < s.n_rows(); ++r) {
        t.quantize(s.data.data() + r * s.n_per_row, e.bytes.data() + r * row_bytes, s.n_per_row, importance);
        t.dequantize(e.bytes.data() + r * row_bytes, e.decoded.data() + r * s.n_per_row, s.n_per_row);
    }
    return e;
}

Encoded encode_llama(const TypeTraits& t, const RowSet& s, const float* importance) {
    const GgmlApi& api = GgmlApi::get();
    const uint64_t row_bytes = *qf::row_bytes(t.id, s.n_per_row);
    Encoded e{std::vector<uint8_t>(row_bytes * s.n_rows()), std::vector<float>(s.data.size())};
    const size_t written = api.quantize_chunk(t.id, s.data.data(), e.bytes.data(), 0, s.n_rows(), s.n_per_row, importance);
    EXPECT_EQ(written, e.bytes.size());
    api.dequantize_row(t.id, e.bytes.data(), e.decoded.data(), static_cast<int64_t>(e.decoded.size()));
    return e;
}

ErrorStats error_of(const RowSet& s, const std::vector<float>& decoded, const float* importance) {
    ErrorStats st;
    for (int64_t r = 0; r < s.n_rows(); ++r)
        st.add(s.data.data() + r * s.n_per_row, decoded.data() + r * s.n_per_row, importance, s.n_per_row);
    return st;
}

class QuantInterop : public ::testing::TestWithParam<GgmlType> {
protected:
    void SetUp() override {
        if (!GgmlApi::get().available()) GTEST_FAIL() << GgmlApi::get().error();
        const TypeTraits& t = traits(GetParam());
        if (!t.quantize || !t.dequantize) GTEST_SKIP() << t.name << ": no kernels in the type table yet";
    }
};

TEST_P(QuantInterop, DequantizeIsBitIdenticalToGgml) {
    const TypeTraits& t = traits(GetParam());
    const GgmlApi& api = GgmlApi::get();
    // Our bytes and ggml's bytes, on synthetic rows (with and without importance).
    for (const RowSet& s : synthetic_rowsets(512, 4, 11)) {
        const std::vector<float> imp = random_importance(s.n_per_row, name_seed(s.name));
        for (const float* importance : {static_cast<const float*>(nullptr), imp.data()}) {
            for (const Encoded& e : {encode_ours(t, s, importance), encode_llama(t, s, importance)}) {
                std::vector<float> ours(s.data.size()), theirs(s.data.size());
                t.dequantize(e.bytes.data(), ours.data(), static_cast<int64_t>(ours.size()));
                api.dequantize_row(t.id, e.bytes.data(), theirs.data(), static_cast<int64_t>(theirs.size()));
                ASSERT_EQ(first_difference(ours, theirs), -1) << t.name << " " << s.name;
            }
        }
    }
    // Random bytes: every bit pattern of the layout, including non-finite scales.
    uint64_t state = 12345;
    const int64_t n = 256 * 64;
    std::vector<uint8_t> bytes(*qf::row_bytes(t.id, n));
    for (uint8_t& b : bytes) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        b = static_cast<uint8_t>(state >> 56);
    }
    std::vector<float> ours(n), theirs(n);
    t.dequantize(bytes.data(), ours.data(), n);
    api.dequantize_row(t.id, bytes.data(), theirs.data(), n);
    EXPECT_EQ(first_difference(ours, theirs), -1) << t.name << " on random bytes";
}

TEST_P(QuantInterop, OurBytesPassGgmlValidation) {
    const TypeTraits& t = traits(GetParam());
    for (const RowSet& s : synthetic_rowsets(512, 4, 13)) {
        const std::vector<float> imp = random_importance(s.n_per_row, name_seed(s.name));
        for (const float* importance : {static_cast<const float*>(nullptr), imp.data()}) {
            const Encoded e = encode_ours(t, s, importance);
            EXPECT_TRUE(GgmlApi::get().validate_row_data(t.id, e.bytes.data(), e.bytes.size())) << t.name << " " << s.name;
        }
    }
}

TEST_P(QuantInterop, LlamaSearchReexpressionIsByteExact) {
    const TypeTraits& t = traits(GetParam());
    const LlamaSearch* search = nullptr;
    for (const LlamaSearch& l : kLlamaSearches)
        if (l.type == t.id) search = &l;
    if (!search) GTEST_SKIP() << t.name << ": no re-expression of llama.cpp's search listed";
    int64_t rows_checked = 0;
    for (const DataGroup& g : data_groups()) {
        for (const RowSet& s : g.sets) {
            if (s.n_per_row % t.block_elems != 0) continue;
            const std::vector<float> imp = random_importance(s.n_per_row, name_seed(s.name));
            const RowSet head{s.name, s.n_per_row,
                              std::vector<float>(s.data.begin(), s.data.begin() + std::min(s.n_rows(), kByteExactRows) * s.n_per_row)};
            for (const float* importance : {static_cast<const float*>(nullptr), imp.data()}) {
                const Encoded theirs = encode_llama(t, head, importance);
                const uint64_t row_bytes = *qf::row_bytes(t.id, s.n_per_row);
                std::vector<uint8_t> ours(theirs.bytes.size());
                for (int64_t r = 0; r < head.n_rows(); ++r)
                    search->quantize_like_llama(head.data.data() + r * s.n_per_row, ours.data() + r * row_bytes,
                                                s.n_per_row, importance);
                for (size_t i = 0; i < ours.size(); ++i) {
                    ASSERT_EQ(ours[i], theirs.bytes[i])
                        << t.name << " " << s.name << (importance ? " with importance" : "") << ": byte " << i << " (row "
                        << i / row_bytes << ")";
                }
                rows_checked += head.n_rows();
            }
        }
    }
    EXPECT_GT(rows_checked, 0);
}

// Per group: aggregate RMSE (ours and llama.cpp's) without and with importance; every row set
// (tensor) is also checked on its own.
TEST_P(QuantInterop, RmseNotAboveLlama) {
    const TypeTraits& t = traits(GetParam());
    // Exact per-block comparison, summed in a different order here: allow rounding noise only.
    constexpr double kSlack = 1e-12;
    std::string table = fmt::format("\n{:<8} {:<22} {:>6} {:>12} {:>12} {:>8} {:>12} {:>12} {:>8} {:>9}\n", "format",
                                    "data set", "rows", "plain ours", "plain llama", "ratio", "imp ours", "imp llama",
                                    "ratio", "worst set");
    int64_t groups_checked = 0;
    for (const DataGroup& g : data_groups()) {
        ErrorStats ours_plain, llama_plain, ours_imp, llama_imp;
        double worst = 0;
        int64_t rows = 0;
        for (const RowSet& s : g.sets) {
            if (s.n_per_row % t.block_elems != 0) continue;
            const std::vector<float> imp = random_importance(s.n_per_row, name_seed(s.name));
            const ErrorStats op = error_of(s, encode_ours(t, s, nullptr).decoded, nullptr);
            const ErrorStats lp = error_of(s, encode_llama(t, s, nullptr).decoded, nullptr);
            const ErrorStats oi = error_of(s, encode_ours(t, s, imp.data()).decoded, imp.data());
            const ErrorStats li = error_of(s, encode_llama(t, s, imp.data()).decoded, imp.data());
            EXPECT_LE(op.rmse(), lp.rmse() * (1 + kSlack)) << t.name << " " << s.name << " without importance";
            EXPECT_LE(oi.rmse(), li.rmse() * (1 + kSlack)) << t.name << " " << s.name << " with importance";
            for (auto [o, l] : {std::pair{op.rmse(), lp.rmse()}, std::pair{oi.rmse(), li.rmse()}})
                if (l > 0) worst = std::max(worst, o / l);
            for (auto [acc, add] : {std::pair{&ours_plain, &op}, std::pair{&llama_plain, &lp}, std::pair{&ours_imp, &oi},
                                    std::pair{&llama_imp, &li}}) {
                acc->sum_w_err2 += add->sum_w_err2;
                acc->sum_w += add->sum_w;
            }
            rows += s.n_rows();
        }
        if (rows == 0) continue;
        ++groups_checked;
        EXPECT_LE(ours_plain.rmse(), llama_plain.rmse() * (1 + kSlack)) << t.name << " " << g.label;
        EXPECT_LE(ours_imp.rmse(), llama_imp.rmse() * (1 + kSlack)) << t.name << " " << g.label;
        auto ratio = [](const ErrorStats& a, const ErrorStats& b) { return b.rmse() > 0 ? a.rmse() / b.rmse() : 1.0; };
        table += fmt::format("{:<8} {:<22} {:>6} {:>12.5g} {:>12.5g} {:>8.4f} {:>12.5g} {:>12.5g} {:>8.4f} {:>9.4f}\n",
                             t.name, g.label.substr(0, 22), rows, ours_plain.rmse(), llama_plain.rmse(),
                             ratio(ours_plain, llama_plain), ours_imp.rmse(), llama_imp.rmse(), ratio(ours_imp, llama_imp),
                             worst);
    }
    std::fputs(table.c_str(), stdout);
    EXPECT_GT(groups_checked, 0);
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantInterop, ::testing::ValuesIn(kFormats),
                         [](const ::testing::TestParamInfo<GgmlType>& info) { return std::string(type_name(info.param)); });

}  // namespace
}  // namespace qf::test
