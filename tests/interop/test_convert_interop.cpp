// `qforge convert` proven against the real llama.cpp: it loads every file we write, and
// the perplexity it measures on our files reproduces the reference figures in the models'
// metrics.json (computed with llama.cpp's own procedure on a GGUF from llama.cpp's converter).
#include "support/checkpoint_writer.h"
#include "support/llama_api.h"
#include "support/llama_gguf_api.h"
#include "quant/types.h"
#include "support/test_paths.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace fs = std::filesystem;
using namespace qf::test;

namespace {

int test_threads() {
    if (const char* env = std::getenv("QFORGE_TEST_THREADS"); env && *env) return std::max(1, std::atoi(env));
    return kDefaultThreads;
}

std::string convert(const std::string& dir, const std::string& outtype, const std::string& out) {
    std::string log;
    int rc = run_command(fmt::format("'{}' convert '{}' --outtype {} -o '{}' --force", qforge_binary(), dir, outtype, out),
                         &log);
    EXPECT_EQ(rc, 0) << log;
    return out;
}

// Rounds to n significant digits, as a person reading the figure would.
double round_sig(double v, int digits) {
    double scale = std::pow(10.0, digits - 1 - std::floor(std::log10(std::fabs(v))));
    return std::round(v * scale) / scale;
}

struct ProseCase {
    const char* model;
    const char* outtype;
};
[[maybe_unused]] void PrintTo(const ProseCase& c, std::ostream* os) { *os << c.model << "/" << c.outtype; }

std::optional<std::string> prose_dir(const std::string& model) {
    if (model == "prose-tiny") return bundled_model("prose-tiny");
    if (auto shared = shared_dir()) return *shared + "/models/" + model;
    return std::nullopt;
}

std::optional<std::string> valid_text() {
    if (auto shared = shared_dir()) return read_file(*shared + "/text/valid.txt");
    return std::nullopt;
}

class ProsePerplexity : public ::testing::TestWithParam<ProseCase> {};

}  // namespace

// The first 16 chunks of valid.txt at ctx 512: metrics.json "valid_prefix" holds llama.cpp's
// perplexity for exactly that prefix. F32 must reproduce it to 4 significant digits
// (our F32 file holds the BF16 weights exactly); F16 and BF16 within 0.5%.
TEST_P(ProsePerplexity, MatchesReferenceOnValidPrefix) {
    const ProseCase& c = GetParam();
    auto dir = prose_dir(c.model);
    auto text = valid_text();
    if (!dir || !text) GTEST_SKIP() << "../shared not present: " << c.model << " / valid.txt not available";
    auto metrics = nlohmann::json::parse(read_file(*dir + "/metrics.json"));
    const auto& ref = metrics["valid_prefix"]["llama_perplexity_style_512"];
    const double ref_ppl = ref["ppl"].get<double>();
    const int chunks = ref["chunks"].get<int>();

    std::string out = convert(*dir, c.outtype, scratch_dir() + "/model.gguf");
    auto model = load_model(out);
    PerplexityResult r = perplexity(*model, *text, 512, chunks, test_threads());
    ASSERT_EQ(r.chunks, chunks);
    std::printf("[ perplexity ] %s %s: llama.cpp on our file %.4f (+/- %.4f), reference %.4f, rel diff %.2e\n", c.model,
                c.outtype, r.ppl, r.ppl * r.nll_stderr, ref_ppl, (r.ppl - ref_ppl) / ref_ppl);
    if (std::string(c.outtype) == "f32")
        EXPECT_EQ(round_sig(r.ppl, 4), round_sig(ref_ppl, 4)) << r.ppl << " vs " << ref_ppl;
    else
        EXPECT_LT(std::fabs(r.ppl - ref_ppl) / ref_ppl, 0.005) << r.ppl << " vs " << ref_ppl;
}

INSTANTIATE_TEST_SUITE_P(Convert, ProsePerplexity,
                         ::testing::Values(ProseCase{"prose-tiny", "f32"}, ProseCase{"prose-tiny", "f16"},
                                           ProseCase{"prose-tiny", "bf16"}, ProseCase{"prose-base", "f32"},
                                           ProseCase{"prose-base", "f16"}, ProseCase{"prose-base", "bf16"}),
                         [](const auto& info) {
                             std::string n = std::string(info.param.model) + "_" + info.param.outtype;
                             for (char& ch : n)
                                 if (ch == '-') ch = '_';
                             return n;
                         });

