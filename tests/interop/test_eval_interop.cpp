// qforge's forward pass, perplexity and KL divergence against the real llama.cpp on the same
// GGUF files (converted by qforge to F16, quantized by qforge to Q4_K_M), same tokens, same
// chunks:
//  (a) perplexity equal to llama.cpp's perplexity procedure within 0.2% (relative);
//  (b) mean KL divergence between llama.cpp's next-token distributions and ours < 1e-3;
//  (c) KLD(Q4_K_M || F16) measured by qforge equal to the figure computed from llama.cpp's
//      own logits of the same two files within 2% (relative).
// Small on purpose (CI: 2 cores): a few chunks of 256 tokens (6: fewer leave the quantized-file figures at the mercy of rounding noise, see below). QFORGE_EVAL_CHUNKS and
// QFORGE_EVAL_CTX override; QFORGE_TEST_THREADS sets the threads of both sides.
#include "eval/kld.h"
#include "eval/perplexity.h"
#include "model/model.h"
#include "support/checkpoint_writer.h"
#include "support/llama_api.h"
#include "support/test_paths.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

using namespace qf::test;

namespace {

int env_int(const char* name, int fallback) {
    if (const char* env = std::getenv(name); env && *env) return std::max(1, std::atoi(env));
    return fallback;
}
int test_threads() { return env_int("QFORGE_TEST_THREADS", kDefaultThreads); }
int eval_chunks() { return env_int("QFORGE_EVAL_CHUNKS", 6); }
int eval_ctx() { return env_int("QFORGE_EVAL_CTX", 256); }

// valid.txt when ../shared exists, else the repository's README (prose enough for a few
// chunks of 256 tokens).
std::string eval_text_path() {
    if (auto shared = shared_dir()) return *shared + "/text/valid.txt";
    return source_dir() + "/README.md";
}

struct ModelFiles {
    std::string f16, q4km;
};

// F16 and Q4_K_M GGUFs of a Hugging Face folder, made once per test program by build/qforge.
const ModelFiles& model_files(const std::string& name, const std::string& hf_dir) {
    static std::map<std::string, ModelFiles> cache;
    static std::string root;
    if (auto it = cache.find(name); it != cache.end()) return it->second;
    if (root.empty()) root = scratch_dir();
    ModelFiles f{root + "/" + name + "-f16.gguf", root + "/" + name + "-q4_k_m.gguf"};
    std::string log;
    EXPECT_EQ(run_command(fmt::format("'{}' convert '{}' -o '{}' -f", qforge_binary(), hf_dir, f.f16), &log), 0) << log;
    EXPECT_EQ(run_command(fmt::format("'{}' quantize '{}' '{}' Q4_K_M", qforge_binary(), f.f16, f.q4km), &log), 0) << log;
    return cache.emplace(name, f).first->second;
}

struct ChunkLogits {
    int n_vocab = 0;
    std::vector<float> logits;  // every scored row, chunk after chunk
    std::vector<int32_t> targets;
    double ppl = 0;
};

ChunkLogits llama_logits(const std::string& path, const std::string& text, int n_ctx, int chunks) {
    auto model = load_model(path);
    ChunkLogits out;
    out.n_vocab = n_vocab(*model);
    const PerplexityResult r =
        perplexity(*model, text, n_ctx, chunks, test_threads(), [&](int, std::span<const float> l, std::span<const int32_t> t) {
            out.logits.insert(out.logits.end(), l.begin(), l.end());
            out.targets.insert(out.targets.end(), t.begin(), t.end());
        });
    out.ppl = r.ppl;
    return out;
}

struct OurRun {
    ChunkLogits logits;
    qf::PerplexityResult result;
};

OurRun our_logits(const std::string& path, const std::string& text, int n_ctx, int chunks) {
    // Token ids from llama.cpp's tokenizer: this test is about the forward pass.
    auto lm = load_model(path);
    const std::vector<int32_t> tokens = tokenize(*lm, text, true, false);
    const auto& fn = LlamaApi::get().fn();
    const int32_t bos = fn.llama_vocab_get_add_bos(lm->vocab) ? fn.llama_vocab_bos(lm->vocab) : -1;
    lm.reset();

    qf::Transformer model(path);
    OurRun run;
    run.logits.n_vocab = static_cast<int>(model.hparams().n_vocab);
    qf::ChunkPlan plan{n_ctx, chunks};
    omp_set_num_threads(test_threads());
    run.result = qf::perplexity(model, tokens, bos, plan, "text", [&](int, std::span<const float> l, std::span<const int32_t> t) {
        run.logits.logits.insert(run.logits.logits.end(), l.begin(), l.end());
        run.logits.targets.insert(run.logits.targets.end(), t.begin(), t.end());
    });
    run.logits.ppl = run.result.ppl;
    return run;
}

// Mean KLD(p || q) over the rows of two logit sets (same rows, same vocabulary).
double mean_kld(const ChunkLogits& p, const ChunkLogits& q) {
    const size_t V = static_cast<size_t>(p.n_vocab);
    const size_t rows = p.logits.size() / V;
    std::vector<double> lp, lq;
    double sum = 0;
    for (size_t r = 0; r < rows; ++r) {
        qf::log_softmax(std::span<const float>(p.logits).subspan(r * V, V), lp);
        qf::log_softmax(std::span<const float>(q.logits).subspan(r * V, V), lq);
        double k = 0;
        for (size_t i = 0; i < V; ++i) k += std::exp(lp[i]) * (lp[i] - lq[i]);
        sum += k;
    }
    return sum / static_cast<double>(rows);
}

struct EvalCase {
    const char* model;
};
[[maybe_unused]] void PrintTo(const EvalCase& c, std::ostream* os) { *os << c.model; }

std::optional<std::string> hf_dir(const std::string& model) {
    if (model == "prose-tiny" || model == "stories260k") return bundled_model(model.c_str());
    if (auto shared = shared_dir()) return *shared + "/models/" + model;
    return std::nullopt;
}

class EvalVsLlamaCpp : public ::testing::TestWithParam<EvalCase> {};

}  // namespace

