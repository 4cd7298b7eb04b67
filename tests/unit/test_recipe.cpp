// The recipe engine against llama-quantize's published numbers and its rules
// (llama.cpp de3ff815 src/llama-quant.cpp; facts §4). Expected values come from outside
// qforge: the quantize README's bits per weight, the facts file's worked size and
// use_more_bits layer lists, and rules read off the llama.cpp source.
#include "common/error.h"
#include "recipe/mix_rules.h"
#include "recipe/recipe.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

namespace qf {
namespace {

using T = GgmlType;

struct LlamaShape {
    int64_t embd, ff, kv_dim, vocab;
    uint32_t n_layer, n_head, n_head_kv;
    bool tied = false;
    bool rope_freqs = false;
};

// A llama-style GGUF tensor list as convert_hf_to_gguf writes it (F16 matrices, F32 vectors).
std::vector<RecipeTensor> llama_tensors(const LlamaShape& s) {
    std::vector<RecipeTensor> t;
    t.push_back({"token_embd.weight", {s.embd, s.vocab}, T::F16});
    if (!s.tied) t.push_back({"output.weight", {s.embd, s.vocab}, T::F16});
    t.push_back({"output_norm.weight", {s.embd}, T::F32});
    if (s.rope_freqs) t.push_back({"rope_freqs.weight", {64}, T::F32});
    for (uint32_t i = 0; i < s.n_layer; ++i) {
        const std::string b = "blk." + std::to_string(i) + ".";
        t.push_back({b + "attn_norm.weight", {s.embd}, T::F32});
        t.push_back({b + "ffn_norm.weight", {s.embd}, T::F32});
        t.push_back({b + "attn_q.weight", {s.embd, s.embd}, T::F16});
        t.push_back({b + "attn_k.weight", {s.embd, s.kv_dim}, T::F16});
        t.push_back({b + "attn_v.weight", {s.embd, s.kv_dim}, T::F16});
        t.push_back({b + "attn_output.weight", {s.embd, s.embd}, T::F16});
        t.push_back({b + "ffn_gate.weight", {s.embd, s.ff}, T::F16});
        t.push_back({b + "ffn_up.weight", {s.embd, s.ff}, T::F16});
        t.push_back({b + "ffn_down.weight", {s.ff, s.embd}, T::F16});
    }
    return t;
}

RecipeModel llama_model(const LlamaShape& s, std::string arch = "llama") {
    RecipeModel m;
    m.arch = std::move(arch);
    m.n_layer = s.n_layer;
    m.n_head = s.n_head;
    m.n_head_kv = s.n_head_kv;
    m.is_70b = is_70b_model(m.arch, m.n_layer, m.n_head, m.n_head_kv, m.n_expert);
    return m;
}

// name -> decided type
std::map<std::string, T> decide_map(const RecipeModel& m, const std::vector<RecipeTensor>& t, const RecipeOptions& o) {
    const std::vector<TensorDecision> d = decide_tensor_types(m, t, o);
    std::map<std::string, T> out;
    for (size_t i = 0; i < t.size(); ++i) out[t[i].name] = d[i].type;
    return out;
}

RecipeOptions with_ftype(FileType f) {
    RecipeOptions o;
    o.ftype = f;
    return o;
}

std::string blk(int i, const char* what) { return "blk." + std::to_string(i) + "." + what + ".weight"; }

// ------------------------------------------------------------ Llama-3.1-8B, quantize README

const LlamaShape kLlama31_8B{4096, 14336, 1024, 128256, 32, 32, 8, false, true};

double bits_per_weight(FileType f, uint64_t* total_bytes = nullptr) {
    const std::vector<RecipeTensor> t = llama_tensors(kLlama31_8B);
    const std::vector<TensorDecision> d = decide_tensor_types(llama_model(kLlama31_8B), t, with_ftype(f));
    uint64_t bytes = 0, elements = 0;
    for (size_t i = 0; i < t.size(); ++i) {
        int64_t rows = 1;
        for (size_t k = 1; k < t[i].shape.size(); ++k) rows *= t[i].shape[k];
        const std::optional<uint64_t> row = row_bytes(d[i].type, t[i].shape[0]);
        EXPECT_TRUE(row.has_value()) << t[i].name;
        bytes += row.value_or(0) * static_cast<uint64_t>(rows);
        elements += static_cast<uint64_t>(rows * t[i].shape[0]);
    }
    if (total_bytes) *total_bytes = bytes;
    return static_cast<double>(bytes) * 8.0 / static_cast<double>(elements);
}

TEST(Recipe, Llama31_8BBitsPerWeightMatchQuantizeReadme) {
    // tools/quantize/README.md, meta-llama/Llama-3.1-8B tables (4 decimals). Q3_K_M, Q2_K_S and
    // IQ4_NL are in the same tables.
    const std::pair<const char*, double> figures[] = {
        {"F16", 16.0005},   {"Q8_0", 8.5008},   {"Q6_K", 6.5633},   {"Q5_K_M", 5.7036}, {"Q5_K_S", 5.5704},
        {"Q4_K_M", 4.8944}, {"Q4_K_S", 4.6672}, {"IQ4_XS", 4.4597}, {"Q3_K_L", 4.2979}, {"Q3_K_S", 3.6429},
        {"Q2_K", 3.1593},   {"Q3_K_M", 3.9960}, {"Q2_K_S", 2.9697}, {"IQ4_NL", 4.6818},
    };
    for (const auto& [name, expected] : figures) {
        const FileTypeInfo* f = find_file_type(name);
        ASSERT_NE(f, nullptr) << name;
        const double bpw = bits_per_weight(f->id);
        EXPECT_EQ(std::llround(bpw * 1e4), std::llround(expected * 1e4)) << name << ": " << bpw;
    }
}

TEST(Recipe, Llama3_8BQ4_K_MTensorBytesMatchWorkedSizeCheck) {
    // facts §4.6: 4,912,898,048 bytes of tensor data without rope_freqs (+64 f32 = 256 bytes).
    uint64_t bytes = 0;
    bits_per_weight(FileType::Q4_K_M, &bytes);
    EXPECT_EQ(bytes, 4'912'898'048u + 256u);
}

// ------------------------------------------------------------ the rules of facts §4.4

TEST(Recipe, Q4_K_MDenseMix) {
    const LlamaShape s{4096, 14336, 1024, 32000, 32, 32, 8};
    auto types = decide_map(llama_model(s), llama_tensors(s), with_ftype(FileType::Q4_K_M));
    // use_more_bits layers for 32 layers (facts §4.3 table): 0-3, 6, 9, ..., 27, 28-31.
    const std::set<int> more = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
    for (int i = 0; i < 32; ++i) {
        const T more_or_default = more.count(i) ? T::Q6_K : T::Q4_K;
        EXPECT_EQ(types[blk(i, "attn_v")], more_or_default) << i;
        EXPECT_EQ(types[blk(i, "ffn_down")], more_or_default) << i;
        EXPECT_EQ(types[blk(i, "attn_q")], T::Q4_K);
        EXPECT_EQ(types[blk(i, "attn_k")], T::Q4_K);
        EXPECT_EQ(types[blk(i, "attn_output")], T::Q4_K);
        EXPECT_EQ(types[blk(i, "ffn_gate")], T::Q4_K);
        EXPECT_EQ(types[blk(i, "ffn_up")], T::Q4_K);
        EXPECT_EQ(types[blk(i, "attn_norm")], T::F32);
    }
    EXPECT_EQ(types["output.weight"], T::Q6_K);
    EXPECT_EQ(types["token_embd.weight"], T::Q4_K);
    EXPECT_EQ(types["output_norm.weight"], T::F32);
}

TEST(Recipe, UseMoreBitsMatchesFactsTable) {
    auto layers = [](int n) {
        std::vector<int> v;
        for (int i = 0; i < n; ++i)
            if (use_more_bits(i, n)) v.push_back(i);
        return v;
    };
    EXPECT_EQ(layers(16), (std::vector<int>{0, 1, 4, 7, 10, 13, 14, 15}));
    EXPECT_EQ(layers(22), (std::vector<int>{0, 1, 4, 7, 10, 13, 16, 19, 20, 21}));
    EXPECT_EQ(layers(26), (std::vector<int>{0, 1, 2, 5, 8, 11, 14, 17, 20, 22, 23, 24, 25}));
    EXPECT_EQ(layers(80).size(), 40u);
}

TEST(Recipe, KQuantMixesPerFtype) {
    const LlamaShape s{4096, 14336, 4096, 32000, 32, 32, 32};  // no GQA
    const RecipeModel m = llama_model(s);
    const auto t = llama_tensors(s);

    auto q3m = decide_map(m, t, with_ftype(FileType::Q3_K_M));
    for (int i = 0; i < 32; ++i) {
        EXPECT_EQ(q3m[blk(i, "attn_v")], i < 2 ? T::Q5_K : T::Q4_K) << i;
        EXPECT_EQ(q3m[blk(i, "ffn_down")], i < 2 ? T::Q5_K : T::Q4_K) << i;  // n/16 = 2
        EXPECT_EQ(q3m[blk(i, "attn_output")], T::Q4_K);
        EXPECT_EQ(q3m[blk(i, "ffn_up")], T::Q3_K);
    }
    auto q3l = decide_map(m, t, with_ftype(FileType::Q3_K_L));
    EXPECT_EQ(q3l[blk(7, "attn_v")], T::Q5_K);
    EXPECT_EQ(q3l[blk(7, "attn_output")], T::Q5_K);
    EXPECT_EQ(q3l[blk(7, "ffn_down")], T::Q5_K);
    EXPECT_EQ(q3l[blk(7, "attn_q")], T::Q3_K);
    auto q3s = decide_map(m, t, with_ftype(FileType::Q3_K_S));
    EXPECT_EQ(q3s[blk(0, "attn_v")], T::Q3_K);
    EXPECT_EQ(q3s[blk(0, "ffn_down")], T::Q3_K);
    EXPECT_EQ(q3s["output.weight"], T::Q6_K);

    auto q4s = decide_map(m, t, with_ftype(FileType::Q4_K_S));
    for (int i = 0; i < 32; ++i) {
        EXPECT_EQ(q4s[blk(i, "attn_v")], i < 4 ? T::Q5_K : T::Q4_K) << i;
        EXPECT_EQ(q4s[blk(i, "ffn_down")], i < 4 ? T::Q5_K : T::Q4_K) << i;  // n/8 = 4
    }
    auto q5s = decide_map(m, t, with_ftype(FileType::Q5_K_S));
    EXPECT_EQ(q5s[blk(0, "attn_v")], T::Q5_K);
    EXPECT_EQ(q5s[blk(0, "ffn_down")], T::Q5_K);
    auto q5m = decide_map(m, t, with_ftype(FileType::Q5_K_M));
    EXPECT_EQ(q5m[blk(0, "attn_v")], T::Q6_K);
    EXPECT_EQ(q5m[blk(4, "attn_v")], T::Q5_K);
    EXPECT_EQ(q5m[blk(6, "ffn_down")], T::Q6_K);
    auto q6 = decide_map(m, t, with_ftype(FileType::Q6_K));
    for (const auto& [name, type] : q6)
        if (name.find("norm") == std::string::npos) {
            EXPECT_EQ(type, T::Q6_K) << name;
        }
    auto q8 = decide_map(m, t, with_ftype(FileType::Q8_0));
    EXPECT_EQ(q8["output.weight"], T::Q8_0);  // A5 only lifts a default below q8_0
    EXPECT_EQ(q8["token_embd.weight"], T::Q8_0);

    // Q2_K: no GQA -> attn_v q3_K.
    auto q2 = decide_map(m, t, with_ftype(FileType::Q2_K));
    EXPECT_EQ(q2[blk(5, "attn_v")], T::Q3_K);
    EXPECT_EQ(q2[blk(5, "ffn_down")], T::Q3_K);
    EXPECT_EQ(q2[blk(5, "attn_output")], T::Q3_K);
    EXPECT_EQ(q2[blk(5, "attn_q")], T::Q2_K);
    EXPECT_EQ(q2["token_embd.weight"], T::Q2_K);
    auto q2s = decide_map(m, t, with_ftype(FileType::Q2_K_S));
    EXPECT_EQ(q2s[blk(5, "attn_v")], T::Q2_K);
    EXPECT_EQ(q2s[blk(3, "ffn_down")], T::Q4_K);
    EXPECT_EQ(q2s[blk(4, "ffn_down")], T::Q2_K);
    EXPECT_EQ(q2s[blk(4, "attn_output")], T::Q2_K);
}

TEST(Recipe, GqaAtLeastFourRaisesAttnV) {
    const LlamaShape gqa4{4096, 14336, 1024, 32000, 16, 32, 8};  // n_gqa = 4
    const LlamaShape gqa2{4096, 14336, 2048, 32000, 16, 32, 16};
    for (FileType f : {FileType::Q2_K, FileType::Q2_K_S}) {
        EXPECT_EQ(decide_map(llama_model(gqa4), llama_tensors(gqa4), with_ftype(f))[blk(9, "attn_v")], T::Q4_K);
    }
    EXPECT_EQ(decide_map(llama_model(gqa2), llama_tensors(gqa2), with_ftype(FileType::Q2_K))[blk(9, "attn_v")],
              T::Q3_K);
    for (FileType f : {FileType::IQ4_NL, FileType::IQ4_XS}) {
        const T def = file_type_info(f).default_type;
        auto a = decide_map(llama_model(gqa4), llama_tensors(gqa4), with_ftype(f));
        auto b = decide_map(llama_model(gqa2), llama_tensors(gqa2), with_ftype(f));
        EXPECT_EQ(a[blk(9, "attn_v")], T::Q5_K);
        EXPECT_EQ(b[blk(9, "attn_v")], def);
        EXPECT_EQ(a["output.weight"], T::Q6_K);
        EXPECT_EQ(a["token_embd.weight"], def);
    }
}

TEST(Recipe, ImatrixSwitchesFfnDownGuards) {
    const LlamaShape s{4096, 11008, 4096, 32000, 32, 32, 32};
    const RecipeModel m = llama_model(s);
    const auto t = llama_tensors(s);
    for (auto [f, plain, guarded] : {std::tuple{FileType::Q4_0, T::Q4_0, T::Q4_1},
                                     std::tuple{FileType::Q5_0, T::Q5_0, T::Q5_1}}) {
        RecipeOptions o = with_ftype(f);
        auto without = decide_map(m, t, o);
        o.has_imatrix = true;
        auto with = decide_map(m, t, o);
        for (int i = 0; i < 32; ++i) {
            EXPECT_EQ(without[blk(i, "ffn_down")], plain) << i;
            EXPECT_EQ(with[blk(i, "ffn_down")], i < 4 ? guarded : plain) << i;
        }
        EXPECT_EQ(with["output.weight"], T::Q6_K);
    }
    // IQ4_*: the q5_K guard is for runs WITHOUT an imatrix.
    RecipeOptions o = with_ftype(FileType::IQ4_XS);
    EXPECT_EQ(decide_map(m, t, o)[blk(3, "ffn_down")], T::Q5_K);
    EXPECT_EQ(decide_map(m, t, o)[blk(4, "ffn_down")], T::IQ4_XS);
    o.has_imatrix = true;
    EXPECT_EQ(decide_map(m, t, o)[blk(3, "ffn_down")], T::IQ4_XS);
    // Q4_1 / Q5_1 never get the guard.
    RecipeOptions q41 = with_ftype(FileType::Q4_1);
    q41.has_imatrix = true;
    EXPECT_EQ(decide_map(m, t, q41)[blk(0, "ffn_down")], T::Q4_1);
}

TEST(Recipe, TiedEmbeddingsTakeTheOutputRules) {
    LlamaShape s{2048, 8192, 512, 32000, 16, 32, 8};
    s.tied = true;
    auto q4 = decide_map(llama_model(s), llama_tensors(s), with_ftype(FileType::Q4_K_M));
    EXPECT_EQ(q4["token_embd.weight"], T::Q6_K);
    auto q8 = decide_map(llama_model(s), llama_tensors(s), with_ftype(FileType::Q8_0));
    EXPECT_EQ(q8["token_embd.weight"], T::Q8_0);
    s.tied = false;
    auto untied = decide_map(llama_model(s), llama_tensors(s), with_ftype(FileType::Q4_K_M));
    EXPECT_EQ(untied["token_embd.weight"], T::Q4_K);
}

TEST(Recipe, EightExpertModels) {
    // Mixtral-like: 32 layers, 8 experts, stacked expert tensors, router kept.
    RecipeModel m{"llama", 32, 32, 8, 8, false};
    std::vector<RecipeTensor> t = {{"token_embd.weight", {4096, 32000}, T::F16},
                                   {"output.weight", {4096, 32000}, T::F16}};
    for (int i = 0; i < 32; ++i) {
        t.push_back({blk(i, "attn_q"), {4096, 4096}, T::F16});
        t.push_back({blk(i, "attn_k"), {4096, 1024}, T::F16});
        t.push_back({blk(i, "attn_v"), {4096, 1024}, T::F16});
        t.push_back({blk(i, "attn_output"), {4096, 4096}, T::F16});
        t.push_back({blk(i, "ffn_gate_inp"), {4096, 8}, T::F32});
        t.push_back({blk(i, "ffn_gate_exps"), {4096, 14336, 8}, T::F16});
        t.push_back({blk(i, "ffn_up_exps"), {4096, 14336, 8}, T::F16});
        t.push_back({blk(i, "ffn_down_exps"), {14336, 4096, 8}, T::F16});
    }
    std::mt19937 rng(3);
    std::shuffle(t.begin(), t.end(), rng);  // layers come from the names, not the order
    auto q4 = decide_map(m, t, with_ftype(FileType::Q4_K_M));
    EXPECT_EQ(q4[blk(10, "attn_v")], T::Q8_0);
    EXPECT_EQ(q4[blk(10, "attn_k")], T::Q8_0);
    EXPECT_EQ(q4[blk(10, "attn_output")], T::Q5_K);
    EXPECT_EQ(q4[blk(10, "attn_q")], T::Q4_K);
    EXPECT_EQ(q4[blk(10, "ffn_gate_inp")], T::F32);
    EXPECT_EQ(q4[blk(0, "ffn_down_exps")], T::Q6_K);
    EXPECT_EQ(q4[blk(4, "ffn_down_exps")], T::Q4_K);
    EXPECT_EQ(q4[blk(6, "ffn_down_exps")], T::Q6_K);
    EXPECT_EQ(q4[blk(6, "ffn_up_exps")], T::Q4_K);
    // Q3_K_L is not in llama.cpp's 8-expert attn_output list: it keeps the default.
    auto q3l = decide_map(m, t, with_ftype(FileType::Q3_K_L));
    EXPECT_EQ(q3l[blk(1, "attn_output")], T::Q3_K);
    EXPECT_EQ(q3l[blk(1, "attn_v")], T::Q8_0);
    // A MoE FFN tensor outside a block has no layer: llama.cpp refuses.
    t.push_back({"ffn_down_shexp.weight", {14336, 4096}, T::F16});
    EXPECT_THROW(decide_tensor_types(m, t, with_ftype(FileType::Q4_K_M)), Error);
}

TEST(Recipe, SeventyBRaisesSmallAttnV) {
    const LlamaShape s{1024, 2048, 128, 1000, 80, 64, 8};  // 70B layout, small matrices
    RecipeModel m = llama_model(s);
    ASSERT_TRUE(m.is_70b);
    EXPECT_FALSE(is_70b_model("llama", 80, 64, 64, 0));  // 65B: no GQA
    EXPECT_FALSE(is_70b_model("llama", 80, 64, 8, 8));
    EXPECT_TRUE(is_70b_model("qwen2", 80, 64, 64, 0));
    const auto t = llama_tensors(s);
    auto q3s = decide_map(m, t, with_ftype(FileType::Q3_K_S));
    EXPECT_EQ(q3s[blk(40, "attn_v")], T::Q5_K);
    EXPECT_EQ(q3s[blk(40, "attn_k")], T::Q3_K);
    auto q4m = decide_map(m, t, with_ftype(FileType::Q4_K_M));
    EXPECT_EQ(q4m[blk(0, "attn_v")], T::Q6_K);   // use_more_bits: stays
    EXPECT_EQ(q4m[blk(10, "attn_v")], T::Q5_K);  // q4_K -> q5_K
    auto q5s = decide_map(m, t, with_ftype(FileType::Q5_K_S));
    EXPECT_EQ(q5s[blk(10, "attn_v")], T::Q5_K);
    m.is_70b = false;
    EXPECT_EQ(decide_map(m, t, with_ftype(FileType::Q3_K_S))[blk(40, "attn_v")], T::Q3_K);
}

TEST(Recipe, FalconRules) {
    const LlamaShape s{4096, 16384, 64, 65024, 32, 64, 1};
    const auto t = llama_tensors(s);
    auto f = decide_map(llama_model(s, "falcon"), t, with_ftype(FileType::Q4_K_M));
    EXPECT_EQ(f["output.weight"], T::Q8_0);                // A3: falcon output is q8_0
    EXPECT_EQ(f[blk(1, "ffn_down")], T::Q6_K);             // layer < n/16
    EXPECT_EQ(f[blk(3, "ffn_down")], T::Q5_K);             // use_more_bits
    EXPECT_EQ(f[blk(4, "ffn_down")], T::Q4_K);
    auto l = decide_map(llama_model(s, "falcon"), t, with_ftype(FileType::Q3_K_L));
    EXPECT_EQ(l[blk(4, "attn_output")], T::Q4_K);
    EXPECT_EQ(l[blk(4, "ffn_down")], T::Q4_K);
    auto m3 = decide_map(llama_model(s, "falcon"), t, with_ftype(FileType::Q3_K_M));
    EXPECT_EQ(m3[blk(4, "ffn_down")], T::Q3_K);  // not use_more_bits(4, 32)
    EXPECT_EQ(m3[blk(6, "ffn_down")], T::Q4_K);
    EXPECT_EQ(m3[blk(6, "attn_output")], T::Q3_K);
}

// stories260k: dim 64, hidden 172, 5 layers, 8 heads, 4 KV heads of 8, vocab 512, tied.
const LlamaShape kStories{64, 172, 32, 512, 5, 8, 4, true};

TEST(Recipe, StoriesShapesFallBack) {
    const auto t = llama_tensors(kStories);
    const RecipeModel m = llama_model(kStories);
    const std::vector<TensorDecision> d = decide_tensor_types(m, t, with_ftype(FileType::Q4_K_M));
    std::map<std::string, const TensorDecision*> by;
    for (size_t i = 0; i < t.size(); ++i) by[t[i].name] = &d[i];

    EXPECT_EQ(by["token_embd.weight"]->type, T::Q8_0);  // tied, 64 % 256 != 0 -> A3
    EXPECT_FALSE(by["token_embd.weight"]->fallback);
    EXPECT_EQ(by[blk(0, "attn_q")]->type, T::Q5_0);
    EXPECT_TRUE(by[blk(0, "attn_q")]->fallback);
    EXPECT_EQ(by[blk(0, "attn_q")]->note, "q4_K -> q5_0: 64 columns not a multiple of 256");
    // use_more_bits(i, 5) holds for layers 2 and 4 only (5/8 = 0).
    EXPECT_EQ(by[blk(2, "attn_v")]->type, T::Q8_0);  // q6_K -> q8_0
    EXPECT_EQ(by[blk(4, "attn_v")]->type, T::Q8_0);
    EXPECT_EQ(by[blk(0, "attn_v")]->type, T::Q5_0);  // q4_K -> q5_0
    EXPECT_EQ(by[blk(1, "ffn_down")]->type, T::F16);  // 172 columns: not even a multiple of 32
    EXPECT_EQ(by[blk(1, "ffn_down")]->note, "q4_K -> f16: 172 columns not a multiple of 256 nor of 32");
    EXPECT_FALSE(by[blk(1, "ffn_down")]->quantized);  // f16 -> f16 is a copy
    EXPECT_EQ(by[blk(1, "ffn_gate")]->type, T::Q5_0);

    // The 2026 source sends q2_K/q3_K to q4_0 (the facts file's 2025 code said iq4_nl).
    auto q2 = decide_map(m, t, with_ftype(FileType::Q2_K));
    EXPECT_EQ(q2[blk(0, "attn_q")], T::Q4_0);
    EXPECT_EQ(q2[blk(0, "attn_output")], T::Q4_0);  // q3_K -> q4_0
    EXPECT_EQ(q2[blk(0, "attn_v")], T::Q4_0);       // n_gqa 2: q3_K -> q4_0
    EXPECT_EQ(q2[blk(0, "ffn_down")], T::F16);
    auto q5m = decide_map(m, t, with_ftype(FileType::Q5_K_M));
    EXPECT_EQ(q5m[blk(1, "attn_q")], T::Q5_1);  // q5_K -> q5_1
    auto ixs = decide_map(m, t, with_ftype(FileType::IQ4_XS));
    EXPECT_EQ(ixs[blk(1, "attn_q")], T::IQ4_NL);
    // 32-element types have nothing smaller: straight to f16 on 172 columns.
    for (FileType f : {FileType::Q8_0, FileType::Q4_0, FileType::Q5_1, FileType::IQ4_NL}) {
        auto x = decide_map(m, t, with_ftype(f));
        EXPECT_EQ(x[blk(3, "ffn_down")], T::F16) << file_type_info(f).name;
        EXPECT_EQ(x[blk(3, "ffn_up")], file_type_info(f).default_type);
    }
}

TEST(Recipe, QwenLike896Columns) {
    // Qwen2.5-0.5B: n_embd 896 (= 3.5 x 256), n_ff 4864 (= 19 x 256), 24 layers, 14/2 heads, tied.
    const LlamaShape s{896, 4864, 128, 151936, 24, 14, 2, true};
    const auto t = llama_tensors(s);
    auto q = decide_map(llama_model(s, "qwen2"), t, with_ftype(FileType::Q4_K_M));
    EXPECT_EQ(q["token_embd.weight"], T::Q8_0);
    const std::set<int> more = {0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23};  // facts §4.3, n = 24
    for (int i = 0; i < 24; ++i) {
        EXPECT_EQ(q[blk(i, "attn_v")], more.count(i) ? T::Q8_0 : T::Q5_0) << i;
        EXPECT_EQ(q[blk(i, "ffn_down")], more.count(i) ? T::Q6_K : T::Q4_K) << i;
        EXPECT_EQ(q[blk(i, "attn_q")], T::Q5_0);
        EXPECT_EQ(q[blk(i, "ffn_up")], T::Q5_0);
    }
}

// ------------------------------------------------------------ options

TEST(Recipe, OverridesWinFirstMatchAndStillFallBack) {
    const LlamaShape s{896, 4864, 128, 1000, 8, 14, 2};
    const auto t = llama_tensors(s);
    RecipeOptions o = with_ftype(FileType::Q4_K_M);
    o.overrides = {{"attn_v", T::Q8_0}, {"blk\\.1\\.", T::Q6_K}, {"ffn_up", T::Q4_K}};
    auto q = decide_map(llama_model(s), t, o);
    EXPECT_EQ(q[blk(1, "attn_v")], T::Q8_0);  // first pattern wins over the second
    EXPECT_EQ(q[blk(1, "ffn_down")], T::Q6_K);
    EXPECT_EQ(q[blk(1, "attn_q")], T::Q8_0);  // q6_K on 896 columns falls back
    EXPECT_EQ(q[blk(2, "ffn_up")], T::Q5_0);  // q4_K falls back too
    EXPECT_EQ(q[blk(2, "attn_norm")], T::F32);  // 1-D: never touched
    // F16 file types ignore --tensor-type.
    o.ftype = FileType::MOSTLY_F16;
    EXPECT_EQ(decide_map(llama_model(s), t, o)[blk(1, "attn_v")], T::F16);

    o.overrides = {{"(", T::Q8_0}};
    EXPECT_THROW(decide_tensor_types(llama_model(s), t, o), Error);
}

TEST(Recipe, OverriddenTensorsDoNotAdvanceTheCounters) {
    // llama.cpp advances i_attention_wv only when the mixture rules run: an overridden
    // blk.0.attn_v leaves blk.1 and blk.2 as the "first two" of Q3_K_M.
    const LlamaShape s{4096, 11008, 4096, 32000, 8, 32, 32};
    RecipeOptions o = with_ftype(FileType::Q3_K_M);
    o.overrides = {{"blk\\.0\\.attn_v", T::Q8_0}};
    auto q = decide_map(llama_model(s), llama_tensors(s), o);
    EXPECT_EQ(q[blk(0, "attn_v")], T::Q8_0);
    EXPECT_EQ(q[blk(1, "attn_v")], T::Q5_K);
    EXPECT_EQ(q[blk(2, "attn_v")], T::Q5_K);
    EXPECT_EQ(q[blk(3, "attn_v")], T::Q4_K);
}

TEST(Recipe, PureUsesTheDefaultEverywhere) {
    const LlamaShape s{4096, 11008, 1024, 32000, 8, 32, 8};
    RecipeOptions o = with_ftype(FileType::Q4_K_M);
    o.pure = true;
    auto q = decide_map(llama_model(s), llama_tensors(s), o);
    for (const auto& [name, type] : q)
        EXPECT_EQ(type, name.find("norm") == std::string::npos ? T::Q4_K : T::F32) << name;
    // --pure still applies the shape fallback.
    auto st = decide_map(llama_model(kStories), llama_tensors(kStories), o);
    EXPECT_EQ(st["token_embd.weight"], T::Q5_0);
    EXPECT_EQ(st[blk(0, "ffn_down")], T::F16);
}

TEST(Recipe, LeaveOutputTensor) {
    const LlamaShape s{4096, 11008, 1024, 32000, 8, 32, 8};
    RecipeOptions o = with_ftype(FileType::Q4_K_M);
    o.leave_output_tensor = true;
    const auto t = llama_tensors(s);
    const auto d = decide_tensor_types(llama_model(s), t, o);
    for (size_t i = 0; i < t.size(); ++i) {
        if (t[i].name == "output.weight") {
            EXPECT_EQ(d[i].type, T::F16);
            EXPECT_FALSE(d[i].quantized);
        }
        if (t[i].name == "token_embd.weight") {
            EXPECT_EQ(d[i].type, T::Q4_K);  // still untied
        }
    }
}

TEST(Recipe, OutputAndTokenEmbeddingTypes) {
    const LlamaShape s{4096, 11008, 1024, 32000, 8, 32, 8};
    RecipeOptions o = with_ftype(FileType::Q4_K_M);
    o.output_tensor_type = T::Q8_0;
    o.token_embedding_type = T::Q3_K;
    auto q = decide_map(llama_model(s), llama_tensors(s), o);
    EXPECT_EQ(q["output.weight"], T::Q8_0);
    EXPECT_EQ(q["token_embd.weight"], T::Q3_K);
    EXPECT_EQ(q[blk(0, "attn_q")], T::Q4_K);
    // The options apply even to F16 file types.
    o.ftype = FileType::MOSTLY_F16;
    auto f = decide_map(llama_model(s), llama_tensors(s), o);
    EXPECT_EQ(f["output.weight"], T::Q8_0);
    EXPECT_EQ(f[blk(0, "attn_q")], T::F16);

    // Tied: --output-tensor-type reaches the token embedding through the output rules, and
    // then the shape fallback applies (q6_K on 64 columns -> q8_0).
    RecipeOptions tied = with_ftype(FileType::Q4_K_M);
    tied.output_tensor_type = T::Q6_K;
    EXPECT_EQ(decide_map(llama_model(kStories), llama_tensors(kStories), tied)["token_embd.weight"], T::Q8_0);
    // --token-embedding-type is taken as given; a type that cannot hold 64 columns is an error
    // (llama-quantize would abort in ggml).
    tied.token_embedding_type = T::Q6_K;
    EXPECT_THROW(decide_tensor_types(llama_model(kStories), llama_tensors(kStories), tied), Error);
    tied.token_embedding_type = T::Q8_0;
    EXPECT_EQ(decide_map(llama_model(kStories), llama_tensors(kStories), tied)["token_embd.weight"], T::Q8_0);
}

TEST(Recipe, PerLayerTokenEmbdFollowsTokenOptionUnlessNamed) {
    RecipeModel m{"gemma3n", 2, 8, 2, 0, false};
    std::vector<RecipeTensor> t = {{"token_embd.weight", {2048, 1000}, T::F16},
                                   {"output.weight", {2048, 1000}, T::F16},
                                   {"per_layer_token_embd.weight", {512, 1000}, T::F16}};
    RecipeOptions o = with_ftype(FileType::Q4_K_M);
    o.token_embedding_type = T::Q8_0;
    EXPECT_EQ(decide_map(m, t, o)["per_layer_token_embd.weight"], T::Q8_0);
    o.overrides = {{"per_layer_token_embd", T::Q5_K}};
    auto q = decide_map(m, t, o);
    EXPECT_EQ(q["per_layer_token_embd.weight"], T::Q5_K);
    EXPECT_EQ(q["token_embd.weight"], T::Q8_0);
}

// ------------------------------------------------------------ what is never quantized, order

TEST(Recipe, TensorsLlamaCppNeverQuantizes) {
    RecipeOptions o;
    auto allowed = [&](std::string name, std::vector<int64_t> shape) {
        return tensor_allows_quantization({std::move(name), std::move(shape), T::F16}, o);
    };
    EXPECT_TRUE(allowed("blk.0.attn_q.weight", {64, 64}));
    EXPECT_FALSE(allowed("blk.0.attn_q.weight", {64, 1}));  // ggml_n_dims: trailing 1 is not a dim
    EXPECT_TRUE(allowed("blk.0.attn_q.weight", {1, 64}));
    EXPECT_FALSE(allowed("blk.0.attn_q.bias", {64, 64}));
    EXPECT_FALSE(allowed("blk.0.attn_q_norm.weight", {64, 64}));
    EXPECT_FALSE(allowed("blk.0.ffn_gate_inp.weight", {64, 8}));
    EXPECT_FALSE(allowed("position_embd.weight", {64, 64}));
    EXPECT_FALSE(allowed("blk.0.ssm_conv1d.weight", {4, 64}));
    EXPECT_TRUE(allowed("output.weight", {64, 64}));
    o.leave_output_tensor = true;
    EXPECT_FALSE(allowed("output.weight", {64, 64}));
}

TEST(Recipe, QuantizeOrderIsBlockThenName) {
    std::vector<RecipeTensor> t = {
        {"blk.10.attn_q.weight", {64, 64}, T::F16}, {"blk.2.ffn_up.weight", {64, 64}, T::F16},
        {"token_embd.weight", {64, 64}, T::F16},    {"blk.2.attn_v.weight", {64, 64}, T::F16},
        {"output_norm.weight", {64}, T::F32},       {"blk.0.attn_q.weight", {64, 64}, T::F16},
        {"output.weight", {64, 64}, T::F16},
    };
    std::vector<std::string> names;
    for (size_t i : llama_quantize_order(t)) names.push_back(t[i].name);
    EXPECT_EQ(names, (std::vector<std::string>{"output.weight", "output_norm.weight", "token_embd.weight",
                                               "blk.0.attn_q.weight", "blk.2.attn_v.weight", "blk.2.ffn_up.weight",
                                               "blk.10.attn_q.weight"}));
    t.push_back({"blk.2.attn_v.weight", {64, 64}, T::F16});
    EXPECT_THROW(llama_quantize_order(t), Error);
}

TEST(Recipe, CountersFollowLlamaOrderNotInputOrder) {
    // 12 layers: blk.10/blk.11 sort after blk.9 in llama.cpp's order but before blk.2 by name.
    const LlamaShape s{4096, 11008, 4096, 32000, 12, 32, 32};
    auto t = llama_tensors(s);
    const auto expected = decide_map(llama_model(s), t, with_ftype(FileType::Q3_K_M));
    std::mt19937 rng(11);
    std::shuffle(t.begin(), t.end(), rng);
    EXPECT_EQ(decide_map(llama_model(s), t, with_ftype(FileType::Q3_K_M)), expected);
    EXPECT_EQ(expected.at(blk(10, "attn_v")), T::Q4_K);
    EXPECT_EQ(expected.at(blk(1, "attn_v")), T::Q5_K);
    const auto q4 = decide_map(llama_model(s), t, with_ftype(FileType::Q4_K_M));
    for (int i = 0; i < 12; ++i) EXPECT_EQ(q4.at(blk(i, "attn_v")), use_more_bits(i, 12) ? T::Q6_K : T::Q4_K) << i;
}

// ------------------------------------------------------------ file types, table

TEST(Recipe, FileTypeNames) {
    ASSERT_NE(find_file_type("q4_k_m"), nullptr);
    EXPECT_EQ(find_file_type("q4_k_m")->id, FileType::Q4_K_M);
    EXPECT_EQ(find_file_type("Q4_K")->id, FileType::Q4_K_M);
    EXPECT_EQ(find_file_type("q5_k")->id, FileType::Q5_K_M);
    EXPECT_EQ(find_file_type("15")->id, FileType::Q4_K_M);
    EXPECT_EQ(find_file_type("bf16")->id, FileType::MOSTLY_BF16);
    EXPECT_EQ(find_file_type("Q4_K_X"), nullptr);
    EXPECT_EQ(find_file_type("IQ2_XXS"), nullptr);  // not offered yet
    EXPECT_STREQ(file_type_info(FileType::Q4_K_M).description, "Q4_K - Medium");
    EXPECT_STREQ(file_type_info(FileType::Q2_K).description, "Q2_K - Medium");
    EXPECT_STREQ(file_type_info(FileType::ALL_F32).description, "all F32");
    EXPECT_EQ(file_type_info(FileType::Q3_K_L).default_type, T::Q3_K);
    EXPECT_EQ(all_file_types().size(), 20u);
    EXPECT_THROW(file_type_info(static_cast<FileType>(19)), Error);
}

TEST(Recipe, RuleTableReadsLikeThePlan) {
    // Every row describes itself; the final row catches everything.
    ASSERT_FALSE(mix_rules().empty());
    const MixRule& last = mix_rules().back();
    EXPECT_TRUE(last.categories.is_all());
    EXPECT_TRUE(last.ftypes.is_all());
    std::set<std::string> ids;
    for (const MixRule& r : mix_rules()) EXPECT_TRUE(ids.insert(r.id).second) << r.id;
    const LlamaShape s{4096, 11008, 1024, 32000, 8, 32, 8};
    const auto t = llama_tensors(s);
    const auto d = decide_tensor_types(llama_model(s), t, with_ftype(FileType::Q4_K_M));
    for (size_t i = 0; i < t.size(); ++i) {
        if (t[i].name == "blk.0.attn_v.weight") {
            EXPECT_EQ(d[i].rule, "E8 attn_v/attn_qkv/attn_kv_b [Q5_K_M Q4_K_M] use_more_bits(i_attention_wv, "
                                 "n_attention_wv) -> q6_K");
        }
        if (t[i].name == "blk.0.attn_norm.weight") {
            EXPECT_EQ(d[i].rule, "kept: 1-D tensor");
        }
    }
    EXPECT_TRUE(tensor_requires_imatrix("blk.0.attn_q.weight", T::Q2_K, FileType::Q2_K_S));
    EXPECT_FALSE(tensor_requires_imatrix("blk.0.attn_q.weight", T::Q2_K, FileType::Q2_K));
    EXPECT_FALSE(tensor_requires_imatrix("token_embd.weight", T::IQ2_XS, FileType::Q2_K_S));
    EXPECT_EQ(fallback_for(T::Q3_K, 64), T::Q4_0);
    EXPECT_EQ(fallback_for(T::Q6_K, 100), T::F16);
    EXPECT_EQ(fallback_for(T::Q8_K, 100), std::nullopt);
}

}  // namespace
}  // namespace qf
