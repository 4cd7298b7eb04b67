// qf::Tokenizer against the real llama.cpp: the same token ids as llama_tokenize
// (add_special = true, parse_special = false) for the vocabularies qforge converts —
// SentencePiece-style (prose-tiny, stories260k, prose-base) and byte-level BPE with the
// llama3, qwen2, gpt-2 and default pre-tokenizers — on hand-picked text, random text and
// valid.txt; plus the Unicode classes and the pre-tokenizer splits compared directly with
// the functions inside libllama.
#include "common/error.h"
#include "common/output_file.h"
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "model/tokenizer.h"
#include "model/unicode_tables.h"
#include "model/unicode_text.h"
#include "support/checkpoint_writer.h"
#include "support/llama_api.h"
#include "support/llama_tokenizer_support.h"
#include "support/test_paths.h"

#include <dlfcn.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <unordered_map>

namespace fs = std::filesystem;
using namespace qf::test;

namespace {

std::optional<std::string> valid_text() {
    if (auto shared = shared_dir()) return read_file(*shared + "/text/valid.txt");
    return std::nullopt;
}

// Printable form of a test string for failure messages.
std::string escaped(std::string_view s, size_t max = 200) {
    std::string out;
    for (size_t i = 0; i < s.size() && i < max; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '\n')
            out += "\\n";
        else if (c == '\t')
            out += "\\t";
        else if (c < 0x20 || c == 0x7F)
            out += fmt::format("\\x{:02x}", c);
        else
            out += static_cast<char>(c);
    }
    if (s.size() > max) out += fmt::format("... ({} bytes)", s.size());
    return out;
}

std::string ids_around(const std::vector<int32_t>& ids, size_t at) {
    std::string out;
    const size_t from = at > 4 ? at - 4 : 0;
    for (size_t i = from; i < std::min(ids.size(), at + 5); ++i) out += fmt::format("{}{}", i == at ? "*" : "", ids[i]) + " ";
    return out;
}

// A GGUF copy with some metadata replaced (tensors copied as they are).
void rewrite_gguf(const std::string& in, const std::string& out, const std::vector<qf::GgufKV>& changes) {
    qf::GgufFile src(in);
    qf::GgufMetadata md = src.metadata();
    for (const auto& kv : changes) md.set(kv.key, kv.value);
    std::vector<qf::GgufTensorPlan> plan;
    for (const auto& t : src.tensors()) plan.push_back({t.name, t.shape, t.type});
    qf::OutputFile file(out, true);
    qf::GgufWriter writer(file, md, plan, src.alignment());
    for (const auto& t : src.tensors()) writer.write_tensor_data(src.tensor_data(t));
    writer.finish();
    file.commit();
}

// A small random-weight checkpoint carrying one of the BPE test tokenizers, converted.
std::string convert_bpe_checkpoint(const std::string& tok_name, const std::string& root) {
    const std::string tok_dir = source_dir() + "/tests/data/" + tok_name;
    const std::string dir = root + "/" + tok_name + "-hf";
    fs::create_directories(dir);
    auto cfg = nlohmann::json::parse(read_file(tok_dir + "/config.json"));
    CheckpointSpec spec;
    spec.model_type = cfg["model_type"].get<std::string>();
    spec.vocab = cfg["vocab_size"].get<uint32_t>();
    spec.n_layer = 1;
    spec.config_overrides["bos_token_id"] = cfg["bos_token_id"];
    spec.config_overrides["eos_token_id"] = cfg["eos_token_id"];
    for (const auto& entry : fs::directory_iterator(tok_dir)) {
        const std::string fname = entry.path().filename().string();
        if (fname == "config.json" || entry.path().extension() == ".py") continue;
        fs::copy_file(entry.path(), dir + "/" + fname, fs::copy_options::overwrite_existing);
    }
    write_checkpoint(dir, spec);
    const std::string out = root + "/" + tok_name + ".gguf";
    std::string log;
    const int rc = run_command(fmt::format("'{}' convert '{}' --outtype f32 -o '{}' --force", qforge_binary(), dir, out), &log);
    if (rc != 0) throw qf::Error(fmt::format("converting {} failed: {}", dir, log));
    return out;
}

std::string convert_model(const std::string& dir, const std::string& out) {
    std::string log;
    const int rc = run_command(fmt::format("'{}' convert '{}' --outtype f16 -o '{}' --force", qforge_binary(), dir, out), &log);
    if (rc != 0) throw qf::Error(fmt::format("converting {} failed: {}", dir, log));
    return out;
}

