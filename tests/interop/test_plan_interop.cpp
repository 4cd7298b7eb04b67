// qforge plan against reality: planned file sizes vs the files `qforge convert` and
// llama.cpp's llama_model_quantize write, planned KV cache vs what llama.cpp allocates,
// and the compute buffer estimate vs llama.cpp's log.
#include "plan/kv_plan.h"
#include "plan/plan_model.h"
#include "plan/size_plan.h"
#include "support/llama_api.h"
#include "support/test_paths.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <regex>

namespace qf {
namespace {

namespace fs = std::filesystem;
using namespace qf::test;

std::string convert(const std::string& dir, const std::string& outtype, const std::string& out) {
    std::string log;
    int rc = run_command(fmt::format("'{}' convert '{}' --outtype {} -o '{}' --force -t 1", qforge_binary(), dir, outtype, out),
                         &log);
    EXPECT_EQ(rc, 0) << log;
    return out;
}

class PlanFileSize : public ::testing::TestWithParam<const char*> {};

TEST_P(PlanFileSize, ConvertAndLlamaQuantizeSizesArePlanned) {
    LlamaApi::get().require();
    const std::string dir = bundled_model(GetParam());
    const std::string scratch = scratch_dir();
    PlanModel m = load_plan_model(dir);
    PlanMetadata md = plan_metadata(m);
    ASSERT_TRUE(md.exact) << md.note;

    for (const char* outtype : {"f32", "f16", "bf16"}) {
        std::string out = convert(dir, outtype, scratch + "/" + outtype + ".gguf");
        SizePlan p = plan_size(m, md, *find_file_type(outtype));
        EXPECT_EQ(p.file_bytes, fs::file_size(out)) << GetParam() << " " << outtype;
    }
    const std::string f16 = scratch + "/f16.gguf";
    for (const char* ft : {"Q4_K_M", "Q8_0", "Q2_K", "Q6_K", "IQ4_XS"}) {
        const FileTypeInfo* info = find_file_type(ft);
        const std::string out = scratch + "/" + ft + ".gguf";
        QuantizeOptions q;
        q.ftype = static_cast<int>(info->id);
        q.nthread = 1;
        ASSERT_EQ(model_quantize(f16, out, q), 0) << ft;
        SizePlan p = plan_size(m, md, *info);
        EXPECT_EQ(p.file_bytes, fs::file_size(out)) << GetParam() << " " << ft;
    }
}

INSTANTIATE_TEST_SUITE_P(Bundled, PlanFileSize, ::testing::Values("prose-tiny", "stories260k"));

// The larger shared model (n_embd a multiple of 256: the k-quant rows apply without fallbacks).
TEST(PlanFileSizeShared, ProseBase) {
    auto shared = shared_dir();
    if (!shared) GTEST_SKIP() << "no shared folder: prose-base not checked";
    LlamaApi::get().require();
    const std::string dir = *shared + "/models/prose-base";
    const std::string scratch = scratch_dir();
    PlanModel m = load_plan_model(dir);
    PlanMetadata md = plan_metadata(m);
    ASSERT_TRUE(md.exact) << md.note;
    const std::string f16 = convert(dir, "f16", scratch + "/f16.gguf");
    EXPECT_EQ(plan_size(m, md, *find_file_type("F16")).file_bytes, fs::file_size(f16));
    for (const char* ft : {"Q4_K_M", "Q3_K_M"}) {
        const FileTypeInfo* info = find_file_type(ft);
        const std::string out = scratch + "/" + ft + ".gguf";
        QuantizeOptions q;
        q.ftype = static_cast<int>(info->id);
        q.nthread = 1;
        ASSERT_EQ(model_quantize(f16, out, q), 0) << ft;
        EXPECT_EQ(plan_size(m, md, *info).file_bytes, fs::file_size(out)) << "prose-base " << ft;
    }
}

struct LoggedContext {
    std::string k_mib, v_mib;  // as printed, "%.2f"
    double compute_mib = -1;
};

LoggedContext parse_context_log(const std::vector<std::string>& lines) {
    LoggedContext r;
    const std::regex kv(R"(llama_kv_cache: size = +[0-9.]+ MiB.*K \([a-z0-9_]+\): +([0-9.]+) MiB, V \([a-z0-9_]+\): +([0-9.]+) MiB)");
    const std::regex compute(R"(CPU compute buffer size = +([0-9.]+) MiB)");
    std::smatch mt;
    for (const auto& l : lines) {
        if (std::regex_search(l, mt, kv)) {
            r.k_mib = mt[1];
            r.v_mib = mt[2];
        }
        if (std::regex_search(l, mt, compute)) r.compute_mib = std::stod(mt[1]);
    }
    return r;
}

std::string mib2(uint64_t bytes) { return fmt::format("{:.2f}", static_cast<double>(bytes) / (1024.0 * 1024.0)); }

TEST(PlanKvCache, MatchesLlamaCppAllocation) {
    LlamaApi::get().require();
    const std::string scratch = scratch_dir();
    std::vector<std::pair<std::string, std::string>> models = {{"prose-tiny", bundled_model("prose-tiny")},
                                                               {"stories260k", bundled_model("stories260k")}};
    if (auto shared = shared_dir()) models.emplace_back("prose-base", *shared + "/models/prose-base");
    else std::printf("no shared folder: prose-base KV cache not checked\n");
    for (const auto& [name, dir] : models) {
        const std::string f16 = convert(dir, "f16", scratch + "/" + name + ".gguf");
        PlanModel m = load_plan_model(dir);
        auto model = load_model(f16);
        struct Case {
            int n_ctx, n_ubatch;
            GgmlType k, v;
            int fa;
        };
        const Case cases[] = {
            {512, 512, GgmlType::F16, GgmlType::F16, 0},   {1000, 512, GgmlType::F16, GgmlType::F16, 0},
            {4096, 512, GgmlType::F16, GgmlType::F16, 1},  {2000, 256, GgmlType::Q8_0, GgmlType::Q8_0, 1},
            {3000, 512, GgmlType::Q4_0, GgmlType::Q4_0, 1}, {700, 128, GgmlType::Q8_0, GgmlType::F16, 0},
            {8192, 512, GgmlType::F16, GgmlType::F16, 0},
        };
        for (const Case& c : cases) {
            if (name == "stories260k" && c.k != GgmlType::F16 && (m.head_dim % 32) != 0) continue;
            auto log = create_context_log(*model, c.n_ctx, c.n_ubatch, c.n_ubatch, static_cast<int>(c.k),
                                          static_cast<int>(c.v), c.fa);
            LoggedContext got = parse_context_log(log);
            ContextOptions o;
            o.n_ctx = static_cast<uint32_t>(c.n_ctx);
            o.n_batch = o.n_ubatch = static_cast<uint32_t>(c.n_ubatch);
            o.type_k = c.k;
            o.type_v = c.v;
            o.flash_attn = c.fa == 1;
            KvPlan kv = plan_kv_cache(m, o);
            const std::string what = fmt::format("{} n_ctx {} k {} v {} fa {}", name, c.n_ctx, type_name(c.k), type_name(c.v), c.fa);
            EXPECT_EQ(mib2(kv.k_bytes), got.k_mib) << what;
            EXPECT_EQ(mib2(kv.v_bytes), got.v_mib) << what;
            ASSERT_GT(got.compute_mib, 0) << what;
            const double est = static_cast<double>(compute_buffer_estimate(m, o)) / (1024.0 * 1024.0);
            std::printf("[ plan ] %s: KV K %s / V %s MiB (llama.cpp %s / %s), compute estimate %.2f MiB (llama.cpp %.2f)\n",
                        what.c_str(), mib2(kv.k_bytes).c_str(), mib2(kv.v_bytes).c_str(), got.k_mib.c_str(),
                        got.v_mib.c_str(), est, got.compute_mib);
            EXPECT_NEAR(est, got.compute_mib, 0.10 * got.compute_mib) << what;
        }
    }
}

// A file llama.cpp quantized: the as-is row is that file, the requantized sizes are what
// llama_model_quantize --allow-requantize and `qforge quantize --allow-requantize` write from
// it, and the KV cache planned from its metadata is what llama.cpp allocates for it.
TEST(PlanGgufFile, LlamaQuantizedFile) {
    LlamaApi::get().require();
    const std::string scratch = scratch_dir();
    const std::string f16 = convert(bundled_model("prose-tiny"), "f16", scratch + "/f16.gguf");
    const std::string q4 = scratch + "/q4_k_m.gguf";
    QuantizeOptions lq;
    lq.ftype = static_cast<int>(FileType::Q4_K_M);
    lq.nthread = 1;
    ASSERT_EQ(model_quantize(f16, q4, lq), 0);

    const PlanModel m = load_plan_model(q4);
    ASSERT_TRUE(m.gguf);
    EXPECT_TRUE(m.gguf->has_quantized_tensors());
    const SizePlan as_is = plan_as_is(m);
    EXPECT_EQ(as_is.file_bytes, fs::file_size(q4));
    ASSERT_NE(as_is.file_type, nullptr);
    EXPECT_EQ(as_is.file_type->id, FileType::Q4_K_M);
    const PlanMetadata md = plan_metadata(m);

    for (const char* ft : {"Q8_0", "Q2_K", "Q4_K_M", "F16"}) {
        const FileTypeInfo* info = find_file_type(ft);
        const SizePlan p = plan_size(m, md, *info);
        std::printf("plan of %s: as-is %llu B; requantized to %s %llu B\n", q4.c_str(),
                    static_cast<unsigned long long>(as_is.file_bytes), ft, static_cast<unsigned long long>(p.file_bytes));

        const std::string out = scratch + "/requant-" + ft + ".gguf";
        QuantizeOptions rq;
        rq.ftype = static_cast<int>(info->id);
        rq.nthread = 1;
        rq.allow_requantize = true;
        ASSERT_EQ(model_quantize(q4, out, rq), 0) << ft;
        EXPECT_EQ(p.file_bytes, fs::file_size(out)) << "llama.cpp requantized to " << ft;

        std::string log;
        ASSERT_EQ(run_command(fmt::format("{{ '{}' quantize '{}' '{}/dry.gguf' {} --allow-requantize --dry-run --json "
                                          "2>/dev/null; }}",
                                          qforge_binary(), q4, scratch, ft),
                              &log),
                  0)
            << log;
        const auto j = nlohmann::json::parse(log);
        EXPECT_EQ(p.file_bytes, j.at("file_bytes").get<uint64_t>()) << "qforge quantize --dry-run to " << ft;
    }

    auto model = load_model(q4);
    ContextOptions o;
    o.n_ctx = 1000;
    o.n_batch = o.n_ubatch = 512;
    o.flash_attn = false;
    const LoggedContext got = parse_context_log(create_context_log(*model, 1000, 512, 512, static_cast<int>(GgmlType::F16),
                                                                   static_cast<int>(GgmlType::F16), 0));
    const KvPlan kv = plan_kv_cache(m, o);
    EXPECT_EQ(mib2(kv.k_bytes), got.k_mib);
    EXPECT_EQ(mib2(kv.v_bytes), got.v_mib);
}

}  // namespace
}  // namespace qf
