// The qforge binary on bad input: one clear line naming the file and the problem, a
// non-zero exit, no partial output left behind, and the input untouched.
#include "support/checkpoint_writer.h"
#include "support/test_paths.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

namespace fs = std::filesystem;
using namespace qf::test;

namespace {

// Every file in dir (name -> content), to prove inputs are untouched.
std::map<std::string, std::string> snapshot(const std::string& dir) {
    std::map<std::string, std::string> m;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.is_regular_file()) m[e.path().filename().string()] = read_file(e.path().string());
    return m;
}

// No output and no temporary file in dir other than the listed inputs.
void expect_no_output(const std::string& out_path) {
    EXPECT_FALSE(fs::exists(out_path)) << out_path;
    EXPECT_FALSE(fs::exists(out_path + ".tmp")) << out_path << ".tmp";
}

void expect_one_error_line(const QforgeRun& r, const std::string& must_contain) {
    EXPECT_NE(r.rc, 0) << r.out;
    EXPECT_NE(r.out.find("error:"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(must_contain), std::string::npos) << "expected '" << must_contain << "' in: " << r.out;
    // One line: the message ends with the only newline.
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
}

std::string small_checkpoint(const std::string& dir, CheckpointSpec spec = {}) {
    fs::create_directories(dir);
    for (const char* f : {"tokenizer.model", "tokenizer_config.json"})
        fs::copy_file(bundled_model("stories260k") + "/" + f, dir + "/" + f);
    spec.vocab = 512;
    write_checkpoint(dir, spec);
    return dir;
}

}  // namespace

TEST(CliConvert, HelpTeaches) {
    QforgeRun r = qforge("convert --help");
    EXPECT_EQ(r.rc, 0);
    EXPECT_NE(r.out.find("--outtype"), std::string::npos);
    EXPECT_NE(r.out.find("Example"), std::string::npos);
    r = qforge("--help");
    EXPECT_EQ(r.rc, 0);
    EXPECT_NE(r.out.find("convert"), std::string::npos);
    EXPECT_NE(r.out.find("inspect"), std::string::npos);
}

TEST(CliConvert, ConvertsAndRefusesToOverwriteWithoutForce) {
    const std::string s = scratch_dir();
    const std::string out = s + "/out.gguf";
    QforgeRun r = qforge(fmt::format("convert '{}' -o '{}'", bundled_model("stories260k"), out));
    ASSERT_EQ(r.rc, 0) << r.out;
    const std::string first = read_file(out);
    r = qforge(fmt::format("convert '{}' -o '{}' --outtype f32", bundled_model("stories260k"), out));
    expect_one_error_line(r, out + ": already exists");
    EXPECT_EQ(read_file(out), first);  // untouched
    EXPECT_FALSE(fs::exists(out + ".tmp"));
    r = qforge(fmt::format("convert '{}' -o '{}' --outtype f32 --force", bundled_model("stories260k"), out));
    EXPECT_EQ(r.rc, 0) << r.out;
    EXPECT_NE(read_file(out), first);
}

TEST(CliConvert, DefaultOutputNameFollowsFolderAndType) {
    const std::string s = scratch_dir();
    // run in the scratch folder so the default name lands there
    QforgeRun r;
    r.rc = run_command(fmt::format("cd '{}' && '{}' convert '{}' --outtype bf16", s, qforge_binary(), bundled_model("stories260k")),
                       &r.out);
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_TRUE(fs::exists(s + "/stories260k-bf16.gguf")) << r.out;
}

TEST(CliConvert, UnknownArchitectureNamesItAndListsSupported) {
    const std::string s = scratch_dir();
    CheckpointSpec spec;
    spec.config_overrides["model_type"] = "gpt_neox";
    std::string dir = small_checkpoint(s + "/hf", spec);
    auto before = snapshot(dir);
    QforgeRun r = qforge(fmt::format("convert '{}' -o '{}/o.gguf'", dir, s));
    expect_one_error_line(r, "gpt_neox");
    EXPECT_NE(r.out.find("llama"), std::string::npos);
    EXPECT_NE(r.out.find("qwen3"), std::string::npos);
    expect_no_output(s + "/o.gguf");
    EXPECT_EQ(snapshot(dir), before);
}

TEST(CliConvert, MissingShardIsNamed) {
    const std::string s = scratch_dir();
    CheckpointSpec spec;
    spec.shards = 3;
    std::string dir = small_checkpoint(s + "/hf", spec);
    fs::remove(dir + "/model-00002-of-00003.safetensors");
    QforgeRun r = qforge(fmt::format("convert '{}' -o '{}/o.gguf'", dir, s));
    expect_one_error_line(r, "model-00002-of-00003.safetensors");
    expect_no_output(s + "/o.gguf");
}

