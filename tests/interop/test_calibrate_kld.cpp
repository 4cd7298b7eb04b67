// `qforge quantize --calibrate` against llama.cpp's own quant made with an importance matrix
// from the same calibration text, both files loaded and measured by the real llama.cpp: KL
// divergence from the F16 model on ../shared/text/valid.txt (never used for calibration).
// The calibrated file must have llama.cpp's tensor types and data sizes, and its KLD must be at
// most a fixed fraction of llama.cpp's.
//
// Default (make test): the bundled prose-tiny, 32 calibration chunks, 6 scored chunks.
// bench/calibrate-kld.sh runs the same test on ../shared's prose-base with every type of the
// issue and all calibration chunks (QFORGE_CALIB_MODEL, QFORGE_CALIB_TYPES, QFORGE_CALIB_CHUNKS,
// QFORGE_KLD_CHUNKS, QFORGE_CALIB_OVERFIT=1 also scores calib.txt).
#include "gguf/gguf_reader.h"
#include "support/llama_api.h"
#include "support/llama_kld_support.h"
#include "support/test_paths.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <sstream>

using namespace qf::test;

namespace {

std::string env_or(const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return v && *v ? v : fallback;
}

struct TypeCase {
    const char* type;
    int llama_ftype;
    double max_ratio_tiny;  // bundled prose-tiny: the width-256 rows are one Q2_K/Q3_K/Q4_K block,
                            // so error feedback has no later block to carry errors into
    double max_ratio_base;  // the bar (prose-base, ../shared)
};

constexpr TypeCase kTypes[] = {
    {"Q4_K_M", 15, 0.75, 0.65}, {"Q4_K_S", 14, 0.75, 0.65}, {"IQ4_XS", 30, 0.75, 0.65},
    {"Q3_K_M", 12, 0.75, 0.60}, {"Q2_K", 10, 0.80, 0.60},
};

// tensor name -> (ggml type, data bytes)
std::map<std::string, std::pair<uint32_t, uint64_t>> tensor_layout(const std::string& path) {
    qf::GgufFile f(path);
    std::map<std::string, std::pair<uint32_t, uint64_t>> out;
    for (const auto& t : f.tensors()) out[t.name] = {static_cast<uint32_t>(t.type), f.tensor_data(t).size()};
    return out;
}

}  // namespace

TEST(CalibrateKld, ErrorFeedbackBeatsLlamaCppWithImatrix) {
    auto shared = shared_dir();
    if (!shared) GTEST_SKIP() << "../shared not present: calib.txt and valid.txt needed";
    const std::string model_name = env_or("QFORGE_CALIB_MODEL", "prose-tiny");
    const bool tiny = model_name == "prose-tiny";
    const std::string model_dir = tiny ? bundled_model("prose-tiny") : *shared + "/models/" + model_name;
    const std::string calib = *shared + "/text/calib.txt", valid_path = *shared + "/text/valid.txt";
    const std::string calib_chunks = env_or("QFORGE_CALIB_CHUNKS", "32");
    const std::string types = env_or("QFORGE_CALIB_TYPES", "Q4_K_M,Q3_K_M,Q2_K");
    const bool overfit = std::getenv("QFORGE_CALIB_OVERFIT") != nullptr;
    const std::string valid = read_file(valid_path);
    const std::string s = scratch_dir();
    const std::string f16 = s + "/f16.gguf", imatrix = s + "/imatrix.gguf";
    std::string log;
    ASSERT_EQ(run_command(fmt::format("'{}' convert '{}' -o '{}'", qforge_binary(), model_dir, f16), &log), 0) << log;
    // qforge imatrix writes what llama-imatrix writes (test_imatrix_interop proves it).
    ASSERT_EQ(run_command(fmt::format("'{}' imatrix '{}' --text '{}' --chunks {} -o '{}'", qforge_binary(), f16, calib,
                                      calib_chunks == "0" ? "1000000" : calib_chunks, imatrix),
                          &log),
              0)
        << log;
    const int chunks = kld_chunks();
    BaseLogProbs base, base_calib;
    {
        auto m = load_model(f16);
        base = base_log_probs(*m, valid, chunks);
    }
    std::string calib_text;
    if (overfit) {
        calib_text = read_file(calib);
        auto m = load_model(f16);
        base_calib = base_log_probs(*m, calib_text, chunks);
    }
    std::printf("[ calib ] %s vs F16, valid.txt, %d chunks of 512 (%zu scored tokens), llama.cpp measuring every file; "
                "calibration: calib.txt, %s chunks\n",
                model_name.c_str(), chunks, base.rows.size(), calib_chunks.c_str());
    std::printf("[ calib ] %-7s %12s %12s %12s %7s %9s %9s %9s%s\n", "type", "KLD calib", "llama+imat", "llama", "ratio",
                "PPL cal", "PPL l+im", "top1 cal", overfit ? "   KLD on calib.txt: cal / llama+imat" : "");
    int ran = 0;
    for (const auto& c : kTypes) {
        if (("," + types + ",").find(std::string(",") + c.type + ",") == std::string::npos) continue;
        SCOPED_TRACE(c.type);
        ++ran;
        const std::string ours = s + "/cal-" + c.type + ".gguf";
        const std::string theirs = s + "/llama-imat-" + c.type + ".gguf";
        const std::string plain = s + "/llama-" + c.type + ".gguf";
        ASSERT_EQ(run_command(fmt::format("'{}' quantize '{}' '{}' {} --calibrate '{}' --calib-chunks {}", qforge_binary(), f16,
                                          ours, c.type, calib, calib_chunks),
                              &log),
                  0)
            << log;
        QuantizeOptions lo;
        lo.ftype = c.llama_ftype;
        if (!tiny) {  // the no-imatrix column: benchmark runs only
            ASSERT_EQ(model_quantize(f16, plain, lo), 0);
        }
        lo.imatrix_path = imatrix;
        ASSERT_EQ(model_quantize(f16, theirs, lo), 0);

        // Same tensors, types and data sizes as llama.cpp's file made with the imatrix.
        EXPECT_EQ(tensor_layout(ours), tensor_layout(theirs));

        const Divergence d_ours = divergence_of_file(ours, valid, chunks, base);
        const Divergence d_theirs = divergence_of_file(theirs, valid, chunks, base);
        const Divergence d_plain = tiny ? Divergence{} : divergence_of_file(plain, valid, chunks, base);
        const double ratio = d_ours.kld_mean / d_theirs.kld_mean;
        std::string extra;
        if (overfit) {
            const Divergence o = divergence_of_file(ours, calib_text, chunks, base_calib);
            const Divergence t = divergence_of_file(theirs, calib_text, chunks, base_calib);
            extra = fmt::format("   {:.6f} / {:.6f} = {:.3f}", o.kld_mean, t.kld_mean, o.kld_mean / t.kld_mean);
        }
        std::printf("[ calib ] %-7s %12.6f %12.6f %12.6f %7.3f %9.4f %9.4f %8.2f%%%s\n", c.type, d_ours.kld_mean,
                    d_theirs.kld_mean, d_plain.kld_mean, ratio, d_ours.ppl, d_theirs.ppl, 100 * d_ours.top1, extra.c_str());
        EXPECT_LE(ratio, tiny ? c.max_ratio_tiny : c.max_ratio_base)
            << c.type << ": calibrated KLD " << d_ours.kld_mean << " vs llama.cpp with imatrix " << d_theirs.kld_mean;
    }
    EXPECT_GT(ran, 0) << "QFORGE_CALIB_TYPES named no known type: " << types;
}
