#include "common/error.h"
#include "hf/model_config.h"
#include "support/checkpoint_writer.h"
#include "support/test_paths.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const qf::Error& e) {
        std::string msg = e.what();
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
        return msg;
    }
    ADD_FAILURE() << "expected a qf::Error";
    return "";
}

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << "message: " << (msg) << "\nmissing: " << (part)

json base_config(const std::string& model_type = "llama") {
    qf::test::CheckpointSpec spec;
    spec.model_type = model_type;
    return qf::test::checkpoint_config(spec);
}

std::string config_error(const json& j) { return error_of([&] { qf::parse_model_config(j, "m/config.json", "m"); }); }

}  // namespace

TEST(ModelConfig, BundledProseTiny) {
    auto c = qf::load_model_config(qf::test::bundled_model("prose-tiny"));
    EXPECT_EQ(c.arch, qf::HfArch::Llama);
    EXPECT_EQ(c.model_type, "llama");
    EXPECT_EQ(c.gguf_arch, "llama");
    EXPECT_EQ(c.n_layer, 6u);
    EXPECT_EQ(c.n_embd, 256u);
    EXPECT_EQ(c.n_ff, 768u);
    EXPECT_EQ(c.n_head, 4u);
    EXPECT_EQ(c.n_head_kv, 2u);
    EXPECT_EQ(c.head_dim, 64u);
    EXPECT_EQ(c.vocab_size, 8192u);
    EXPECT_EQ(c.context_length, 1024u);
    EXPECT_EQ(c.rms_norm_eps, 1e-5f);
    EXPECT_EQ(c.rope_theta, 10000.0f);
    EXPECT_EQ(c.rope_scaling.type, "");
    EXPECT_TRUE(c.tied_embeddings);
    EXPECT_TRUE(c.permute_qk);
    EXPECT_TRUE(c.write_head_dim);
    EXPECT_FALSE(c.qkv_bias || c.o_bias || c.mlp_bias || c.qk_norm);
    EXPECT_EQ(c.bos_token_id, 1u);
    EXPECT_EQ(c.eos_token_id, 2u);
    EXPECT_EQ(c.name, "prose-tiny");
    EXPECT_FALSE(c.name_or_path.has_value());
    EXPECT_FALSE(c.sampling.temp.has_value());  // its generation_config.json only has token ids
}

TEST(ModelConfig, BundledStories260kByConfigPath) {
    auto c = qf::load_model_config(qf::test::bundled_model("stories260k") + "/config.json");
    EXPECT_EQ(c.n_layer, 5u);
    EXPECT_EQ(c.n_embd, 64u);
    EXPECT_EQ(c.n_ff, 172u);
    EXPECT_EQ(c.n_head, 8u);
    EXPECT_EQ(c.n_head_kv, 4u);
    EXPECT_EQ(c.head_dim, 8u);
    EXPECT_EQ(c.vocab_size, 512u);
    EXPECT_EQ(c.context_length, 512u);
    EXPECT_EQ(c.name, "stories260k");
}

TEST(ModelConfig, SharedProseBase) {
    auto shared = qf::test::shared_dir();
    if (!shared) GTEST_SKIP() << "../shared is not available";
    auto c = qf::load_model_config(*shared + "/models/prose-base/");  // trailing slash: still the folder's name
    EXPECT_EQ(c.n_layer, 8u);
    EXPECT_EQ(c.n_embd, 512u);
    EXPECT_FALSE(c.tied_embeddings);
    EXPECT_EQ(c.name, "prose-base");
    auto s = qf::load_model_config(*shared + "/models/stories260k/hf");
    EXPECT_EQ(s.name, "hf");
}

