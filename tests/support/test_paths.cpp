#include "support/test_paths.h"

#include "support/llama_dir.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/wait.h>

namespace fs = std::filesystem;

namespace qf::test {

std::string source_dir() { return QFORGE_SOURCE_DIR; }
std::string bundled_model(const char* name) { return source_dir() + "/models/" + name; }

std::optional<std::string> shared_dir() {
    std::error_code ec;
    if (fs::is_directory(fs::path(QFORGE_SHARED_DIR) / "models", ec)) return fs::path(QFORGE_SHARED_DIR).lexically_normal().string();
    return std::nullopt;
}

std::string qforge_binary() { return QFORGE_BINARY; }
std::string llama_dir() { return llama_lib_dir(); }

namespace {
fs::path scratch_root() { return fs::temp_directory_path() / ("qforge-test-" + std::to_string(::getpid())); }

// Removes this run's scratch folders when the test program ends (set QFORGE_KEEP_SCRATCH=1
// to keep them for a look).
class ScratchCleanup : public ::testing::Environment {
public:
    void TearDown() override {
        if (std::getenv("QFORGE_KEEP_SCRATCH")) return;
        std::error_code ec;
        fs::remove_all(scratch_root(), ec);
    }
};
[[maybe_unused]] ::testing::Environment* const g_cleanup = ::testing::AddGlobalTestEnvironment(new ScratchCleanup);
}  // namespace

std::string scratch_dir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "global";
    for (char& c : name)
        if (c == '/') c = '_';
    fs::path dir = scratch_root() / name;
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir.string();
}

int run_command(const std::string& command, std::string* output) {
    std::string full = command + " 2>&1";
    FILE* pipe = ::popen(full.c_str(), "r");
    if (!pipe) return -1;
    std::array<char, 4096> buf{};
    std::string out;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
    int status = ::pclose(pipe);
    if (output) *output = out;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

QforgeRun qforge(const std::string& args) {
    QforgeRun r;
    r.rc = run_command("'" + qforge_binary() + "' " + args, &r.out);
    return r;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace qf::test
