// qforge plan: placement, verdicts, context limit, speed bound and the CLI.
#include "common/error.h"
#include "plan/fit.h"
#include "plan/plan_report.h"
#include "support/test_paths.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace qf {
namespace {

std::string llama31() { return test::source_dir() + "/examples/llama-3.1-8b/config.json"; }

struct Fixture {
    PlanModel m = load_plan_model(llama31());
    PlanMetadata md = plan_metadata(m);
    HardwareCatalogue hw = load_hardware_catalogue(test::source_dir() + "/data/hardware.json");
    SizePlan size(const char* t) { return plan_size(m, md, *find_file_type(t)); }
    FitRequest request(const char* gpus) {
        FitRequest r;
        if (*gpus) r.gpus = parse_gpu_list(hw, gpus);
        r.ram_bytes = 32ull << 30;
        r.ram_bandwidth_gbs = 100;
        return r;
    }
};

uint64_t tensor(const SizePlan& p, const std::string& name) {
    for (const auto& t : p.tensors)
        if (t.tensor.name == name) return t.bytes;
    ADD_FAILURE() << "no " << name;
    return 0;
}

TEST(PlanFit, FullOffloadOnA4090) {
    Fixture f;
    SizePlan q4 = f.size("Q4_K_M");
    FitResult r = plan_fit(f.m, q4, f.request("4090"));
    EXPECT_EQ(r.verdict, FitVerdict::Fits);
    EXPECT_EQ(r.n_gpu_layers, 33);
    EXPECT_EQ(r.n_offloadable, 33);
    // token_embd stays in host memory; everything else is on the GPU.
    EXPECT_EQ(r.ram_weights, tensor(q4, "token_embd.weight") + tensor(q4, "rope_freqs.weight"));
    EXPECT_EQ(r.gpu_weights + r.ram_weights, q4.tensor_bytes);
    EXPECT_EQ(r.gpu_kv, 512ull << 20);  // 4096 cells x 128 KiB
    EXPECT_EQ(r.max_context, 131072u);  // the whole trained context fits in 24 GiB at Q4_K_M
    // Speed bound: everything but token_embd plus the KV cache, read once per token at 1008 GB/s.
    const double bytes = static_cast<double>(q4.tensor_bytes - r.ram_weights + r.gpu_kv);
    EXPECT_NEAR(r.tokens_per_second, 1008e9 / bytes, 1e-6);
}

TEST(PlanFit, PartialOffloadCountsLayersFromTheOutput) {
    Fixture f;
    SizePlan f16 = f.size("F16");
    FitResult r = plan_fit(f.m, f16, f.request("3060"));
    EXPECT_EQ(r.verdict, FitVerdict::Partial);
    EXPECT_GT(r.n_gpu_layers, 1);
    EXPECT_LT(r.n_gpu_layers, 33);
    EXPECT_LE(r.gpu_bytes(), r.gpu_capacity);
    // One more layer would not fit.
    FitRequest more = f.request("3060");
    more.n_gpu_layers = r.n_gpu_layers + 1;
    FitResult over = plan_fit(f.m, f16, more);
    EXPECT_GT(over.gpu_bytes(), over.gpu_capacity);
    EXPECT_EQ(over.verdict, FitVerdict::No);

    // -ngl 1: only the output layer (output.weight + output_norm) goes to the GPU.
    FitRequest one = f.request("3060");
    one.n_gpu_layers = 1;
    FitResult o = plan_fit(f.m, f16, one);
    EXPECT_EQ(o.gpu_weights, tensor(f16, "output.weight") + tensor(f16, "output_norm.weight"));
    EXPECT_EQ(o.gpu_kv, 0u);
}

TEST(PlanFit, CpuOnlyAndTooSmall) {
    Fixture f;
    SizePlan f16 = f.size("F16");
    FitRequest cpu = f.request("");
    FitResult r = plan_fit(f.m, f16, cpu);
    EXPECT_EQ(r.verdict, FitVerdict::Fits);
    EXPECT_EQ(r.ram_weights, f16.tensor_bytes);
    cpu.ram_bytes = 8ull << 30;
    r = plan_fit(f.m, f16, cpu);
    EXPECT_EQ(r.verdict, FitVerdict::No);
    EXPECT_EQ(r.max_context, 0u);
}

TEST(PlanFit, RecommendsLargestThatFits) {
    Fixture f;
    std::vector<SizePlan> sizes;
    std::vector<FitResult> fits;
    FitRequest req = f.request("3060");  // 12 GiB: F16 does not fit, Q8_0 does
    for (const char* t : {"Q4_K_M", "F16", "Q8_0"}) {
        sizes.push_back(f.size(t));
        fits.push_back(plan_fit(f.m, sizes.back(), req));
    }
    EXPECT_EQ(fits[1].verdict, FitVerdict::Partial);
    EXPECT_EQ(fits[2].verdict, FitVerdict::Fits);
    EXPECT_EQ(recommend(sizes, fits), 2);
}

TEST(PlanFit, MixtralReadsOnlyRoutedExperts) {
    nlohmann::json j = {{"model_type", "mixtral"},        {"hidden_size", 4096},        {"num_hidden_layers", 32},
                        {"num_attention_heads", 32},      {"num_key_value_heads", 8},   {"vocab_size", 32000},
                        {"intermediate_size", 14336},     {"max_position_embeddings", 32768},
                        {"num_local_experts", 8},         {"num_experts_per_tok", 2}};
    PlanModel m = parse_plan_model(j, "mixtral/config.json", "/nonexistent");
    SizePlan p = plan_size(m, plan_metadata(m), *find_file_type("Q4_K_M"));
    EXPECT_NEAR(static_cast<double>(p.n_params), 46.7e9, 0.1e9);  // Mixtral-8x7B: 46.7B parameters
    FitRequest cpu;
    cpu.ram_bytes = 64ull << 30;
    cpu.ram_bandwidth_gbs = 100;
    cpu.context.n_ctx = 256;
    FitResult r = plan_fit(m, p, cpu);
    uint64_t experts = 0, embd = 0;
    for (const auto& t : p.tensors) {
        if (t.tensor.name.find("_exps.") != std::string::npos) experts += t.bytes;
        if (t.tensor.name == "token_embd.weight") embd = t.bytes;
    }
    const double read = static_cast<double>(p.tensor_bytes - embd - experts) + static_cast<double>(experts) / 4.0 +
                        static_cast<double>(r.kv_bytes);
    EXPECT_NEAR(r.tokens_per_second, 100e9 / read, 0.01);
}

// CUDA buffers pad quantized rows to a multiple of 512 values and align tensors to 128 bytes
// (facts §7.1); other backends hold the plain bytes.
TEST(PlanFit, CudaRowPadding) {
    nlohmann::json j = {{"model_type", "llama"},       {"hidden_size", 896},       {"num_hidden_layers", 2},
                        {"num_attention_heads", 14},   {"num_key_value_heads", 2}, {"vocab_size", 1024},
                        {"intermediate_size", 4864},   {"tie_word_embeddings", false}};
    PlanModel m = parse_plan_model(j, "small/config.json", "/nonexistent");
    SizePlan p = plan_size(m, plan_metadata(m), *find_file_type("Q8_0"));
    HardwareCatalogue hw = load_hardware_catalogue(test::source_dir() + "/data/hardware.json");
    FitRequest nv, amd;
    nv.gpus = parse_gpu_list(hw, "4090");
    amd.gpus = parse_gpu_list(hw, "7900 xtx");
    nv.ram_bytes = amd.ram_bytes = 8ull << 30;
    FitResult a = plan_fit(m, p, amd), n = plan_fit(m, p, nv);
    ASSERT_EQ(a.verdict, FitVerdict::Fits);
    ASSERT_EQ(n.verdict, FitVerdict::Fits);
    uint64_t expected_nv = 0;
    for (const auto& t : p.tensors) {
        if (t.tensor.name == "token_embd.weight") continue;  // stays on the host
        uint64_t b = t.bytes;
        if (t.tensor.type == GgmlType::Q8_0) {
            const int64_t missing = 512 - t.tensor.shape[0] % 512;  // 896 -> 128, 4864 -> 256 values
            b += static_cast<uint64_t>(missing / 32 * 34);
        }
        expected_nv += (b + 127) / 128 * 128;
    }
    EXPECT_EQ(n.gpu_weights, expected_nv);
    EXPECT_EQ(a.gpu_weights, p.tensor_bytes - [&] {
        for (const auto& t : p.tensors)
            if (t.tensor.name == "token_embd.weight") return t.bytes;
        return uint64_t{0};
    }());
    EXPECT_GT(n.gpu_weights, a.gpu_weights);
}

TEST(PlanCli, JsonAndErrors) {
    std::string out;
    ASSERT_EQ(test::run_command(fmt::format("'{}' plan '{}' --gpu 2x3090 --type Q4_K_M,Q8_0 -c 8192 --json 2>&1",
                                            test::qforge_binary(), llama31()),
                                &out),
              0)
        << out;
    nlohmann::json j = nlohmann::json::parse(out);
    ASSERT_EQ(j["plans"].size(), 2u);
    EXPECT_EQ(j["plans"][0]["type"], "Q4_K_M");
    EXPECT_NEAR(j["plans"][0]["bpw"].get<double>(), 4.8944, 0.00005);
    EXPECT_EQ(j["gpus"].size(), 2u);
    EXPECT_EQ(j["context"]["n_ctx"], 8192);
    EXPECT_EQ(j["plans"][1]["verdict"], "fits");
    EXPECT_EQ(j["recommended"], "Q8_0");

    ASSERT_EQ(test::run_command(fmt::format("'{}' plan '{}' 2>&1", test::qforge_binary(), llama31()), &out), 0) << out;
    EXPECT_NE(out.find("4096 tokens by default"), std::string::npos) << out;

    EXPECT_NE(test::run_command(fmt::format("'{}' plan '{}' --gpu H100 2>&1", test::qforge_binary(), llama31()), &out), 0);
    EXPECT_NE(out.find("ambiguous"), std::string::npos) << out;
    EXPECT_NE(test::run_command(fmt::format("'{}' plan '{}' --type Q9 2>&1", test::qforge_binary(), llama31()), &out), 0);
    EXPECT_NE(out.find("unknown file type 'Q9'"), std::string::npos) << out;
}

}  // namespace
}  // namespace qf