struct Vocab {
    std::string path;
    std::unique_ptr<qf::GgufFile> file;
    std::unique_ptr<qf::Tokenizer> ours;
    std::unique_ptr<LlamaModel> theirs;
};

// The vocabularies under test, converted once per run. nullptr when the model is not
// available (../shared missing).
Vocab* vocab(const std::string& name) {
    static std::map<std::string, std::unique_ptr<Vocab>> cache;
    static const std::string root = [] {
        const fs::path dir = fs::path(scratch_dir()).parent_path() / "tokenizer-vocabs";
        fs::create_directories(dir);
        return dir.string();
    }();
    if (auto it = cache.find(name); it != cache.end()) return it->second.get();

    std::string path;
    if (name == "prose-tiny" || name == "stories260k") {
        path = convert_model(bundled_model(name.c_str()), root + "/" + name + ".gguf");
    } else if (name == "prose-base") {
        if (auto shared = shared_dir()) path = convert_model(*shared + "/models/prose-base", root + "/prose-base.gguf");
    } else if (name == "bpe-llama3") {
        path = convert_bpe_checkpoint("bpe-tiny", root);
    } else if (name == "bpe-qwen2") {
        path = convert_bpe_checkpoint("bpe-tiny-qwen2", root);
    } else if (name == "bpe-gpt2" || name == "bpe-default") {
        const std::string base = vocab("bpe-llama3")->path;
        path = root + "/" + name + ".gguf";
        rewrite_gguf(base, path,
                     {{"tokenizer.ggml.pre", qf::GgufValue::string(name == "bpe-gpt2" ? "gpt-2" : "default")}});
    }
    std::unique_ptr<Vocab> v;
    if (!path.empty()) {
        v = std::make_unique<Vocab>();
        v->path = path;
        v->file = std::make_unique<qf::GgufFile>(path);
        v->ours = std::make_unique<qf::Tokenizer>(qf::Tokenizer::from_gguf(*v->file));
        v->theirs = load_model(path);
    }
    return cache.emplace(name, std::move(v)).first->second.get();
}

// Compares both tokenizers on one text; returns true when equal (a failure is reported).
bool same_ids(const Vocab& v, const std::string& text, const std::string& label = "") {
    const std::vector<int32_t> ours = v.ours->encode(text, true);
    const std::vector<int32_t> theirs = tokenize(*v.theirs, text, true, false);
    if (ours == theirs) return true;
    size_t at = 0;
    while (at < ours.size() && at < theirs.size() && ours[at] == theirs[at]) ++at;
    ADD_FAILURE() << fs::path(v.path).filename().string() << " " << label << ": ids differ at " << at << " (ours "
                  << ours.size() << " ids: " << ids_around(ours, at) << "| llama.cpp " << theirs.size()
                  << " ids: " << ids_around(theirs, at) << ") for \"" << escaped(text) << "\"";
    return false;
}

// Hand-picked text: white space of every kind, contractions, digits, scripts, bytes that
// need <0x..> fallback, invalid UTF-8, text that looks like special tokens.
std::vector<std::string> fixed_texts() {
    return {
        "",
        " ",
        "  ",
        "\n",
        "Hello world",
        " Hello world",
        "Hello world ",
        "   three leading spaces",
        "trailing spaces   ",
        "tabs\tand\t\ttabs\t",
        "new\nlines\n\n\nmore\n",
        "\r\n windows \r\n line ends\r\n",
        "mixed \t\n \n\t end  \n  ",
        "          ten spaces then text",
        "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00c5ngstr\u00f6m \u00df\u00e6\u00f8",
        "e\u0301 combining acute, a\u0308 and \u0915\u093f Devanagari",
        "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3068\u4e2d\u6587\u3002\u4f60\u597d\uff0c\u4e16\u754c\uff01",
        "\ud55c\uad6d\uc5b4 \u0440\u0443\u0441\u0441\u043a\u0438\u0439 \u03b5\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u0627\u0644\u0639\u0631\u0628\u064a\u0629",
        "emoji \U0001F600\U0001F389\U0001F44D\U0001F3FD family \U0001F468\u200D\U0001F469\u200D\U0001F467 flag \U0001F1FA\U0001F1F8",
        "digits 1234567890 and 3.14159 and 1,000,000 and 2024-01-01",
        "0000000000000000000000000000000000000000000000000000000000000",
        "\u0663\u0664\u0665 Arabic-Indic, \u00bd \u00b2 \u2153 other numbers",
        "it's I'll we're THEY'RE she'S you'Ve I'M he'd 'd 's 't",
        "'s'll're've'm'd",
        "don't won't can't shouldn't y'all o'clock",
        "bytes \x01\x02\x03\x7f\x1b[0m end",
        "invalid \xff\xfe utf8 \xc3 \x80\x80 \xe2\x82 end",
        "overlong \xc0\xaf and \xe0\x80\xaf",
        "surrogate \xed\xa0\x80 half",
        "cut at the end \xe2\x98",
        "nbsp\u00a0em\u2003ideographic\u3000space\u0085nel\u2028ls",
        "punct!!! ??? ... --- ((())) [[]] {{}} \"quotes\" \u201ccurly\u201d \u2014 dash",
        "$100 + <tag> = ^~|` @user #hash %pct &amp; *star* _under_ \\back/",
        "\u0120 \u0121 \u010a byte-level look-alikes \u2581 and \u2581\u2581",
        "<s> </s> <unk> <|begin_of_text|> <|eot_id|> literal specials",
        "my\u2581tok and \u0120,my_tok and my_tok ,my_tok",
        std::string(300, 'a'),
        std::string(200, ' ') + "x",
        std::string(64, '\n'),
        "x" + std::string(100, '9') + "y",
        "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX! the-quick_brown.fox",
    };
}

