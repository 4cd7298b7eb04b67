// Tokenizer equal to llama.cpp's llama_tokenize(add_special, parse_special = false) of the
// build we test against (src/llama-vocab.cpp): the vocabulary loading rules (defaults,
// token attributes, special-token detection by text) and the two tokenizers qforge's
// converter writes: SentencePiece-style ("llama") and byte-level BPE ("gpt2").
#include "model/tokenizer.h"

#include "common/error.h"
#include "model/unicode_text.h"

#include <algorithm>
#include <cctype>
#include <optional>
#include <queue>
#include <span>
#include <string_view>
#include <unordered_map>

namespace qf {

namespace {

// llama_token_attr bits (llama.h).
enum TokenAttr : uint32_t {
    kAttrUnknown = 1u << 0,
    kAttrUnused = 1u << 1,
    kAttrNormal = 1u << 2,
    kAttrControl = 1u << 3,
    kAttrUserDefined = 1u << 4,
    kAttrByte = 1u << 5,
    kAttrLstrip = 1u << 7,
    kAttrRstrip = 1u << 8,
};

// tokenizer.ggml.token_type values (llama_token_type) -> attributes.
uint32_t attr_of_token_type(int64_t type) {
    switch (type) {
        case 1: return kAttrNormal;
        case 2: return kAttrUnknown;
        case 3: return kAttrControl;
        case 4: return kAttrUserDefined;
        case 5: return kAttrUnused;
        case 6: return kAttrByte;
        default: return 0;  // undefined
    }
}

enum class VocabType { kSpm, kBpe };

struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

struct PreTypeName {
    const char* name;
    unicode::PreTokenizer kind;
    bool ignore_merges;  // llama3-style: a word that is a whole token skips the merges
    bool adds_bos;       // default for tokenizer.ggml.add_bos_token
};

// The tokenizer.ggml.pre names llama.cpp maps to the pre-tokenizers implemented here (and
// only names whose other settings do not change tokenization).
constexpr PreTypeName kPreTypes[] = {
    {"default", unicode::PreTokenizer::kDefault, false, false},
    {"llama3", unicode::PreTokenizer::kLlama3, true, true},
    {"llama-v3", unicode::PreTokenizer::kLlama3, true, true},
    {"llama-bpe", unicode::PreTokenizer::kLlama3, true, true},
    {"falcon3", unicode::PreTokenizer::kLlama3, true, true},
    {"falcon-h1", unicode::PreTokenizer::kLlama3, true, true},
    {"pixtral", unicode::PreTokenizer::kLlama3, true, true},
    {"midm-2.0", unicode::PreTokenizer::kLlama3, true, true},
    {"lfm2", unicode::PreTokenizer::kLlama3, true, true},
    {"qwen2", unicode::PreTokenizer::kQwen2, false, false},
    {"deepseek-r1-qwen", unicode::PreTokenizer::kQwen2, false, false},
    {"megrez", unicode::PreTokenizer::kQwen2, false, false},
    {"stablelm2", unicode::PreTokenizer::kQwen2, false, false},
    {"gpt-2", unicode::PreTokenizer::kGpt2, false, false},
    {"phi-2", unicode::PreTokenizer::kGpt2, false, false},
    {"mpt", unicode::PreTokenizer::kGpt2, false, false},
    {"olmo", unicode::PreTokenizer::kGpt2, false, false},
};

// Special-token ids as llama.cpp settles them (-1: none). Only BOS/EOS are emitted; the
// others decide which tokens llama.cpp detects as control tokens by their text.
struct SpecialIds {
    int32_t bos = -1, eos = -1, eot = -1, eom = -1, unk = -1;
    int32_t fim_pre = -1, fim_suf = -1, fim_mid = -1, fim_pad = -1, fim_rep = -1, fim_sep = -1;
};

struct Symbol {
    int32_t prev;
    int32_t next;
    uint32_t start;  // byte offset in the text
    uint32_t n;      // bytes; 0 once merged into the left neighbour
};

struct SpmBigram {
    float score;
    int32_t left;
    int32_t right;
    uint32_t size;
    // Highest score first; on ties the leftmost pair (llama.cpp's queue order).
    bool operator<(const SpmBigram& o) const { return score < o.score || (score == o.score && left > o.left); }
};

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's escaped space

}  // namespace

struct Tokenizer::Impl {
    std::string path;
    VocabType type = VocabType::kSpm;
    std::string model_name;  // tokenizer.ggml.model
    std::string pre_name;    // tokenizer.ggml.pre ("" when absent)
    unicode::PreTokenizer pre = unicode::PreTokenizer::kDefault;
    bool ignore_merges = false;
    bool add_bos = false;
    bool add_eos = false;
    bool add_space_prefix = false;