TEST(ModelConfig, Families) {
    auto mistral = qf::parse_model_config(base_config("mistral"), "c", "n");
    EXPECT_EQ(mistral.arch, qf::HfArch::Mistral);
    EXPECT_EQ(mistral.gguf_arch, "llama");
    EXPECT_TRUE(mistral.permute_qk);
    EXPECT_TRUE(mistral.write_head_dim);

    auto qwen2 = qf::parse_model_config(base_config("qwen2"), "c", "n");
    EXPECT_EQ(qwen2.gguf_arch, "qwen2");
    EXPECT_TRUE(qwen2.qkv_bias);
    EXPECT_FALSE(qwen2.o_bias);
    EXPECT_FALSE(qwen2.permute_qk);
    EXPECT_FALSE(qwen2.write_head_dim);  // Qwen2Config has no head_dim unless config.json gives one
    EXPECT_EQ(qwen2.head_dim, 8u);
    json q2 = base_config("qwen2");
    q2["head_dim"] = 8;
    EXPECT_TRUE(qf::parse_model_config(q2, "c", "n").write_head_dim);

    auto qwen3 = qf::parse_model_config(base_config("qwen3"), "c", "n");
    EXPECT_EQ(qwen3.gguf_arch, "qwen3");
    EXPECT_TRUE(qwen3.qk_norm);
    EXPECT_FALSE(qwen3.qkv_bias);
    EXPECT_FALSE(qwen3.permute_qk);
    json q3 = base_config("qwen3");
    q3.erase("head_dim");
    EXPECT_EQ(qf::parse_model_config(q3, "c", "n").head_dim, 128u);  // Qwen3Config default, not 32/4
    q3["attention_bias"] = true;
    EXPECT_HAS(config_error(q3), "attention_bias");

    json llama = base_config("llama");
    llama["attention_bias"] = true;
    llama["mlp_bias"] = true;
    auto lb = qf::parse_model_config(llama, "c", "n");
    EXPECT_TRUE(lb.qkv_bias && lb.o_bias && lb.mlp_bias);
}

TEST(ModelConfig, TransformersDefaults) {
    json j = base_config("llama");
    for (const char* key : {"num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "rope_theta", "tie_word_embeddings",
                            "rope_scaling", "bos_token_id", "eos_token_id"})
        j.erase(key);
    auto c = qf::parse_model_config(j, "c", "n");
    EXPECT_EQ(c.n_head_kv, c.n_head);
    EXPECT_EQ(c.context_length, 2048u);
    EXPECT_EQ(c.rms_norm_eps, 1e-6f);
    EXPECT_EQ(c.rope_theta, 10000.0f);
    EXPECT_FALSE(c.tied_embeddings);
    EXPECT_FALSE(c.bos_token_id.has_value());

    json m = base_config("mistral");
    m["num_attention_heads"] = 8;
    m.erase("num_key_value_heads");
    m.erase("max_position_embeddings");
    auto mc = qf::parse_model_config(m, "c", "n");
    EXPECT_EQ(mc.n_head_kv, 8u);  // MistralConfig's default
    EXPECT_EQ(mc.context_length, 131072u);

    json nulls = base_config("qwen2");
    nulls["num_key_value_heads"] = nullptr;  // explicit null: one kv head per head
    EXPECT_EQ(qf::parse_model_config(nulls, "c", "n").n_head_kv, 4u);

    json eos_list = base_config("llama");
    eos_list["eos_token_id"] = {128001, 128009};
    EXPECT_FALSE(qf::parse_model_config(eos_list, "c", "n").eos_token_id.has_value());
    eos_list["_name_or_path"] = "meta-llama/Llama-3.2-1B";
    EXPECT_EQ(qf::parse_model_config(eos_list, "c", "n").name_or_path, "meta-llama/Llama-3.2-1B");
}

TEST(ModelConfig, RopeScaling) {
    json j = base_config("llama");
    j["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
    auto c = qf::parse_model_config(j, "c", "n");
    EXPECT_EQ(c.rope_scaling.type, "linear");
    EXPECT_EQ(c.rope_scaling.factor, 4.0f);

    j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 32.0}, {"high_freq_factor", 4.0}, {"low_freq_factor", 1.0},
                         {"original_max_position_embeddings", 8192}};
    c = qf::parse_model_config(j, "c", "n");
    EXPECT_EQ(c.rope_scaling.type, "llama3");
    EXPECT_EQ(c.rope_scaling.factor, 32.0f);
    EXPECT_EQ(c.rope_scaling.original_context_length, 8192u);
    j["rope_scaling"] = {{"rope_type", "llama3"}};  // the converter's defaults
    c = qf::parse_model_config(j, "c", "n");
    EXPECT_EQ(c.rope_scaling.factor, 8.0f);
    EXPECT_EQ(c.rope_scaling.low_freq_factor, 1.0f);
    EXPECT_EQ(c.rope_scaling.high_freq_factor, 4.0f);
    EXPECT_EQ(c.rope_scaling.original_context_length, 8192u);

    j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 32768}, {"beta_fast", 32}};
    c = qf::parse_model_config(j, "c", "n");
    EXPECT_EQ(c.rope_scaling.type, "yarn");
    EXPECT_EQ(c.rope_scaling.original_context_length, 32768u);
    EXPECT_EQ(c.rope_scaling.yarn_beta_fast, 32.0f);
    EXPECT_FALSE(c.rope_scaling.yarn_beta_slow.has_value());

    for (const char* none : {"default", "dynamic"}) {
        j["rope_scaling"] = {{"rope_type", none}, {"factor", 2.0}};
        EXPECT_EQ(qf::parse_model_config(j, "c", "n").rope_scaling.type, "") << none;
    }
    j["rope_scaling"] = {{"type", "linear"}};  // no factor: the converter writes nothing
    EXPECT_EQ(qf::parse_model_config(j, "c", "n").rope_scaling.type, "");

    j["rope_scaling"] = {{"type", "longrope"}, {"factor", 2.0}};
    auto msg = config_error(j);
    EXPECT_HAS(msg, "m/config.json");
    EXPECT_HAS(msg, "'longrope'");
    json q = base_config("qwen2");
    q["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
    EXPECT_HAS(config_error(q), "llama3");
}

