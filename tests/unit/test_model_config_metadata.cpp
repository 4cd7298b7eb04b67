// add_arch_metadata: the general.* and {arch}.* keys of convert_hf_to_gguf.py, in its order
// and with its value types. Expected values are stated by hand from the converter's code
// (names and size labels were checked against gguf-py's own functions).
#include "gguf/gguf_value.h"
#include "hf/arch_metadata.h"
#include "hf/model_config.h"
#include "hf/safetensors.h"
#include "hf/tensor_map.h"
#include "support/checkpoint_writer.h"
#include "support/test_paths.h"

#include <gtest/gtest.h>

namespace {

using qf::GgufValueType;

std::vector<std::string> keys_of(const qf::GgufMetadata& md) {
    std::vector<std::string> keys;
    for (const auto& kv : md.entries()) keys.push_back(kv.key);
    return keys;
}

void expect_u32(const qf::GgufMetadata& md, const std::string& key, uint64_t v) {
    const auto* x = md.find(key);
    ASSERT_NE(x, nullptr) << key;
    EXPECT_EQ(x->type, GgufValueType::U32) << key;
    EXPECT_EQ(x->as_u64(), v) << key;
}

void expect_f32(const qf::GgufMetadata& md, const std::string& key, float v) {
    const auto* x = md.find(key);
    ASSERT_NE(x, nullptr) << key;
    EXPECT_EQ(x->type, GgufValueType::F32) << key;
    EXPECT_EQ(static_cast<float>(x->as_f64()), v) << key;
}

void expect_str(const qf::GgufMetadata& md, const std::string& key, const std::string& v) {
    const auto* x = md.find(key);
    ASSERT_NE(x, nullptr) << key;
    EXPECT_EQ(x->type, GgufValueType::STRING) << key;
    EXPECT_EQ(x->as_string(), v) << key;
}

qf::GgufMetadata metadata_for(const std::string& dir, uint32_t file_type) {
    auto cfg = qf::load_model_config(dir);
    auto st = qf::SafetensorsModel::open_dir(dir);
    qf::GgufMetadata md;
    qf::add_arch_metadata(cfg, file_type, md, qf::count_parameters(qf::map_hf_tensors(cfg, st)));
    return md;
}

}  // namespace

