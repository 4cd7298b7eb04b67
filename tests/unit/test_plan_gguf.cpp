// qforge plan on a GGUF file: the hyperparameters come from its metadata, the tensors are its
// own; the other rows are the sizes of requantizing it. A file `qforge convert` wrote must plan
// exactly as the folder it came from, and broken inputs give one line naming the file.
#include "common/error.h"
#include "common/output_file.h"
#include "gguf/gguf_writer.h"
#include "plan/kv_plan.h"
#include "plan/plan_model.h"
#include "plan/plan_report.h"
#include "plan/size_plan.h"
#include "support/test_paths.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <optional>

namespace qf {
namespace {

namespace fs = std::filesystem;
using namespace qf::test;

std::string convert_f16(const std::string& model_dir, const std::string& out) {
    std::string log;
    const int rc = run_command(
        fmt::format("'{}' convert '{}' --outtype f16 -o '{}' --force -t 1", qforge_binary(), model_dir, out), &log);
    EXPECT_EQ(rc, 0) << log;
    return out;
}

std::optional<SizePlan> try_plan(const PlanModel& m, const PlanMetadata& md, const FileTypeInfo& ft) {
    try {
        return plan_size(m, md, ft);
    } catch (const Error&) {
        return std::nullopt;
    }
}

void expect_same_hyperparameters(const PlanModel& a, const PlanModel& b, const std::string& what) {
    EXPECT_EQ(a.gguf_arch, b.gguf_arch) << what;
    EXPECT_EQ(a.n_layer, b.n_layer) << what;
    EXPECT_EQ(a.n_embd, b.n_embd) << what;
    EXPECT_EQ(a.n_ff, b.n_ff) << what;
    EXPECT_EQ(a.n_head, b.n_head) << what;
    EXPECT_EQ(a.n_head_kv, b.n_head_kv) << what;
    EXPECT_EQ(a.head_dim, b.head_dim) << what;
    EXPECT_EQ(a.v_head_dim(), b.v_head_dim()) << what;
    EXPECT_EQ(a.n_vocab, b.n_vocab) << what;
    EXPECT_EQ(a.context_length, b.context_length) << what;
    EXPECT_EQ(a.n_expert, b.n_expert) << what;
    EXPECT_EQ(a.n_expert_used, b.n_expert_used) << what;
    EXPECT_EQ(a.n_ff_exp, b.n_ff_exp) << what;
    EXPECT_EQ(a.n_swa, b.n_swa) << what;
    EXPECT_EQ(a.tied, b.tied) << what;
}

// KV cache and compute buffer depend only on the hyperparameters: both routes must agree.
void expect_same_context_plan(const PlanModel& a, const PlanModel& b, const std::string& what) {
    for (uint32_t n_ctx : {512u, 3000u, 8192u}) {
        ContextOptions o;
        o.n_ctx = n_ctx;
        o.n_seq = n_ctx == 3000 ? 2 : 1;
        const KvPlan ka = plan_kv_cache(a, o), kb = plan_kv_cache(b, o);
        EXPECT_EQ(ka.k_bytes, kb.k_bytes) << what << " n_ctx " << n_ctx;
        EXPECT_EQ(ka.v_bytes, kb.v_bytes) << what << " n_ctx " << n_ctx;
        EXPECT_EQ(ka.swa_cells, kb.swa_cells) << what << " n_ctx " << n_ctx;
        EXPECT_EQ(compute_buffer_estimate(a, o), compute_buffer_estimate(b, o)) << what << " n_ctx " << n_ctx;
    }
}

class PlanGgufConverted : public ::testing::TestWithParam<const char*> {};

// `qforge convert` writes the very file the folder plan describes as F16, so planning that file
// must give the same size for every type, and its as-is row is the file on disk.
TEST_P(PlanGgufConverted, SameSizesAsTheFolder) {
    const std::string dir = bundled_model(GetParam());
    const std::string gguf = convert_f16(dir, scratch_dir() + "/f16.gguf");
    ASSERT_TRUE(is_gguf_file(gguf));
    EXPECT_FALSE(is_gguf_file(dir));
    EXPECT_FALSE(is_gguf_file(dir + "/config.json"));

    const PlanModel folder = load_plan_model(dir);
    const PlanModel file = load_plan_model(gguf);
    ASSERT_TRUE(file.gguf);
    EXPECT_FALSE(folder.gguf);
    expect_same_hyperparameters(folder, file, GetParam());
    expect_same_context_plan(folder, file, GetParam());

    const PlanMetadata folder_md = plan_metadata(folder);
    ASSERT_TRUE(folder_md.exact) << folder_md.note;
    const PlanMetadata file_md = plan_metadata(file);
    EXPECT_TRUE(file_md.exact);

    const SizePlan as_is = plan_as_is(file);
    EXPECT_TRUE(as_is.as_is);
    EXPECT_EQ(as_is.name(), "as-is");
    ASSERT_NE(as_is.file_type, nullptr);
    EXPECT_EQ(as_is.file_type->id, FileType::MOSTLY_F16);
    EXPECT_EQ(as_is.file_bytes, fs::file_size(gguf));
    const SizePlan folder_f16 = plan_size(folder, folder_md, *find_file_type("F16"));
    EXPECT_EQ(as_is.file_bytes, folder_f16.file_bytes);
    EXPECT_EQ(as_is.tensor_bytes, folder_f16.tensor_bytes);
    EXPECT_EQ(as_is.metadata_bytes, folder_f16.metadata_bytes);
    EXPECT_EQ(as_is.n_params, folder_f16.n_params);

    int planned = 0;
    for (const FileTypeInfo& ft : all_file_types()) {
        const auto a = try_plan(folder, folder_md, ft);
        const auto b = try_plan(file, file_md, ft);
        ASSERT_EQ(a.has_value(), b.has_value()) << GetParam() << " " << ft.name;
        if (!a) continue;
        ++planned;
        EXPECT_EQ(a->file_bytes, b->file_bytes) << GetParam() << " " << ft.name;
        EXPECT_EQ(a->tensor_bytes, b->tensor_bytes) << GetParam() << " " << ft.name;
        EXPECT_EQ(a->metadata_bytes, b->metadata_bytes) << GetParam() << " " << ft.name;
        EXPECT_EQ(a->n_params, b->n_params) << GetParam() << " " << ft.name;
        EXPECT_FALSE(b->as_is);
    }
    EXPECT_GE(planned, 15);
}

INSTANTIATE_TEST_SUITE_P(PlanBundled, PlanGgufConverted, ::testing::Values("prose-tiny", "stories260k"));

TEST(PlanGgufCli, JsonHasTheFileFirst) {
    const std::string gguf = convert_f16(bundled_model("prose-tiny"), scratch_dir() + "/prose-tiny-f16.gguf");
    std::string out;
    ASSERT_EQ(run_command(fmt::format("{{ '{}' plan '{}' --type Q8_0,Q4_K_M --json 2>/dev/null; }}", qforge_binary(), gguf),
                          &out),
              0)
        << out;
    const auto j = nlohmann::json::parse(out);
    EXPECT_EQ(j["model"]["path"], gguf);
    EXPECT_EQ(j["model"]["gguf"], true);
    ASSERT_EQ(j["plans"].size(), 3u);
    EXPECT_EQ(j["plans"][0]["type"], "as-is");
    EXPECT_EQ(j["plans"][0]["as_is"], true);
    EXPECT_EQ(j["plans"][0]["file_type"], 1);
    EXPECT_EQ(j["plans"][0]["file_bytes"].get<uint64_t>(), fs::file_size(gguf));
    EXPECT_EQ(j["plans"][1]["type"], "Q8_0");
    EXPECT_EQ(j["plans"][2]["type"], "Q4_K_M");
    EXPECT_LT(j["plans"][1]["file_bytes"].get<uint64_t>(), fs::file_size(gguf));
    // An F16 file fits a CPU with 32 GiB: as-is is the advice, never a type larger than the file.
    EXPECT_EQ(j["recommended"], "as-is");

    ASSERT_EQ(run_command(fmt::format("{{ '{}' plan '{}' --type Q8_0 2>/dev/null; }}", qforge_binary(), gguf), &out), 0)
        << out;
    EXPECT_NE(out.find("\nas-is "), std::string::npos) << out;
    EXPECT_NE(out.find("requantizing this file"), std::string::npos) << out;
    // An F16 file loses nothing when quantized: no requantization warning.
    EXPECT_EQ(out.find("already quantized"), std::string::npos) << out;
}

// Every failure is one line that names the file.
void expect_one_line_error(const std::string& path, const char* what) {
    try {
        load_plan_model(path);
        ADD_FAILURE() << what << ": no error";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(path), std::string::npos) << what << ": " << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << what << ": " << msg;
    }
    std::string out;
    EXPECT_NE(run_command(fmt::format("'{}' plan '{}'", qforge_binary(), path), &out), 0) << what;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    EXPECT_EQ(out.find('\n'), std::string::npos) << what << ": " << out;
    EXPECT_NE(out.find(path), std::string::npos) << what << ": " << out;
}

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST(PlanGgufErrors, BrokenFilesNameTheFile) {
    const std::string s = scratch_dir();
    const std::string gguf = convert_f16(bundled_model("stories260k"), s + "/whole.gguf");
    std::string whole;
    {
        std::ifstream in(gguf, std::ios::binary);
        whole.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    ASSERT_GT(whole.size(), 4096u);
    // Cut inside the KVs, inside the tensor infos and inside the data section.
    for (size_t cut : {size_t{10}, size_t{300}, whole.size() / 2, whole.size() - 64}) {
        const std::string path = fmt::format("{}/cut-{}.gguf", s, cut);
        write_bytes(path, whole.substr(0, cut));
        expect_one_line_error(path, "truncated GGUF");
    }
    write_bytes(s + "/garbage.bin", std::string("\x01\x02\xff\xfe\n\n{\"x\0\x80", 11));
    expect_one_line_error(s + "/garbage.bin", "binary garbage");
    write_bytes(s + "/empty.bin", "");
    expect_one_line_error(s + "/empty.bin", "empty file");
    write_bytes(s + "/GGU", "GGU");
    expect_one_line_error(s + "/GGU", "three bytes of magic");
    expect_one_line_error(s + "/does-not-exist.gguf", "missing file");
}

// Writes a GGUF holding `tensors` (zero data) and `md`.
void write_gguf(const std::string& path, const GgufMetadata& md, const std::vector<GgufTensorPlan>& tensors) {
    OutputFile out(path, true);
    GgufWriter w(out, md, tensors);
    const std::vector<std::byte> zeros(1 << 16);
    while (w.current_tensor() < tensors.size()) {
        const uint64_t n = std::min<uint64_t>(w.current_tensor_bytes_missing(), zeros.size());
        w.write_tensor_data(std::span(zeros).first(static_cast<size_t>(n)));
    }
    w.finish();
    out.commit();
}

nlohmann::json small_config(const char* model_type) {
    return {{"model_type", model_type}, {"hidden_size", 256},       {"num_hidden_layers", 3},
            {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"vocab_size", 640},
            {"intermediate_size", 512}, {"max_position_embeddings", 2048}};
}

// The archs config.json only estimates: a GGUF with the same hyperparameters, written with the
// planner's own arch keys and tensors, must read back the same model, and each requantized size
// must be the folder plan's minus the tokenizer bytes the folder plan had to estimate.
TEST(PlanGgufArchs, MoeGemma2Phi3FromMetadata) {
    auto qwen3moe = small_config("qwen3_moe");
    qwen3moe["num_experts"] = 8;
    qwen3moe["num_experts_per_tok"] = 2;
    qwen3moe["moe_intermediate_size"] = 256;
    qwen3moe["head_dim"] = 128;  // not n_embd / n_head: key_length must be read
    auto mixtral = small_config("mixtral");
    mixtral["num_local_experts"] = 4;
    mixtral["num_experts_per_tok"] = 2;
    auto gemma2 = small_config("gemma2");
    gemma2["head_dim"] = 64;
    gemma2["sliding_window"] = 512;
    auto phi3 = small_config("phi3");

    const std::string s = scratch_dir();
    for (const auto& cfg : {qwen3moe, mixtral, gemma2, phi3}) {
        const std::string name = cfg["model_type"];
        const PlanModel folder = parse_plan_model(cfg, name + "/config.json", s);
        const PlanMetadata folder_md = plan_metadata(folder);
        ASSERT_FALSE(folder_md.exact);
        ASSERT_GT(folder_md.extra_bytes, 0u);
        const std::string path = s + "/" + name + ".gguf";
        write_gguf(path, folder_md.md, plan_tensors(folder, GgmlType::F16));

        const PlanModel file = load_plan_model(path);
        ASSERT_TRUE(file.gguf) << name;
        expect_same_hyperparameters(folder, file, name);
        expect_same_context_plan(folder, file, name);
        const PlanMetadata file_md = plan_metadata(file);
        EXPECT_EQ(plan_as_is(file).file_bytes, fs::file_size(path)) << name;
        for (const char* type : {"F16", "Q8_0", "Q6_K", "Q4_K_M", "Q3_K_M", "IQ4_XS"}) {
            const FileTypeInfo& ft = *find_file_type(type);
            const auto a = try_plan(folder, folder_md, ft);
            const auto b = try_plan(file, file_md, ft);
            ASSERT_EQ(a.has_value(), b.has_value()) << name << " " << type;
            if (!a) continue;
            EXPECT_EQ(a->tensor_bytes, b->tensor_bytes) << name << " " << type;
            EXPECT_EQ(a->file_bytes - folder_md.extra_bytes, b->file_bytes) << name << " " << type;
        }
    }
}

TEST(PlanGgufArchs, UnsupportedArchitectureNamed) {
    const std::string s = scratch_dir();
    GgufMetadata md;
    md.set("general.architecture", GgufValue::string("mamba"));
    md.set("mamba.block_count", GgufValue::u32(2));
    write_gguf(s + "/mamba.gguf", md, {{"token_embd.weight", {32, 64}, GgmlType::F32}});
    try {
        load_plan_model(s + "/mamba.gguf");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("'mamba'"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(s + "/mamba.gguf"), std::string::npos) << e.what();
    }
    // A block past block_count would be placed nowhere by the fit.
    GgufMetadata llama;
    llama.set("general.architecture", GgufValue::string("llama"));
    for (const char* key : {"llama.block_count", "llama.attention.head_count"}) llama.set(key, GgufValue::u32(2));
    for (const char* key : {"llama.embedding_length", "llama.feed_forward_length"}) llama.set(key, GgufValue::u32(64));
    write_gguf(s + "/blocks.gguf", llama,
               {{"token_embd.weight", {64, 100}, GgmlType::F32}, {"blk.2.attn_norm.weight", {64}, GgmlType::F32}});
    EXPECT_THROW(load_plan_model(s + "/blocks.gguf"), Error);
    write_gguf(s + "/ok.gguf", llama, {{"token_embd.weight", {64, 100}, GgmlType::F32}, {"blk.1.attn_norm.weight", {64}, GgmlType::F32}});
    const PlanModel ok = load_plan_model(s + "/ok.gguf");
    EXPECT_EQ(ok.n_vocab, 100u);  // no tokenizer, no vocab_size: the embedding rows
    EXPECT_EQ(ok.head_dim, 32u);
    EXPECT_EQ(ok.n_head_kv, 2u);
    EXPECT_TRUE(ok.tied);
}

}  // namespace
}  // namespace qf
