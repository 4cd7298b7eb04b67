// qforge eval: perplexity of GGUF files on a text, or the KL divergence of quantized files
// from a base model (a GGUF, or a Hugging Face folder converted to a temporary F32 GGUF).
#include "cli/commands.h"
#include "common/error.h"
#include "common/progress.h"
#include "eval/kld.h"
#include "eval/perplexity.h"
#include "model/model.h"
#include "common/text_file.h"
#include "model/tokenizer.h"
#include "pipeline/convert.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace qf::cli {

namespace {

namespace fs = std::filesystem;

struct EvalArgs {
    std::vector<std::string> models;
    std::string base;
    std::string text;
    int n_ctx = 512;
    int chunks = -1;
    int threads = 0;
    bool json = false;
};


// "chunk 3/40, ETA 12s" on stderr, redrawn in place; silent unless stderr is a terminal.
class ChunkProgressLine {
public:
    explicit ChunkProgressLine(std::string label) : label_(std::move(label)), start_(std::chrono::steady_clock::now()) {}
    ~ChunkProgressLine() {
        if (drawn_) std::fputs("\r\033[K", stderr);
    }
    void operator()(int done, int total) {
        if (!Progress::enabled()) return;
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
        const double eta = done > 0 ? secs / done * (total - done) : 0.0;
        fmt::print(stderr, "\r\033[K{}: chunk {}/{}, ETA {:.0f}s", label_, done, total, eta);
        std::fflush(stderr);
        drawn_ = true;
    }

private:
    std::string label_;
    std::chrono::steady_clock::time_point start_;
    bool drawn_ = false;
};

int32_t chunk_bos(const Tokenizer& tok) { return tok.adds_bos() ? tok.bos_id() : -1; }

std::string file_name(const std::string& path) { return fs::path(path).filename().string(); }

void run_perplexity(const EvalArgs& a, const std::string& text) {
    nlohmann::json out = nlohmann::json::array();
    for (const std::string& path : a.models) {
        Transformer model(path);
        const Tokenizer tok = Tokenizer::from_gguf(model.file());
        const std::vector<int32_t> tokens = tok.encode(text, true);
        const ChunkPlan plan{a.n_ctx, a.chunks};
        PerplexityResult r;
        {
            ChunkProgressLine progress(file_name(path));
            r = perplexity(model, tokens, chunk_bos(tok), plan, a.text, {}, std::ref(progress));
        }
        if (a.json) {
            out.push_back({{"model", path},
                           {"text", a.text},
                           {"ctx", a.n_ctx},
                           {"chunks", r.chunks},
                           {"text_tokens", tokens.size()},
                           {"tokens_scored", r.scored},
                           {"ppl", r.ppl},
                           {"ppl_stderr", r.ppl_stderr},
                           {"nll", r.nll},
                           {"nll_stderr", r.nll_stderr},
                           {"seconds", r.seconds},
                           {"tokens_per_second", r.tokens_per_second()},
                           {"threads", omp_get_max_threads()}});
        } else {
            fmt::print("{}: PPL = {:.4f} +/- {:.5f}\n", path, r.ppl, r.ppl_stderr);
            fmt::print("  {} chunks of {} tokens, {} tokens scored, {:.1f} tokens/s ({} threads)\n", r.chunks, a.n_ctx,
                       r.scored, r.tokens_per_second(), omp_get_max_threads());
        }
    }
    if (a.json) fmt::print("{}\n", out.size() == 1 ? out[0].dump(2) : out.dump(2));
}

void run_kld(const EvalArgs& a, const std::string& text) {
    std::unique_ptr<TemporaryF32Gguf> converted;
    std::string base_path = a.base;
    if (fs::is_directory(a.base)) {
        converted = std::make_unique<TemporaryF32Gguf>(a.base, a.threads, "eval");
        base_path = converted->path();
    }
    Transformer base(base_path);
    const Tokenizer base_tok = Tokenizer::from_gguf(base.file());
    std::vector<Transformer> quants;
    quants.reserve(a.models.size());
    for (const std::string& path : a.models) {
        quants.emplace_back(path);
        const Tokenizer tok = Tokenizer::from_gguf(quants.back().file());
        if (!tok.same_vocabulary(base_tok) || quants.back().hparams().n_vocab != base.hparams().n_vocab)
            fail("{}: its vocabulary differs from the base model's ({}); KL divergence needs the same tokens", path, a.base);
    }
    const std::vector<int32_t> tokens = base_tok.encode(text, true);
    std::vector<const Transformer*> ptrs;
    for (const auto& q : quants) ptrs.push_back(&q);
    const ChunkPlan plan{a.n_ctx, a.chunks};
    const auto start = std::chrono::steady_clock::now();
    std::vector<KldStats> stats;
    {
        ChunkProgressLine progress("kl-divergence");
        stats = kl_divergence(base, ptrs, tokens, chunk_bos(base_tok), plan, a.text, std::ref(progress));
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const int n_chunks = count_chunks(tokens.size(), plan, a.text);

    if (a.json) {
        nlohmann::json j;
        j["base"] = a.base;
        j["text"] = a.text;
        j["ctx"] = a.n_ctx;
        j["chunks"] = n_chunks;
        j["seconds"] = seconds;
        j["quants"] = nlohmann::json::array();
        for (size_t i = 0; i < stats.size(); ++i) {
            const KldStats& s = stats[i];
            j["quants"].push_back({{"model", a.models[i]},
                                   {"tokens_scored", s.count},
                                   {"kld_mean", s.kld_mean},
                                   {"kld_stderr", s.kld_stderr},
                                   {"kld_median", s.kld_median},
                                   {"kld_p90", s.kld_p90},
                                   {"kld_p99", s.kld_p99},
                                   {"kld_p99_9", s.kld_p999},
                                   {"kld_max", s.kld_max},
                                   {"same_top", s.same_top},
                                   {"same_top_stderr", s.same_top_stderr},
                                   {"ppl_base", s.ppl_base},
                                   {"ppl_base_stderr", s.ppl_base_stderr},
                                   {"ppl", s.ppl},
                                   {"ppl_stderr", s.ppl_stderr},
                                   {"ppl_diff", s.ppl_diff},
                                   {"ppl_diff_stderr", s.ppl_diff_stderr},
                                   {"ln_ppl_ratio", s.ln_ppl_ratio},
                                   {"ln_ppl_ratio_stderr", s.ln_ppl_ratio_stderr}});
        }
        fmt::print("{}\n", j.dump(2));
        return;
    }
    const size_t scored = stats.empty() ? 0 : stats[0].count;
    fmt::print("base {}: PPL = {:.4f} +/- {:.5f}\n", a.base, stats.empty() ? 0.0 : stats[0].ppl_base,
               stats.empty() ? 0.0 : stats[0].ppl_base_stderr);
    fmt::print("text {}: {} chunks of {} tokens, {} tokens scored per model, {:.1f} s\n\n", a.text, n_chunks, a.n_ctx, scored,
               seconds);
    fmt::print("{:<32} {:>21} {:>10} {:>10} {:>20} {:>20} {:>16}\n", "model", "mean KLD", "median", "99%", "PPL", "ΔPPL",
               "same top-1");
    for (size_t i = 0; i < stats.size(); ++i) {
        const KldStats& s = stats[i];
        std::string name = file_name(a.models[i]);
        if (name.size() > 32) name = name.substr(0, 29) + "...";
        fmt::print("{:<32} {:>10.6f} ± {:<8.6f} {:>10.6f} {:>10.6f} {:>10.4f} ± {:<7.4f} {:>+10.4f} ± {:<7.4f} {:>7.3f} ± {:.3f}%\n",
                   name, s.kld_mean, s.kld_stderr, s.kld_median, s.kld_p99, s.ppl, s.ppl_stderr, s.ppl_diff,
                   s.ppl_diff_stderr, 100 * s.same_top, 100 * s.same_top_stderr);
    }
}

}  // namespace

void register_eval(CLI::App& app) {
    auto* cmd = app.add_subcommand(
        "eval", "Perplexity of GGUF files on a text, or KL divergence of quants from a base model (llama.cpp's procedure)");
    auto a = std::make_shared<EvalArgs>();
    cmd->add_option("MODELS", a->models, "GGUF file(s): the models to score (with --base: the quants to compare)")->required();
    cmd->add_option("--text", a->text, "Text file (UTF-8), e.g. wiki.test.raw")->required();
    cmd->add_option("--base", a->base,
                    "Base model for KL divergence: a GGUF file or a Hugging Face folder (converted to a temporary F32 GGUF)");
    cmd->add_option("-c,--ctx-size", a->n_ctx, "Tokens per chunk (default 512); the text needs at least twice as many")
        ->check(CLI::Range(4, 1 << 20));
    cmd->add_option("--chunks", a->chunks, "Score at most this many chunks (default: all)")->check(CLI::PositiveNumber);
    cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)")->check(CLI::NonNegativeNumber);
    cmd->add_flag("--json", a->json, "Machine-readable output");
    cmd->footer(
        "Chunks follow llama.cpp's perplexity tool: the text is tokenized with BOS, split into chunks of -c tokens\n"
        "(the first token of each set to BOS), and the second half of every chunk is scored.\n"
        "Examples:\n"
        "  qforge eval model-Q4_K_M.gguf --text wiki.test.raw\n"
        "  qforge eval --base ./models/prose-tiny m-Q4_K_M.gguf m-Q3_K_M.gguf --text valid.txt --chunks 20");
    cmd->callback([a] {
        if (a->threads > 0) omp_set_num_threads(a->threads);
        const std::string text = read_text_file(a->text);
        if (a->base.empty())
            run_perplexity(*a, text);
        else
            run_kld(*a, text);
    });
}

}  // namespace qf::cli
