// qf::Tokenizer on small hand-made vocabularies: errors for malformed or unsupported
// vocabularies, BOS/EOS handling, and merge results worked out by hand from the rules of
// llama.cpp's tokenizers (equality with llama.cpp itself is tests/interop/test_tokenizer_interop.cpp).
#include "common/error.h"
#include "common/output_file.h"
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "model/tokenizer.h"
#include "model/unicode_text.h"
#include "support/test_paths.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>

namespace {

using qf::GgufMetadata;
using qf::GgufValue;
using qf::Tokenizer;

// Writes a GGUF with this metadata and no tensors; returns its path.
std::string write_gguf(const GgufMetadata& md, const std::string& name) {
    static int counter = 0;
    const std::string path = fmt::format("{}/{}-{}.gguf", qf::test::scratch_dir(), name, counter++);
    qf::OutputFile out(path, true);
    qf::GgufWriter writer(out, md, {});
    writer.finish();
    out.commit();
    return path;
}

Tokenizer load(const GgufMetadata& md, const std::string& name = "vocab") {
    qf::GgufFile file(write_gguf(md, name));
    return Tokenizer::from_gguf(file);
}

// The message of the qf::Error that loading throws ("" when it does not throw).
std::string load_error(const GgufMetadata& md, const std::string& name = "bad") {
    try {
        qf::GgufFile file(write_gguf(md, name));
        (void)Tokenizer::from_gguf(file);
    } catch (const qf::Error& e) {
        return e.what();
    }
    return "";
}

// SentencePiece-style: <unk> <s> </s>, the 256 byte tokens <0x00>..<0xFF> (ids 3..258), then
// `pieces` with their scores (ids from 259).
struct SpmVocab {
    std::vector<std::string> tokens{"<unk>", "<s>", "</s>"};
    std::vector<float> scores{0, 0, 0};
    std::vector<int32_t> types{2, 3, 3};

    explicit SpmVocab(const std::vector<std::pair<std::string, float>>& pieces) {
        for (int b = 0; b < 256; ++b) {
            tokens.push_back(fmt::format("<0x{:02X}>", b));
            scores.push_back(0);
            types.push_back(6);
        }
        for (const auto& [text, score] : pieces) add(text, score);
    }
    int32_t add(const std::string& text, float score, int32_t type = 1) {
        tokens.push_back(text);
        scores.push_back(score);
        types.push_back(type);
        return static_cast<int32_t>(tokens.size() - 1);
    }
    int32_t id(const std::string& text) const {
        auto it = std::find(tokens.begin(), tokens.end(), text);
        EXPECT_NE(it, tokens.end()) << text;
        return static_cast<int32_t>(it - tokens.begin());
    }
    static int32_t byte(uint8_t b) { return 3 + b; }
    GgufMetadata metadata() const {
        GgufMetadata md;
        md.set("general.architecture", GgufValue::string("llama"));
        md.set("tokenizer.ggml.model", GgufValue::string("llama"));
        md.set("tokenizer.ggml.tokens", GgufValue::string_array(tokens));
        md.set("tokenizer.ggml.scores", GgufValue::f32_array(scores));
        md.set("tokenizer.ggml.token_type", GgufValue::i32_array(types));
        return md;
    }
};

const std::string kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// Byte-level BPE over a handful of characters; token ids in insertion order.
struct BpeVocab {
    std::vector<std::string> tokens;
    std::vector<std::string> merges;
    std::string pre = "gpt-2";

