// qforge plan, sizes: tensor sets from config.json and the bits per weight llama.cpp publishes.
#include "common/error.h"
#include "plan/plan_model.h"
#include "plan/size_plan.h"
#include "support/test_paths.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <map>

namespace qf {
namespace {

std::string llama31_config() { return test::source_dir() + "/examples/llama-3.1-8b/config.json"; }

const GgufTensorPlan* find(const std::vector<GgufTensorPlan>& ts, const std::string& name) {
    for (const auto& t : ts)
        if (t.name == name) return &t;
    return nullptr;
}

TEST(PlanModel, Llama31TensorSet) {
    PlanModel m = load_plan_model(llama31_config());
    EXPECT_EQ(m.gguf_arch, "llama");
    EXPECT_TRUE(m.rope_freqs);
    auto ts = plan_tensors(m);
    // 3 model-level + rope_freqs + 32 layers x 9
    EXPECT_EQ(ts.size(), 4u + 32u * 9u);
    ASSERT_NE(find(ts, "rope_freqs.weight"), nullptr);
    EXPECT_EQ(find(ts, "rope_freqs.weight")->shape, (std::vector<int64_t>{64}));
    EXPECT_EQ(find(ts, "blk.0.attn_k.weight")->shape, (std::vector<int64_t>{4096, 1024}));
    EXPECT_EQ(find(ts, "blk.31.ffn_down.weight")->shape, (std::vector<int64_t>{14336, 4096}));
    EXPECT_EQ(find(ts, "output.weight")->type, GgmlType::F16);
    EXPECT_EQ(find(ts, "blk.3.ffn_norm.weight")->type, GgmlType::F32);
    uint64_t n = 0;
    for (const auto& t : ts) n += tensor_elements(t);
    EXPECT_EQ(n, 8030261312u);  // Llama-3.1-8B's published parameter count (8.03B) + 64 rope factors
}

// llama.cpp's published bits per weight for Llama-3.1-8B (tools/quantize/README.md table).
TEST(PlanSize, Llama31PublishedBpw) {
    PlanModel m = load_plan_model(llama31_config());
    PlanMetadata md = plan_metadata(m);
    EXPECT_FALSE(md.exact);  // no tokenizer files in examples/
    const std::map<std::string, double> published = {
        {"F16", 16.0005},   {"Q8_0", 8.5008},   {"Q6_K", 6.5633},   {"Q5_K_M", 5.7036},
        {"Q5_K_S", 5.5704}, {"Q4_K_M", 4.8944}, {"Q4_K_S", 4.6672}, {"IQ4_XS", 4.4597},
        {"Q3_K_L", 4.2979}, {"Q3_K_S", 3.6429}, {"Q2_K", 3.1593},
    };
    for (const auto& [name, bpw] : published) {
        const FileTypeInfo* ft = find_file_type(name);
        ASSERT_NE(ft, nullptr) << name;
        SizePlan p = plan_size(m, md, *ft);
        EXPECT_NEAR(p.bpw(), bpw, 0.00005) << name;
        EXPECT_GT(p.file_bytes, p.tensor_bytes);
    }
}

TEST(PlanSize, Q4KMTensorBytesMatchWorkedExample) {
    // facts §4.6: Llama-3-8B Q4_K_M tensor data = 4,912,898,048 B (without rope_freqs' 256 B).
    PlanModel m = load_plan_model(llama31_config());
    SizePlan p = plan_size(m, plan_metadata(m), *find_file_type("Q4_K_M"));
    EXPECT_EQ(p.tensor_bytes, 4912898048u + 256u);
}

nlohmann::json base_config(const char* model_type) {
    return {{"model_type", model_type}, {"hidden_size", 512},       {"num_hidden_layers", 2},
            {"num_attention_heads", 8}, {"num_key_value_heads", 2}, {"vocab_size", 1000},
            {"intermediate_size", 1024}, {"max_position_embeddings", 2048}};
}

TEST(PlanModel, MixtralExperts) {
    auto j = base_config("mixtral");
    j["num_local_experts"] = 8;
    j["num_experts_per_tok"] = 2;
    PlanModel m = parse_plan_model(j, "config.json", ".");
    auto ts = plan_tensors(m);
    EXPECT_EQ(find(ts, "blk.1.ffn_gate_exps.weight")->shape, (std::vector<int64_t>{512, 1024, 8}));
    EXPECT_EQ(find(ts, "blk.1.ffn_down_exps.weight")->shape, (std::vector<int64_t>{1024, 512, 8}));
    EXPECT_EQ(find(ts, "blk.0.ffn_gate_inp.weight")->type, GgmlType::F32);
    EXPECT_EQ(find(ts, "blk.0.ffn_gate.weight"), nullptr);
}

TEST(PlanModel, Qwen3MoeGemma2Phi3) {
    auto q = base_config("qwen3_moe");
    q["num_experts"] = 16;
    q["num_experts_per_tok"] = 4;
    q["moe_intermediate_size"] = 256;
    q["head_dim"] = 64;
    auto ts = plan_tensors(parse_plan_model(q, "c", "."));
    EXPECT_EQ(find(ts, "blk.0.ffn_up_exps.weight")->shape, (std::vector<int64_t>{512, 256, 16}));
    EXPECT_EQ(find(ts, "blk.0.attn_q_norm.weight")->shape, (std::vector<int64_t>{64}));

    auto g = base_config("gemma2");
    g["head_dim"] = 64;
    PlanModel gm = parse_plan_model(g, "c", ".");
    ts = plan_tensors(gm);
    EXPECT_EQ(find(ts, "output.weight"), nullptr);
    EXPECT_NE(find(ts, "blk.1.post_ffw_norm.weight"), nullptr);
    EXPECT_NE(find(ts, "blk.1.post_attention_norm.weight"), nullptr);
    EXPECT_TRUE(gm.is_swa_layer(0));
    EXPECT_FALSE(gm.is_swa_layer(1));

    auto p = base_config("phi3");
    ts = plan_tensors(parse_plan_model(p, "c", "."));
    EXPECT_EQ(find(ts, "blk.0.attn_qkv.weight")->shape, (std::vector<int64_t>{512, 512 + 2 * 128}));
    EXPECT_EQ(find(ts, "blk.0.ffn_up.weight")->shape, (std::vector<int64_t>{512, 2048}));
    EXPECT_NE(find(ts, "output.weight"), nullptr);
}

TEST(PlanModel, UnknownModelTypeNamesIt) {
    try {
        parse_plan_model(base_config("falcon_mamba"), "x/config.json", "x");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("falcon_mamba"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("x/config.json"), std::string::npos) << e.what();
    }
}

TEST(PlanModel, HostileDimensionsRejected) {
    auto j = base_config("llama");
    j["hidden_size"] = 4000000000u;
    j["num_attention_heads"] = 1;
    j["num_key_value_heads"] = 1;
    EXPECT_THROW(parse_plan_model(j, "c", "."), Error);
    auto m = base_config("mixtral");
    m["num_local_experts"] = 8;
    m["num_experts_per_tok"] = 9;
    EXPECT_THROW(parse_plan_model(m, "c", "."), Error);
    m["num_experts_per_tok"] = 2;
    m["num_local_experts"] = 2000000000;
    EXPECT_THROW(parse_plan_model(m, "c", "."), Error);
}

TEST(PlanSize, ParseFileTypes) {
    auto v = parse_file_types("Q4_K_M,q8_0");
    ASSERT_EQ(v.size(), 2u);
    EXPECT_EQ(v[0]->id, FileType::Q4_K_M);
    EXPECT_EQ(v[1]->id, FileType::Q8_0);
    EXPECT_THROW(parse_file_types("Q9_X"), Error);
}

}  // namespace
}  // namespace qf
