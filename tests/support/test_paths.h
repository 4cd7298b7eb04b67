// Paths the tests use, fixed at configure time, plus a scratch folder per test run.
#pragma once
#include <optional>
#include <string>

namespace qf::test {

std::string source_dir();                 // the repository root
std::string bundled_model(const char* name);  // models/<name> inside the repo
// ../shared, or nullopt when it does not exist (tests on the larger models then skip and say so).
std::optional<std::string> shared_dir();
std::string qforge_binary();
std::string llama_dir();                  // folder with libllama / libggml
// A fresh empty folder under the build tree, unique to the current test.
std::string scratch_dir();
// Runs a shell command, returns its exit status; output captured into *output if given.
int run_command(const std::string& command, std::string* output = nullptr);
// The built qforge binary run with `args` (quoted by the caller): exit status and output.
struct QforgeRun {
    int rc = -1;
    std::string out;
};
QforgeRun qforge(const std::string& args);
// A file's bytes ("" when it cannot be read).
std::string read_file(const std::string& path);

}  // namespace qf::test