// Random strings over a mixed alphabet (ASCII letters, digits, white space, accents, CJK,
// emoji, apostrophes and contractions, punctuation).
std::vector<std::string> random_texts(uint32_t seed, size_t count) {
    static const std::vector<std::string> alphabet = {
        "a", "b", "e", "l", "m", "o", "r", "s", "t", "x", "A", "E", "L", "R", "S", "T", "Z", "0", "1", "5", "9",
        " ", " ", " ", "  ", "\n", "\n\n", "\t", "\r\n", "'", "'s", "'ll", "'RE", "'t", "'Ve", ".", ",", "!", "?",
        "-", "(", ")", "\"", "\u00e9", "\u00fc", "\u00f1", "\u00c5", "\u00df", "\u03bb", "\u0436", "\u65e5", "\u672c",
        "\u4e2d", "\u6587", "\u3002", "\uac00", "\U0001F600", "\U0001F44D\U0001F3FD", "\u2014", "\u201c", "\u00a0",
        "\u0301", "\u00bd", "\u0663", "the", "and", "ing", " the", "Hello", "world"};
    std::mt19937 rng(seed);
    std::uniform_int_distribution<size_t> pick(0, alphabet.size() - 1);
    std::uniform_int_distribution<int> length(1, 40);
    std::vector<std::string> out;
    for (size_t i = 0; i < count; ++i) {
        std::string s;
        const int n = length(rng);
        for (int k = 0; k < n; ++k) s += alphabet[pick(rng)];
        out.push_back(std::move(s));
    }
    return out;
}

class TokenizerInterop : public ::testing::TestWithParam<const char*> {
protected:
    Vocab* load() {
        Vocab* v = vocab(GetParam());
        if (!v) return nullptr;
        return v;
    }
};

}  // namespace

TEST_P(TokenizerInterop, FixedTextsMatchLlamaCpp) {
    Vocab* v = load();
    if (!v) GTEST_SKIP() << "../shared not present: " << GetParam() << " not available";
    size_t same = 0;
    const auto texts = fixed_texts();
    for (const auto& t : texts) same += same_ids(*v, t);
    // SentencePiece-style splitting never decodes, so a 4-byte form above U+10FFFF is fine
    // there (llama.cpp's BPE path throws on it).
    if (v->file->metadata().get("tokenizer.ggml.model").as_string() == "llama") {
        same += same_ids(*v, "beyond unicode \xf4\x90\x80\x80 and \xf7\xbf\xbf\xbf");
    }
    std::printf("[ tokenizer ] %s: %zu fixed texts identical to llama.cpp\n", GetParam(), same);
}

TEST_P(TokenizerInterop, RandomTextsMatchLlamaCpp) {
    Vocab* v = load();
    if (!v) GTEST_SKIP() << "../shared not present: " << GetParam() << " not available";
    size_t same = 0, failures = 0;
    const auto texts = random_texts(std::hash<std::string>{}(GetParam()) & 0xFFFF, 300);
    for (const auto& t : texts) {
        if (same_ids(*v, t, "random"))
            ++same;
        else if (++failures >= 10)
            break;
    }
    EXPECT_EQ(same, texts.size());
    std::printf("[ tokenizer ] %s: %zu of %zu random texts identical to llama.cpp\n", GetParam(), same, texts.size());
}

