// Prompt-processing speed of qforge's forward pass against llama.cpp's (libllama, loaded with
// dlopen) on the same GGUF files, same tokens, same thread count: perplexity over N chunks of
// 512 tokens, llama.cpp's procedure on both sides (tests/support/llama_api.h perplexity()).
//
// For F16 and Q4_K_M of the bundled prose-tiny and of ../shared/models/prose-base (when
// present), converted and quantized by build/qforge into a scratch folder, it prints tokens/s
// of both, their ratio (target: qforge >= 0.5x llama.cpp) and both perplexities. Both sides
// run interleaved (ours, llama, ours, ...) so load from other processes hits both alike;
// each figure is the best of several rounds. Tokenizing is outside the timing on both sides
// (llama.cpp gets a text prefix just long enough for the chunks).
#include "bench_env.h"
#include "common/error.h"
#include "eval/perplexity.h"
#include "model/gemm.h"
#include "model/model.h"
#include "support/llama_api.h"

#include <fmt/format.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Options {
    int threads = 0;
    int chunks = 4;
    int rounds = 3;
    std::string qforge;
    bool keep = false;
};

void print_usage() {
    fmt::print(
        "usage: eval_vs_llamacpp [--threads N] [--chunks N] [--rounds N] [--qforge PATH] [--keep]\n"
        "  --threads N   threads for both sides (default: all cores)\n"
        "  --chunks N    chunks of 512 tokens per measurement (default 4)\n"
        "  --rounds N    interleaved rounds, best kept (default 3)\n"
        "  --qforge PATH the qforge binary (default: ../qforge relative to this executable)\n"
        "  --keep        keep the scratch folder\n"
        "  QFORGE_COMMIT in the environment overrides the commit printed in the header.\n");
}

Options parse_options(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) qf::fail("eval_vs_llamacpp: {} needs a value", a);
            return argv[++i];
        };
        if (a == "--threads") o.threads = std::stoi(value());
        else if (a == "--chunks") o.chunks = std::max(1, std::stoi(value()));
        else if (a == "--rounds") o.rounds = std::max(1, std::stoi(value()));
        else if (a == "--qforge") o.qforge = value();
        else if (a == "--keep") o.keep = true;
        else if (a == "-h" || a == "--help") {
            print_usage();
            std::exit(0);
        } else {
            print_usage();
            qf::fail("eval_vs_llamacpp: unknown argument '{}'", a);
        }
    }
    if (o.threads <= 0) o.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    if (o.qforge.empty()) o.qforge = (fs::canonical("/proc/self/exe").parent_path().parent_path() / "qforge").string();
    return o;
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) qf::fail("{}: cannot open", path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void run_or_fail(const std::string& cmd) {
    const std::string full = cmd + " >/dev/null 2>&1";
    if (std::system(full.c_str()) != 0) qf::fail("eval_vs_llamacpp: command failed: {}", cmd);
}

struct Measure {
    double tps = 0;  // tokens per second, best round
    double ppl = 0;
};

struct Row {
    std::string model, type;
    Measure ours, llama;
};

Row measure(const Options& o, const std::string& model, const std::string& type, const std::string& path,
            const std::string& text) {
    constexpr int n_ctx = 512;
    auto lm = qf::test::load_model(path);
    const std::vector<int32_t> tokens = qf::test::tokenize(*lm, text, true, false);
    const auto& fn = qf::test::LlamaApi::get().fn();
    const int32_t bos = fn.llama_vocab_get_add_bos(lm->vocab) ? fn.llama_vocab_bos(lm->vocab) : -1;
    const size_t need = static_cast<size_t>(std::max(2, o.chunks)) * n_ctx;
    if (tokens.size() < need) qf::fail("{}: the text has {} tokens, {} needed", path, tokens.size(), need);
    // A prefix of the text that still tokenizes to enough tokens, for llama.cpp's side.
    size_t bytes = std::min(text.size(), static_cast<size_t>(static_cast<double>(text.size()) * (need + 256) / tokens.size()));
    while (qf::test::tokenize(*lm, text.substr(0, bytes), true, false).size() < need && bytes < text.size())
        bytes = std::min(text.size(), bytes * 5 / 4 + 1024);
    const std::string prefix = text.substr(0, bytes);

    qf::Transformer ours(path);
    omp_set_num_threads(o.threads);
    Row row{model, type, {}, {}};
    const double evaluated = static_cast<double>(o.chunks) * n_ctx;
    for (int r = 0; r < o.rounds; ++r) {
        auto t0 = Clock::now();
        const qf::PerplexityResult a = qf::perplexity(ours, tokens, bos, qf::ChunkPlan{n_ctx, o.chunks}, "text");
        const double s_ours = std::chrono::duration<double>(Clock::now() - t0).count();
        t0 = Clock::now();
        const qf::test::PerplexityResult b = qf::test::perplexity(*lm, prefix, n_ctx, o.chunks, o.threads);
        const double s_llama = std::chrono::duration<double>(Clock::now() - t0).count();
        row.ours.tps = std::max(row.ours.tps, evaluated / s_ours);
        row.llama.tps = std::max(row.llama.tps, evaluated / s_llama);
        row.ours.ppl = a.ppl;
        row.llama.ppl = b.ppl;
    }
    return row;
}

}  // namespace

