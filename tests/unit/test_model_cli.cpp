// `qforge eval` end to end on the bundled prose-tiny: perplexity and KL divergence output
// (text and JSON), a Hugging Face folder as the base, and the one-line refusals.
#include "gguf/gguf_reader.h"
#include "support/test_paths.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

using namespace qf::test;

namespace {

std::string last_line(std::string s) {
    while (!s.empty() && s.back() == '\n') s.pop_back();
    const auto nl = s.rfind('\n');
    return nl == std::string::npos ? s : s.substr(nl + 1);
}

// prose-tiny as F16 (converted once per test program) and a text long enough for a few
// chunks of 64 tokens: the repository's README.
struct Fixture {
    std::string dir, f16, text;
};

const Fixture& fixture() {
    static Fixture f = [] {
        Fixture x;
        x.dir = scratch_dir();
        x.f16 = x.dir + "/prose-tiny-f16.gguf";
        x.text = source_dir() + "/README.md";
        std::string log;
        EXPECT_EQ(run_command(fmt::format("'{}' convert '{}' -o '{}' -f", qforge_binary(), bundled_model("prose-tiny"), x.f16), &log),
                  0)
            << log;
        return x;
    }();
    return f;
}

}  // namespace

TEST(CliEval, PerplexityJsonAndText) {
    const Fixture& f = fixture();
    QforgeRun r = qforge(fmt::format("eval '{}' --text '{}' -c 64 --chunks 3 -t 1 --json", f.f16, f.text));
    ASSERT_EQ(r.rc, 0) << r.out;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["chunks"], 3);
    EXPECT_EQ(j["ctx"], 64);
    EXPECT_EQ(j["tokens_scored"], 3 * 31);
    const double ppl = j["ppl"];
    EXPECT_TRUE(std::isfinite(ppl) && ppl > 1.0 && ppl < 8192.0) << ppl;
    EXPECT_GT(j["ppl_stderr"].get<double>(), 0.0);
    EXPECT_GT(j["tokens_per_second"].get<double>(), 0.0);

    r = qforge(fmt::format("eval '{}' --text '{}' -c 64 --chunks 3 -t 1", f.f16, f.text));
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_NE(r.out.find(fmt::format("PPL = {:.4f}", ppl)), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("93 tokens scored"), std::string::npos) << r.out;
}

TEST(CliEval, KlDivergenceAgainstGgufAndHfBase) {
    const Fixture& f = fixture();
    const std::string q8 = f.dir + "/prose-tiny-q8_0.gguf";
    if (!std::filesystem::exists(q8)) {
        QforgeRun q = qforge(fmt::format("quantize '{}' '{}' Q8_0", f.f16, q8));
        ASSERT_EQ(q.rc, 0) << q.out;
    }
    // The base against itself: zero divergence, same top token everywhere.
    QforgeRun r = qforge(fmt::format("eval --base '{}' '{}' '{}' --text '{}' -c 64 --chunks 2 -t 1 --json", f.f16, f.f16, q8, f.text));
    ASSERT_EQ(r.rc, 0) << r.out;
    auto j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j["quants"].size(), 2u);
    EXPECT_NEAR(j["quants"][0]["kld_mean"].get<double>(), 0.0, 1e-9);
    EXPECT_EQ(j["quants"][0]["same_top"].get<double>(), 1.0);
    const double kld_q8 = j["quants"][1]["kld_mean"];
    EXPECT_GT(kld_q8, 0.0);
    EXPECT_LT(kld_q8, 0.01);  // Q8_0 is close to F16
    EXPECT_NEAR(j["quants"][1]["ppl_base"].get<double>(), j["quants"][0]["ppl"].get<double>(), 1e-9);

    // A Hugging Face folder as the base: converted to F32 on the fly; F16 is within rounding.
    r = qforge(fmt::format("eval --base '{}' '{}' --text '{}' -c 64 --chunks 2 -t 1", bundled_model("prose-tiny"), f.f16, f.text));
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_NE(r.out.find("mean KLD"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("prose-tiny-f16.gguf"), std::string::npos) << r.out;
}

TEST(CliEval, OneLineRefusals) {
    const Fixture& f = fixture();
    const std::string s = scratch_dir();
    {
        std::ofstream(s + "/short.txt") << "Too short for any chunk.";
        QforgeRun r = qforge(fmt::format("eval '{}' --text '{}/short.txt'", f.f16, s));
        EXPECT_NE(r.rc, 0);
        EXPECT_NE(last_line(r.out).find("short.txt: the text has"), std::string::npos) << r.out;
        EXPECT_NE(last_line(r.out).find("context 512 needs at least 1024"), std::string::npos) << r.out;
    }
    {
        QforgeRun r = qforge(fmt::format("eval '{}' --text '{}/missing.txt'", f.f16, s));
        EXPECT_NE(r.rc, 0);
        EXPECT_NE(r.out.find("missing.txt"), std::string::npos) << r.out;
    }
    {
        // A base with another vocabulary (stories260k: 512 tokens).
        const std::string other = s + "/stories.gguf";
        ASSERT_EQ(qforge(fmt::format("convert '{}' -o '{}'", bundled_model("stories260k"), other)).rc, 0);
        QforgeRun r = qforge(fmt::format("eval --base '{}' '{}' --text '{}' -c 64", f.f16, other, f.text));
        EXPECT_NE(r.rc, 0);
        EXPECT_NE(last_line(r.out).find("vocabulary differs"), std::string::npos) << r.out;
    }
    {
        // NaN weights: the error names the layer where non-finite values first appear.
        const std::string bad = s + "/nan.gguf";
        std::filesystem::copy_file(f.f16, bad);
        uint64_t at = 0;
        {
            qf::GgufFile g(bad);
            const auto* t = g.find_tensor("blk.3.ffn_down.weight");
            ASSERT_NE(t, nullptr);
            at = g.data_offset() + t->offset;
        }
        std::fstream io(bad, std::ios::in | std::ios::out | std::ios::binary);
        const uint16_t nan16 = 0x7E00;
        for (int i = 0; i < 64; ++i) {
            io.seekp(static_cast<std::streamoff>(at + 2 * static_cast<uint64_t>(i) * 97));
            io.write(reinterpret_cast<const char*>(&nan16), 2);
        }
        io.close();
        QforgeRun r = qforge(fmt::format("eval '{}' --text '{}' -c 64 --chunks 1", bad, f.text));
        EXPECT_NE(r.rc, 0);
        EXPECT_NE(last_line(r.out).find("non-finite"), std::string::npos) << r.out;
        EXPECT_NE(last_line(r.out).find("blk.3"), std::string::npos) << r.out;
    }
}
