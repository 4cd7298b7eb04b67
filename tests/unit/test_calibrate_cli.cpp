// `qforge quantize --calibrate` end to end on the bundled prose-tiny (HF folder and F16 GGUF):
// the file has the planned types and size, progress is reported per layer, and bad input gets
// one line naming the problem with no output left behind (also on Ctrl-C).
#include "gguf/gguf_reader.h"
#include "support/test_paths.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

using namespace qf::test;
namespace fs = std::filesystem;

namespace {

std::string last_line(std::string s) {
    while (!s.empty() && s.back() == '\n') s.pop_back();
    const auto nl = s.rfind('\n');
    return nl == std::string::npos ? s : s.substr(nl + 1);
}

struct Fixture {
    std::string dir, f16, text;
};

// Per test: the scratch folder belongs to the running test.
Fixture fixture() {
    Fixture x;
    x.dir = scratch_dir();
    x.f16 = x.dir + "/prose-tiny-f16.gguf";
    x.text = source_dir() + "/README.md";  // a few thousand tokens of English
    EXPECT_EQ(qforge(fmt::format("convert '{}' -o '{}' -f", bundled_model("prose-tiny"), x.f16)).rc, 0);
    return x;
}

}  // namespace

TEST(CliCalibrate, WritesThePlannedLayoutAndReportsProgress) {
    const Fixture f = fixture();
    const std::string s = f.dir;
    const std::string cal = s + "/cal.gguf", plain = s + "/plain.gguf";
    auto temporary_models = [] {
        std::set<std::string> out;
        for (const auto& e : fs::directory_iterator(fs::temp_directory_path()))
            if (e.path().filename().string().starts_with("qforge-calibrate-")) out.insert(e.path().string());
        return out;
    };
    const std::set<std::string> before = temporary_models();  // another qforge may be running
    QforgeRun r = qforge(fmt::format("quantize '{}' '{}' Q3_K_M --calibrate '{}' --calib-ctx 64 --calib-chunks 4 -t 2",
                                     bundled_model("prose-tiny"), cal, f.text));
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_NE(r.out.find("calibrate: layer 6/6"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("calibrate: output"), std::string::npos) << r.out;
    // 4 chunks of 64 tokens; 6 layers x 7 products plus the tied output (token_embd, q6_K).
    EXPECT_NE(r.out.find("calibrated on 256 tokens"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("43 tensors with error feedback, 0 without"), std::string::npos) << r.out;
    // Same tensor types and sizes as the plan with an importance matrix (dry run), and the
    // blocks differ from the uncalibrated quantization.
    QforgeRun dry = qforge(fmt::format("quantize '{}' '{}' Q3_K_M --calibrate '{}' --dry-run", f.f16, s + "/dry.gguf", f.text));
    ASSERT_EQ(dry.rc, 0) << dry.out;
    ASSERT_EQ(qforge(fmt::format("quantize '{}' '{}' Q3_K_M", f.f16, plain)).rc, 0);
    qf::GgufFile a(cal), b(plain);
    ASSERT_EQ(a.tensors().size(), b.tensors().size());
    size_t differ = 0;
    for (const auto& t : a.tensors()) {
        const auto* u = b.find_tensor(t.name);
        ASSERT_NE(u, nullptr) << t.name;
        EXPECT_NE(dry.out.find(fmt::format("{} ", t.name)), std::string::npos) << t.name;
        EXPECT_EQ(a.tensor_data(t).size(), b.tensor_data(*u).size()) << t.name;
        if (!std::equal(a.tensor_data(t).begin(), a.tensor_data(t).end(), b.tensor_data(*u).begin())) ++differ;
    }
    EXPECT_GE(differ, 6u * 7u) << "every block weight product is calibrated";
    EXPECT_NE(dry.out.find(fmt::format("would be {} bytes", fs::file_size(cal))), std::string::npos) << dry.out;
    // The HF folder's F32 conversion is temporary.
    for (const auto& path : temporary_models()) EXPECT_TRUE(before.contains(path)) << path << " was left behind";
}

TEST(CliCalibrate, OneLineRefusalsLeaveNothing) {
    const Fixture f = fixture();
    const std::string s = f.dir;
    const std::string out = s + "/o.gguf";
    auto expect_refused = [&](const std::string& args, const std::string& needle) {
        QforgeRun r = qforge(args);
        EXPECT_NE(r.rc, 0) << args;
        EXPECT_NE(last_line(r.out).find(needle), std::string::npos) << r.out;
        EXPECT_FALSE(fs::exists(out)) << args;
        EXPECT_FALSE(fs::exists(out + ".tmp")) << args;
    };
    std::ofstream(s + "/short.txt") << "Too short for a chunk.";
    expect_refused(fmt::format("quantize '{}' '{}' Q4_K_M --calibrate '{}/short.txt'", f.f16, out, s),
                   "short.txt: the calibration text tokenizes to");
    expect_refused(fmt::format("quantize '{}' '{}' Q4_K_M --calibrate '{}/missing.txt'", f.f16, out, s), "missing.txt");
    expect_refused(fmt::format("quantize '{}' '{}' Q4_K_M --calibrate '{}' --imatrix x.gguf", f.f16, out, f.text),
                   "cannot be combined with --imatrix");
    expect_refused(fmt::format("quantize '{}' '{}' Q4_K_M --calibrate '{}' --llama-exact", f.f16, out, f.text),
                   "cannot be combined with --calibrate");
    // NaN weights: the error names the tensor and where the non-finite value is.
    const std::string bad = s + "/nan.gguf";
    fs::copy_file(f.f16, bad);
    {
        qf::GgufFile g(bad);
        const auto* t = g.find_tensor("blk.2.ffn_up.weight");
        ASSERT_NE(t, nullptr);
        const uint64_t at = g.data_offset() + t->offset;
        std::fstream io(bad, std::ios::in | std::ios::out | std::ios::binary);
        const uint16_t nan16 = 0x7E00;
        for (int i = 0; i < 64; ++i) {
            io.seekp(static_cast<std::streamoff>(at + 2 * static_cast<uint64_t>(i) * 97));
            io.write(reinterpret_cast<const char*>(&nan16), 2);
        }
    }
    expect_refused(fmt::format("quantize '{}' '{}' Q4_K_M --calibrate '{}' --calib-ctx 64 --calib-chunks 2", bad, out, f.text),
                   "non-finite");
    QforgeRun r = qforge(fmt::format("quantize '{}' '{}' Q4_K_M --calibrate '{}' --calib-ctx 64 --calib-chunks 2", bad, out, f.text));
    EXPECT_NE(last_line(r.out).find("blk.2"), std::string::npos) << r.out;
}

// Ctrl-C during calibration of an HF folder: exit 130, no output, no temporary F32 model left.
TEST(CliCalibrate, InterruptLeavesNothing) {
    const Fixture f = fixture();
    const std::string s = f.dir;
    const std::string out = s + "/o.gguf";
    const std::string script = s + "/interrupt.sh";
    std::ofstream(script) << fmt::format(
        "'{}' quantize '{}' '{}' Q4_K_M --calibrate '{}' --calib-ctx 64 -t 1 2>'{}/err.txt' &\n"
        "pid=$!\n"
        "for i in $(seq 1 20000); do grep -q 'calibrate: layer' '{}/err.txt' 2>/dev/null && break; sleep 0.001; done\n"
        "ls /tmp | grep -c \"qforge-calibrate-$pid-\" || true\n"
        "kill -INT $pid\n"
        "wait $pid\n"
        "echo rc=$?\n"
        "ls /tmp | grep -c \"qforge-calibrate-$pid-\" || true\n",
        qforge_binary(), bundled_model("prose-tiny"), out, f.text, s, s);
    std::string log;
    run_command("bash '" + script + "'", &log);
    EXPECT_NE(log.find("rc=130"), std::string::npos) << log;
    EXPECT_NE(log.find("1\nrc=130\n0"), std::string::npos) << "temporary F32 model present during the run, gone after: " << log;
    EXPECT_FALSE(fs::exists(out)) << log;
    EXPECT_FALSE(fs::exists(out + ".tmp")) << log;
}