int main(int argc, char** argv) {
    // As `qforge` does: idle OpenMP workers sleep instead of spinning (the user's setting wins).
    ::setenv("OMP_WAIT_POLICY", "passive", 0);
    try {
        const Options o = parse_options(argc, argv);
        qf::test::LlamaApi::get().require();
        const std::string text_path = fs::exists(fmt::format("{}/../shared/text/valid.txt", QFORGE_SOURCE_DIR))
                                          ? fmt::format("{}/../shared/text/valid.txt", QFORGE_SOURCE_DIR)
                                          : fmt::format("{}/README.md", QFORGE_SOURCE_DIR);
        const std::string text = read_text(text_path);

        fmt::print("eval_vs_llamacpp: prompt processing (perplexity, ctx 512, {} chunks, best of {} rounds)\n", o.chunks,
                   o.rounds);
        fmt::print("CPU: {}\ncommit: {}\nload average: {}\nthreads: {} (both sides); qforge kernel: {}\ntext: {}\n\n",
                   qf::bench::cpu_model(), qf::bench::git_commit(), qf::bench::load_average(), o.threads,
                   qf::gemm::kernel_name(), text_path);

        const fs::path dir = fs::temp_directory_path() / fmt::format("qforge-eval-bench-{}", ::getpid());
        fs::create_directories(dir);
        std::vector<std::pair<std::string, std::string>> models = {
            {"prose-tiny", fmt::format("{}/models/prose-tiny", QFORGE_SOURCE_DIR)}};
        const std::string base_dir = fmt::format("{}/../shared/models/prose-base", QFORGE_SOURCE_DIR);
        if (fs::exists(base_dir)) models.emplace_back("prose-base", base_dir);
        else fmt::print("(../shared/models/prose-base not present: prose-tiny only)\n");

        fmt::print("{:<12} {:<7} {:>12} {:>12} {:>7} {:>11} {:>11}\n", "model", "type", "qforge tok/s", "llama tok/s",
                   "ratio", "PPL qforge", "PPL llama");
        for (const auto& [name, hf] : models) {
            const std::string f16 = (dir / (name + "-f16.gguf")).string();
            const std::string q4 = (dir / (name + "-q4_k_m.gguf")).string();
            run_or_fail(fmt::format("'{}' convert '{}' -o '{}' -f", o.qforge, hf, f16));
            run_or_fail(fmt::format("'{}' quantize '{}' '{}' Q4_K_M", o.qforge, f16, q4));
            for (const auto& [type, path] : {std::pair<std::string, std::string>{"F16", f16}, {"Q4_K_M", q4}}) {
                const Row r = measure(o, name, type, path, text);
                fmt::print("{:<12} {:<7} {:>12.1f} {:>12.1f} {:>6.2f}x {:>11.4f} {:>11.4f}\n", r.model, r.type, r.ours.tps,
                           r.llama.tps, r.ours.tps / r.llama.tps, r.ours.ppl, r.llama.ppl);
                std::fflush(stdout);
            }
        }
        if (!o.keep) fs::remove_all(dir);
        else fmt::print("scratch kept: {}\n", dir.string());
        fmt::print("\ntarget: qforge >= 0.5x llama.cpp tokens/s on every row\n");
    } catch (const std::exception& e) {
        fmt::print(stderr, "{}\n", e.what());
        return 1;
    }
    return 0;
}
