// Tokenizer export: the keys, order, value types and values that llama.cpp's
// convert_hf_to_gguf.py writes. Expected values come from the sources themselves, read here
// independently: libsentencepiece's API for tokenizer.model, nlohmann::json for the HF files,
// and the converter's rules restated in the assertions (which key, which type).
#include "hf/tokenizer_export.h"

#include "common/error.h"
#include "support/test_paths.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sentencepiece_processor.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;
using qf::GgufMetadata;
using qf::GgufValue;
using qf::GgufValueType;
using Json = nlohmann::ordered_json;

namespace {

constexpr int32_t kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6;

std::vector<std::string> keys_of(const GgufMetadata& md) {
    std::vector<std::string> keys;
    for (const auto& kv : md.entries()) keys.push_back(kv.key);
    return keys;
}

std::vector<std::string> strings_of(const GgufValue& v) {
    EXPECT_EQ(v.type, GgufValueType::ARRAY);
    EXPECT_EQ(v.elem_type, GgufValueType::STRING);
    std::vector<std::string> out;
    for (const auto& item : v.items) out.push_back(item.as_string());
    return out;
}

std::vector<int32_t> i32s_of(const GgufValue& v) {
    EXPECT_EQ(v.type, GgufValueType::ARRAY);
    EXPECT_EQ(v.elem_type, GgufValueType::I32);
    std::vector<int32_t> out;
    for (const auto& item : v.items) {
        EXPECT_EQ(item.type, GgufValueType::I32);
        out.push_back(static_cast<int32_t>(item.i));
    }
    return out;
}

std::vector<float> f32s_of(const GgufValue& v) {
    EXPECT_EQ(v.type, GgufValueType::ARRAY);
    EXPECT_EQ(v.elem_type, GgufValueType::F32);
    std::vector<float> out;
    for (const auto& item : v.items) {
        EXPECT_EQ(item.type, GgufValueType::F32);
        out.push_back(static_cast<float>(item.f));
    }
    return out;
}

uint32_t u32_of(const GgufMetadata& md, const char* key) {
    const GgufValue& v = md.get(key);
    EXPECT_EQ(v.type, GgufValueType::U32) << key;
    return static_cast<uint32_t>(v.u);
}

bool bool_of(const GgufMetadata& md, const char* key) {
    const GgufValue& v = md.get(key);
    EXPECT_EQ(v.type, GgufValueType::BOOL) << key;
    return v.u != 0;
}

std::string string_of(const GgufMetadata& md, const char* key) {
    const GgufValue& v = md.get(key);
    EXPECT_EQ(v.type, GgufValueType::STRING) << key;
    return v.as_string();
}

Json read_json(const fs::path& p) {
    std::ifstream in(p);
    return Json::parse(in);
}

void write_text(const fs::path& p, const std::string& text) {
    std::ofstream out(p, std::ios::binary);
    out << text;
}

void write_json(const fs::path& p, const Json& j) { write_text(p, j.dump(2)); }

// A private copy of a model folder's tokenizer-related files, for tests that edit them.
fs::path copy_tokenizer_dir(const fs::path& from) {
    const fs::path to = qf::test::scratch_dir();
    for (const char* name : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "config.json",
                             "special_tokens_map.json"}) {
        if (fs::exists(from / name)) fs::copy_file(from / name, to / name);
    }
    return to;
}

fs::path data_dir(const char* name) { return fs::path(qf::test::source_dir()) / "tests" / "data" / name; }

GgufMetadata export_dir(const fs::path& dir, qf::TokenizerExportOptions opt) {
    GgufMetadata md;
    qf::add_tokenizer_metadata(dir.string(), opt, md);
    return md;
}

