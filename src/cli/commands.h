#pragma once
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace qf::cli {
// Adds every subcommand to the app; each one runs from its callback.
void register_commands(CLI::App& app);
void register_convert(CLI::App& app);
void register_inspect(CLI::App& app);
void register_plan(CLI::App& app);
void register_quantize(CLI::App& app);
void register_eval(CLI::App& app);
void register_imatrix(CLI::App& app);
void register_serve(CLI::App& app);
void register_complete(CLI::App& app);  // hidden: `qforge __complete WHAT` for shell completion

// llama.cpp spells these options with one dash; main() rewrites them to CLI11's "--ctk" form.
inline constexpr const char* kLlamaSingleDash[] = {"-ctk", "-ctv", "-np", "-ub", "-ngl"};
// `qforge --version`: version, commit, compiler, the SIMD path of each kernel family.
std::string version_text();
}  // namespace qf::cli
