// What a quant costs, measured by the real llama.cpp: KL divergence of each quantized
// file's next-token distribution from the F16 model's, on ../shared/text/valid.txt with
// llama.cpp's chunked procedure (ctx 512, second half of each chunk scored), for our file
// and llama.cpp's own file of the same type. Ours (default kernels: a harder search per
// block) must not be worse.
#include "support/llama_kld_support.h"
#include "support/llama_api.h"
#include "support/test_paths.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

using namespace qf::test;

namespace {

struct KldCase {
    const char* type;
    int llama_ftype;
};

}  // namespace

TEST(QuantizeKld, OursIsNotWorseThanLlamaCppOnValid) {
    auto shared = shared_dir();
    if (!shared) GTEST_SKIP() << "../shared not present: valid.txt needed";
    const std::string text = read_file(*shared + "/text/valid.txt");
    const std::string s = scratch_dir();
    const std::string f16 = s + "/prose-tiny-f16.gguf";
    std::string log;
    ASSERT_EQ(run_command(fmt::format("'{}' convert '{}' -o '{}'", qforge_binary(), bundled_model("prose-tiny"), f16), &log), 0)
        << log;
    const int chunks = kld_chunks();
    auto base_model = load_model(f16);
    const BaseLogProbs base = base_log_probs(*base_model, text, chunks);
    base_model.reset();

    const KldCase cases[] = {{"Q8_0", 7}, {"Q6_K", 18}, {"Q5_K_M", 17}, {"Q4_K_M", 15},
                             {"Q3_K_M", 12}, {"Q2_K", 10}, {"IQ4_XS", 30}};
    std::printf("[ kld ] prose-tiny vs F16, valid.txt, %d chunks of 512 (%zu scored tokens), llama.cpp measuring both files\n",
                chunks, base.rows.size());
    std::printf("[ kld ] %-7s %22s %22s %9s %9s %8s %8s\n", "type", "KLD ours", "KLD llama.cpp", "PPL ours", "PPL llama",
                "top1 us", "top1 ll");
    for (const auto& c : cases) {
        SCOPED_TRACE(c.type);
        const std::string ours = s + "/ours-" + c.type + ".gguf";
        const std::string theirs = s + "/llama-" + c.type + ".gguf";
        ASSERT_EQ(run_command(fmt::format("'{}' quantize '{}' '{}' {}", qforge_binary(), f16, ours, c.type), &log), 0) << log;
        QuantizeOptions lo;
        lo.ftype = c.llama_ftype;
        ASSERT_EQ(model_quantize(f16, theirs, lo), 0);
        Divergence d_ours, d_theirs;
        {
            auto m = load_model(ours);
            d_ours = divergence(*m, text, chunks, base);
        }
        {
            auto m = load_model(theirs);
            d_theirs = divergence(*m, text, chunks, base);
        }
        std::printf("[ kld ] %-7s %12.6f ±%8.6f %12.6f ±%8.6f %9.4f %9.4f %7.2f%% %7.2f%%\n", c.type, d_ours.kld_mean,
                    d_ours.kld_stderr, d_theirs.kld_mean, d_theirs.kld_stderr, d_ours.ppl, d_theirs.ppl, 100 * d_ours.top1,
                    100 * d_theirs.top1);
        EXPECT_LE(d_ours.kld_mean, d_theirs.kld_mean) << c.type;
    }
}