TEST_P(EvalVsLlamaCpp, PerplexityLogitsAndQuantKld) {
    const std::string name = GetParam().model;
    const auto dir = hf_dir(name);
    if (!dir || !std::filesystem::exists(*dir)) GTEST_SKIP() << "../shared not present: " << name << " not available";
    LlamaApi::get().require();
    const ModelFiles& files = model_files(name, *dir);
    ASSERT_FALSE(HasFailure());
    const std::string text_path = eval_text_path();
    const std::string text = read_file(text_path);
    const int n_ctx = eval_ctx(), chunks = eval_chunks();

    std::map<std::string, ChunkLogits> theirs, ours;
    for (const auto& [type, path] : {std::pair<std::string, std::string>{"F16", files.f16}, {"Q4_K_M", files.q4km}}) {
        SCOPED_TRACE(type);
        theirs[type] = llama_logits(path, text, n_ctx, chunks);
        OurRun run = our_logits(path, text, n_ctx, chunks);
        ours[type] = std::move(run.logits);
        ASSERT_EQ(ours[type].targets, theirs[type].targets);
        const double rel = std::fabs(ours[type].ppl / theirs[type].ppl - 1);
        const double kld = mean_kld(theirs[type], ours[type]);
        std::printf("[ eval ] %-12s %-7s ctx %d x %d chunks: PPL ours %.4f llama.cpp %.4f (rel %.2e), "
                    "KLD(llama.cpp || ours) %.3e, %.0f tok/s\n",
                    name.c_str(), type.c_str(), n_ctx, run.result.chunks, ours[type].ppl, theirs[type].ppl, rel, kld,
                    run.result.tokens_per_second());
        EXPECT_LT(rel, 0.002) << "perplexity differs from llama.cpp's by more than 0.2%";
        EXPECT_LT(kld, 1e-3) << "our next-token distributions differ from llama.cpp's";
    }

    // The command line (qforge's own tokenizer) gives llama.cpp's perplexity too.
    {
        std::string out;
        ASSERT_EQ(run_command(fmt::format("'{}' eval '{}' --text '{}' -c {} --chunks {} -t {} --json", qforge_binary(), files.f16,
                                          text_path, n_ctx, chunks, test_threads()),
                              &out),
                  0)
            << out;
        const double cli_ppl = nlohmann::json::parse(out.substr(out.find('{')))["ppl"];
        std::printf("[ eval ] %-12s F16     qforge eval (own tokenizer): PPL %.4f, llama.cpp %.4f\n", name.c_str(), cli_ppl,
                    theirs["F16"].ppl);
        EXPECT_LT(std::fabs(cli_ppl / theirs["F16"].ppl - 1), 0.002);
    }

    // (c) the quant's cost measured by qforge (both models side by side) and by llama.cpp.
    const double llama_kld = mean_kld(theirs["F16"], theirs["Q4_K_M"]);
    auto lm = load_model(files.f16);
    const std::vector<int32_t> tokens = tokenize(*lm, text, true, false);
    const auto& fn = LlamaApi::get().fn();
    const int32_t bos = fn.llama_vocab_get_add_bos(lm->vocab) ? fn.llama_vocab_bos(lm->vocab) : -1;
    lm.reset();
    qf::Transformer base(files.f16), quant(files.q4km);
    const qf::Transformer* quants[] = {&quant};
    const auto stats = qf::kl_divergence(base, quants, tokens, bos, qf::ChunkPlan{n_ctx, chunks}, "text");
    ASSERT_EQ(stats.size(), 1u);
    const double rel = std::fabs(stats[0].kld_mean / llama_kld - 1);
    std::printf("[ eval ] %-12s KLD(Q4_K_M || F16): qforge %.6f ± %.6f, llama.cpp %.6f (rel %.2e); top-1 %.2f%%, "
                "PPL %.4f -> %.4f\n",
                name.c_str(), stats[0].kld_mean, stats[0].kld_stderr, llama_kld, rel, 100 * stats[0].same_top,
                stats[0].ppl_base, stats[0].ppl);
    EXPECT_LT(rel, 0.02) << "KLD of Q4_K_M vs F16 differs from llama.cpp's by more than 2%";
    EXPECT_NEAR(stats[0].ppl_base, ours["F16"].ppl, 1e-9 * ours["F16"].ppl);
    EXPECT_NEAR(stats[0].ppl, ours["Q4_K_M"].ppl, 1e-9 * ours["Q4_K_M"].ppl);
}