TEST_P(TokenizerInterop, ValidPrefixMatchesLlamaCpp) {
    Vocab* v = load();
    auto text = valid_text();
    if (!v || !text) GTEST_SKIP() << "../shared not present";
    EXPECT_TRUE(same_ids(*v, text->substr(0, 20000), "valid.txt[0:20000]"));
    // Lines one by one: each starts a fresh text (leading space, BOS).
    std::istringstream lines(text->substr(0, 20000));
    std::string line;
    size_t n = 0;
    while (std::getline(lines, line)) n += same_ids(*v, line, "line");
    std::printf("[ tokenizer ] %s: valid.txt prefix and its %zu lines identical to llama.cpp\n", GetParam(), n);
}

// All of valid.txt (1 MB): equal ids, and how long each side takes.
TEST_P(TokenizerInterop, AllOfValidMatchesLlamaCppAndTiming) {
    Vocab* v = load();
    auto text = valid_text();
    if (!v || !text) GTEST_SKIP() << "../shared not present";
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    const std::vector<int32_t> ours = v->ours->encode(*text, true);
    const auto t1 = clock::now();
    const std::vector<int32_t> theirs = tokenize(*v->theirs, *text, true, false);
    const auto t2 = clock::now();
    const double ours_s = std::chrono::duration<double>(t1 - t0).count();
    const double theirs_s = std::chrono::duration<double>(t2 - t1).count();
    EXPECT_EQ(ours.size(), theirs.size());
    EXPECT_TRUE(ours == theirs);
    std::printf("[ tokenizer ] %s: valid.txt (%zu bytes) -> %zu tokens: qforge %.3f s, llama.cpp %.3f s\n", GetParam(),
                text->size(), ours.size(), ours_s, theirs_s);
    EXPECT_LT(ours_s, 2.0) << "tokenizing 1 MB should take well under two seconds";
}

TEST_P(TokenizerInterop, SpecialIdsMatchLlamaCpp) {
    Vocab* v = load();
    if (!v) GTEST_SKIP() << "../shared not present";
    const auto& fn = LlamaApi::get().fn();
    EXPECT_EQ(v->ours->n_vocab(), n_vocab(*v->theirs));
    EXPECT_EQ(v->ours->bos_id(), fn.llama_vocab_bos(v->theirs->vocab));
    EXPECT_EQ(v->ours->adds_bos(), fn.llama_vocab_get_add_bos(v->theirs->vocab));
    // Without special tokens: no BOS.
    for (const std::string t : {"Hello world", ""}) {
        EXPECT_EQ(v->ours->encode(t, false), tokenize(*v->theirs, t, false, false)) << t;
    }
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, TokenizerInterop,
                         ::testing::Values("prose-tiny", "stories260k", "prose-base", "bpe-llama3", "bpe-qwen2",
                                           "bpe-gpt2", "bpe-default"),
                         [](const auto& info) {
                             std::string n = info.param;
                             for (char& c : n)
                                 if (c == '-') c = '_';
                             return n;
                         });

