#pragma once
#include <CLI/CLI.hpp>

namespace qf::cli {
// Adds every subcommand to the app; each one runs from its callback.
void register_commands(CLI::App& app);
void register_convert(CLI::App& app);
void register_inspect(CLI::App& app);
void register_plan(CLI::App& app);
void register_quantize(CLI::App& app);
void register_eval(CLI::App& app);
void register_imatrix(CLI::App& app);
}  // namespace qf::cli