// The error message, which must be one line and name the file.
std::string export_error(const fs::path& dir, qf::TokenizerExportOptions opt) {
    try {
        export_dir(dir, opt);
    } catch (const qf::Error& e) {
        const std::string msg = e.what();
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
        return msg;
    }
    ADD_FAILURE() << "no qf::Error for " << dir;
    return {};
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// ---------------------------------------------------------------------------------------------
// SentencePiece

// The converter's piece types from libsentencepiece flags (first match wins; no user-defined case).
int32_t spm_type(const sentencepiece::SentencePieceProcessor& sp, int id) {
    if (sp.IsUnknown(id)) return kUnknown;
    if (sp.IsControl(id)) return kControl;
    if (sp.IsUnused(id)) return kUnused;
    if (sp.IsByte(id)) return kByte;
    return kNormal;
}

void check_sentencepiece_model(const fs::path& dir, uint32_t vocab_size) {
    sentencepiece::SentencePieceProcessor sp;
    ASSERT_TRUE(sp.Load((dir / "tokenizer.model").string()).ok());
    ASSERT_EQ(sp.GetPieceSize(), static_cast<int>(vocab_size));

    const GgufMetadata md = export_dir(dir, {.vocab_size = vocab_size, .bos_token_id = 1, .eos_token_id = 2});
    // No tokenizer.json, so tokenizer_config's bos/eos/unk strings resolve to nothing: the ids
    // come from config.json only, and no unknown_token_id is written (llama.cpp defaults it to 0).
    EXPECT_EQ(keys_of(md), (std::vector<std::string>{
                               "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                               "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id",
                               "tokenizer.ggml.eos_token_id", "tokenizer.ggml.add_bos_token",
                               "tokenizer.ggml.add_eos_token"}));
    EXPECT_EQ(string_of(md, "tokenizer.ggml.model"), "llama");
    EXPECT_EQ(string_of(md, "tokenizer.ggml.pre"), "default");
    EXPECT_EQ(u32_of(md, "tokenizer.ggml.bos_token_id"), 1u);
    EXPECT_EQ(u32_of(md, "tokenizer.ggml.eos_token_id"), 2u);
    EXPECT_TRUE(bool_of(md, "tokenizer.ggml.add_bos_token"));
    EXPECT_FALSE(bool_of(md, "tokenizer.ggml.add_eos_token"));

    const auto tokens = strings_of(md.get("tokenizer.ggml.tokens"));
    const auto scores = f32s_of(md.get("tokenizer.ggml.scores"));
    const auto types = i32s_of(md.get("tokenizer.ggml.token_type"));
    ASSERT_EQ(tokens.size(), vocab_size);
    ASSERT_EQ(scores.size(), vocab_size);
    ASSERT_EQ(types.size(), vocab_size);

    // tokenizer_config.json added_tokens_decoder entries override piece, score (-1000) and type.
    std::map<int, Json> overrides;
    const Json config = read_json(dir / "tokenizer_config.json");
    if (config.contains("added_tokens_decoder"))
        for (const auto& [key, data] : config["added_tokens_decoder"].items()) overrides[std::stoi(key)] = data;

    for (int id = 0; id < static_cast<int>(vocab_size); ++id) {
        if (auto o = overrides.find(id); o != overrides.end()) {
            EXPECT_EQ(tokens[id], o->second["content"].get<std::string>()) << id;
            EXPECT_EQ(scores[id], -1000.0f) << id;
            EXPECT_EQ(types[id], o->second["special"].get<bool>() ? kControl : kUserDefined) << id;
            continue;
        }
        ASSERT_EQ(tokens[id], sp.IdToPiece(id)) << id;
        ASSERT_EQ(scores[id], sp.GetScore(id)) << id;
        ASSERT_EQ(types[id], spm_type(sp, id)) << id;
    }
    // Spot checks of a byte-fallback Llama vocabulary.
    EXPECT_EQ(tokens[3], "<0x00>");
    EXPECT_EQ(types[3], kByte);
    EXPECT_EQ(tokens[258], "<0xFF>");
    EXPECT_EQ(types[258], kByte);
    EXPECT_EQ(types[259], kNormal);
}

TEST(TokenizerExport, ProseTinySentencePieceMatchesLibrary) {
    const fs::path dir = qf::test::bundled_model("prose-tiny");
    check_sentencepiece_model(dir, 8192);
    // prose-tiny's tokenizer_config lists <unk>, <s>, </s> as special added tokens: all CONTROL.
    const GgufMetadata md = export_dir(dir, {.vocab_size = 8192, .bos_token_id = 1, .eos_token_id = 2});
    const auto tokens = strings_of(md.get("tokenizer.ggml.tokens"));
    const auto types = i32s_of(md.get("tokenizer.ggml.token_type"));
    const auto scores = f32s_of(md.get("tokenizer.ggml.scores"));
    EXPECT_EQ(tokens[0], "<unk>");
    EXPECT_EQ(types[0], kControl);
    EXPECT_EQ(scores[0], -1000.0f);
    EXPECT_EQ(tokens[1], "<s>");
    EXPECT_EQ(tokens[2], "</s>");
    EXPECT_EQ(types[2], kControl);
}

TEST(TokenizerExport, Stories260kSentencePieceMatchesLibrary) {
    const fs::path dir = qf::test::bundled_model("stories260k");
    check_sentencepiece_model(dir, 512);
    // No added_tokens_decoder: <unk> keeps the UNKNOWN type and its model score.
    const GgufMetadata md = export_dir(dir, {.vocab_size = 512, .bos_token_id = 1, .eos_token_id = 2});
    const auto types = i32s_of(md.get("tokenizer.ggml.token_type"));
    EXPECT_EQ(types[0], kUnknown);
    EXPECT_EQ(types[1], kControl);
    EXPECT_EQ(f32s_of(md.get("tokenizer.ggml.scores"))[0], 0.0f);
}

TEST(TokenizerExport, SharedProseTinyIfPresent) {
    const auto shared = qf::test::shared_dir();
    if (!shared) GTEST_SKIP() << "no shared folder (../shared) with the reference models";
    check_sentencepiece_model(fs::path(*shared) / "models" / "prose-tiny", 8192);
}

TEST(TokenizerExport, SentencePiecePadsAndTruncatesToConfigVocabSize) {
    const fs::path dir = qf::test::bundled_model("stories260k");
    const GgufMetadata md = export_dir(dir, {.vocab_size = 515});
    const auto tokens = strings_of(md.get("tokenizer.ggml.tokens"));
    const auto scores = f32s_of(md.get("tokenizer.ggml.scores"));
    const auto types = i32s_of(md.get("tokenizer.ggml.token_type"));
    ASSERT_EQ(tokens.size(), 515u);
    for (int id = 512; id < 515; ++id) {
        EXPECT_EQ(tokens[id], "[PAD" + std::to_string(id) + "]");
        EXPECT_EQ(scores[id], -10000.0f);
        EXPECT_EQ(types[id], kUnused);
    }
    // A smaller config vocab_size drops the pieces beyond it (the converter warns, no error).
    const GgufMetadata small = export_dir(dir, {.vocab_size = 300});
    EXPECT_EQ(small.get("tokenizer.ggml.tokens").items.size(), 300u);
    // Without a config vocab_size the tokenizer's own size is used.
    EXPECT_EQ(export_dir(dir, {}).get("tokenizer.ggml.tokens").items.size(), 512u);
}

TEST(TokenizerExport, SentencePieceAddedTokens) {
    const fs::path dir = copy_tokenizer_dir(qf::test::bundled_model("stories260k"));
    write_json(dir / "added_tokens.json", Json{{"<extra>", 510}, {"<far>", 900}});
    Json config = read_json(dir / "tokenizer_config.json");
    config["added_tokens_decoder"] = {
        {"511", {{"content", "\xE2\x96\x81hello\xE2\x96\x81world"}, {"special", false}}},  // user text: ▁ -> space
        {"509", {{"content", "<|im_end|>"}, {"special", false}}},                         // looks special
        {"508", {{"content", "<mine>"}, {"special", true}}},
        {"4000", {{"content", "<ignored>"}, {"special", true}}},                          // beyond vocab
    };
    write_json(dir / "tokenizer_config.json", config);
    const GgufMetadata md = export_dir(dir, {.vocab_size = 512});
    const auto tokens = strings_of(md.get("tokenizer.ggml.tokens"));
    const auto scores = f32s_of(md.get("tokenizer.ggml.scores"));
    const auto types = i32s_of(md.get("tokenizer.ggml.token_type"));
    ASSERT_EQ(tokens.size(), 512u);
    EXPECT_EQ(tokens[510], "<extra>");
    EXPECT_EQ(types[510], kUserDefined);
    EXPECT_EQ(scores[510], -1000.0f);
    EXPECT_EQ(tokens[511], " hello world");
    EXPECT_EQ(types[511], kUserDefined);
    EXPECT_EQ(tokens[509], "<|im_end|>");
    EXPECT_EQ(types[509], kControl);
    EXPECT_EQ(tokens[508], "<mine>");
    EXPECT_EQ(types[508], kControl);
    EXPECT_EQ(scores[508], -1000.0f);
}

TEST(TokenizerExport, SentencePieceSpecialIdsFollowSpecialVocabPrecedence) {
    // With a tokenizer.json beside tokenizer.model, tokenizer_config's token strings resolve through
    // its added_tokens first (in bos, eos, unk, sep, pad order); config.json only fills the gaps,
    // and an id already set is never replaced.
    const fs::path dir = copy_tokenizer_dir(qf::test::bundled_model("stories260k"));
    write_json(dir / "tokenizer.json",
               Json{{"added_tokens", Json::array({Json{{"id", 0}, {"content", "<unk>"}, {"special", true}},
                                                  Json{{"id", 2}, {"content", "</s>"}, {"special", true}}})},
                    {"model", {{"type", "BPE"}}}});
    Json config = read_json(dir / "tokenizer_config.json");
    config["pad_token"] = "</s>";
    config["add_prefix_space"] = true;
    write_json(dir / "tokenizer_config.json", config);
    Json model_config = read_json(dir / "config.json");
    model_config["eos_token_id"] = 7;   // loses against tokenizer_config's "</s>"
    model_config["pad_token_id"] = 9;   // loses against tokenizer_config's pad_token
    model_config["sep_token_id"] = 600; // out of range: skipped
    model_config["text_config"] = {{"mask_token_id", 5}};
    write_json(dir / "config.json", model_config);

    const GgufMetadata md = export_dir(dir, {.vocab_size = 512, .bos_token_id = 1});
    EXPECT_EQ(keys_of(md), (std::vector<std::string>{
                               "tokenizer.ggml.add_space_prefix", "tokenizer.ggml.model", "tokenizer.ggml.pre",
                               "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
                               "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
                               "tokenizer.ggml.padding_token_id", "tokenizer.ggml.bos_token_id",
                               "tokenizer.ggml.mask_token_id", "tokenizer.ggml.add_bos_token",
                               "tokenizer.ggml.add_eos_token"}));
    EXPECT_TRUE(bool_of(md, "tokenizer.ggml.add_space_prefix"));
    EXPECT_EQ(u32_of(md, "tokenizer.ggml.eos_token_id"), 2u);
    EXPECT_EQ(u32_of(md, "tokenizer.ggml.unknown_token_id"), 0u);
    EXPECT_EQ(u32_of(md, "tokenizer.ggml.padding_token_id"), 2u);
    EXPECT_EQ(u32_of(md, "tokenizer.ggml.bos_token_id"), 1u);
    EXPECT_EQ(u32_of(md, "tokenizer.ggml.mask_token_id"), 5u);

    // Qwen-style callers (no LlamaModel extras) get no add_space_prefix.
    const GgufMetadata qwen = export_dir(dir, {.vocab_size = 512, .llama_model_quirks = false});
    EXPECT_EQ(qwen.find("tokenizer.ggml.add_space_prefix"), nullptr);
    EXPECT_EQ(keys_of(qwen).front(), "tokenizer.ggml.model");
}

// ---------------------------------------------------------------------------------------------
// Byte-level BPE

// Byte tokens in GPT-2's bytes_to_unicode order, from its definition.
std::vector<std::string> gpt2_byte_tokens() {
    std::vector<int> bs;
    for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
    for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
    for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
    std::vector<int> cs = bs;
    int n = 0;
    for (int b = 0; b < 256; ++b) {
        if (std::find(bs.begin(), bs.end(), b) == bs.end()) cs.push_back(256 + n++);
    }
    std::vector<std::string> out;
    for (int c : cs) {
        std::string s;
        if (c < 0x80) s += static_cast<char>(c);
        else {
            s += static_cast<char>(0xC0 | (c >> 6));
            s += static_cast<char>(0x80 | (c & 0x3F));
        }
        out.push_back(s);
    }
    return out;
}

TEST(TokenizerExport, BpeLlama3Layout) {
    const fs::path dir = data_dir("bpe-tiny");
    const Json tj = read_json(dir / "tokenizer.json");
    const Json tc = read_json(dir / "tokenizer_config.json");
    const uint32_t vocab_size = read_json(dir / "config.json")["vocab_size"].get<uint32_t>();

    const GgufMetadata md = export_dir(dir, {.vocab_size = vocab_size, .bos_token_id = 328});
    // TemplateProcessing <|begin_of_text|> A -> add_bos true; its pair template has no separator
    // the converter recognises -> add_sep false. eos is <|eot_id|> from tokenizer_config.
    EXPECT_EQ(keys_of(md), (std::vector<std::string>{
                               "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                               "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
                               "tokenizer.ggml.eos_token_id", "tokenizer.ggml.add_bos_token",
                               "tokenizer.ggml.add_sep_token", "tokenizer.chat_template"}));
    EXPECT_EQ(string_of(md, "tokenizer.ggml.model"), "gpt2");
    EXPECT_EQ(string_of(md, "tokenizer.ggml.pre"), "llama-bpe");
    EXPECT_EQ(md.find("tokenizer.ggml.scores"), nullptr);

    std::map<std::string, uint32_t> added_ids;
    for (const auto& a : tj["added_tokens"]) added_ids[a["content"].get<std::string>()] = a["id"].get<uint32_t>();
    EXPECT_EQ(u32_of(md, "tokenizer.ggml.bos_token_id"), added_ids.at("<|begin_of_text|>"));
    EXPECT_EQ(u32_of(md, "tokenizer.ggml.eos_token_id"), added_ids.at("<|eot_id|>"));
    EXPECT_TRUE(bool_of(md, "tokenizer.ggml.add_bos_token"));
    EXPECT_FALSE(bool_of(md, "tokenizer.ggml.add_sep_token"));
    EXPECT_EQ(string_of(md, "tokenizer.chat_template"), tc["chat_template"].get<std::string>());

    const auto tokens = strings_of(md.get("tokenizer.ggml.tokens"));
    const auto types = i32s_of(md.get("tokenizer.ggml.token_type"));
    ASSERT_EQ(tokens.size(), vocab_size);
    ASSERT_EQ(types.size(), vocab_size);
    const auto bytes = gpt2_byte_tokens();
    for (int id = 0; id < 256; ++id) {
        EXPECT_EQ(tokens[id], bytes[id]) << id;
        EXPECT_EQ(types[id], kNormal) << id;
    }
    EXPECT_EQ(tokens[220], "\xC4\xA0");  // "Ġ", the space byte, id 220 as in GPT-2 and Llama 3
    std::vector<bool> seen(vocab_size, false);
    for (const auto& [content, id] : tj["model"]["vocab"].items()) {
        EXPECT_EQ(tokens[id.get<uint32_t>()], content);
        seen[id.get<uint32_t>()] = true;
    }
    for (const auto& a : tj["added_tokens"]) seen[a["id"].get<uint32_t>()] = true;
    for (uint32_t id = 0; id < vocab_size; ++id) {
        if (seen[id]) continue;
        EXPECT_EQ(tokens[id], "[PAD" + std::to_string(id) + "]");
        EXPECT_EQ(types[id], kUnused);
    }
    for (const char* special : {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                                "<|eot_id|>", "<|reserved_special_token_0|>"}) {
        EXPECT_EQ(tokens[added_ids.at(special)], special);
        EXPECT_EQ(types[added_ids.at(special)], kControl) << special;
    }
    // Not marked special but looks special -> CONTROL.
    EXPECT_EQ(types[added_ids.at("<|fim_hole|>")], kControl);
    // Non-normalized user token: decoded by the ByteLevel decoder ("Ġ" -> " "), then
    // clean_up_tokenization (" ," -> ",") since clean_up_tokenization_spaces is true.
    EXPECT_EQ(tokens[added_ids.at("\xC4\xA0,my_tok")], ",my_tok");
    EXPECT_EQ(types[added_ids.at("\xC4\xA0,my_tok")], kUserDefined);
    // Normalized user token: no round trip, U+2581 becomes a space.
    EXPECT_EQ(tokens[added_ids.at("my\xE2\x96\x81tok")], "my tok");
    EXPECT_EQ(types[added_ids.at("my\xE2\x96\x81tok")], kUserDefined);

    const auto merges = strings_of(md.get("tokenizer.ggml.merges"));
    ASSERT_EQ(merges.size(), tj["model"]["merges"].size());
    for (size_t i = 0; i < merges.size(); ++i) {
        const auto& pair = tj["model"]["merges"][i];
        EXPECT_EQ(merges[i], pair[0].get<std::string>() + " " + pair[1].get<std::string>());
    }
    EXPECT_EQ(merges[1], "\xC4\xA0 t");  // "Ġ t"
}

TEST(TokenizerExport, BpeQwen2Layout) {
    const fs::path dir = data_dir("bpe-tiny-qwen2");
    const Json tj = read_json(dir / "tokenizer.json");
    const Json tc = read_json(dir / "tokenizer_config.json");
    const Json cfg = read_json(dir / "config.json");
    const uint32_t vocab_size = cfg["vocab_size"].get<uint32_t>();
    const qf::TokenizerExportOptions opt{.vocab_size = vocab_size,
                                         .bos_token_id = cfg["bos_token_id"].get<uint32_t>(),
                                         .eos_token_id = cfg["eos_token_id"].get<uint32_t>(),
                                         .llama_model_quirks = false};
    const GgufMetadata md = export_dir(dir, opt);
    // Ids in SpecialVocab order: tokenizer_config resolves eos then pad; config.json adds bos.
    // The list-form chat template writes the named one, the name list, then the default.
    EXPECT_EQ(keys_of(md), (std::vector<std::string>{
                               "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                               "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.eos_token_id",
                               "tokenizer.ggml.padding_token_id", "tokenizer.ggml.bos_token_id",
                               "tokenizer.ggml.add_bos_token", "tokenizer.chat_template.tool_use",
                               "tokenizer.chat_templates", "tokenizer.chat_template"}));
    EXPECT_EQ(string_of(md, "tokenizer.ggml.pre"), "qwen2");
    std::map<std::string, uint32_t> added_ids;
    for (const auto& a : tj["added_tokens"]) added_ids[a["content"].get<std::string>()] = a["id"].get<uint32_t>();
    EXPECT_EQ(u32_of(md, "tokenizer.ggml.eos_token_id"), added_ids.at("<|im_end|>"));
    EXPECT_EQ(u32_of(md, "tokenizer.ggml.padding_token_id"), added_ids.at("<|endoftext|>"));
    EXPECT_EQ(u32_of(md, "tokenizer.ggml.bos_token_id"), added_ids.at("<|endoftext|>"));
    EXPECT_FALSE(bool_of(md, "tokenizer.ggml.add_bos_token"));
    EXPECT_EQ(string_of(md, "tokenizer.chat_template"), tc["chat_template"][0]["template"].get<std::string>());
    EXPECT_EQ(string_of(md, "tokenizer.chat_template.tool_use"), tc["chat_template"][1]["template"].get<std::string>());
    EXPECT_EQ(strings_of(md.get("tokenizer.chat_templates")), std::vector<std::string>{"tool_use"});

    const auto tokens = strings_of(md.get("tokenizer.ggml.tokens"));
    const auto types = i32s_of(md.get("tokenizer.ggml.token_type"));
    ASSERT_EQ(tokens.size(), vocab_size);
    EXPECT_EQ(types[added_ids.at("<|im_start|>")], kControl);
    EXPECT_EQ(tokens[added_ids.at("<tool_call>")], "<tool_call>");
    EXPECT_EQ(types[added_ids.at("<tool_call>")], kUserDefined);
    EXPECT_EQ(types[added_ids.at("</tool_call>")], kUserDefined);
    EXPECT_EQ(tokens[vocab_size - 1], "[PAD" + std::to_string(vocab_size - 1) + "]");
    EXPECT_EQ(types[vocab_size - 1], kUnused);

    const auto merges = strings_of(md.get("tokenizer.ggml.merges"));
    ASSERT_EQ(merges.size(), tj["model"]["merges"].size());
    for (size_t i = 0; i < merges.size(); ++i) EXPECT_EQ(merges[i], tj["model"]["merges"][i].get<std::string>());

    // Through LlamaModel's path the add_prefix_space of tokenizer_config comes first.
    qf::TokenizerExportOptions llama_opt = opt;
    llama_opt.llama_model_quirks = true;
    const GgufMetadata as_llama = export_dir(dir, llama_opt);
    EXPECT_EQ(keys_of(as_llama).front(), "tokenizer.ggml.add_space_prefix");
    EXPECT_FALSE(bool_of(as_llama, "tokenizer.ggml.add_space_prefix"));
}

TEST(TokenizerExport, ChatTemplateJinjaFallbackAndEmptyTemplate) {
    const fs::path dir = copy_tokenizer_dir(data_dir("bpe-tiny-qwen2"));
    Json tc = read_json(dir / "tokenizer_config.json");
    tc.erase("chat_template");
    write_json(dir / "tokenizer_config.json", tc);
    write_text(dir / "chat_template.jinja", "{{ bos_token }}\r\n{% for m in messages %}{{ m.content }}{% endfor %}\r");
    GgufMetadata md = export_dir(dir, {.vocab_size = 384, .llama_model_quirks = false});
    // Read in Python text mode: universal newlines.
    EXPECT_EQ(string_of(md, "tokenizer.chat_template"), "{{ bos_token }}\n{% for m in messages %}{{ m.content }}{% endfor %}\n");

    // A chat_template key in tokenizer_config wins over the .jinja file; an empty one writes nothing.
    tc["chat_template"] = "";
    write_json(dir / "tokenizer_config.json", tc);
    md = export_dir(dir, {.vocab_size = 384, .llama_model_quirks = false});
    EXPECT_EQ(md.find("tokenizer.chat_template"), nullptr);
}

TEST(TokenizerExport, MergesVariants) {
    const fs::path dir = copy_tokenizer_dir(data_dir("bpe-tiny"));
    Json tj = read_json(dir / "tokenizer.json");
    // A space inside a pair part is written as U+0120.
    tj["model"]["merges"][0] = Json::array({"a b", "c"});
    write_json(dir / "tokenizer.json", tj);
    GgufMetadata md = export_dir(dir, {.vocab_size = 344});
    EXPECT_EQ(strings_of(md.get("tokenizer.ggml.merges"))[0], "a\xC4\xA0" "b c");

    // No merges in tokenizer.json: merges.txt, with its "#version" line skipped and malformed lines ignored.
    tj["model"].erase("merges");
    write_json(dir / "tokenizer.json", tj);
    write_text(dir / "merges.txt", "#version: 0.2\nh e\r\n\xC4\xA0 t\nbad\n\nx y z\nt he\n");
    md = export_dir(dir, {.vocab_size = 344});
    EXPECT_EQ(strings_of(md.get("tokenizer.ggml.merges")), (std::vector<std::string>{"h e", "\xC4\xA0 t", "t he"}));

    // Neither: llama.cpp would refuse the file, so we refuse to write it.
    fs::remove(dir / "merges.txt");
    EXPECT_TRUE(contains(export_error(dir, {.vocab_size = 344}), "without merges"));
}

TEST(TokenizerExport, NormalizerAndTemplateEosFlags) {
    const fs::path dir = copy_tokenizer_dir(data_dir("bpe-tiny"));
    Json tj = read_json(dir / "tokenizer.json");
    tj["normalizer"] = {{"type", "Sequence"}, {"normalizers", Json::array({Json{{"type", "Lowercase"}}})}};
    // A template ending in <|end_of_text|> while tokenizer_config's eos is <|eot_id|>: the
    // converter makes the old eos the eot token and the template's last token the eos.
    auto& tp = tj["post_processor"]["processors"][1];
    tp["single"].push_back({{"SpecialToken", {{"id", "<|end_of_text|>"}, {"type_id", 0}}}});
    tp.erase("pair");
    write_json(dir / "tokenizer.json", tj);
    const GgufMetadata md = export_dir(dir, {.vocab_size = 344});
    EXPECT_EQ(keys_of(md), (std::vector<std::string>{
                               "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                               "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
                               "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                               "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
                               "tokenizer.chat_template", "tokenizer.ggml.normalizer.lowercase"}));
    EXPECT_EQ(u32_of(md, "tokenizer.ggml.eos_token_id"), 329u);  // <|end_of_text|>
    EXPECT_EQ(u32_of(md, "tokenizer.ggml.eot_token_id"), 332u);  // <|eot_id|>
    EXPECT_TRUE(bool_of(md, "tokenizer.ggml.add_eos_token"));
    EXPECT_TRUE(bool_of(md, "tokenizer.ggml.normalizer.lowercase"));
}

TEST(TokenizerExport, RobertaPostProcessorFlagsAndSeparator) {
    const fs::path dir = copy_tokenizer_dir(data_dir("bpe-tiny-qwen2"));
    Json tj = read_json(dir / "tokenizer.json");
    // A lone (non-Sequence) RobertaProcessing: add bos/eos/sep, and its cls/sep strings fill the
    // tokenizer_config gaps (cls has no GGUF key, so only sep shows).
    tj["post_processor"] = {{"type", "RobertaProcessing"},
                            {"sep", Json::array({"<|im_end|>", 322})},
                            {"cls", Json::array({"<|endoftext|>", 320})},
                            {"trim_offsets", true},
                            {"add_prefix_space", false}};
    write_json(dir / "tokenizer.json", tj);
    const GgufMetadata md = export_dir(dir, {.vocab_size = 384, .llama_model_quirks = false});
    EXPECT_EQ(keys_of(md), (std::vector<std::string>{
                               "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                               "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.eos_token_id",
                               "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.padding_token_id",
                               "tokenizer.ggml.bos_token_id", "tokenizer.ggml.add_bos_token",
                               "tokenizer.ggml.add_eos_token", "tokenizer.ggml.add_sep_token",
                               "tokenizer.chat_template.tool_use", "tokenizer.chat_templates",
                               "tokenizer.chat_template"}));
    EXPECT_EQ(u32_of(md, "tokenizer.ggml.seperator_token_id"), 322u);
    // tokenizer_config's add_bos_token false overrides the processor's true, in the first slot.
    EXPECT_FALSE(bool_of(md, "tokenizer.ggml.add_bos_token"));
    EXPECT_TRUE(bool_of(md, "tokenizer.ggml.add_eos_token"));
    EXPECT_TRUE(bool_of(md, "tokenizer.ggml.add_sep_token"));
}

// ---------------------------------------------------------------------------------------------
// Errors

TEST(TokenizerExport, ErrorMissingTokenizer) {
    const fs::path dir = qf::test::scratch_dir();
    write_json(dir / "config.json", Json{{"vocab_size", 10}});
    const std::string msg = export_error(dir, {.vocab_size = 10});
    EXPECT_EQ(msg, dir.string() + ": no tokenizer.model or tokenizer.json");
    EXPECT_TRUE(contains(export_error(dir / "absent", {}), "not a directory"));
}

TEST(TokenizerExport, ErrorMalformedFiles) {
    const fs::path dir = copy_tokenizer_dir(data_dir("bpe-tiny"));
    const std::string good = [&] {
        std::ifstream in(dir / "tokenizer.json");
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }();
    write_text(dir / "tokenizer.json", good.substr(0, good.size() / 2));
    std::string msg = export_error(dir, {.vocab_size = 344});
    EXPECT_TRUE(contains(msg, (dir / "tokenizer.json").string() + ": malformed JSON")) << msg;

    write_text(dir / "tokenizer.json", "[1, 2]");
    EXPECT_TRUE(contains(export_error(dir, {.vocab_size = 344}), "tokenizer.json: expected a JSON object"));

    Json tj = Json::parse(good);
    tj["model"]["vocab"]["!"] = "zero";
    write_json(dir / "tokenizer.json", tj);
    EXPECT_TRUE(contains(export_error(dir, {.vocab_size = 344}), "invalid id"));

    tj = Json::parse(good);
    tj["model"]["vocab"]["\"dup"] = 5;  // id 5 already belongs to another token
    write_json(dir / "tokenizer.json", tj);
    EXPECT_TRUE(contains(export_error(dir, {.vocab_size = 344}), "token id 5 is used by both"));

    tj = Json::parse(good);
    tj["model"]["type"] = "WordPiece";
    write_json(dir / "tokenizer.json", tj);
    EXPECT_TRUE(contains(export_error(dir, {.vocab_size = 344}), "byte-level BPE only"));

    write_text(dir / "tokenizer.json", good);
    write_text(dir / "tokenizer_config.json", "{\"chat_template\": ");
    EXPECT_TRUE(contains(export_error(dir, {.vocab_size = 344}), "tokenizer_config.json: malformed JSON"));

    const fs::path spm = copy_tokenizer_dir(qf::test::bundled_model("stories260k"));
    write_text(spm / "tokenizer.model", "not a protobuf");
    EXPECT_TRUE(contains(export_error(spm, {.vocab_size = 512}), "tokenizer.model: cannot load SentencePiece model"));
}

TEST(TokenizerExport, ErrorUnknownPreTokenizer) {
    const fs::path dir = copy_tokenizer_dir(data_dir("bpe-tiny"));
    Json tj = read_json(dir / "tokenizer.json");
    const std::string gpt2_regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
    tj["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = gpt2_regex;
    write_json(dir / "tokenizer.json", tj);
    std::string msg = export_error(dir, {.vocab_size = 344});
    EXPECT_TRUE(contains(msg, (dir / "tokenizer.json").string() + ": unrecognised pre-tokenizer")) << msg;
    EXPECT_TRUE(contains(msg, gpt2_regex)) << msg;
    EXPECT_TRUE(contains(msg, "supported: llama-bpe (Llama 3), qwen2")) << msg;

    // GPT-2 itself: a lone ByteLevel pre-tokenizer with its built-in regex.
    tj["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
    write_json(dir / "tokenizer.json", tj);
    EXPECT_TRUE(contains(export_error(dir, {.vocab_size = 344}), "unrecognised pre-tokenizer"));

    // The Llama 3 regex but ByteLevel applying its own regex too: a different tokenizer.
    tj = read_json(data_dir("bpe-tiny") / "tokenizer.json");
    tj["pre_tokenizer"]["pretokenizers"][1]["use_regex"] = true;
    write_json(dir / "tokenizer.json", tj);
    EXPECT_TRUE(contains(export_error(dir, {.vocab_size = 344}), "unrecognised pre-tokenizer"));

    // SentencePiece-style BPE in tokenizer.json (byte_fallback) is not byte-level.
    tj = read_json(data_dir("bpe-tiny") / "tokenizer.json");
    tj["model"]["byte_fallback"] = true;
    write_json(dir / "tokenizer.json", tj);
    EXPECT_TRUE(contains(export_error(dir, {.vocab_size = 344}), "byte_fallback"));
}

TEST(TokenizerExport, ErrorVocabLargerThanConfig) {
    const fs::path dir = data_dir("bpe-tiny");
    // The highest id is the last added token (336); config vocab_size 300 cannot hold it.
    const std::string msg = export_error(dir, {.vocab_size = 300});
    EXPECT_TRUE(contains(msg, (dir / "tokenizer.json").string() + ": token id 336 does not fit vocab_size 300")) << msg;
    EXPECT_EQ(export_dir(dir, {.vocab_size = 337}).get("tokenizer.ggml.tokens").items.size(), 337u);
}

TEST(TokenizerExport, CodeLlamaAndGraniteQuirks) {
    const fs::path dir = data_dir("bpe-tiny-qwen2");
    // Only the tokenizer size matters for these switches; ids beyond the real vocab are PAD.
    GgufMetadata md = export_dir(dir, {.vocab_size = 32016});
    EXPECT_EQ(u32_of(md, "tokenizer.ggml.eot_token_id"), 32010u);
    EXPECT_EQ(md.find("tokenizer.ggml.prefix_token_id"), nullptr);  // no GGUFWriter handler
    EXPECT_EQ(keys_of(md).back(), "tokenizer.ggml.eot_token_id");
    md = export_dir(dir, {.vocab_size = 49152});
    EXPECT_FALSE(bool_of(md, "tokenizer.ggml.add_bos_token"));
    md = export_dir(dir, {.vocab_size = 32016, .llama_model_quirks = false});
    EXPECT_EQ(md.find("tokenizer.ggml.eot_token_id"), nullptr);
}

}  // namespace