    std::vector<std::string> stored;  // entries as in the file
    std::vector<std::string> texts;   // lookup texts (empty entries renamed like llama.cpp)
    std::vector<float> scores;
    std::vector<uint32_t> attrs;
    StringMap token_ids;
    StringMap merge_ranks;  // "left right" -> rank
    std::vector<std::string> merges;
    SpecialIds special;
    // User-defined tokens, longest first: pulled out of the text before tokenizing.
    std::vector<int32_t> split_tokens;

    int32_t find(std::string_view text) const {
        auto it = token_ids.find(text);
        return it == token_ids.end() ? -1 : it->second;
    }

    // SPM only: no token has U+2581 inside it except right after another U+2581, so no
    // merge can cross into a word that starts with a space after a non-space.
    bool spm_words_independent = false;

    void encode_spm(std::string_view text, std::vector<int32_t>& out) const;
    void merge_spm(std::string_view text, const std::vector<Symbol>& all, size_t begin, size_t end,
                   std::vector<Symbol>& symbols, std::vector<SpmBigram>& heap, std::vector<int32_t>& out) const;
    void encode_bpe(std::string_view text, std::vector<int32_t>& out) const;
    int32_t spm_byte_token(uint8_t byte) const;
    void apply_attribute_rules(const GgufFile& file);
};

namespace {

// ---- metadata access with llama.cpp's type rules ------------------------------------------

const GgufValue* find_key(const GgufFile& file, std::string_view key) { return file.metadata().find(key); }

std::optional<std::string> get_string(const GgufFile& file, std::string_view key) {
    const GgufValue* v = find_key(file, key);
    if (!v) return std::nullopt;
    if (v->type != GgufValueType::STRING)
        fail("{}: {} has type {}, expected string", file.path(), key, gguf_value_type_name(v->type));
    return v->str;
}

std::optional<bool> get_bool(const GgufFile& file, std::string_view key) {
    const GgufValue* v = find_key(file, key);
    if (!v) return std::nullopt;
    if (v->type != GgufValueType::BOOL)
        fail("{}: {} has type {}, expected bool", file.path(), key, gguf_value_type_name(v->type));
    return v->u != 0;
}

std::optional<uint32_t> get_u32(const GgufFile& file, std::string_view key) {
    const GgufValue* v = find_key(file, key);
    if (!v) return std::nullopt;
    if (v->type != GgufValueType::U32)
        fail("{}: {} has type {}, expected u32", file.path(), key, gguf_value_type_name(v->type));
    return static_cast<uint32_t>(v->u);
}

const GgufValue* get_array(const GgufFile& file, std::string_view key, std::initializer_list<GgufValueType> elems) {
    const GgufValue* v = find_key(file, key);
    if (!v) return nullptr;
    bool ok = v->type == GgufValueType::ARRAY;
    if (ok) ok = std::find(elems.begin(), elems.end(), v->elem_type) != elems.end();
    if (!ok) {
        if (v->type == GgufValueType::ARRAY)
            fail("{}: {} is an array of {}, expected an array of {}", file.path(), key,
                 gguf_value_type_name(v->elem_type), gguf_value_type_name(*elems.begin()));
        fail("{}: {} has type {}, expected an array of {}", file.path(), key, gguf_value_type_name(v->type),
             gguf_value_type_name(*elems.begin()));
    }
    return v;
}

// ---- special tokens by text (llama_vocab::impl::load) ---------------------------------------

bool text_in(std::string_view text, std::span<const std::string_view> list) {
    return std::find(list.begin(), list.end(), text) != list.end();
}

constexpr std::string_view kEndOfGenerationTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~["};

}  // namespace

// Applies llama.cpp's attribute rules that do not come from token_type: tokens that look like
// control tokens become control tokens, a few become user-defined, per-model strip flags.
void Tokenizer::Impl::apply_attribute_rules(const GgufFile& file) {
    Impl& v = *this;
    auto& attrs = v.attrs;
    const size_t n = v.texts.size();
    // FIM tokens found by text, only while the id is not set by a key. llama.cpp takes the
    // first match in hash-map order; with several candidates of one kind (never seen in
    // practice) this marks all of them.
    struct FimRule {
        int32_t id;
        std::vector<std::string_view> texts;
    };
    const FimRule fim_rules[] = {
        {v.special.fim_pre, {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"}},
        {v.special.fim_suf, {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"}},
        {v.special.fim_mid, {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"}},
        {v.special.fim_pad, {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}},
        {v.special.fim_rep, {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}},
        {v.special.fim_sep, {"<|file_sep|>"}},
    };
    for (size_t id = 0; id < n; ++id) {
        const std::string_view t = v.texts[id];
        for (const auto& rule : fim_rules)
            if (rule.id < 0 && text_in(t, rule.texts)) attrs[id] |= kAttrControl;
        // EOT / EOM candidates are all in the end-of-generation list below.
        if (text_in(t, kEndOfGenerationTexts)) attrs[id] |= kAttrControl;
    }
    // gpt-oss: always rendered, hence user-defined.
    static constexpr std::string_view kAlwaysRenderedTexts[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"};
    for (size_t id = 0; id < n; ++id)
        if (text_in(v.texts[id], kAlwaysRenderedTexts))
            attrs[id] = kAttrUserDefined;
    // o200k_harmony / solar-open: "<|end|>" is not end-of-generation but user-defined.
    const bool has_return = v.find("<|return|>") >= 0;
    const bool has_call = v.find("<|call|>") >= 0 || v.find("<|calls|>") >= 0;
    const bool has_flush = v.find("<|flush|>") >= 0;
    const int32_t end_id = v.find("<|end|>");
    if (end_id >= 0 && ((has_return && has_call) || (has_call && has_flush))) attrs[end_id] = kAttrUserDefined;
    // gemma4 / paddleocr: "</s>" is a normal token next to "<|tool_response>".
    if (const int32_t s_id = v.find("</s>"); s_id >= 0 && v.find("<|tool_response>") >= 0) attrs[s_id] = kAttrNormal;

    // Per-model strip flags, keyed on names as llama.cpp does.
    auto name_of = [&](std::string_view key) { return get_string(file, key).value_or(""); };
    std::string model_name = name_of("general.name");
    std::transform(model_name.begin(), model_name.end(), model_name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    const std::string arch = name_of("general.architecture");
    auto contains_any = [](const std::string& s, std::initializer_list<std::string_view> subs) {
        return std::any_of(subs.begin(), subs.end(), [&](std::string_view x) { return s.find(x) != std::string::npos; });
    };
    auto set_attr = [&](std::string_view text, uint32_t attr, bool on) {
        const int32_t id = v.find(text);
        if (id < 0) return;
        attrs[id] = on ? (attrs[id] | attr) : (attrs[id] & ~attr);
    };
    if (contains_any(v.pre_name, {"jina-v2-de", "jina-v2-es", "jina-v2-code"}) ||
        contains_any(arch, {"nomic-bert-moe", "jina-bert-v3"})) {
        set_attr("<mask>", kAttrLstrip, true);
    } else if (contains_any(model_name, {"phi-3", "phi3"})) {
        for (size_t id = 0; id < n; ++id)
            if (attrs[id] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) attrs[id] |= kAttrRstrip;
        // llama.cpp looks these up with .at() and fails to load a vocabulary without them.
        for (const char* t : {"</s>", "<unk>", "<s>", "<|endoftext|>"})
            if (v.find(t) < 0) fail("{}: a phi-3 vocabulary (general.name '{}') needs the token '{}'", v.path, model_name, t);
        set_attr("</s>", kAttrRstrip, true);
        for (const char* t : {"<unk>", "<s>", "<|endoftext|>"}) set_attr(t, kAttrRstrip, false);
    } else if (contains_any(model_name, {"modern-bert"})) {
        set_attr("[MASK]", kAttrLstrip, true);
    }
}

namespace {

// ---- SentencePiece-style merging -------------------------------------------------------------

struct BpeBigram {
    int32_t rank;
    int32_t left;
    int32_t right;
    uint32_t left_n;
    uint32_t right_n;
    // Lowest rank first; on ties the leftmost pair.
    bool operator<(const BpeBigram& o) const { return rank > o.rank || (rank == o.rank && left > o.left); }
};

// Symbols of one character each (a UTF-8 sequence length judged by its first byte, cut at
// the end of the text), linked in order.
std::vector<Symbol> split_characters(std::string_view text) {
    std::vector<Symbol> symbols;
    symbols.reserve(text.size());
    size_t offset = 0;
    while (offset < text.size()) {
        const size_t len = std::min(unicode::utf8_sequence_length(static_cast<uint8_t>(text[offset])), text.size() - offset);
        const auto index = static_cast<int32_t>(symbols.size());
        symbols.push_back({index - 1, offset + len == text.size() ? -1 : index + 1, static_cast<uint32_t>(offset),
                           static_cast<uint32_t>(len)});
        offset += len;
    }
    return symbols;
}

}  // namespace

int32_t Tokenizer::Impl::spm_byte_token(uint8_t byte) const {
    static const char* hex = "0123456789ABCDEF";
    const char name[6] = {'<', '0', 'x', hex[byte >> 4], hex[byte & 15], '>'};
    if (int32_t id = find(std::string_view(name, 6)); id >= 0) return id;
    const char raw = static_cast<char>(byte);
    if (int32_t id = find(std::string_view(&raw, 1)); id >= 0) return id;
    // llama.cpp throws std::out_of_range here (the vocabulary cannot spell this byte).
    fail("{}: vocabulary has no token for byte 0x{:02X} (no <0x{:02X}> byte token)", path, byte, byte);
}

void Tokenizer::Impl::encode_spm(std::string_view text, std::vector<int32_t>& out) const {
    if (text.size() > UINT32_MAX / 2) fail("{}: text of {} bytes is too long to tokenize", path, text.size());
    const std::vector<Symbol> all = split_characters(text);
    std::vector<Symbol> symbols;
    std::vector<SpmBigram> heap;
    if (!spm_words_independent) {
        merge_spm(text, all, 0, all.size(), symbols, heap, out);
        return;
    }
    // Merging is local: a pair only ever merges into a token spanning it. When no token can
    // span the start of a word (see spm_words_independent), the words merge independently,
    // in the same order among themselves as in one queue over the whole text, so the result
    // is the same with far smaller queues.
    size_t begin = 0;
    for (size_t i = 1; i < all.size(); ++i) {
        const Symbol& s = all[i];
        const bool space = text.substr(s.start, s.n) == kSpmSpace;
        if (space && !(s.start >= kSpmSpace.size() && text.substr(s.start - kSpmSpace.size(), kSpmSpace.size()) == kSpmSpace)) {
            merge_spm(text, all, begin, i, symbols, heap, out);
            begin = i;
        }
    }
    merge_spm(text, all, begin, all.size(), symbols, heap, out);
}

// llama.cpp's SPM session over the characters all[begin, end): the pair whose merge is a token
// with the highest score first (leftmost on ties), until no pair forms a token.
void Tokenizer::Impl::merge_spm(std::string_view text, const std::vector<Symbol>& all, size_t begin, size_t end,
                                std::vector<Symbol>& symbols, std::vector<SpmBigram>& heap,
                                std::vector<int32_t>& out) const {
    if (begin >= end) return;
    symbols.assign(all.begin() + static_cast<ptrdiff_t>(begin), all.begin() + static_cast<ptrdiff_t>(end));
    for (size_t i = 0; i < symbols.size(); ++i) {
        symbols[i].prev = static_cast<int32_t>(i) - 1;
        symbols[i].next = i + 1 == symbols.size() ? -1 : static_cast<int32_t>(i + 1);
    }
    heap.clear();
    auto try_add = [&](int32_t left, int32_t right) {
        if (left < 0 || right < 0) return;
        const Symbol& l = symbols[left];
        const Symbol& r = symbols[right];
        const int32_t id = find(text.substr(l.start, l.n + r.n));
        if (id < 0) return;
        heap.push_back({scores[id], left, right, l.n + r.n});
        std::push_heap(heap.begin(), heap.end());
    };
    for (size_t i = 1; i < symbols.size(); ++i) try_add(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));

    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end());
        const SpmBigram b = heap.back();
        heap.pop_back();
        Symbol& l = symbols[b.left];
        Symbol& r = symbols[b.right];
        if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;  // outdated
        l.n += r.n;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) symbols[r.next].prev = b.left;
        try_add(l.prev, b.left);
        try_add(b.left, l.next);
    }

    // Every merged symbol is a token; a character that is not becomes its bytes.
    for (int32_t i = 0; i != -1; i = symbols[i].next) {
        const Symbol& s = symbols[i];
        const std::string_view piece = text.substr(s.start, s.n);
        if (int32_t id = find(piece); id >= 0) {
            out.push_back(id);
        } else {
            for (char c : piece) out.push_back(spm_byte_token(static_cast<uint8_t>(c)));
        }
    }
}

void Tokenizer::Impl::encode_bpe(std::string_view text, std::vector<int32_t>& out) const {
    std::string key;
    std::vector<Symbol> symbols;
    std::priority_queue<BpeBigram> queue;
    for (const std::string& encoded : unicode::bpe_words(text, pre)) {
        if (encoded.size() > UINT32_MAX / 2) fail("{}: text of {} bytes is too long to tokenize", path, text.size());
        const std::string_view word = encoded;
        if (ignore_merges) {
            if (int32_t id = find(word); id >= 0) {
                out.push_back(id);
                continue;
            }
        }
        symbols = split_characters(word);
        queue = {};
        auto try_add = [&](int32_t left, int32_t right) {
            if (left < 0 || right < 0) return;
            const Symbol& l = symbols[left];
            const Symbol& r = symbols[right];
            key.assign(word.substr(l.start, l.n));
            key += ' ';
            key.append(word.substr(r.start, r.n));
            auto it = merge_ranks.find(std::string_view(key));
            if (it == merge_ranks.end()) return;
            queue.push({it->second, left, right, l.n, r.n});
        };
        for (size_t i = 1; i < symbols.size(); ++i) try_add(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));
        while (!queue.empty()) {
            const BpeBigram b = queue.top();
            queue.pop();
            Symbol& l = symbols[b.left];
            Symbol& r = symbols[b.right];
            // A symbol's text is fixed by its start and length, so equal lengths mean the
            // pair still spells the merge.
            if (l.n == 0 || r.n == 0 || l.n != b.left_n || r.n != b.right_n) continue;
            l.n += r.n;
            r.n = 0;
            l.next = r.next;
            if (r.next >= 0) symbols[r.next].prev = b.left;
            try_add(l.prev, b.left);
            try_add(b.left, l.next);
        }
        for (const Symbol& s : symbols) {
            if (s.n == 0) continue;
            const std::string_view piece = word.substr(s.start, s.n);
            if (int32_t id = find(piece); id >= 0) {
                out.push_back(id);
                continue;
            }
            // Not in the vocabulary: llama.cpp looks each byte up as a one-byte token and
            // drops the bytes it cannot find.
            for (char c : piece)
                if (int32_t id = find(std::string_view(&c, 1)); id >= 0) out.push_back(id);
        }
    }
}

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::from_gguf(const GgufFile& file) {
    Tokenizer tok;
    Impl& v = *tok.impl_;
    v.path = file.path();
    const std::string& path = v.path;

    auto model = get_string(file, "tokenizer.ggml.model");
    if (!model) fail("{}: no vocabulary (tokenizer.ggml.model missing)", path);
    v.model_name = *model;
    v.pre_name = get_string(file, "tokenizer.ggml.pre").value_or("");
    if (v.model_name == "llama") {
        v.type = VocabType::kSpm;
        v.special.bos = 1;
        v.special.eos = 2;
        v.special.unk = 0;
        v.add_bos = true;
        v.add_space_prefix = true;
    } else if (v.model_name == "gpt2") {
        v.type = VocabType::kBpe;
        v.special.bos = 11;
        v.special.eos = 11;
        const std::string pre = v.pre_name.empty() ? "default" : v.pre_name;
        const PreTypeName* found = nullptr;
        for (const auto& p : kPreTypes)
            if (pre == p.name) found = &p;
        if (!found)
            fail("{}: unsupported pre-tokenizer '{}' (tokenizer.ggml.pre); supported: llama-bpe/llama3, qwen2, gpt-2, "
                 "default",
                 path, pre);
        v.pre = found->kind;
        v.ignore_merges = found->ignore_merges;
        v.add_bos = found->adds_bos;
    } else {
        fail("{}: unsupported tokenizer model '{}' (tokenizer.ggml.model); supported: llama, gpt2", path, v.model_name);
    }
    if (auto b = get_bool(file, "tokenizer.ggml.add_space_prefix")) v.add_space_prefix = *b;
    if (v.type == VocabType::kBpe) v.add_space_prefix = false;  // read by llama.cpp, used by SPM only

    const GgufValue* tokens = get_array(file, "tokenizer.ggml.tokens", {GgufValueType::STRING});
    if (!tokens) fail("{}: no vocabulary (tokenizer.ggml.tokens missing)", path);
    const size_t n = tokens->items.size();
    if (n == 0) fail("{}: tokenizer.ggml.tokens is empty", path);
    if (n > static_cast<size_t>(INT32_MAX)) fail("{}: tokenizer.ggml.tokens has {} entries, too many", path, n);

    const GgufValue* scores = get_array(file, "tokenizer.ggml.scores", {GgufValueType::F32, GgufValueType::I32});
    if (scores && scores->items.size() < n)
        fail("{}: tokenizer.ggml.scores has {} entries for {} tokens", path, scores->items.size(), n);
    const GgufValue* types = get_array(file, "tokenizer.ggml.token_type", {GgufValueType::I32});
    if (types && types->items.size() < n)
        fail("{}: tokenizer.ggml.token_type has {} entries for {} tokens", path, types->items.size(), n);

    v.stored.resize(n);
    v.texts.resize(n);
    v.scores.assign(n, 0.0f);
    v.attrs.assign(n, kAttrNormal);
    v.token_ids.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        v.stored[i] = tokens->items[i].str;
        v.texts[i] = v.stored[i].empty() ? fmt::format("[EMPTY_{}]", i) : v.stored[i];
        if (scores) {
            const GgufValue& s = scores->items[i];
            v.scores[i] = scores->elem_type == GgufValueType::F32 ? static_cast<float>(s.f) : static_cast<float>(s.i);
        }
        if (types) v.attrs[i] = attr_of_token_type(types->items[i].i);
        auto [it, inserted] = v.token_ids.emplace(v.texts[i], static_cast<int32_t>(i));
        if (!inserted)
            fail("{}: tokenizer.ggml.tokens has '{}' twice (ids {} and {})", path, v.texts[i], it->second, i);
    }

    if (v.type == VocabType::kBpe) {
        const GgufValue* merges = get_array(file, "tokenizer.ggml.merges", {GgufValueType::STRING});
        if (!merges) fail("{}: BPE vocabulary without tokenizer.ggml.merges", path);
        v.merges.reserve(merges->items.size());
        v.merge_ranks.reserve(merges->items.size());
        for (size_t i = 0; i < merges->items.size(); ++i) {
            const std::string& m = merges->items[i].str;
            v.merges.push_back(m);
            // "left right", split at the first space after the first byte; a later duplicate
            // keeps the first rank.
            if (m.find(' ', 1) == std::string::npos) continue;
            if (i > static_cast<size_t>(INT32_MAX)) fail("{}: tokenizer.ggml.merges has too many entries", path);
            v.merge_ranks.emplace(m, static_cast<int32_t>(i));
        }
    }

    // Special ids: defaults out of range are dropped; a key out of range keeps the default.
    struct IdKey {
        const char* key;
        int32_t* id;
    };
    const IdKey id_keys[] = {
        {"tokenizer.ggml.bos_token_id", &v.special.bos},        {"tokenizer.ggml.eos_token_id", &v.special.eos},
        {"tokenizer.ggml.eot_token_id", &v.special.eot},        {"tokenizer.ggml.eom_token_id", &v.special.eom},
        {"tokenizer.ggml.unknown_token_id", &v.special.unk},    {"tokenizer.ggml.fim_pre_token_id", &v.special.fim_pre},
        {"tokenizer.ggml.fim_suf_token_id", &v.special.fim_suf}, {"tokenizer.ggml.fim_mid_token_id", &v.special.fim_mid},
        {"tokenizer.ggml.fim_pad_token_id", &v.special.fim_pad}, {"tokenizer.ggml.fim_rep_token_id", &v.special.fim_rep},
        {"tokenizer.ggml.fim_sep_token_id", &v.special.fim_sep}, {"tokenizer.ggml.prefix_token_id", &v.special.fim_pre},
        {"tokenizer.ggml.suffix_token_id", &v.special.fim_suf},  {"tokenizer.ggml.middle_token_id", &v.special.fim_mid},
    };
    for (const auto& k : id_keys) {
        if (*k.id >= 0 && static_cast<size_t>(*k.id) >= n) *k.id = -1;
        if (auto id = get_u32(file, k.key); id && *id < n) *k.id = static_cast<int32_t>(*id);
    }
    if (auto b = get_bool(file, "tokenizer.ggml.add_bos_token")) v.add_bos = *b;
    if (auto b = get_bool(file, "tokenizer.ggml.add_eos_token")) v.add_eos = *b;

    v.apply_attribute_rules(file);

    if (v.type == VocabType::kSpm) {
        v.spm_words_independent = std::all_of(v.texts.begin(), v.texts.end(), [](const std::string& t) {
            for (size_t k = t.find(kSpmSpace, 1); k != std::string::npos; k = t.find(kSpmSpace, k + 1))
                if (k < kSpmSpace.size() || t.compare(k - kSpmSpace.size(), kSpmSpace.size(), kSpmSpace) != 0) return false;
            return true;
        });
    }

    // User-defined tokens (and only those: control and unknown tokens are not parsed from
    // text when parse_special is false), longest first.
    for (size_t id = 0; id < n; ++id) {
        const uint32_t a = v.attrs[id];
        if ((a & kAttrUserDefined) && !(a & (kAttrControl | kAttrUnknown)))
            v.split_tokens.push_back(static_cast<int32_t>(id));
    }
    std::stable_sort(v.split_tokens.begin(), v.split_tokens.end(),
                     [&](int32_t a, int32_t b) { return v.texts[a].size() > v.texts[b].size(); });
    return tok;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
    const Impl& v = *impl_;
    // Pieces of raw text and user-defined tokens, in order (token < 0: raw text).
    struct Fragment {
        int32_t token;
        size_t offset;
        size_t length;
    };
    std::vector<Fragment> fragments;
    if (!text.empty()) fragments.push_back({-1, 0, text.size()});
    auto is_space = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
    for (int32_t special : v.split_tokens) {
        const std::string& needle = v.texts[special];
        const uint32_t attr = v.attrs[special];
        std::vector<Fragment> next;
        next.reserve(fragments.size());
        for (const Fragment& f : fragments) {
            if (f.token >= 0) {
                next.push_back(f);
                continue;
            }
            size_t offset = f.offset;
            size_t length = f.length;
            while (length > 0) {
                const size_t match = text.substr(0, offset + length).find(needle, offset);
                if (match == std::string_view::npos) {
                    next.push_back({-1, offset, length});
                    break;
                }
                size_t left_len = match - offset;
                if (attr & kAttrLstrip)
                    while (left_len > 0 && is_space(text[offset + left_len - 1])) --left_len;
                if (left_len > 0) next.push_back({-1, offset, left_len});
                next.push_back({special, 0, 0});
                size_t right_offset = match + needle.size();
                size_t right_len = offset + length - right_offset;
                if (attr & kAttrRstrip)
                    while (right_len > 0 && is_space(text[right_offset])) {
                        ++right_offset;
                        --right_len;
                    }
                offset = right_offset;
                length = right_len;
            }
        }
        fragments = std::move(next);
    }

    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 4);
    if (add_special && v.add_bos) {
        if (v.special.bos < 0) fail("{}: the vocabulary adds a BOS token but has none", v.path);
        out.push_back(v.special.bos);
    }
    bool prev_special = true;  // SPM: a space goes before the text and after user tokens
    for (const Fragment& f : fragments) {
        if (f.token >= 0) {
            out.push_back(f.token);
            prev_special = true;
            continue;
        }
        const std::string_view raw = text.substr(f.offset, f.length);
        if (v.type == VocabType::kSpm) {
            std::string escaped;
            escaped.reserve(raw.size() + raw.size() / 2 + 3);
            auto put = [&](char c) {
                if (c == ' ')
                    escaped += kSpmSpace;
                else
                    escaped += c;
            };
            if (v.add_space_prefix && prev_special) put(' ');
            for (char c : raw) put(c);
            v.encode_spm(escaped, out);
        } else {
            v.encode_bpe(raw, out);
        }
        prev_special = false;
    }
    if (add_special && v.add_eos) {
        if (v.special.eos < 0) fail("{}: the vocabulary adds an EOS token but has none", v.path);
        out.push_back(v.special.eos);
    }
    return out;
}

std::string Tokenizer::token_text(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= impl_->stored.size())
        fail("{}: token id {} is outside the vocabulary of {}", impl_->path, id, impl_->stored.size());
    return impl_->stored[id];
}

int64_t Tokenizer::n_vocab() const { return static_cast<int64_t>(impl_->stored.size()); }
int32_t Tokenizer::bos_id() const { return impl_->special.bos; }
int32_t Tokenizer::eos_id() const { return impl_->special.eos; }
bool Tokenizer::adds_bos() const { return impl_->add_bos; }

bool Tokenizer::same_vocabulary(const Tokenizer& other) const {
    const Impl& a = *impl_;
    const Impl& b = *other.impl_;
    return a.type == b.type && a.model_name == b.model_name && a.pre == b.pre && a.ignore_merges == b.ignore_merges &&
           a.add_bos == b.add_bos && a.add_eos == b.add_eos && a.add_space_prefix == b.add_space_prefix &&
           a.special.bos == b.special.bos && a.special.eos == b.special.eos && a.stored == b.stored &&
           a.scores == b.scores && a.attrs == b.attrs && a.merges == b.merges;
}

}  // namespace qf