INSTANTIATE_TEST_SUITE_P(Models, EvalVsLlamaCpp,
                         ::testing::Values(EvalCase{"prose-tiny"}, EvalCase{"stories260k"}, EvalCase{"prose-base"}),
                         [](const auto& info) {
                             std::string n = info.param.model;
                             std::replace(n.begin(), n.end(), '-', '_');
                             return n;
                         });

// ---------------------------------------------------------------------------------------------
// Every architecture and option the forward pass handles, on random-weight checkpoints that
// qforge converts (F32): qwen2 (q/k/v biases, NEOX RoPE, tied output), qwen3 (per-head q/k
// RMSNorm, head_dim != n_embd / n_head), llama3 RoPE frequency factors, linear RoPE scaling with
// attention biases, mistral. Our logits must be llama.cpp's on the same chunks.

namespace {

struct ArchCase {
    const char* label;
    qf::test::CheckpointSpec spec;
    const char* tokenizer;  // "spm" (stories260k tokenizer.model), "bpe" (llama-bpe) or "bpe-qwen2"
};
[[maybe_unused]] void PrintTo(const ArchCase& c, std::ostream* os) { *os << c.label; }

class EvalArchitectures : public ::testing::TestWithParam<ArchCase> {};

CheckpointSpec arch_spec(const char* type, auto&& tweak) {
    CheckpointSpec s;
    s.model_type = type;
    s.n_embd = 64;
    s.n_head = 4;
    s.n_head_kv = 2;
    s.n_ff = 96;
    s.n_layer = 2;
    tweak(s);
    return s;
}

}  // namespace