// All of valid.txt (522 chunks) for the bundled model's F32 file: metrics.json's
// llama_perplexity_style.512 to 4 significant digits. Long (minutes): set
// QFORGE_FULL_PERPLEXITY=1 (bench/full-perplexity.sh does) to run it.
TEST(ConvertFull, ProseTinyF32PerplexityOverAllOfValid) {
    if (!std::getenv("QFORGE_FULL_PERPLEXITY")) GTEST_SKIP() << "set QFORGE_FULL_PERPLEXITY=1 for the full 522-chunk run";
    auto text = valid_text();
    if (!text) GTEST_SKIP() << "../shared not present";
    const std::string scratch = scratch_dir();
    for (const char* name : {"prose-tiny", "prose-base"}) {
        auto dir = prose_dir(name);
        auto metrics = nlohmann::json::parse(read_file(*dir + "/metrics.json"));
        const double ref_ppl = metrics["llama_perplexity_style"]["512"]["ppl"].get<double>();
        for (const char* outtype : {"f32", "f16", "bf16"}) {
            std::string out = convert(*dir, outtype, scratch + "/" + name + "-" + outtype + ".gguf");
            auto model = load_model(out);
            PerplexityResult r = perplexity(*model, *text, 512, -1, test_threads());
            std::printf("[ perplexity ] %s %s all %d chunks: %.4f, reference %.4f, rel diff %.2e\n", name, outtype,
                        r.chunks, r.ppl, ref_ppl, (r.ppl - ref_ppl) / ref_ppl);
            if (std::string(outtype) == "f32")
                EXPECT_EQ(round_sig(r.ppl, 4), round_sig(ref_ppl, 4));
            else
                EXPECT_LT(std::fabs(r.ppl - ref_ppl) / ref_ppl, 0.005);
        }
    }
}

// Random-weight checkpoints for what the real models do not cover. llama.cpp must load each
// converted file and run it (finite logits, generation proceeds).
struct RandomCase {
    const char* label;
    CheckpointSpec spec;
    const char* tokenizer;  // "spm" (stories260k tokenizer.model), "bpe" (llama-bpe) or "bpe-qwen2"
};

void PrintTo(const RandomCase& c, std::ostream* os) { *os << c.label; }

class RandomCheckpoints : public ::testing::TestWithParam<RandomCase> {};

