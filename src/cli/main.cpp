// qforge: quantize, plan and evaluate LLMs for local hardware. The CLI only parses
// arguments and calls into the library; each subcommand lives in its own cmd_*.cpp.
#include "cli/commands.h"
#include "common/error.h"
#include "common/output_file.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace {
// llama.cpp spells some options with one dash and several letters (-ctk, -ngl ...); CLI11
// only accepts those with two dashes, so the familiar spellings are rewritten first.
std::vector<std::string> llama_style_arguments(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    for (auto& a : args)
        for (const char* flag : qf::cli::kLlamaSingleDash)
            if (a == flag || a.rfind(std::string(flag) + "=", 0) == 0) a.insert(0, "-");
    std::reverse(args.begin(), args.end());  // CLI11 takes a reversed vector
    return args;
}
}  // namespace

int main(int argc, char** argv) {
    // Idle OpenMP workers sleep instead of spinning between tensors: on a busy or small
    // machine spinning took a third of the time of a fast Q8_0 pass. The user's setting wins.
    ::setenv("OMP_WAIT_POLICY", "passive", 0);
    qf::install_interrupt_cleanup();
    CLI::App app{
        "qforge - quantize, plan and evaluate LLMs for your own hardware.\n"
        "Convert Hugging Face checkpoints to GGUF files that llama.cpp, ollama and LM Studio load."};
    app.set_version_flag("--version", [] { return qf::cli::version_text(); },
                         "Version, git commit, compiler and the SIMD path each kernel family uses on this CPU");
    app.require_subcommand(1);
    app.footer(
        "Examples:\n"
        "  qforge convert ./models/prose-tiny                    # -> prose-tiny-f16.gguf\n"
        "  qforge quantize ./Llama-3.2-1B Q4_K_M                 # HF folder straight to Q4_K_M\n"
        "  qforge plan ./Llama-3.1-8B --gpu 4090 -c 8192         # will it run? sizes, KV cache, verdict\n"
        "  qforge imatrix m-f16.gguf --text calib.txt -o imatrix.gguf\n"
        "  qforge eval --base m-f16.gguf m-Q4_K_M.gguf --text valid.txt   # KL divergence, top-1, PPL\n"
        "  qforge inspect llama.gguf                             # metadata, tensors, bits per weight\n"
        "Run 'qforge <command> --help' for the options of a command.");
    qf::cli::register_commands(app);
    try {
        // "qforge", not the path it was started from: the help texts (and the man page made from
        // them) read the same wherever the binary lies.
        app.name(std::filesystem::path(argv[0]).filename().string());
        std::vector<std::string> args = llama_style_arguments(argc, argv);
        app.parse(args);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const qf::Error& e) {
        fmt::print(stderr, "qforge: error: {}\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        fmt::print(stderr, "qforge: error: {}\n", e.what());
        return 1;
    }
    return 0;
}