    BpeVocab() {
        for (const char* t : {"h", "e", "l", "o", "w", "r", "d", "\xC4\xA0" /* Ġ: space */, "!", "a", "b", "c"})
            tokens.push_back(t);
    }
    int32_t id(const std::string& text) const {
        auto it = std::find(tokens.begin(), tokens.end(), text);
        EXPECT_NE(it, tokens.end()) << text;
        return static_cast<int32_t>(it - tokens.begin());
    }
    // Adds the merge "left right" and its result as a token.
    void merge(const std::string& left, const std::string& right) {
        merges.push_back(left + " " + right);
        tokens.push_back(left + right);
    }
    GgufMetadata metadata() const {
        GgufMetadata md;
        md.set("general.architecture", GgufValue::string("llama"));
        md.set("tokenizer.ggml.model", GgufValue::string("gpt2"));
        md.set("tokenizer.ggml.pre", GgufValue::string(pre));
        md.set("tokenizer.ggml.tokens", GgufValue::string_array(tokens));
        md.set("tokenizer.ggml.merges", GgufValue::string_array(merges));
        return md;
    }
};

const std::string G = "\xC4\xA0";  // Ġ

BpeVocab hello_world_vocab() {
    BpeVocab v;
    v.merge("h", "e");
    v.merge("l", "l");
    v.merge("he", "ll");
    v.merge("hell", "o");
    v.merge("o", "r");
    v.merge(G, "w");
    v.merge(G + "w", "or");
    v.merge("l", "d");
    v.merge(G + "wor", "ld");
    return v;
}

}  // namespace

// ---- errors ------------------------------------------------------------------------------

TEST(Tokenizer, MissingVocabularyNamesTheFile) {
    GgufMetadata md;
    md.set("general.architecture", GgufValue::string("llama"));
    const std::string err = load_error(md, "novocab");
    EXPECT_NE(err.find("novocab"), std::string::npos) << err;
    EXPECT_NE(err.find("tokenizer.ggml.model"), std::string::npos) << err;

    SpmVocab spm({});
    md = spm.metadata();
    md.erase("tokenizer.ggml.tokens");
    EXPECT_NE(load_error(md).find("tokenizer.ggml.tokens missing"), std::string::npos);
}

TEST(Tokenizer, RefusesUnknownModelAndPreTokenizer) {
    SpmVocab spm({});
    GgufMetadata md = spm.metadata();
    md.set("tokenizer.ggml.model", GgufValue::string("bert"));
    EXPECT_NE(load_error(md).find("unsupported tokenizer model 'bert'"), std::string::npos);

    BpeVocab bpe = hello_world_vocab();
    for (const char* pre : {"falcon", "gpt2", "deepseek-coder"}) {
        bpe.pre = pre;
        const std::string err = load_error(bpe.metadata(), "unknownpre");
        EXPECT_NE(err.find(fmt::format("unsupported pre-tokenizer '{}'", pre)), std::string::npos) << err;
        EXPECT_NE(err.find("unknownpre"), std::string::npos) << err;
        EXPECT_EQ(err.find('\n'), std::string::npos) << "one line: " << err;
    }
    // No pre-tokenizer at all is llama.cpp's "default".
    md = bpe.metadata();
    md.erase("tokenizer.ggml.pre");
    EXPECT_EQ(load_error(md), "");
}

TEST(Tokenizer, RefusesMalformedArrays) {
    SpmVocab spm({{"a", -1}});
    GgufMetadata md = spm.metadata();
    md.set("tokenizer.ggml.tokens", GgufValue::i32_array({1, 2, 3}));
    EXPECT_NE(load_error(md).find("tokenizer.ggml.tokens is an array of i32, expected an array of str"), std::string::npos);

    md = spm.metadata();
    md.set("tokenizer.ggml.scores", GgufValue::f32_array({0, 0}));
    EXPECT_NE(load_error(md).find(fmt::format("tokenizer.ggml.scores has 2 entries for {} tokens", spm.tokens.size())), std::string::npos);

    md = spm.metadata();
    md.set("tokenizer.ggml.token_type", GgufValue::f32_array(std::vector<float>(spm.tokens.size(), 1.0f)));
    EXPECT_NE(load_error(md).find("tokenizer.ggml.token_type is an array of f32, expected an array of i32"), std::string::npos);

    md = spm.metadata();
    md.set("tokenizer.ggml.tokens", GgufValue::string_array({}));
    md.set("tokenizer.ggml.scores", GgufValue::f32_array({}));
    md.set("tokenizer.ggml.token_type", GgufValue::i32_array({}));
    EXPECT_NE(load_error(md).find("is empty"), std::string::npos);

    SpmVocab dup({{"a", -1}, {"a", -2}});
    EXPECT_NE(load_error(dup.metadata()).find("has 'a' twice"), std::string::npos);

    BpeVocab bpe = hello_world_vocab();
    md = bpe.metadata();
    md.erase("tokenizer.ggml.merges");
    EXPECT_NE(load_error(md).find("without tokenizer.ggml.merges"), std::string::npos);
}