TEST_P(RandomCheckpoints, LlamaCppLoadsAndRuns) {
    RandomCase c = GetParam();
    const std::string scratch = scratch_dir();
    std::string dir = scratch + "/hf";
    fs::create_directories(dir);
    std::string tok_dir;
    if (std::string(c.tokenizer) == "spm") {
        tok_dir = bundled_model("stories260k");
        c.spec.vocab = 512;
        for (const char* f : {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"})
            fs::copy_file(tok_dir + "/" + f, dir + "/" + f);
    } else {
        tok_dir = source_dir() + (std::string(c.tokenizer) == "bpe" ? "/tests/data/bpe-tiny" : "/tests/data/bpe-tiny-qwen2");
        auto cfg = nlohmann::json::parse(read_file(tok_dir + "/config.json"));
        c.spec.vocab = cfg["vocab_size"].get<uint32_t>();
        c.spec.config_overrides["bos_token_id"] = cfg["bos_token_id"];
        c.spec.config_overrides["eos_token_id"] = cfg["eos_token_id"];
        for (const auto& entry : fs::directory_iterator(tok_dir)) {
            std::string fname = entry.path().filename().string();
            if (fname == "config.json" || entry.path().extension() == ".py") continue;
            fs::copy_file(entry.path(), dir + "/" + fname);
        }
    }
    write_checkpoint(dir, c.spec);
    for (const char* outtype : {"f32", "f16", "bf16"}) {
        SCOPED_TRACE(outtype);
        std::string out = convert(dir, outtype, scratch + "/" + c.label + "-" + outtype + ".gguf");
        std::unique_ptr<LlamaModel> model;
        ASSERT_NO_THROW(model = load_model(out));
        EXPECT_EQ(n_vocab(*model), static_cast<int32_t>(c.spec.vocab));
        auto prompt = tokenize(*model, "Hello world, once upon a time", true, false);
        ASSERT_GE(prompt.size(), 2u);
        auto generated = greedy_generate(*model, prompt, 4, 1);
        EXPECT_EQ(generated.size(), 4u);
        for (int32_t t : generated) {
            EXPECT_GE(t, 0);
            EXPECT_LT(t, static_cast<int32_t>(c.spec.vocab));
        }
    }
}

namespace {
CheckpointSpec spec_of(const char* type, auto&& tweak) {
    CheckpointSpec s;
    s.model_type = type;
    s.n_embd = 64;
    s.n_head = 4;
    s.n_head_kv = 2;
    s.n_ff = 96;
    tweak(s);
    return s;
}
}  // namespace

INSTANTIATE_TEST_SUITE_P(
    Convert, RandomCheckpoints,
    ::testing::Values(
        RandomCase{"llama_spm_f32", spec_of("llama", [](CheckpointSpec&) {}), "spm"},
        RandomCase{"llama_tied_f16_source", spec_of("llama", [](CheckpointSpec& s) { s.tied = true; s.dtype = qf::StDtype::F16; }), "spm"},
        RandomCase{"mistral_sharded_bf16", spec_of("mistral", [](CheckpointSpec& s) { s.shards = 3; s.dtype = qf::StDtype::BF16; }), "spm"},
        RandomCase{"llama3_rope_scaling_bpe",
                   spec_of("llama",
                           [](CheckpointSpec& s) {
                               s.rope_scaling = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                                                 {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 64}};
                               s.context_length = 512;
                           }),
                   "bpe"},
        RandomCase{"llama_linear_rope_bias", spec_of("llama", [](CheckpointSpec& s) {
                       s.rope_scaling = {{"type", "linear"}, {"factor", 2.0}};
                       s.attention_bias = true;
                   }), "spm"},
        RandomCase{"qwen2_biases_bpe", spec_of("qwen2", [](CheckpointSpec& s) { s.tied = true; }), "bpe-qwen2"},
        RandomCase{"qwen3_qk_norm_bpe", spec_of("qwen3", [](CheckpointSpec& s) { s.head_dim = 32; s.dtype = qf::StDtype::BF16; }), "bpe-qwen2"}),
    [](const auto& info) { return std::string(info.param.label); });

// `qforge inspect` on files that llama.cpp's llama_model_quantize wrote: the same tensors,
// types, shapes and offsets as llama.cpp's own GGUF reader sees, and the per-type tensor
// counts llama.cpp's loader reports.
TEST(Inspect, ListsWhatLlamaCppSeesInItsQuantizedFiles) {
    const std::string scratch = scratch_dir();
    for (const char* model : {"prose-tiny", "stories260k"}) {
        std::string f16 = convert(bundled_model(model), "f16", scratch + "/" + model + "-f16.gguf");
        for (auto [ftype, label] : {std::pair{15, "Q4_K_M"}, std::pair{7, "Q8_0"}, std::pair{10, "Q2_K"}}) {
            SCOPED_TRACE(std::string(model) + " " + label);
            std::string q = scratch + "/" + model + "-" + label + ".gguf";
            QuantizeOptions opt;
            opt.ftype = ftype;
            ASSERT_EQ(model_quantize(f16, q, opt), 0);

            std::string out;
            ASSERT_EQ(run_command(fmt::format("'{}' inspect '{}' --json", qforge_binary(), q), &out), 0) << out;
            auto j = nlohmann::json::parse(out);

            GgmlGguf theirs(q);
            ASSERT_NE(theirs.ctx, nullptr);
            auto& api = GgufApi::get();
            const int64_t n = api.get_n_tensors(theirs.ctx);
            ASSERT_EQ(static_cast<int64_t>(j["tensors"].size()), n);
            std::map<std::string, int> type_counts;
            for (int64_t i = 0; i < n; ++i) {
                const auto& t = j["tensors"][i];
                EXPECT_EQ(t["name"].get<std::string>(), api.get_tensor_name(theirs.ctx, i));
                auto* tt = qf::find_type(static_cast<uint32_t>(api.get_tensor_type(theirs.ctx, i)));
                ASSERT_NE(tt, nullptr);
                EXPECT_EQ(t["type"].get<std::string>(), tt->name) << t["name"];
                EXPECT_EQ(t["offset"].get<uint64_t>(), api.get_tensor_offset(theirs.ctx, i));
                EXPECT_EQ(t["bytes"].get<uint64_t>(), api.get_tensor_size(theirs.ctx, i));
                const int64_t* ne = api.get_tensor_ne(theirs.ctx, i);
                const auto shape = t["shape"].get<std::vector<int64_t>>();
                for (size_t d = 0; d < 4; ++d) EXPECT_EQ(d < shape.size() ? shape[d] : 1, ne[d]);
                type_counts[tt->name]++;
            }
            // llama.cpp's loader log: "- type q4_K:   25 tensors" per type.
            auto loaded = load_model(q);
            std::map<std::string, int> logged;
            for (const auto& line : LlamaApi::get().take_log()) {
                char name[32];
                int count = 0;
                auto pos = line.find("- type ");
                if (pos != std::string::npos && std::sscanf(line.c_str() + pos, "- type %31[^:]: %d tensors", name, &count) == 2)
                    logged[name] += count;
            }
            EXPECT_EQ(logged, type_counts);
        }
    }
}