TEST(ArchMetadata, Stories260kKeysInConverterOrder) {
    auto md = metadata_for(qf::test::bundled_model("stories260k"), 1);
    const std::vector<std::string> expected = {
        "general.architecture", "general.type", "general.name", "general.size_label",
        "llama.block_count", "llama.context_length", "llama.embedding_length", "llama.feed_forward_length",
        "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.freq_base",
        "llama.attention.layer_norm_rms_epsilon", "llama.attention.key_length", "llama.attention.value_length",
        "general.file_type", "llama.vocab_size", "llama.rope.dimension_count", "general.quantization_version"};
    EXPECT_EQ(keys_of(md), expected);
    expect_str(md, "general.architecture", "llama");
    expect_str(md, "general.type", "model");
    expect_str(md, "general.name", "Stories260K");  // Python's str.title() capitalises after digits
    expect_str(md, "general.size_label", "260K");    // 260,032 parameters
    expect_u32(md, "llama.block_count", 5);
    expect_u32(md, "llama.context_length", 512);
    expect_u32(md, "llama.embedding_length", 64);
    expect_u32(md, "llama.feed_forward_length", 172);
    expect_u32(md, "llama.attention.head_count", 8);
    expect_u32(md, "llama.attention.head_count_kv", 4);
    expect_f32(md, "llama.rope.freq_base", 10000.0f);
    expect_f32(md, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    expect_u32(md, "llama.attention.key_length", 8);
    expect_u32(md, "llama.attention.value_length", 8);
    expect_u32(md, "general.file_type", 1);
    expect_u32(md, "llama.vocab_size", 512);
    expect_u32(md, "llama.rope.dimension_count", 8);
    expect_u32(md, "general.quantization_version", 2);
}

TEST(ArchMetadata, ProseModelsNameAndSize) {
    auto md = metadata_for(qf::test::bundled_model("prose-tiny"), 32);
    expect_str(md, "general.name", "Prose Tiny");
    expect_str(md, "general.size_label", "6.8M");  // 6,819,072
    expect_u32(md, "general.file_type", 32);
    EXPECT_EQ(md.find("general.basename"), nullptr);  // "prose-tiny" alone is too ambiguous for a basename
    // Without an explicit count the config gives the same total (lm_head absent <=> tied).
    qf::GgufMetadata from_config;
    qf::add_arch_metadata(qf::load_model_config(qf::test::bundled_model("prose-tiny")), 32, from_config);
    expect_str(from_config, "general.size_label", "6.8M");

    auto shared = qf::test::shared_dir();
    if (!shared) GTEST_SKIP() << "../shared is not available";
    auto base = metadata_for(*shared + "/models/prose-base", 0);
    expect_str(base, "general.name", "Prose Base");
    expect_str(base, "general.size_label", "34M");  // 33,563,136 with lm_head
    auto hf = metadata_for(*shared + "/models/stories260k/hf", 0);
    expect_str(hf, "general.name", "Hf");  // the converter names a model after its folder
}

TEST(ArchMetadata, QwenFamilies) {
    const std::string root = qf::test::scratch_dir();
    qf::test::CheckpointSpec spec;
    spec.model_type = "qwen2";
    qf::test::write_checkpoint(root + "/q2", spec);
    auto q2 = metadata_for(root + "/q2", 1);
    expect_str(q2, "general.architecture", "qwen2");
    expect_u32(q2, "qwen2.block_count", 2);
    EXPECT_EQ(q2.find("qwen2.attention.key_length"), nullptr);  // no head_dim in its config.json
    EXPECT_EQ(q2.find("qwen2.vocab_size"), nullptr);           // only LlamaModel writes these two
    EXPECT_EQ(q2.find("qwen2.rope.dimension_count"), nullptr);
    EXPECT_EQ(keys_of(q2).back(), "general.quantization_version");
    EXPECT_EQ(keys_of(q2)[keys_of(q2).size() - 2], "general.file_type");

    spec.model_type = "qwen3";
    spec.head_dim = 16;
    qf::test::write_checkpoint(root + "/q3", spec);
    auto q3 = metadata_for(root + "/q3", 1);
    expect_u32(q3, "qwen3.attention.key_length", 16);
    expect_u32(q3, "qwen3.attention.value_length", 16);
    expect_str(q3, "general.name", "Q3");
}

TEST(ArchMetadata, RopeScalingKeys) {
    qf::test::CheckpointSpec spec;
    auto cfg_json = qf::test::checkpoint_config(spec);
    cfg_json["rope_scaling"] = {{"type", "linear"}, {"factor", 2.5}};
    auto cfg = qf::parse_model_config(cfg_json, "c", "lin");
    qf::GgufMetadata md;
    qf::add_arch_metadata(cfg, 0, md);
    auto keys = keys_of(md);
    auto at = [&](const std::string& k) { return std::find(keys.begin(), keys.end(), k) - keys.begin(); };
    expect_str(md, "llama.rope.scaling.type", "linear");
    expect_f32(md, "llama.rope.scaling.factor", 2.5f);
    EXPECT_EQ(at("llama.rope.scaling.type"), at("llama.attention.head_count_kv") + 1);
    EXPECT_EQ(at("llama.rope.scaling.factor"), at("llama.rope.scaling.type") + 1);
    EXPECT_EQ(at("llama.rope.freq_base"), at("llama.rope.scaling.factor") + 1);

    cfg_json["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 32768},
                                {"attention_factor", 0.5}, {"beta_slow", 1}};
    cfg = qf::parse_model_config(cfg_json, "c", "yarn");
    md = {};
    qf::add_arch_metadata(cfg, 0, md);
    keys = keys_of(md);
    const std::vector<std::string> yarn = {"llama.rope.scaling.type", "llama.rope.scaling.factor",
                                           "llama.rope.scaling.original_context_length", "llama.rope.scaling.yarn_attn_factor",
                                           "llama.rope.scaling.yarn_beta_slow", "llama.rope.freq_base"};
    auto first = at("llama.rope.scaling.type");
    ASSERT_LT(first + yarn.size(), keys.size());
    EXPECT_EQ(std::vector<std::string>(keys.begin() + first, keys.begin() + first + yarn.size()), yarn);
    expect_str(md, "llama.rope.scaling.type", "yarn");
    expect_u32(md, "llama.rope.scaling.original_context_length", 32768);
    expect_f32(md, "llama.rope.scaling.yarn_attn_factor", 0.5f);

    // llama3 scaling is a tensor, not keys.
    cfg_json["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
    cfg = qf::parse_model_config(cfg_json, "c", "l3");
    md = {};
    qf::add_arch_metadata(cfg, 0, md);
    for (const auto& k : keys_of(md)) EXPECT_EQ(k.find("scaling"), std::string::npos) << k;
}

TEST(ArchMetadata, SamplingAndNamingHeuristics) {
    qf::test::CheckpointSpec spec;
    auto cfg_json = qf::test::checkpoint_config(spec);
    cfg_json["_name_or_path"] = "meta-llama/Llama-3.2-1B-Instruct";
    auto cfg = qf::parse_model_config(cfg_json, "c", "downloaded-7B");
    cfg.sampling = qf::parse_generation_config({{"temperature", 0.6}, {"top_p", 0.9}, {"top_k", 40}, {"repetition_penalty", 1.1}});
    qf::GgufMetadata md;
    qf::add_arch_metadata(cfg, 1, md, 1235814400);
    const std::vector<std::string> head = {
        "general.architecture", "general.type", "general.sampling.top_k", "general.sampling.top_p", "general.sampling.temp",
        "general.sampling.penalty_repeat", "general.name", "general.organization", "general.finetune", "general.basename",
        "general.size_label", "llama.block_count"};
    auto keys = keys_of(md);
    ASSERT_GE(keys.size(), head.size());
    EXPECT_EQ(std::vector<std::string>(keys.begin(), keys.begin() + head.size()), head);
    EXPECT_EQ(md.find("general.sampling.top_k")->type, GgufValueType::I32);
    EXPECT_EQ(md.find("general.sampling.top_k")->as_i64(), 40);
    expect_f32(md, "general.sampling.temp", 0.6f);
    expect_f32(md, "general.sampling.penalty_repeat", 1.1f);
    // _name_or_path wins over the folder name ("downloaded-7B" would say 7B).
    expect_str(md, "general.name", "Llama 3.2 1B Instruct");
    expect_str(md, "general.organization", "Meta Llama");
    expect_str(md, "general.basename", "Llama-3.2");
    expect_str(md, "general.finetune", "Instruct");
    expect_str(md, "general.size_label", "1B");

    // A local path in _name_or_path is ignored; then the folder name decides.
    cfg.name_or_path = "/home/user/models/x";
    md = {};
    qf::add_arch_metadata(cfg, 1, md, 7000000000);
    expect_str(md, "general.name", "Downloaded 7B");
    expect_str(md, "general.basename", "downloaded");
    expect_str(md, "general.size_label", "7B");
}

TEST(ArchMetadata, ModelIdComponentsMatchGgufPy) {
    struct Case {
        std::string id;
        int64_t params;
        std::optional<std::string> full, org, basename, finetune, version, size;
    };
    using std::nullopt;
    // Outputs of gguf-py's Metadata.get_model_id_components for these inputs.
    const std::vector<Case> cases = {
        {"meta-llama/Llama-3.2-1B-Instruct", 1235814400, "Llama-3.2-1B-Instruct", "meta-llama", "Llama-3.2", "Instruct", nullopt, "1B"},
        {"mistralai/Mistral-7B-Instruct-v0.3", 7248023552, "Mistral-7B-Instruct-v0.3", "mistralai", "Mistral", "Instruct", "v0.3", "7B"},
        {"Qwen/Qwen2.5-0.5B-Instruct", 494032768, "Qwen2.5-0.5B-Instruct", "Qwen", "Qwen2.5", "Instruct", nullopt, "0.5B"},
        {"prose-tiny", 6819072, "prose-tiny", nullopt, nullopt, nullopt, nullopt, nullopt},
        {"TheBloke/bloom-7b1-chat-q4_0", 7069016064, "bloom-7b1-chat-q4_0", "TheBloke", "bloom", "chat", nullopt, "7.1B"},
        {"Mixtral-8x7B-v0.1", 46702792704, "Mixtral-8x7B-v0.1", nullopt, "Mixtral", nullopt, "v0.1", "8x7B"},
        {"./local-model-7B", 7000000000, "local-model-7B", nullopt, "local-model", nullopt, nullopt, "7B"},
        {"Llama-2-7b-32k-chat", 6738415616, "Llama-2-7b-32k-chat", nullopt, "Llama-2", "32k-chat", nullopt, "7B"},
        {"SmolLM2-135M", 134515008, "SmolLM2-135M", nullopt, "SmolLM2", nullopt, nullopt, "135M"},
        {"my model name", 100, "my model name", nullopt, nullopt, nullopt, nullopt, nullopt},
        {"qwen3-small-1.7B-base", 1700000000, "qwen3-small-1.7B-base", nullopt, "qwen3-small", "base", nullopt, "1.7B"},
        {"phi-3-mini-4k-instruct", 3821079552, "phi-3-mini-4k-instruct", nullopt, "phi-3", "4k-instruct", nullopt, "mini"},
        {"", 10, "", nullopt, nullopt, nullopt, nullopt, nullopt},
    };
    for (const auto& c : cases) {
        auto r = qf::model_id_components(c.id, c.params);
        EXPECT_EQ(r.full_name, c.full) << c.id;
        EXPECT_EQ(r.organization, c.org) << c.id;
        EXPECT_EQ(r.basename, c.basename) << c.id;
        EXPECT_EQ(r.finetune, c.finetune) << c.id;
        EXPECT_EQ(r.version, c.version) << c.id;
        EXPECT_EQ(r.size_label, c.size) << c.id;
    }
    EXPECT_FALSE(qf::model_id_components(std::nullopt, 5).full_name.has_value());

    const std::vector<std::pair<std::string, std::string>> titles = {
        {"prose-tiny", "Prose Tiny"}, {"stories260k", "Stories260K"}, {"hf", "Hf"}, {"Meta-llama", "Meta Llama"},
        {"v1.2-model", "v1.2 Model"}, {"llama 3b", "Llama 3b"}, {"GPT-neo", "GPT Neo"}, {"it's-they're", "It'S They'Re"},
        {"abc9def-x", "Abc9Def X"}};
    for (const auto& [in, out] : titles) EXPECT_EQ(qf::id_to_title(in), out) << in;
}

TEST(ArchMetadata, SizeLabelMatchesGgufPy) {
    const std::vector<std::pair<uint64_t, std::string>> cases = {
        {260032, "260K"},   {6819072, "6.8M"},      {33563136, "34M"},        {999, "1.0K"},   {1000, "1.0K"},
        {1500, "1.5K"},     {999999, "1000K"},      {1000001, "1.0M"},        {1235814400, "1.2B"},
        {7248023552, "7.2B"}, {46702792704, "47B"}, {1500000000000, "1.5T"}, {0, "0.00K"},   {95, "0.10K"},
        {950000, "950K"},   {9950000, "10M"}};
    for (const auto& [n, label] : cases) EXPECT_EQ(qf::size_label_for_count(n), label) << n;
}
