// `qforge quantize` proven against the real llama.cpp: from the same F16 GGUF, for every
// file type, our file has llama-quantize's tensor names, order, types and size (and bytes);
// with an importance matrix both read the same file and agree; llama.cpp loads our files
// and measures a finite perplexity; --dry-run predicts the size; HF -> TYPE equals
// HF -> F32 GGUF -> TYPE.
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "common/error.h"
#include "common/output_file.h"
#include "pipeline/quantize.h"
#include "recipe/recipe.h"
#include "support/llama_api.h"
#include "support/test_paths.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace fs = std::filesystem;
using namespace qf::test;

namespace {

std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string convert(const std::string& dir, const std::string& outtype, const std::string& out) {
    std::string log;
    int rc = run_command(fmt::format("'{}' convert '{}' --outtype {} -o '{}' --force", qforge_binary(), dir, outtype, out),
                         &log);
    EXPECT_EQ(rc, 0) << log;
    return out;
}

qf::QuantizeResult ours(const std::string& in, const std::string& out, qf::FileType ftype,
                        const std::string& imatrix = "", bool llama_exact = true) {
    qf::QuantizeOptions o;
    o.input = in;
    o.output = out;
    o.ftype = ftype;
    o.imatrix_path = imatrix;
    o.overwrite = true;
    o.threads = 2;
    o.llama_exact = llama_exact;
    o.progress = false;
    return qf::quantize_model(o);
}

// Same tensor names in the same order, same types, same size; and same bytes.
void expect_same_file(const std::string& ours_path, const std::string& ref_path, const std::string& what,
                      bool same_bytes = true) {
    qf::GgufFile a(ours_path), b(ref_path);
    ASSERT_EQ(a.tensors().size(), b.tensors().size()) << what;
    for (size_t i = 0; i < a.tensors().size(); ++i) {
        EXPECT_EQ(a.tensors()[i].name, b.tensors()[i].name) << what << " tensor " << i;
        EXPECT_EQ(qf::type_name(a.tensors()[i].type), qf::type_name(b.tensors()[i].type))
            << what << " " << a.tensors()[i].name;
    }
    EXPECT_EQ(a.file_size(), b.file_size()) << what;
    ASSERT_EQ(a.metadata().size(), b.metadata().size()) << what;
    for (size_t i = 0; i < a.metadata().size(); ++i) {
        EXPECT_EQ(a.metadata().entries()[i].key, b.metadata().entries()[i].key) << what << " KV " << i;
        EXPECT_TRUE(a.metadata().entries()[i].value == b.metadata().entries()[i].value)
            << what << " " << a.metadata().entries()[i].key;
    }
    // Byte identity, tensor by tensor (so a failure names the tensor).
    for (size_t i = 0; same_bytes && i < a.tensors().size() && i < b.tensors().size(); ++i) {
        auto da = a.tensor_data(a.tensors()[i]);
        auto db = b.tensor_data(b.tensors()[i]);
        ASSERT_EQ(da.size(), db.size()) << what << " " << a.tensors()[i].name;
        auto diff = std::mismatch(da.begin(), da.end(), db.begin());
        EXPECT_TRUE(diff.first == da.end())
            << what << ": data of " << a.tensors()[i].name << " (" << qf::type_name(a.tensors()[i].type)
            << ") differs first at byte " << (diff.first - da.begin()) << " of " << da.size() << ": "
            << int(*diff.first) << " vs " << int(*diff.second);
    }
}

// A random importance matrix in llama-imatrix's GGUF format for every 2-D blk.* weight of `model`.
void write_random_imatrix(const std::string& model, const std::string& path, uint32_t seed) {
    qf::GgufFile m(model);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> sums(0.01f, 50.0f);
    std::vector<std::pair<std::string, std::vector<float>>> data;
    std::vector<qf::GgufTensorPlan> plan;
    std::vector<std::string> names;
    for (const auto& t : m.tensors())
        if (t.name.starts_with("blk.") && t.shape.size() >= 2) names.push_back(t.name);
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
        const int64_t ne0 = m.find_tensor(name)->shape[0];
        std::vector<float> s(static_cast<size_t>(ne0));
        for (float& v : s) v = sums(rng);
        plan.push_back({name + ".counts", {1, 1}, qf::GgmlType::F32});
        data.emplace_back(name + ".counts", std::vector<float>{1536.0f});
        plan.push_back({name + ".in_sum2", {ne0, 1}, qf::GgmlType::F32});
        data.emplace_back(name + ".in_sum2", std::move(s));
    }
    qf::GgufMetadata md;
    md.set("general.type", qf::GgufValue::string("imatrix"));
    md.set("imatrix.datasets", qf::GgufValue::string_array({"random.txt"}));
    md.set("imatrix.chunk_count", qf::GgufValue::u32(3));
    md.set("imatrix.chunk_size", qf::GgufValue::u32(512));
    qf::OutputFile out(path, true);
    qf::GgufWriter w(out, md, plan);
    for (const auto& [name, v] : data) w.write_tensor_data(std::as_bytes(std::span<const float>(v)));
    w.finish();
    out.commit();
}