TEST(Tokenizer, RefusesKeysOfTheWrongType) {
    SpmVocab spm({});
    GgufMetadata md = spm.metadata();
    md.set("tokenizer.ggml.bos_token_id", GgufValue::i32(1));  // llama.cpp wants u32
    EXPECT_NE(load_error(md).find("tokenizer.ggml.bos_token_id has type i32, expected u32"), std::string::npos);
    md = spm.metadata();
    md.set("tokenizer.ggml.add_bos_token", GgufValue::u8(1));
    EXPECT_NE(load_error(md).find("tokenizer.ggml.add_bos_token has type u8, expected bool"), std::string::npos);
}

TEST(Tokenizer, RefusesPhi3VocabularyWithoutItsTokens) {
    // llama.cpp strips white space after special tokens for models named phi-3 and looks up
    // "<|endoftext|>" (among others) to do so; without it the vocabulary does not load.
    SpmVocab spm({{kSpace, -1}});
    GgufMetadata md = spm.metadata();
    md.set("general.name", GgufValue::string("Phi-3 Mini"));
    EXPECT_NE(load_error(md).find("needs the token '<|endoftext|>'"), std::string::npos);
    spm.add("<|endoftext|>", 0, 3);
    md = spm.metadata();
    md.set("general.name", GgufValue::string("Phi-3 Mini"));
    EXPECT_EQ(load_error(md), "");
}

// ---- BOS / EOS and empty text -------------------------------------------------------------

TEST(Tokenizer, SpmDefaultsAddBosAndHandleEmptyText) {
    SpmVocab spm({{kSpace, -1}});
    Tokenizer tok = load(spm.metadata());
    EXPECT_EQ(tok.n_vocab(), static_cast<int64_t>(spm.tokens.size()));
    EXPECT_EQ(tok.bos_id(), 1);  // llama.cpp's SPM defaults without keys
    EXPECT_EQ(tok.eos_id(), 2);
    EXPECT_TRUE(tok.adds_bos());
    EXPECT_EQ(tok.encode(""), std::vector<int32_t>{1});
    EXPECT_EQ(tok.encode("", false), std::vector<int32_t>{});
    EXPECT_EQ(tok.encode(" ", false), (std::vector<int32_t>{spm.id(kSpace), spm.id(kSpace)}));  // prefix + the space
    EXPECT_EQ(tok.token_text(1), "<s>");
    EXPECT_THROW(tok.token_text(-1), qf::Error);
    EXPECT_THROW(tok.token_text(static_cast<int32_t>(spm.tokens.size())), qf::Error);
}