TEST(ModelConfig, MissingConfigJson) {
    const std::string dir = qf::test::scratch_dir();
    auto msg = error_of([&] { qf::load_model_config(dir); });
    EXPECT_HAS(msg, dir + "/config.json");
    EXPECT_HAS(msg, "not found");
    qf::test::write_text(dir + "/config.json", "{\"model_type\": ");
    msg = error_of([&] { qf::load_model_config(dir); });
    EXPECT_HAS(msg, "config.json: not valid JSON");
}

TEST(ModelConfig, UnknownModelTypeListsSupported) {
    json j = base_config();
    j["model_type"] = "gpt2";
    auto msg = config_error(j);
    EXPECT_HAS(msg, "m/config.json");
    EXPECT_HAS(msg, "unsupported model_type 'gpt2'");
    EXPECT_HAS(msg, "(supported: llama, mistral, qwen2, qwen3)");
    j.erase("model_type");
    EXPECT_HAS(config_error(j), "missing 'model_type'");
}

TEST(ModelConfig, AbsurdValues) {
    json j = base_config();
    j["num_hidden_layers"] = 0;
    auto msg = config_error(j);
    EXPECT_HAS(msg, "m/config.json");
    EXPECT_HAS(msg, "'num_hidden_layers'");
    EXPECT_HAS(msg, "got 0");

    j = base_config();
    j["hidden_size"] = 30;  // 4 heads, no head_dim
    msg = config_error(j);
    EXPECT_HAS(msg, "hidden_size 30 is not divisible by num_attention_heads 4");
    j["head_dim"] = 8;  // with an explicit head_dim the sizes need not divide
    EXPECT_EQ(qf::parse_model_config(j, "c", "n").head_dim, 8u);

    j = base_config();
    j["num_key_value_heads"] = 3;
    EXPECT_HAS(config_error(j), "num_attention_heads 4 is not a multiple of num_key_value_heads 3");

    j = base_config();
    j.erase("hidden_size");
    EXPECT_HAS(config_error(j), "missing 'hidden_size'");
    j = base_config();
    j["vocab_size"] = -5;
    EXPECT_HAS(config_error(j), "'vocab_size'");
    j = base_config();
    j["intermediate_size"] = "big";
    EXPECT_HAS(config_error(j), "'intermediate_size' must be an integer");
    j = base_config();
    j["num_attention_heads"] = 5000000000LL;
    EXPECT_HAS(config_error(j), "32-bit");
    j = base_config();
    j["head_dim"] = 7;  // llama interleaves half heads: must be even
    j["hidden_size"] = 28;
    EXPECT_HAS(config_error(j), "head_dim 7 must be even");
    EXPECT_HAS(config_error(json::array()), "not a JSON object");
}

TEST(ModelConfig, GenerationConfigSampling) {
    const std::string dir = qf::test::scratch_dir();
    qf::test::write_checkpoint(dir, qf::test::CheckpointSpec{});
    qf::test::write_text(dir + "/generation_config.json",
                         R"({"do_sample": true, "temperature": 0.6, "top_p": 0.9, "top_k": 20, "repetition_penalty": 1.05, "bos_token_id": 1})");
    auto c = qf::load_model_config(dir);
    EXPECT_EQ(c.sampling.temp, 0.6f);
    EXPECT_EQ(c.sampling.top_p, 0.9f);
    EXPECT_EQ(c.sampling.top_k, 20);
    EXPECT_EQ(c.sampling.penalty_repeat, 1.05f);
    EXPECT_FALSE(c.sampling.min_p.has_value());
    // An unreadable generation_config.json is ignored, as the converter does.
    qf::test::write_text(dir + "/generation_config.json", "{oops");
    EXPECT_FALSE(qf::load_model_config(dir).sampling.temp.has_value());
}