struct Models {
    std::string dir;
    std::string stories_f16, prose_f16;
};

const Models& models() {
    static Models m = [] {
        Models r;
        r.dir = (fs::temp_directory_path() / fmt::format("qforge-quantize-interop-{}", ::getpid())).string();
        fs::create_directories(r.dir);
        r.stories_f16 = convert(bundled_model("stories260k"), "f16", r.dir + "/stories-f16.gguf");
        r.prose_f16 = convert(bundled_model("prose-tiny"), "f16", r.dir + "/prose-f16.gguf");
        return r;
    }();
    return m;
}

class QuantizeInterop : public ::testing::Test {
protected:
    void SetUp() override {
        if (!LlamaApi::get().available()) FAIL() << LlamaApi::get().error();
    }
    static void TearDownTestSuite() {
        std::error_code ec;
        fs::remove_all(models().dir, ec);
    }
};

void compare_all_types(const std::string& f16, const std::string& label, bool with_default_kernels) {
    const std::string dir = scratch_dir();
    for (const auto& ft : qf::all_file_types()) {
        const std::string ref = fmt::format("{}/{}-ref-{}.gguf", dir, label, ft.name);
        const std::string mine = fmt::format("{}/{}-ours-{}.gguf", dir, label, ft.name);
        QuantizeOptions lo;
        lo.ftype = static_cast<int>(ft.id);
        lo.nthread = 2;
        const int rc = model_quantize(f16, ref, lo);
        if (rc != 0) {
            // llama-quantize refuses (Q2_K_S without an imatrix): so must we.
            EXPECT_THROW(ours(f16, mine, ft.id), qf::Error) << label << " " << ft.name;
            continue;
        }
        qf::QuantizeResult r = ours(f16, mine, ft.id);
        EXPECT_EQ(r.plan.file_bytes, fs::file_size(ref)) << label << " " << ft.name;
        expect_same_file(mine, ref, label + " " + ft.name);
        if (with_default_kernels) {
            // qforge's own kernels: other bytes, but the same layout, types, metadata and size.
            ours(f16, mine, ft.id, "", false);
            expect_same_file(mine, ref, label + " " + ft.name + " (default kernels)", false);
        }
        fs::remove(ref);
        fs::remove(mine);
    }
}

TEST_F(QuantizeInterop, EveryFileTypeMatchesLlamaQuantizeStories260k) {
    compare_all_types(models().stories_f16, "stories260k", true);
}

TEST_F(QuantizeInterop, EveryFileTypeMatchesLlamaQuantizeProseTiny) { compare_all_types(models().prose_f16, "prose-tiny", false); }

// The larger shared model (untied output, 8 layers): the same for every type.
TEST_F(QuantizeInterop, EveryFileTypeMatchesLlamaQuantizeProseBase) {
    if (!shared_dir()) GTEST_SKIP() << "../shared not present: models/prose-base needed";
    const std::string f16 = convert(*shared_dir() + "/models/prose-base", "f16", models().dir + "/prose-base-f16.gguf");
    compare_all_types(f16, "prose-base", true);
}