TEST(CliConvert, TruncatedSafetensorsIsNamed) {
    const std::string s = scratch_dir();
    std::string dir = small_checkpoint(s + "/hf");
    const std::string st = dir + "/model.safetensors";
    fs::resize_file(st, fs::file_size(st) - 100);
    auto before = snapshot(dir);
    QforgeRun r = qforge(fmt::format("convert '{}' -o '{}/o.gguf'", dir, s));
    expect_one_error_line(r, "model.safetensors");
    expect_no_output(s + "/o.gguf");
    EXPECT_EQ(snapshot(dir), before);
}

TEST(CliConvert, ShapeThatDisagreesWithConfigIsNamed) {
    const std::string s = scratch_dir();
    CheckpointSpec spec;
    std::string dir = small_checkpoint(s + "/hf", spec);
    // config claims a wider FFN than the weights have
    auto cfg = nlohmann::json::parse(read_file(dir + "/config.json"));
    cfg["intermediate_size"] = cfg["intermediate_size"].get<int>() * 2;
    write_text(dir + "/config.json", cfg.dump(2));
    QforgeRun r = qforge(fmt::format("convert '{}' -o '{}/o.gguf'", dir, s));
    expect_one_error_line(r, "mlp");
    expect_no_output(s + "/o.gguf");
}

TEST(CliConvert, MissingFolderAndMissingConfig) {
    const std::string s = scratch_dir();
    QforgeRun r = qforge(fmt::format("convert '{}/nope' -o '{}/o.gguf'", s, s));
    expect_one_error_line(r, s + "/nope");
    fs::create_directories(s + "/empty");
    r = qforge(fmt::format("convert '{}/empty' -o '{}/o.gguf'", s, s));
    expect_one_error_line(r, "config.json");
    expect_no_output(s + "/o.gguf");
}

TEST(CliConvert, UnwritableOutputDirectory) {
    const std::string s = scratch_dir();
    QforgeRun r = qforge(fmt::format("convert '{}' -o '{}/no/such/dir/o.gguf'", bundled_model("stories260k"), s));
    expect_one_error_line(r, s + "/no/such/dir/o.gguf");
}

// A write that fails mid-file (here: the file-size limit, the same path as a full disk)
// leaves neither the output nor its temporary file.
TEST(CliConvert, FailedWriteLeavesNothing) {
    const std::string s = scratch_dir();
    const std::string out = s + "/o.gguf";
    QforgeRun r;
    r.rc = run_command(fmt::format("bash -c \"trap '' XFSZ; ulimit -f 64; '{}' convert '{}' -o '{}' --outtype f32\"",
                                   qforge_binary(), bundled_model("prose-tiny"), out),
                       &r.out);
    expect_one_error_line(r, out);
    expect_no_output(out);
}

// Ctrl-C: SIGINT during the run removes the temporary output.
TEST(CliConvert, InterruptLeavesNothing) {
    const std::string s = scratch_dir();
    const std::string out = s + "/o.gguf";
    // Start a conversion, wait until its temporary file exists, then interrupt it.
    const std::string script_path = s + "/interrupt.sh";
    write_text(script_path, fmt::format(
        "'{}' convert '{}' -o '{}' --outtype f32 --threads 1 &\n"
        "pid=$!\n"
        "for i in $(seq 1 5000); do [ -e '{}.tmp' ] && break; sleep 0.001; done\n"
        "kill -INT $pid\n"
        "wait $pid\n"
        "echo rc=$?\n",
        qforge_binary(), bundled_model("prose-tiny"), out, out));
    std::string log;
    run_command("bash '" + script_path + "'", &log);
    // Either the interrupt arrived (rc=130, nothing left) or the run had already finished
    // (rc=0, complete file). A partial file must never remain.
    EXPECT_FALSE(fs::exists(out + ".tmp")) << log;
    if (log.find("rc=0") == std::string::npos) {
        EXPECT_NE(log.find("rc=130"), std::string::npos) << log;
        EXPECT_FALSE(fs::exists(out)) << log;
    }
}

TEST(CliInspect, HfFolderAndBadFiles) {
    QforgeRun r = qforge(fmt::format("inspect '{}'", bundled_model("prose-tiny")));
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_NE(r.out.find("model.embed_tokens.weight"), std::string::npos);
    EXPECT_NE(r.out.find("6819072"), std::string::npos);  // parameter count of prose-tiny (metrics.json)
    const std::string s = scratch_dir();
    write_text(s + "/bad.gguf", "GGUF\x03");
    r = qforge(fmt::format("inspect '{}/bad.gguf'", s));
    expect_one_error_line(r, s + "/bad.gguf");
    r = qforge(fmt::format("inspect '{}/missing.gguf'", s));
    expect_one_error_line(r, s + "/missing.gguf");
}
