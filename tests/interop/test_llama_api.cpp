// Our dlopen declarations of llama.cpp's C API against the real library, and the harness
// built on them (load, tokenize, greedy generation, perplexity, quantize, context log).
//
// Layouts: each default-params function returns its struct by value; every field is read
// back and compared with the defaults that build's sources document. A field declared at
// the wrong offset reads a neighbour's value, so a wrong layout fails here.
// Behaviour: stories260K converted by `qforge convert` must tokenize and continue
// "Once upon a time" exactly as documented in ../shared/README.md (measured with llama.cpp).
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "common/error.h"
#include "common/output_file.h"
#include "support/llama_api.h"
#include "support/test_paths.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

namespace fs = std::filesystem;
using namespace qf::test;
using namespace qf::test::llama_c;

namespace {

LlamaApi& require_api() {
    auto& api = LlamaApi::get();
    if (!api.available()) ADD_FAILURE() << api.error();
    return api;
}

// stories260K converted to an F32 GGUF by qforge, once per process.
std::string stories_gguf() {
    static std::string path;
    if (!path.empty()) return path;
    fs::path dir = fs::path(scratch_dir()).parent_path() / "llama-api-stories260k";
    fs::create_directories(dir);
    std::string out = (dir / "stories260k-f32.gguf").string();
    std::string log;
    const std::string cmd = fmt::format("'{}' convert '{}' --outtype f32 -f -o '{}'", qforge_binary(),
                                        bundled_model("stories260k"), out);
    if (run_command(cmd, &log) != 0 || !fs::exists(out)) throw qf::Error(fmt::format("{} failed: {}", cmd, log));
    path = out;
    return path;
}

// Text for perplexity runs on stories260K: the README's reference story, repeated with
// variations so chunks differ. Its own words, so the model predicts it well.
std::string story_text() {
    std::string s;
    const char* names[] = {"Lily", "Tom", "Sue", "Ben", "Max"};
    const char* things[] = {"ball", "dog", "cat", "tree", "car"};
    for (int i = 0; i < 40; ++i)
        s += fmt::format("Once upon a time, there was a little girl named {}. She loved to play outside in the park. "
                         "One day, she saw a big, red {}. ",
                         names[i % 5], things[(i * 3) % 5]);
    return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Library and struct layouts

TEST(LlamaApi, LoadsLibrariesAndPinnedCpuBackend) {
    auto& api = require_api();
    ASSERT_TRUE(api.available());
    EXPECT_GE(api.fn().ggml_backend_reg_count(), 1u) << "the CPU plug-in must be registered";
}

TEST(LlamaApi, ModelParamsDefaultsReadBack) {
    auto& api = require_api();
    ASSERT_TRUE(api.available());
    const llama_model_params p = api.fn().llama_model_default_params();
    EXPECT_EQ(p.devices, nullptr);
    EXPECT_EQ(p.tensor_buft_overrides, nullptr);
    EXPECT_EQ(p.n_gpu_layers, -1);
    EXPECT_EQ(p.split_mode, kSplitModeLayer);
    EXPECT_EQ(p.load_mode, kLoadModeAuto);
    EXPECT_EQ(p.lazy_mode, kLazyModeAuto);
    EXPECT_EQ(p.main_gpu, 0);
    EXPECT_EQ(p.tensor_split, nullptr);
    EXPECT_EQ(p.progress_callback, nullptr);
    EXPECT_EQ(p.progress_callback_user_data, nullptr);
    EXPECT_EQ(p.kv_overrides, nullptr);
    EXPECT_FALSE(p.vocab_only);
    EXPECT_FALSE(p.check_tensors);
    EXPECT_TRUE(p.use_extra_bufts);  // the one true flag pins the bool block's offset
    EXPECT_FALSE(p.no_host);
    EXPECT_FALSE(p.no_alloc);
    EXPECT_FALSE(p.load_mtp);
    // Padding after the last bool is the only slack: the struct ends right there.
    EXPECT_EQ(offsetof(llama_model_params, load_mtp) + 1 + 2, sizeof(llama_model_params));
}

TEST(LlamaApi, ContextParamsDefaultsReadBack) {
    auto& api = require_api();
    ASSERT_TRUE(api.available());
    const llama_context_params p = api.fn().llama_context_default_params();
    EXPECT_EQ(p.n_ctx, 512u);
    EXPECT_EQ(p.n_batch, 2048u);
    EXPECT_EQ(p.n_ubatch, 512u);
    EXPECT_EQ(p.n_seq_max, 1u);
    EXPECT_EQ(p.n_rs_seq, 0u);
    EXPECT_EQ(p.n_outputs_max, 0u);
    EXPECT_EQ(p.n_outputs_max_per_seq, 1u);
    EXPECT_EQ(p.n_threads, 4);  // GGML_DEFAULT_N_THREADS
    EXPECT_EQ(p.n_threads_batch, 4);
    EXPECT_EQ(p.ctx_type, 0);
    EXPECT_EQ(p.rope_scaling_type, kRopeScalingUnspecified);
    EXPECT_EQ(p.pooling_type, kPoolingUnspecified);
    EXPECT_EQ(p.attention_type, kAttentionUnspecified);
    EXPECT_EQ(p.flash_attn_type, kFlashAttnAuto);
    EXPECT_EQ(p.rope_freq_base, 0.0f);
    EXPECT_EQ(p.rope_freq_scale, 0.0f);
    EXPECT_EQ(p.yarn_ext_factor, -1.0f);
    EXPECT_EQ(p.yarn_attn_factor, -1.0f);
    EXPECT_EQ(p.yarn_beta_fast, -1.0f);
    EXPECT_EQ(p.yarn_beta_slow, -1.0f);
    EXPECT_EQ(p.yarn_orig_ctx, 0u);
    EXPECT_EQ(p.defrag_thold, -1.0f);
    EXPECT_EQ(p.cb_eval, nullptr);
    EXPECT_EQ(p.cb_eval_user_data, nullptr);
    EXPECT_EQ(p.type_k, kGgmlTypeF16);
    EXPECT_EQ(p.type_v, kGgmlTypeF16);
    EXPECT_EQ(p.abort_callback, nullptr);
    EXPECT_EQ(p.abort_callback_data, nullptr);
    EXPECT_FALSE(p.embeddings);
    EXPECT_TRUE(p.offload_kqv);
    EXPECT_TRUE(p.no_perf);
    EXPECT_TRUE(p.op_offload);
    EXPECT_TRUE(p.swa_full);
    EXPECT_FALSE(p.kv_unified);
    EXPECT_EQ(p.samplers, nullptr);
    EXPECT_EQ(p.n_samplers, 0u);
    EXPECT_EQ(p.ctx_other, nullptr);
    EXPECT_EQ(offsetof(llama_context_params, ctx_other) + sizeof(void*), sizeof(llama_context_params));
}

TEST(LlamaApi, QuantizeParamsDefaultsReadBack) {
    auto& api = require_api();
    ASSERT_TRUE(api.available());
    const llama_model_quantize_params p = api.fn().llama_model_quantize_default_params();
    EXPECT_EQ(p.nthread, 0);
    EXPECT_EQ(p.ftype, kFtypeMostlyQ8_0);  // this build's default (older llama.h said Q5_1)
    EXPECT_EQ(p.output_tensor_type, kGgmlTypeCount);
    EXPECT_EQ(p.token_embedding_type, kGgmlTypeCount);
    EXPECT_FALSE(p.allow_requantize);
    EXPECT_TRUE(p.quantize_output_tensor);
    EXPECT_FALSE(p.only_copy);
    EXPECT_FALSE(p.pure);
    EXPECT_FALSE(p.keep_split);
    EXPECT_FALSE(p.dry_run);
    EXPECT_EQ(p.imatrix, nullptr);
    EXPECT_EQ(p.kv_overrides, nullptr);
    EXPECT_EQ(p.tt_overrides, nullptr);
    EXPECT_EQ(p.prune_layers, nullptr);
    EXPECT_EQ(p.max_buf_size, size_t{8} << 30);  // LLAMA_QUANT_MAX_BUF_SIZE, the last field
}

TEST(LlamaApi, BatchInitLayout) {
    auto& api = require_api();
    ASSERT_TRUE(api.available());
    // Token batch: token set, embd null, seq_id has n+1 entries ending in nullptr.
    llama_batch b = api.fn().llama_batch_init(8, 0, 1);
    EXPECT_EQ(b.n_tokens, 0);
    EXPECT_NE(b.token, nullptr);
    EXPECT_EQ(b.embd, nullptr);
    EXPECT_NE(b.pos, nullptr);
    EXPECT_NE(b.n_seq_id, nullptr);
    ASSERT_NE(b.seq_id, nullptr);
    for (int i = 0; i < 8; ++i) EXPECT_NE(b.seq_id[i], nullptr) << i;
    EXPECT_EQ(b.seq_id[8], nullptr);
    EXPECT_NE(b.logits, nullptr);
    api.fn().llama_batch_free(b);
    // Embedding batch: the other way round for token/embd.
    llama_batch e = api.fn().llama_batch_init(4, 16, 1);
    EXPECT_EQ(e.token, nullptr);
    EXPECT_NE(e.embd, nullptr);
    EXPECT_EQ(e.seq_id[4], nullptr);
    api.fn().llama_batch_free(e);
}

TEST(LlamaApi, LoadFailureIsOneLineErrorWithLlamaLog) {
    auto& api = require_api();
    ASSERT_TRUE(api.available());
    const std::string bad = scratch_dir() + "/not-a-model.gguf";
    std::ofstream(bad) << "this is not a GGUF file";
    try {
        (void)load_model(bad);
        FAIL() << "loading garbage must throw";
    } catch (const qf::Error& e) {
        const std::string msg = e.what();
        EXPECT_EQ(msg.rfind(bad + ": llama.cpp cannot load the model: ", 0), 0u) << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
        EXPECT_NE(msg.find("gguf"), std::string::npos) << "llama.cpp's own reason is included: " << msg;
    }
}

// ---------------------------------------------------------------------------------------------
// stories260K, converted by qforge, run by llama.cpp

class StoriesLlama : public ::testing::Test {
protected:
    void SetUp() override {
        auto& api = require_api();
        ASSERT_TRUE(api.available());
        ASSERT_NO_THROW(path_ = stories_gguf());
        ASSERT_NO_THROW(model_ = load_model(path_));
    }
    std::string path_;
    std::unique_ptr<LlamaModel> model_;
};

TEST_F(StoriesLlama, TokenizesLikeTheReference) {
    EXPECT_EQ(n_vocab(*model_), 512);
    EXPECT_EQ(tokenize(*model_, "Once upon a time", true, false), (std::vector<int32_t>{1, 403, 407, 261, 378}));
    EXPECT_EQ(tokenize(*model_, "Once upon a time", false, false), (std::vector<int32_t>{403, 407, 261, 378}));
    // Long input exercises the retry with a larger buffer.
    const std::string long_text(3000, 'a');
    EXPECT_GT(tokenize(*model_, long_text, true, false).size(), 1u);
}

TEST_F(StoriesLlama, GreedyContinuationMatchesReference) {
    const std::string prompt = "Once upon a time";
    const std::string reference =
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
        "One day, she saw a big, red ball.";
    const std::vector<int32_t> prompt_tokens = tokenize(*model_, prompt, true, false);
    // The reference continuation is 40 tokens long (the 40th is the final ".").
    const auto generated = greedy_generate(*model_, prompt_tokens, 40);
    ASSERT_EQ(generated.size(), 40u);
    std::string text = prompt;
    for (int32_t t : generated) text += token_to_piece(*model_, t);
    EXPECT_EQ(text, reference);
    // Deterministic. (Not re-run with 2 threads: on a busy 2-core machine that alone takes
    // tens of seconds, see kDefaultThreads.)
    EXPECT_EQ(greedy_generate(*model_, prompt_tokens, 40), generated);
}

namespace {

// Log-softmax of one logits row at `target`, in double throughout.
double log_prob(const float* row, int32_t vocab, int32_t target) {
    double mx = row[0], sum = 0;
    for (int32_t t = 1; t < vocab; ++t) mx = std::max<double>(mx, row[t]);
    for (int32_t t = 0; t < vocab; ++t) sum += std::exp(row[t] - mx);
    return row[target] - mx - std::log(sum);
}

}  // namespace

TEST_F(StoriesLlama, PerplexityFollowsTheToolsProcedure) {
    // The procedure re-implemented here on the raw C API: chunk i is tokens [i*n_ctx, +n_ctx)
    // with BOS first, positions [n_ctx/2, n_ctx-1) predict the next token.
    //  A: the whole chunk in one decode, every position an output: same logits as the harness.
    //  B: one token per decode on an incremental KV cache: same likelihood up to flash
    //     attention's rounding (it is on by default, as in the tool), which checks causality
    //     and positions independently of batching.
    const int n_ctx = 64, n_chunks = 3;
    const std::string text = story_text();
    std::vector<std::vector<float>> chunk_logits;
    std::vector<std::vector<int32_t>> chunk_targets;
    PerplexityResult r = perplexity(*model_, text, n_ctx, n_chunks, 1,
                                    [&](int chunk, std::span<const float> logits, std::span<const int32_t> targets) {
                                        EXPECT_EQ(chunk, static_cast<int>(chunk_logits.size()));
                                        chunk_logits.emplace_back(logits.begin(), logits.end());
                                        chunk_targets.emplace_back(targets.begin(), targets.end());
                                    });
    const int first = n_ctx / 2, n_scored = n_ctx - 1 - first;
    ASSERT_EQ(r.chunks, n_chunks);
    EXPECT_EQ(r.scored, static_cast<size_t>(n_chunks * n_scored));
    ASSERT_EQ(chunk_logits.size(), static_cast<size_t>(n_chunks));
    const int32_t vocab = n_vocab(*model_);
    for (const auto& l : chunk_logits) ASSERT_EQ(l.size(), static_cast<size_t>(n_scored) * vocab);

    const std::vector<int32_t> tokens = tokenize(*model_, text, true, false);
    ASSERT_EQ(tokens.front(), 1);
    ASSERT_GE(tokens.size(), static_cast<size_t>(n_chunks * n_ctx));
    const auto& fn = LlamaApi::get().fn();
    double nll_a = 0, nll_b = 0;
    for (int chunk = 0; chunk < n_chunks; ++chunk) {
        const size_t start = static_cast<size_t>(chunk) * n_ctx;
        const auto input = [&](int pos) { return pos == 0 ? tokens[0] : tokens[start + pos]; };
        for (int k = 0; k < n_scored; ++k)
            EXPECT_EQ(chunk_targets[chunk][k], tokens[start + first + 1 + k]) << chunk << " " << k;

        for (int one_by_one = 0; one_by_one < 2; ++one_by_one) {
            llama_context_params cp = fn.llama_context_default_params();
            cp.n_ctx = n_ctx;
            cp.n_batch = one_by_one ? 1 : n_ctx;
            cp.n_ubatch = cp.n_batch;
            cp.n_threads = cp.n_threads_batch = 1;
            llama_context* ctx = fn.llama_init_from_model(model_->model, cp);
            ASSERT_NE(ctx, nullptr);
            llama_batch b = fn.llama_batch_init(n_ctx, 0, 1);
            double max_diff = 0;
            const auto score = [&](const float* row, int pos) {
                const int k = pos - first;
                (one_by_one ? nll_b : nll_a) -= log_prob(row, vocab, tokens[start + pos + 1]);
                if (!one_by_one)
                    for (int t = 0; t < vocab; ++t)
                        max_diff = std::max<double>(max_diff, std::fabs(row[t] - chunk_logits[chunk][size_t(k) * vocab + t]));
            };
            const int steps = one_by_one ? n_ctx : 1;
            for (int step = 0; step < steps; ++step) {
                b.n_tokens = 0;
                for (int pos = one_by_one ? step : 0; pos < (one_by_one ? step + 1 : n_ctx); ++pos) {
                    const int i = b.n_tokens++;
                    b.token[i] = input(pos);
                    b.pos[i] = pos;
                    b.n_seq_id[i] = 1;
                    b.seq_id[i][0] = 0;
                    b.logits[i] = 1;
                }
                ASSERT_EQ(fn.llama_decode(ctx, b), 0);
                for (int i = 0; i < b.n_tokens; ++i)
                    if (const int pos = b.pos[i]; pos >= first && pos < n_ctx - 1) score(fn.llama_get_logits_ith(ctx, i), pos);
            }
            fn.llama_batch_free(b);
            fn.llama_free(ctx);
            if (!one_by_one) {
                EXPECT_LT(max_diff, 1e-5) << "chunk " << chunk << ": logits differ from one full decode";
            }
        }
    }
    const double count = n_chunks * n_scored;
    EXPECT_NEAR(r.nll, nll_a / count, 1e-6);
    EXPECT_NEAR(r.nll, nll_b / count, 2e-3);
    EXPECT_NEAR(r.ppl, std::exp(r.nll), 1e-12 * r.ppl);
    EXPECT_GT(r.nll_stderr, 0.0);
    EXPECT_LT(r.nll_stderr, r.nll);
    // The model knows these words: far better than uniform over 512 tokens.
    EXPECT_LT(r.ppl, 20.0);
    EXPECT_GT(r.ppl, 1.0);
    // Too little text is refused, as the tool refuses it.
    EXPECT_THROW(perplexity(*model_, "Once upon a time", n_ctx), qf::Error);
}

TEST_F(StoriesLlama, ContextLogReportsKvCacheOfTheExpectedSize) {
    // KV cache: n_ctx x n_layer x (K + V) x n_kv_heads x head_dim x 2 bytes (F16):
    // stories260K has 5 layers, 4 KV heads of 8.
    for (int n_ctx : {256, 1024}) {
        const auto lines = create_context_log(*model_, n_ctx, 256, 256, kGgmlTypeF16, kGgmlTypeF16, 0);
        double kv_mib = -1, compute_mib = -1;
        for (const auto& line : lines) {
            auto at = line.find("KV buffer size = ");
            if (at != std::string::npos) kv_mib = std::stod(line.substr(at + 17));
            at = line.find("compute buffer size = ");
            if (at != std::string::npos) compute_mib = std::stod(line.substr(at + 22));
        }
        const double expected = n_ctx * 5.0 * 2 * 4 * 8 * 2 / (1024.0 * 1024.0);
        EXPECT_NEAR(kv_mib, expected, 0.006) << "n_ctx " << n_ctx;
        EXPECT_GT(compute_mib, 0.0) << "n_ctx " << n_ctx;
    }
}

TEST_F(StoriesLlama, QuantizesAndTheResultRuns) {
    const std::string dir = scratch_dir();
    const std::string out = dir + "/stories-q8_0.gguf";
    QuantizeOptions opt;
    opt.ftype = 7;  // Q8_0
    ASSERT_EQ(model_quantize(path_, out, opt), 0);
    const auto log = LlamaApi::get().take_log();
    bool saw_quantize = false;
    for (const auto& l : log) saw_quantize |= l.find("llama_model_quantize_impl") != std::string::npos;
    EXPECT_TRUE(saw_quantize) << "the quantize log is captured";

    qf::GgufFile q(out);
    EXPECT_EQ(q.metadata().get("general.file_type").as_u64(), 7u);
    const auto* wq = q.find_tensor("blk.0.attn_q.weight");
    ASSERT_NE(wq, nullptr);
    EXPECT_EQ(wq->type, qf::GgmlType::Q8_0);

    auto quantized = load_model(out);
    const auto prompt = tokenize(*quantized, "Once upon a time", true, false);
    EXPECT_EQ(greedy_generate(*quantized, prompt, 8).size(), 8u);

    // A failing quantization reports non-zero, it does not throw or abort.
    EXPECT_NE(model_quantize(dir + "/missing.gguf", dir + "/x.gguf", opt), 0);
}

TEST_F(StoriesLlama, QuantizeWithImatrixPassesImportanceAndKeys) {
    // A GGUF imatrix in llama-imatrix's format for every 2-D weight: in_sum2 [ne0, 1] and
    // counts [1, 1]. Importances strongly favour a few columns, so Q4_K bytes must change.
    const std::string dir = scratch_dir();
    qf::GgufFile src(path_);
    qf::GgufMetadata md;
    md.set("general.type", qf::GgufValue::string("imatrix"));
    md.set("imatrix.datasets", qf::GgufValue::string_array({"calib-test.txt"}));
    md.set("imatrix.chunk_count", qf::GgufValue::u32(7));
    md.set("imatrix.chunk_size", qf::GgufValue::u32(512));
    std::vector<qf::GgufTensorPlan> plan;
    std::vector<std::vector<float>> data;
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    int n_entries = 0;
    for (const auto& t : src.tensors()) {
        if (t.shape.size() != 2 || t.name.rfind("blk.", 0) != 0) continue;
        const int64_t ne0 = t.shape[0];
        std::vector<float> sums(static_cast<size_t>(ne0));
        for (auto& v : sums) v = u(rng) < 0.1f ? 1000.0f * u(rng) : 0.01f * u(rng);
        plan.push_back({t.name + ".counts", {1, 1}, qf::GgmlType::F32});
        data.push_back({7.0f * 512});
        plan.push_back({t.name + ".in_sum2", {ne0, 1}, qf::GgmlType::F32});
        data.push_back(std::move(sums));
        ++n_entries;
    }
    ASSERT_GT(n_entries, 0);
    const std::string imatrix = dir + "/imatrix.gguf";
    {
        qf::OutputFile f(imatrix, true);
        qf::GgufWriter w(f, md, plan);
        for (const auto& d : data) w.write_tensor_data(std::as_bytes(std::span(d)));
        w.finish();
        f.commit();
    }

    QuantizeOptions opt;
    opt.ftype = 15;  // Q4_K_M
    const std::string plain = dir + "/plain.gguf", weighted = dir + "/weighted.gguf";
    ASSERT_EQ(model_quantize(path_, plain, opt), 0);
    opt.imatrix_path = imatrix;
    ASSERT_EQ(model_quantize(path_, weighted, opt), 0);
    const auto log = LlamaApi::get().take_log();
    bool saw = false;
    for (const auto& l : log)
        saw |= l.find(fmt::format("have importance matrix data with {} entries", n_entries)) != std::string::npos;
    EXPECT_TRUE(saw) << "llama.cpp received the imatrix";

    qf::GgufFile a(plain), b(weighted);
    EXPECT_EQ(a.metadata().find("quantize.imatrix.file"), nullptr);
    EXPECT_EQ(b.metadata().get("quantize.imatrix.file").as_string(), imatrix);
    EXPECT_EQ(b.metadata().get("quantize.imatrix.dataset").as_string(), "calib-test.txt");
    EXPECT_EQ(b.metadata().get("quantize.imatrix.entries_count").as_i64(), n_entries);
    EXPECT_EQ(b.metadata().get("quantize.imatrix.chunks_count").as_i64(), 7);
    // Same types, different bytes where the importance steers the search.
    size_t differing = 0;
    for (const auto& t : a.tensors()) {
        const auto* u2 = b.find_tensor(t.name);
        ASSERT_NE(u2, nullptr) << t.name;
        EXPECT_EQ(t.type, u2->type) << t.name;
        auto x = a.tensor_data(t), y = b.tensor_data(*u2);
        if (x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size()) != 0) ++differing;
    }
    EXPECT_GT(differing, 0u);

    // An imatrix without the metadata keys is refused, as llama-quantize refuses it.
    const std::string bare = dir + "/bare-imatrix.gguf";
    {
        qf::OutputFile f(bare, true);
        qf::GgufWriter w(f, qf::GgufMetadata{}, {plan[0], plan[1]});
        w.write_tensor_data(std::as_bytes(std::span(data[0])));
        w.write_tensor_data(std::as_bytes(std::span(data[1])));
        w.finish();
        f.commit();
    }
    opt.imatrix_path = bare;
    EXPECT_THROW(model_quantize(path_, dir + "/never.gguf", opt), qf::Error);
}