TEST(Tokenizer, BosAndEosFollowTheKeys) {
    SpmVocab spm({{kSpace, -1}, {"a", -1}});
    GgufMetadata md = spm.metadata();
    md.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(false));
    md.set("tokenizer.ggml.add_eos_token", GgufValue::boolean(true));
    md.set("tokenizer.ggml.bos_token_id", GgufValue::u32(2));
    md.set("tokenizer.ggml.eos_token_id", GgufValue::u32(1));
    Tokenizer tok = load(md);
    EXPECT_FALSE(tok.adds_bos());
    EXPECT_EQ(tok.bos_id(), 2);
    EXPECT_EQ(tok.eos_id(), 1);
    EXPECT_EQ(tok.encode("a"), (std::vector<int32_t>{spm.id(kSpace), spm.id("a"), 1}));
    EXPECT_EQ(tok.encode("a", false), (std::vector<int32_t>{spm.id(kSpace), spm.id("a")}));
    EXPECT_EQ(tok.encode(""), std::vector<int32_t>{1});  // EOS alone

    // An id key outside the vocabulary keeps the default (as llama.cpp does).
    md = spm.metadata();
    md.set("tokenizer.ggml.bos_token_id", GgufValue::u32(100000));
    EXPECT_EQ(load(md).bos_id(), 1);
}

TEST(Tokenizer, BpeAddsBosOnlyForLlama3StyleOrWhenAsked) {
    BpeVocab bpe = hello_world_vocab();
    Tokenizer gpt2 = load(bpe.metadata());
    EXPECT_FALSE(gpt2.adds_bos());
    EXPECT_EQ(gpt2.bos_id(), 11);  // llama.cpp's BPE default id
    EXPECT_EQ(gpt2.encode(""), std::vector<int32_t>{});

    bpe.pre = "llama-bpe";
    Tokenizer llama3 = load(bpe.metadata());
    EXPECT_TRUE(llama3.adds_bos());
    EXPECT_EQ(llama3.encode(""), std::vector<int32_t>{11});

    GgufMetadata md = bpe.metadata();
    md.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(false));
    EXPECT_EQ(load(md).encode("hello"), std::vector<int32_t>{bpe.id("hello")});

    // A default BOS id beyond a small vocabulary is dropped; asking for BOS then fails.
    BpeVocab small;
    small.tokens.resize(5);
    small.pre = "llama-bpe";
    Tokenizer no_bos = load(small.metadata());
    EXPECT_EQ(no_bos.bos_id(), -1);
    EXPECT_THROW(no_bos.encode("h"), qf::Error);
    EXPECT_EQ(no_bos.encode("h", false), std::vector<int32_t>{small.id("h")});
}

// ---- merges worked out by hand --------------------------------------------------------------

TEST(Tokenizer, SpmMergesByScoreLeftmostFirstWithByteFallback) {
    SpmVocab spm({{kSpace, -1}, {"h", -2}, {"e", -2}, {"l", -2}, {"o", -2}, {"a", -2}, {"he", -3}, {"ll", -1.5f},
                  {"llo", -2}, {"hello", -2.5f}, {kSpace + "hello", -1}, {"aa", -1}});
    Tokenizer tok = load(spm.metadata());
    // "▁hello": ll (-1.5) first, then llo (-2), he (-3), hello, ▁hello.
    EXPECT_EQ(tok.encode("hello"), (std::vector<int32_t>{1, spm.id(kSpace + "hello")}));
    // Equal scores: the leftmost pair merges first, so "aaa" is [aa][a], not [a][aa].
    EXPECT_EQ(tok.encode("aaa", false), (std::vector<int32_t>{spm.id(kSpace), spm.id("aa"), spm.id("a")}));
    // Not in the vocabulary: UTF-8 bytes as <0xNN> tokens.
    EXPECT_EQ(tok.encode("\xC3\xA9", false), (std::vector<int32_t>{spm.id(kSpace), SpmVocab::byte(0xC3), SpmVocab::byte(0xA9)}));
    // Spaces inside the text become U+2581 too; invalid bytes fall back one by one.
    EXPECT_EQ(tok.encode("a \xFF", false),
              (std::vector<int32_t>{spm.id(kSpace), spm.id("a"), spm.id(kSpace), SpmVocab::byte(0xFF)}));

    GgufMetadata md = spm.metadata();
    md.set("tokenizer.ggml.add_space_prefix", GgufValue::boolean(false));
    EXPECT_EQ(load(md).encode("hello", false), std::vector<int32_t>{spm.id("hello")});
}