TEST_P(EvalArchitectures, LogitsMatchLlamaCpp) {
    ArchCase c = GetParam();
    namespace fs = std::filesystem;
    const std::string scratch = scratch_dir();
    const std::string dir = scratch + "/hf";
    fs::create_directories(dir);
    if (std::string(c.tokenizer) == "spm") {
        c.spec.vocab = 512;
        for (const char* f : {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"})
            fs::copy_file(bundled_model("stories260k") + "/" + f, dir + "/" + f);
    } else {
        const std::string tok_dir =
            source_dir() + (std::string(c.tokenizer) == "bpe" ? "/tests/data/bpe-tiny" : "/tests/data/bpe-tiny-qwen2");
        auto cfg = nlohmann::json::parse(read_file(tok_dir + "/config.json"));
        c.spec.vocab = cfg["vocab_size"].get<uint32_t>();
        c.spec.config_overrides["bos_token_id"] = cfg["bos_token_id"];
        c.spec.config_overrides["eos_token_id"] = cfg["eos_token_id"];
        for (const auto& entry : fs::directory_iterator(tok_dir)) {
            const std::string fname = entry.path().filename().string();
            if (fname == "config.json" || entry.path().extension() == ".py") continue;
            fs::copy_file(entry.path(), dir + "/" + fname);
        }
    }
    write_checkpoint(dir, c.spec);
    const std::string gguf = scratch + "/model-f32.gguf";
    std::string log;
    ASSERT_EQ(run_command(fmt::format("'{}' convert '{}' --outtype f32 -o '{}'", qforge_binary(), dir, gguf), &log), 0) << log;

    const std::string text = read_file(source_dir() + "/README.md");
    const int n_ctx = 64, chunks = 2;
    const ChunkLogits theirs = llama_logits(gguf, text, n_ctx, chunks);
    const OurRun ours = our_logits(gguf, text, n_ctx, chunks);
    ASSERT_EQ(ours.logits.targets, theirs.targets);
    const double kld = mean_kld(theirs, ours.logits);
    double max_diff = 0;
    for (size_t i = 0; i < theirs.logits.size(); ++i)
        max_diff = std::max(max_diff, static_cast<double>(std::fabs(theirs.logits[i] - ours.logits.logits[i])));
    std::printf("[ eval ] %-26s PPL ours %.4f llama.cpp %.4f, KLD %.2e, max |logit diff| %.2e\n", c.label,
                ours.logits.ppl, theirs.ppl, kld, max_diff);
    EXPECT_LT(std::fabs(ours.logits.ppl / theirs.ppl - 1), 0.002);
    EXPECT_LT(kld, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Random, EvalArchitectures,
    ::testing::Values(
        ArchCase{"llama_tied_spm", arch_spec("llama", [](CheckpointSpec& s) { s.tied = true; }), "spm"},
        ArchCase{"mistral_spm", arch_spec("mistral", [](CheckpointSpec&) {}), "spm"},
        ArchCase{"llama3_rope_freqs_bpe",
                 arch_spec("llama",
                           [](CheckpointSpec& s) {
                               s.rope_scaling = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                                                 {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 16}};
                               s.context_length = 512;
                           }),
                 "bpe"},
        ArchCase{"llama_linear_rope_bias_spm", arch_spec("llama", [](CheckpointSpec& s) {
                     s.rope_scaling = {{"type", "linear"}, {"factor", 2.0}};
                     s.attention_bias = true;
                     s.mlp_bias = true;
                 }), "spm"},
        ArchCase{"qwen2_biases_tied_bpe", arch_spec("qwen2", [](CheckpointSpec& s) { s.tied = true; }), "bpe-qwen2"},
        ArchCase{"qwen3_qk_norm_bpe", arch_spec("qwen3", [](CheckpointSpec& s) { s.head_dim = 32; }), "bpe-qwen2"}),
    [](const auto& info) { return std::string(info.param.label); });