namespace {

// Functions inside libllama (C++ symbols of src/unicode.cpp, same libstdc++ as ours).
struct LlamaUnicode {
    uint16_t (*flags_from_cpt)(uint32_t) = nullptr;  // returns the 16-bit unicode_cpt_flags
    std::vector<std::string> (*regex_split)(const std::string&, const std::vector<std::string>&, bool) = nullptr;
};

const LlamaUnicode& llama_unicode() {
    static const LlamaUnicode fns = [] {
        LlamaApi::get().require();
        LlamaUnicode f;
        const std::string lib = llama_dir() + "/libllama.v0.5.0.so";
        void* h = ::dlopen(lib.c_str(), RTLD_NOW | RTLD_NOLOAD);
        if (!h) throw qf::Error(fmt::format("{}: not loaded: {}", lib, ::dlerror()));
        f.flags_from_cpt = reinterpret_cast<decltype(f.flags_from_cpt)>(::dlsym(h, "_Z26unicode_cpt_flags_from_cptj"));
        f.regex_split = reinterpret_cast<decltype(f.regex_split)>(::dlsym(
            h, "_Z19unicode_regex_splitRKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEERKSt6vectorIS4_SaIS4_EEb"));
        if (!f.flags_from_cpt || !f.regex_split) throw qf::Error(fmt::format("{}: unicode functions not found", lib));
        return f;
    }();
    return fns;
}

// The expressions llama.cpp's llm_tokenizer_bpe uses for each pre-tokenizer.
std::vector<std::string> llama_regexes(qf::unicode::PreTokenizer kind) {
    using qf::unicode::PreTokenizer;
    switch (kind) {
        case PreTokenizer::kLlama3:
            return {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
        case PreTokenizer::kQwen2:
            return {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
        case PreTokenizer::kGpt2:
            return {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"};
        case PreTokenizer::kDefault:
            return {"[\\p{P}\\$\\+<=>\\^~\\|]+", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
                    "\\p{N}+", "[0-9][0-9][0-9]"};
    }
    return {};
}

// Random text over many Unicode classes, including white space of every kind, marks,
// non-ASCII numbers and punctuation, and stray bytes (never a 4-byte form above U+10FFFF,
// on which llama.cpp's splitter throws).
std::string random_unicode_text(std::mt19937& rng) {
    static const std::vector<uint32_t> cpts = {
        'a', 'Z', 'q', 'S', 'T', 'R', 'E', 'V', 'M', 'L', 'D', 's', 't', 'r', 'e', 'v', 'm', 'l', 'd', '0', '7', '9',
        ' ', ' ', ' ', '\t', '\n', '\r', '\v', '\f', '\'', '\'', '"', '.', ',', '!', '$', '+', '<', '=', '>', '^', '~',
        '|', '`', '_', '@', '#', '%', '&', '*', '(', ')', '[', ']', '{', '}', '\\', '/', ':', ';', '?', '-', 0x00, 0x01,
        0x7F, 0x85, 0xA0, 0xAD, 0xB2, 0xBD, 0xE9, 0xDF, 0x130, 0x17F, 0x212A, 0x301, 0x308, 0x3BB, 0x436, 0x5D0, 0x627,
        0x663, 0x915, 0x93F, 0x1680, 0x2003, 0x200B, 0x200D, 0x2014, 0x201C, 0x2028, 0x2029, 0x202F, 0x205F, 0x2153,
        0x2581, 0x3000, 0x3002, 0x3042, 0x4E2D, 0xAC00, 0xFF01, 0xFF10, 0xFFFD, 0x1F600, 0x1F3FD, 0x2EBF0, 0x10FFFF,
        0xE000, 0x378};
    std::uniform_int_distribution<size_t> pick(0, cpts.size() - 1);
    std::uniform_int_distribution<int> length(0, 30);
    std::uniform_int_distribution<int> percent(0, 99);
    std::uniform_int_distribution<int> byte(0x80, 0xF3);
    std::string s;
    const int n = length(rng);
    for (int i = 0; i < n; ++i) {
        if (percent(rng) < 4)
            s += static_cast<char>(byte(rng));  // a stray or truncating byte
        else
            qf::unicode::append_utf8(s, cpts[pick(rng)]);
    }
    return s;
}

}  // namespace

// Our generated table against libllama's for every code point (category and white space).
TEST(TokenizerUnicode, CodepointClassesMatchLlamaCpp) {
    const auto& fn = llama_unicode();
    size_t differ = 0;
    for (uint32_t cpt = 0; cpt < 0x110100; ++cpt) {
        const uint16_t theirs = fn.flags_from_cpt(cpt) & (qf::unicode::kCategoryMask | qf::unicode::kWhitespace);
        const uint16_t ours = qf::unicode::codepoint_flags(cpt);
        if (theirs != ours && ++differ <= 10) ADD_FAILURE() << fmt::format("U+{:04X}: ours {:#x}, llama.cpp {:#x}", cpt, ours, theirs);
    }
    EXPECT_EQ(differ, 0u);
}

// Our pre-tokenizers against llama.cpp's unicode_regex_split with the same expressions:
// the byte-encoded words must be identical.
TEST(TokenizerUnicode, PreTokenizerWordsMatchLlamaCpp) {
    using qf::unicode::PreTokenizer;
    const auto& fn = llama_unicode();
    std::vector<std::string> texts = fixed_texts();
    std::mt19937 rng(7);
    for (int i = 0; i < 3000; ++i) texts.push_back(random_unicode_text(rng));
    for (auto& t : random_texts(99, 500)) texts.push_back(std::move(t));
    if (auto valid = valid_text()) texts.push_back(valid->substr(0, 20000));
    for (PreTokenizer kind : {PreTokenizer::kLlama3, PreTokenizer::kQwen2, PreTokenizer::kGpt2, PreTokenizer::kDefault}) {
        const std::vector<std::string> regexes = llama_regexes(kind);
        size_t same = 0, failures = 0;
        for (const auto& t : texts) {
            const auto theirs = fn.regex_split(t, regexes, true);
            const auto ours = qf::unicode::bpe_words(t, kind);
            if (ours == theirs) {
                ++same;
                continue;
            }
            size_t at = 0;
            while (at < ours.size() && at < theirs.size() && ours[at] == theirs[at]) ++at;
            ADD_FAILURE() << regexes[0] << ": word " << at << " differs: ours '"
                          << (at < ours.size() ? ours[at] : "<end>") << "', llama.cpp '"
                          << (at < theirs.size() ? theirs[at] : "<end>") << "' for \"" << escaped(t) << "\"";
            if (++failures >= 10) break;
        }
        EXPECT_EQ(same, texts.size());
        std::printf("[ tokenizer ] pre-tokenizer %d: %zu of %zu texts split like llama.cpp\n", static_cast<int>(kind),
                    same, texts.size());
    }
}

namespace {

// A byte-level BPE vocabulary of realistic size, learned here from valid.txt: the 256 byte
// characters, then `n_merges` merges of the most frequent adjacent pair (ties: the smaller
// pair), each adding its result as a token — except every 37th result, left out so the
// "merged symbol not in the vocabulary" path runs. A few whole words are added without
// merges (reachable only through llama3's ignore_merges), one merge is listed twice, and
// there are control tokens and one user-defined token.
struct LearnedBpe {
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    std::vector<std::string> merges;
    uint32_t bos = 0, eos = 0;
};

LearnedBpe learn_bpe(const std::string& text, size_t n_merges) {
    using qf::unicode::PreTokenizer;
    std::map<std::string, size_t> word_counts;
    for (auto& w : qf::unicode::bpe_words(text, PreTokenizer::kLlama3)) ++word_counts[w];
    struct Word {
        std::vector<std::string> symbols;
        size_t count;
    };
    std::vector<Word> words;
    for (const auto& [w, c] : word_counts) {
        Word word{{}, c};
        for (size_t i = 0; i < w.size();) {
            const size_t len = qf::unicode::utf8_sequence_length(static_cast<uint8_t>(w[i]));
            word.symbols.push_back(w.substr(i, len));
            i += len;
        }
        words.push_back(std::move(word));
    }
    LearnedBpe bpe;
    for (int b = 0; b < 256; ++b) bpe.tokens.push_back(qf::unicode::gpt2_byte_char(static_cast<uint8_t>(b)));
    for (size_t m = 0; m < n_merges; ++m) {
        // Pair counts keyed "left right" (symbols never contain a space: it is spelled Ġ).
        std::unordered_map<std::string, size_t> pairs;
        for (const auto& w : words)
            for (size_t i = 0; i + 1 < w.symbols.size(); ++i) pairs[w.symbols[i] + " " + w.symbols[i + 1]] += w.count;
        if (pairs.empty()) break;
        auto best = pairs.begin();
        for (auto it = pairs.begin(); it != pairs.end(); ++it)
            if (it->second > best->second || (it->second == best->second && it->first < best->first)) best = it;
        const size_t space = best->first.find(' ');
        const std::string left = best->first.substr(0, space);
        const std::string right = best->first.substr(space + 1);
        bpe.merges.push_back(left + " " + right);
        if (m % 37 != 36) bpe.tokens.push_back(left + right);
        for (auto& w : words) {
            std::vector<std::string> merged;
            for (size_t i = 0; i < w.symbols.size(); ++i) {
                if (i + 1 < w.symbols.size() && w.symbols[i] == left && w.symbols[i + 1] == right) {
                    merged.push_back(left + right);
                    ++i;
                } else {
                    merged.push_back(w.symbols[i]);
                }
            }
            w.symbols = std::move(merged);
        }
    }
    bpe.merges.push_back(bpe.merges[3]);  // a duplicate: the first rank counts
    bpe.types.assign(bpe.tokens.size(), 1);
    const std::string G = qf::unicode::gpt2_byte_char(' ');
    for (const std::string& w : {G + "nevertheless", G + "Narcissa", std::string("philosophy"), G + "whatsoever"}) {
        if (std::find(bpe.tokens.begin(), bpe.tokens.end(), w) == bpe.tokens.end()) {
            bpe.tokens.push_back(w);
            bpe.types.push_back(1);
        }
    }
    bpe.bos = static_cast<uint32_t>(bpe.tokens.size());
    bpe.tokens.push_back("<|begin_of_text|>");
    bpe.types.push_back(3);
    bpe.eos = static_cast<uint32_t>(bpe.tokens.size());
    bpe.tokens.push_back("<|end_of_text|>");
    bpe.types.push_back(3);
    bpe.tokens.push_back("<tag>");  // user-defined: split out of the text before BPE
    bpe.types.push_back(4);
    return bpe;
}

// A vocabulary-only GGUF: the hyperparameters of `like`, the learned vocabulary, and `pre`.
std::string write_learned_vocab(const std::string& like, const LearnedBpe& bpe, const std::string& pre,
                                const std::string& out) {
    qf::GgufFile src(like);
    qf::GgufMetadata md;
    for (const auto& kv : src.metadata().entries())
        if (kv.key.rfind("tokenizer.", 0) != 0) md.set(kv.key, kv.value);
    if (md.find("llama.vocab_size")) md.set("llama.vocab_size", qf::GgufValue::u32(bpe.tokens.size()));
    md.set("tokenizer.ggml.model", qf::GgufValue::string("gpt2"));
    md.set("tokenizer.ggml.pre", qf::GgufValue::string(pre));
    md.set("tokenizer.ggml.tokens", qf::GgufValue::string_array(bpe.tokens));
    md.set("tokenizer.ggml.token_type", qf::GgufValue::i32_array(bpe.types));
    md.set("tokenizer.ggml.merges", qf::GgufValue::string_array(bpe.merges));
    md.set("tokenizer.ggml.bos_token_id", qf::GgufValue::u32(bpe.bos));
    md.set("tokenizer.ggml.eos_token_id", qf::GgufValue::u32(bpe.eos));
    qf::OutputFile file(out, true);
    qf::GgufWriter writer(file, md, {});
    writer.finish();
    file.commit();
    return out;
}

}  // namespace

// Larger learned BPE vocabularies (about 1500 merges) for every pre-tokenizer, loaded by
// llama.cpp as vocabulary only: fixed, random and valid.txt text must give the same ids.
TEST(TokenizerLearnedBpe, MatchesLlamaCppForEveryPreTokenizer) {
    auto text = valid_text();
    if (!text) GTEST_SKIP() << "../shared not present: valid.txt needed to learn merges";
    const LearnedBpe bpe = learn_bpe(text->substr(0, 100000), 1500);
    const std::string like = vocab("bpe-llama3")->path;
    const std::string dir = fs::path(like).parent_path().string();
    for (const char* pre : {"llama-bpe", "qwen2", "gpt-2", "default"}) {
        SCOPED_TRACE(pre);
        Vocab v;
        v.path = write_learned_vocab(like, bpe, pre, dir + "/learned-" + pre + ".gguf");
        v.file = std::make_unique<qf::GgufFile>(v.path);
        v.ours = std::make_unique<qf::Tokenizer>(qf::Tokenizer::from_gguf(*v.file));
        v.theirs = load_vocab_only(v.path);
        ASSERT_EQ(v.ours->n_vocab(), n_vocab(*v.theirs));
        size_t same = 0, total = 0;
        for (const auto& t : fixed_texts()) same += same_ids(v, t), ++total;
        for (const std::string t : {"a <tag> b", "<tag>", " <tag> <tag>x<tag>", "<ta g> <|begin_of_text|>"})
            same += same_ids(v, t), ++total;
        for (const auto& t : random_texts(2024, 300)) same += same_ids(v, t, "random"), ++total;
        same += same_ids(v, text->substr(100000, 50000), "valid.txt[100000:150000]"), ++total;
        same += same_ids(v, *text, "valid.txt"), ++total;
        EXPECT_EQ(same, total);
        std::printf("[ tokenizer ] learned BPE (%zu tokens, %zu merges), pre %s: %zu of %zu texts identical to llama.cpp\n",
                    bpe.tokens.size(), bpe.merges.size(), pre, same, total);
    }
}

namespace {

// stories260k's vocabulary with some entries replaced to exercise llama.cpp's token
// attribute rules: a user-defined token (split out of the text), a short user-defined token
// that overlaps ordinary words, a control token that llama.cpp turns user-defined
// ("<|channel|>"), a user-defined token it turns into a control token ("<|eot_id|>", then not
// parsed from text), an unknown-type token; plus `extra` metadata.
std::string write_attribute_vocab(const std::string& like, const std::string& out, const std::vector<qf::GgufKV>& extra,
                                  std::vector<std::pair<std::string, int32_t>> replaced) {
    qf::GgufFile src(like);
    qf::GgufMetadata md = src.metadata();
    std::vector<std::string> tokens;
    for (const auto& v : md.get("tokenizer.ggml.tokens").items) tokens.push_back(v.str);
    std::vector<int32_t> types;
    for (const auto& v : md.get("tokenizer.ggml.token_type").items) types.push_back(static_cast<int32_t>(v.i));
    for (auto r : std::vector<std::pair<std::string, int32_t>>{
             {"<tag>", 4}, {"zq", 4}, {"<|channel|>", 3}, {"<|eot_id|>", 4}, {"<odd>", 2}})
        replaced.push_back(r);
    size_t at = tokens.size() - 1;
    for (const auto& [text, type] : replaced) {
        // Never create a duplicate: llama.cpp aborts on one.
        if (std::find(tokens.begin(), tokens.end(), text) != tokens.end()) throw qf::Error(text + " already in vocabulary");
        tokens[at] = text;
        types[at] = type;
        --at;
    }
    md.set("tokenizer.ggml.tokens", qf::GgufValue::string_array(tokens));
    md.set("tokenizer.ggml.token_type", qf::GgufValue::i32_array(types));
    for (const auto& kv : extra) md.set(kv.key, kv.value);
    qf::OutputFile file(out, true);
    qf::GgufWriter writer(file, md, {});
    writer.finish();
    file.commit();
    return out;
}

}  // namespace

TEST(TokenizerAttributes, SpecialTokenRulesMatchLlamaCpp) {
    const std::string like = vocab("stories260k")->path;
    const std::string dir = fs::path(like).parent_path().string();
    using qf::GgufValue;
    struct Variant {
        std::string label;
        std::vector<qf::GgufKV> extra;
        std::vector<std::pair<std::string, int32_t>> tokens;
    };
    const std::vector<Variant> variants = {
        {"plain", {}, {}},
        // phi-3 by name: user-defined and control tokens strip the white space after them
        // (llama.cpp needs "<|endoftext|>" in such a vocabulary).
        {"phi3", {{"general.name", GgufValue::string("Phi-3 mini test")}}, {{"<|endoftext|>", 3}}},
        {"no-prefix-eos",
         {{"tokenizer.ggml.add_space_prefix", GgufValue::boolean(false)},
          {"tokenizer.ggml.add_bos_token", GgufValue::boolean(false)},
          {"tokenizer.ggml.add_eos_token", GgufValue::boolean(true)}},
         {}},
        // A token with U+2581 inside: merges may then cross word starts (no per-word merging).
        {"internal-space", {}, {{"e\xE2\x96\x81t", 1}, {"s\xE2\x96\x81", 1}}},
    };
    const std::vector<std::string> texts = {
        "x <tag> y", "<tag><tag>", "<tag>", " <tag> ", "a<|channel|>b <|eot_id|> c <odd> d", "zq zqzq azqb quiz",
        "<tag>   spaced  <tag>\n\nz", "<ta<tag>g>", "Once upon a time <tag> there was zq.",
        "one time, the tree, she sat; it's the tale", "his  time  he  told"};
    for (const auto& [label, extra, extra_tokens] : variants) {
        SCOPED_TRACE(label);
        Vocab v;
        v.path = write_attribute_vocab(like, dir + "/attributes-" + label + ".gguf", extra, extra_tokens);
        v.file = std::make_unique<qf::GgufFile>(v.path);
        v.ours = std::make_unique<qf::Tokenizer>(qf::Tokenizer::from_gguf(*v.file));
        v.theirs = load_vocab_only(v.path);
        size_t same = 0, total = 0;
        for (const auto& t : texts) same += same_ids(v, t), ++total;
        for (const auto& t : fixed_texts()) same += same_ids(v, t), ++total;
        for (auto t : random_texts(5, 100)) {
            t.insert(t.size() / 2, "<tag>");
            same += same_ids(v, t, "random"), ++total;
        }
        EXPECT_EQ(same, total);
        std::printf("[ tokenizer ] attribute vocabulary %s: %zu of %zu texts identical to llama.cpp\n", label.c_str(), same,
                    total);
    }
}

// A phi-3-named vocabulary without "<|endoftext|>": llama.cpp refuses it, and so do we.
TEST(TokenizerAttributes, Phi3VocabularyWithoutEndOfTextIsRefusedByBoth) {
    const std::string like = vocab("stories260k")->path;
    const std::string path = fs::path(like).parent_path().string() + "/attributes-phi3-broken.gguf";
    write_attribute_vocab(like, path, {{"general.name", qf::GgufValue::string("phi3")}}, {});
    EXPECT_THROW(load_vocab_only(path), qf::Error);
    qf::GgufFile file(path);
    try {
        (void)qf::Tokenizer::from_gguf(file);
        ADD_FAILURE() << "loaded a vocabulary llama.cpp refuses";
    } catch (const qf::Error& e) {
        EXPECT_NE(std::string(e.what()).find("<|endoftext|>"), std::string::npos) << e.what();
    }
}