TEST(Tokenizer, SpmUserDefinedTokensAreSplitOutFirst) {
    SpmVocab spm({{kSpace, -1}, {"a", -1}, {"b", -1}});
    const int32_t tag = spm.add("<tag>", 0, 4);   // user-defined
    const int32_t ctl = spm.add("<ctl>", 0, 3);   // control: not parsed from text
    Tokenizer tok = load(spm.metadata());
    const int32_t sp = spm.id(kSpace);
    // Each text piece gets its own leading space after a user-defined token.
    EXPECT_EQ(tok.encode("a<tag>b"), (std::vector<int32_t>{1, sp, spm.id("a"), tag, sp, spm.id("b")}));
    EXPECT_EQ(tok.encode("<tag>", false), std::vector<int32_t>{tag});
    const std::vector<int32_t> control_text = tok.encode("<ctl>", false);
    EXPECT_EQ(std::count(control_text.begin(), control_text.end(), ctl), 0);
}

TEST(Tokenizer, BpeMergesByRankAndDropsUnknownBytes) {
    BpeVocab bpe = hello_world_vocab();
    Tokenizer tok = load(bpe.metadata());
    // gpt-2 splits "hello world!" into "hello", "Ġworld", "!".
    EXPECT_EQ(tok.encode("hello world!"), (std::vector<int32_t>{bpe.id("hello"), bpe.id(G + "world"), bpe.id("!")}));
    // Rank ties cannot happen within one merge; "lll" merges its leftmost pair.
    EXPECT_EQ(tok.encode("lll"), (std::vector<int32_t>{bpe.id("ll"), bpe.id("l")}));
    // "z" is neither a token nor a byte character in the vocabulary: llama.cpp drops it.
    EXPECT_EQ(tok.encode("hz"), std::vector<int32_t>{bpe.id("h")});
}

TEST(Tokenizer, Llama3WholeWordTokensSkipMerges) {
    BpeVocab bpe = hello_world_vocab();
    bpe.tokens.push_back("abc");  // no merges lead to it
    bpe.pre = "llama-bpe";
    GgufMetadata md = bpe.metadata();
    md.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(false));
    EXPECT_EQ(load(md).encode("abc"), std::vector<int32_t>{bpe.id("abc")});
    bpe.pre = "qwen2";
    EXPECT_EQ(load(bpe.metadata()).encode("abc"), (std::vector<int32_t>{bpe.id("a"), bpe.id("b"), bpe.id("c")}));
}

TEST(Tokenizer, BpePreTokenizersSplitDigitsDifferently) {
    BpeVocab bpe;
    for (const char* d : {"1", "2", "3", "4", "12", "123", "34", "1234"}) bpe.tokens.push_back(d);
    bpe.merges = {"1 2", "12 3", "3 4", "123 4"};
    bpe.pre = "llama-bpe";  // \p{N}{1,3}: "123" "4"
    GgufMetadata md = bpe.metadata();
    md.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(false));
    EXPECT_EQ(load(md).encode("1234"), (std::vector<int32_t>{bpe.id("123"), bpe.id("4")}));
    bpe.pre = "qwen2";  // \p{N}: one digit per word
    EXPECT_EQ(load(bpe.metadata()).encode("1234"),
              (std::vector<int32_t>{bpe.id("1"), bpe.id("2"), bpe.id("3"), bpe.id("4")}));
    bpe.pre = "gpt-2";  // ?\p{N}+: one word
    EXPECT_EQ(load(bpe.metadata()).encode("1234"), std::vector<int32_t>{bpe.id("1234")});
}