TEST_F(QuantizeInterop, ImatrixFileReadAlikeByBoth) {
    const std::string dir = scratch_dir();
    for (const std::string& f16 : {models().stories_f16, models().prose_f16}) {
        const std::string imatrix = dir + "/imatrix.gguf";
        write_random_imatrix(f16, imatrix, 7);
        for (qf::FileType ft : {qf::FileType::Q2_K_S, qf::FileType::Q4_K_M, qf::FileType::Q4_0, qf::FileType::IQ4_XS}) {
            const std::string name = qf::file_type_info(ft).name;
            const std::string ref = dir + "/ref-" + name + ".gguf", mine = dir + "/ours-" + name + ".gguf";
            QuantizeOptions lo;
            lo.ftype = static_cast<int>(ft);
            lo.imatrix_path = imatrix;
            ASSERT_EQ(model_quantize(f16, ref, lo), 0) << name;
            qf::QuantizeResult r = ours(f16, mine, ft, imatrix);
            size_t with_imatrix = 0;
            for (const auto& t : r.plan.tensors) with_imatrix += t.uses_imatrix;
            EXPECT_GT(with_imatrix, 0u) << name;
            expect_same_file(mine, ref, f16 + " imatrix " + name);
            qf::GgufFile q(mine);
            ASSERT_NE(q.metadata().find("quantize.imatrix.entries_count"), nullptr);
            EXPECT_EQ(q.metadata().entries().back().key, "quantize.imatrix.chunks_count");
        }
    }
}

TEST_F(QuantizeInterop, LlamaCppRunsOurQuantizedFiles) {
    auto shared = shared_dir();
    if (!shared) GTEST_SKIP() << "../shared not found: perplexity text missing";
    std::ifstream in(*shared + "/text/valid.txt", std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    const std::string dir = scratch_dir();
    for (qf::FileType ft : {qf::FileType::Q4_K_M, qf::FileType::Q8_0, qf::FileType::Q2_K}) {
        const std::string out = dir + "/prose-" + qf::file_type_info(ft).name + ".gguf";
        ours(models().prose_f16, out, ft, "", false);  // the kernels users get by default
        auto model = load_model(out);
        PerplexityResult p = perplexity(*model, text, 512, 2);
        EXPECT_EQ(p.chunks, 2);
        EXPECT_TRUE(std::isfinite(p.ppl) && p.ppl > 1.0) << qf::file_type_info(ft).name << " ppl " << p.ppl;
    }
}

TEST_F(QuantizeInterop, DryRunPredictsTheExactSize) {
    const std::string dir = scratch_dir();
    for (const char* type : {"Q4_K_M", "q3_k_s", "Q5_0"}) {
        const std::string out = fmt::format("{}/stories-{}.gguf", dir, type);
        std::string log;
        ASSERT_EQ(run_command(fmt::format("'{}' quantize --dry-run --json '{}' '{}' {}", qforge_binary(),
                                          models().stories_f16, out, type),
                              &log),
                  0)
            << log;
        const auto j = nlohmann::json::parse(log);
        EXPECT_FALSE(fs::exists(out));
        ASSERT_EQ(run_command(fmt::format("'{}' quantize '{}' '{}' {} 2", qforge_binary(), models().stories_f16, out, type),
                              &log),
                  0)
            << log;
        EXPECT_EQ(j.at("file_bytes").get<uint64_t>(), fs::file_size(out)) << type;
    }
}

TEST_F(QuantizeInterop, HfFolderEqualsHfToF32ThenQuantize) {
    const std::string dir = scratch_dir();
    for (const char* model : {"stories260k", "prose-tiny"}) {
        const std::string f32 = convert(bundled_model(model), "f32", dir + "/" + model + "-f32.gguf");
        const qf::FileType ft = std::string(model) == "prose-tiny" ? qf::FileType::Q4_0 : qf::FileType::Q4_K_M;
        const std::string direct = dir + "/" + model + "-direct.gguf", via = dir + "/" + model + "-via.gguf";
        ours(bundled_model(model), direct, ft);
        ours(f32, via, ft);
        EXPECT_EQ(fs::file_size(direct), fs::file_size(via)) << model;
        EXPECT_TRUE(read_bytes(direct) == read_bytes(via)) << model;
    }
}

}  // namespace