TEST(Tokenizer, SameVocabularyComparesEverything) {
    SpmVocab spm({{kSpace, -1}, {"a", -1}});
    Tokenizer a = load(spm.metadata());
    Tokenizer b = load(spm.metadata());
    EXPECT_TRUE(a.same_vocabulary(b));
    SpmVocab other = spm;
    other.scores.back() = -2;
    EXPECT_FALSE(a.same_vocabulary(load(other.metadata())));
    GgufMetadata md = spm.metadata();
    md.set("tokenizer.ggml.bos_token_id", GgufValue::u32(2));
    EXPECT_FALSE(a.same_vocabulary(load(md)));
    EXPECT_FALSE(a.same_vocabulary(load(hello_world_vocab().metadata())));
}

// ---- the pieces ----------------------------------------------------------------------------

TEST(TokenizerUnicode, DecodesLikeLlamaCpp) {
    using qf::unicode::decode_utf8;
    EXPECT_EQ(decode_utf8("a\xC3\xA9"), (std::vector<uint32_t>{'a', 0xE9}));
    EXPECT_EQ(decode_utf8("\xF0\x9F\x98\x80"), std::vector<uint32_t>{0x1F600});
    // Stray and cut-short bytes: one U+FFFD each, decoding resumes at the next byte.
    EXPECT_EQ(decode_utf8("\x80\xC3"), (std::vector<uint32_t>{0xFFFD, 0xFFFD}));
    EXPECT_EQ(decode_utf8("\xE2\x82x"), (std::vector<uint32_t>{0xFFFD, 0xFFFD, 'x'}));
    // Overlong forms are taken as written (llama.cpp does not check them).
    EXPECT_EQ(decode_utf8("\xC0\xAF"), std::vector<uint32_t>{0x2F});
    EXPECT_EQ(decode_utf8("\xF4\x90\x80\x80"), std::vector<uint32_t>{0xFFFD});
}

TEST(TokenizerUnicode, Gpt2ByteCharacters) {
    using qf::unicode::gpt2_byte_char;
    EXPECT_EQ(gpt2_byte_char('a'), "a");
    EXPECT_EQ(gpt2_byte_char(' '), "\xC4\xA0");   // U+0120 Ġ
    EXPECT_EQ(gpt2_byte_char('\n'), "\xC4\x8A");  // U+010A Ċ
    EXPECT_EQ(gpt2_byte_char(0x00), "\xC4\x80");  // U+0100
    EXPECT_EQ(gpt2_byte_char(0xAD), "\xC5\x83");  // U+0143: the 68th non-printable byte
    EXPECT_EQ(gpt2_byte_char(0xE9), "\xC3\xA9");
}

TEST(TokenizerUnicode, Llama3SplitsContractionsNumbersAndSpaces) {
    using namespace qf::unicode;
    auto split = [](std::string_view text, PreTokenizer kind) {
        const auto cpts = decode_utf8(text);
        std::vector<std::string> words;
        size_t start = 0;
        for (size_t len : pre_tokenize(cpts, kind)) {
            std::string w;
            for (size_t i = start; i < start + len; ++i) append_utf8(w, cpts[i]);
            words.push_back(w);
            start += len;
        }
        return words;
    };
    using V = std::vector<std::string>;
    EXPECT_EQ(split("I'LL go", PreTokenizer::kLlama3), (V{"I", "'LL", " go"}));
    EXPECT_EQ(split("I'LL go", PreTokenizer::kGpt2), (V{"I", "'", "LL", " go"}));  // case-sensitive there
    EXPECT_EQ(split("12345", PreTokenizer::kLlama3), (V{"123", "45"}));
    EXPECT_EQ(split("a   b", PreTokenizer::kLlama3), (V{"a", "  ", " b"}));
    EXPECT_EQ(split("a \n\n b", PreTokenizer::kLlama3), (V{"a", " \n\n", " b"}));
    EXPECT_EQ(split("x!!\n\ny", PreTokenizer::kLlama3), (V{"x", "!!\n\n", "y"}));
    EXPECT_EQ(split("$1,000", PreTokenizer::kDefault), (V{"$", "1", ",", "000"}));
    EXPECT_EQ(split("", PreTokenizer::kQwen2), V{});
}
