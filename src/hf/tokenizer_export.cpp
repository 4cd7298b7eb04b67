// Tokenizer export, following llama.cpp's convert_hf_to_gguf.py (_set_vocab_sentencepiece,
// _set_vocab_gpt2 / get_vocab_base, LlamaModel.set_vocab) and gguf-py's SpecialVocab and
// GGUFWriter. The Python is the specification: where it does something surprising (skips a
// key, keeps the first of two ids, writes nothing for an empty string) we do the same, and
// the comment says so, because the goal is a byte-identical file.
#include "hf/tokenizer_export.h"

#include "common/error.h"

#include <nlohmann/json.hpp>
#include <sentencepiece_processor.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace qf {
namespace {

namespace fs = std::filesystem;
// Plain (key-sorted) objects: nothing written depends on the key order inside a JSON object,
// and nlohmann's ordered_json inserts in linear time per key, which is quadratic on a
// 128k-entry model.vocab.
using Json = nlohmann::json;

// llama_token_type (include/llama.h); the converter's SentencePieceTokenTypes / gguf.TokenType.
enum TokenType : int32_t {
    kNormal = 1,
    kUnknown = 2,
    kControl = 3,
    kUserDefined = 4,
    kUnused = 5,
    kByte = 6,
};

// A config vocab_size beyond this is a broken file, not a tokenizer (llama.cpp ids are int32
// and every padding entry costs memory here).
constexpr uint64_t kMaxVocabSize = uint64_t{1} << 24;

const std::string kSentencePieceSpace = "\xE2\x96\x81";  // U+2581 "▁"

// Control characters would break the one-line error message rule.
std::string one_line(std::string_view s, size_t max_chars = 300) {
    std::string out;
    for (char c : s) {
        if (out.size() >= max_chars) {
            out += "...";
            break;
        }
        const auto u = static_cast<unsigned char>(c);
        if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else if (c == '\t') out += "\\t";
        else if (u < 0x20 || u == 0x7F) out += fmt::format("\\x{:02x}", u);
        else out += c;
    }
    return out;
}

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("{}: cannot open", path.string());
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) fail("{}: read error", path.string());
    return std::move(ss).str();
}

// Python's text-mode read (universal newlines): "\r\n" and a lone "\r" become "\n".
std::string read_text_file(const fs::path& path) {
    const std::string raw = read_file(path);
    std::string out;
    out.reserve(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] != '\r') {
            out += raw[i];
            continue;
        }
        out += '\n';
        if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
    }
    return out;
}

Json parse_json_file(const fs::path& path) {
    const std::string text = read_file(path);
    try {
        return Json::parse(text);
    } catch (const Json::exception& e) {
        fail("{}: malformed JSON: {}", path.string(), one_line(e.what()));
    }
}

// The JSON object in path, or nullopt when the file does not exist.
std::optional<Json> read_json_object_if_present(const fs::path& path) {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) return std::nullopt;
    Json j = parse_json_file(path);
    if (!j.is_object()) fail("{}: expected a JSON object at the top level", path.string());
    return j;
}

// Python truthiness of a JSON value (None, False, 0, "", [], {} are false).
bool truthy(const Json& j) {
    switch (j.type()) {
        case Json::value_t::null: return false;
        case Json::value_t::boolean: return j.get<bool>();
        case Json::value_t::number_integer: return j.get<int64_t>() != 0;
        case Json::value_t::number_unsigned: return j.get<uint64_t>() != 0;
        case Json::value_t::number_float: return j.get<double>() != 0.0;
        case Json::value_t::string: return !j.get_ref<const std::string&>().empty();
        case Json::value_t::array:
        case Json::value_t::object: return !j.empty();
        default: return true;
    }
}

// dict.get(key) for a value that may not be a dict: null when absent.
const Json& get_or_null(const Json& obj, std::string_view key) {
    static const Json null_json;
    if (!obj.is_object()) return null_json;
    auto it = obj.find(key);
    return it == obj.end() ? null_json : *it;
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
    for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) s.replace(pos, from.size(), to);
}

// TextModel.does_token_look_special: added tokens some models forget to mark special.
bool does_token_look_special(std::string_view t) {
    if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
    if (t.starts_with("<|") && t.ends_with("|>")) return true;
    if (t.starts_with("<\xEF\xBD\x9C") && t.ends_with("\xEF\xBD\x9C>")) return true;  // <｜ … ｜> (deepseek)
    if (t.starts_with("<unused") && t.ends_with(">")) return true;                    // gemma
    return false;
}

// ---------------------------------------------------------------------------------------------
// UTF-8 helpers

// Decodes the code point at s[pos] of a string known to be valid UTF-8 (nlohmann validates
// every string it parses); returns its length.
size_t utf8_decode(std::string_view s, size_t pos, uint32_t* cp) {
    const auto b0 = static_cast<unsigned char>(s[pos]);
    size_t len = b0 < 0x80 ? 1 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4;
    if (pos + len > s.size()) len = s.size() - pos;
    uint32_t v = len == 1 ? b0 : len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
    for (size_t i = 1; i < len; ++i) v = (v << 6) | (static_cast<unsigned char>(s[pos + i]) & 0x3F);
    *cp = v;
    return len;
}

// Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD.
std::string utf8_lossy(std::string_view bytes) {
    std::string out;
    size_t i = 0;
    while (i < bytes.size()) {
        const auto b0 = static_cast<unsigned char>(bytes[i]);
        if (b0 < 0x80) {
            out += static_cast<char>(b0);
            ++i;
            continue;
        }
        size_t need = 0;
        unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
        if (b0 >= 0xC2 && b0 <= 0xDF) need = 1;
        else if (b0 == 0xE0) need = 2, lo = 0xA0;
        else if (b0 >= 0xE1 && b0 <= 0xEC) need = 2;
        else if (b0 == 0xED) need = 2, hi = 0x9F;
        else if (b0 >= 0xEE && b0 <= 0xEF) need = 2;
        else if (b0 == 0xF0) need = 3, lo = 0x90;
        else if (b0 >= 0xF1 && b0 <= 0xF3) need = 3;
        else if (b0 == 0xF4) need = 3, hi = 0x8F;
        size_t got = 0;
        if (need > 0) {
            while (got < need && i + 1 + got < bytes.size()) {
                const auto b = static_cast<unsigned char>(bytes[i + 1 + got]);
                const bool ok = got == 0 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
                if (!ok) break;
                ++got;
            }
        }
        if (need > 0 && got == need) {
            out.append(bytes.substr(i, need + 1));
            i += need + 1;
        } else {
            out += "\xEF\xBF\xBD";
            i += 1 + got;
        }
    }
    return out;
}

// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100 upwards, in byte order. Returns the inverse map (code point -> byte) for decoding.
const std::array<int, 512>& byte_level_decode_table() {
    static const std::array<int, 512> table = [] {
        std::array<int, 512> t{};
        t.fill(-1);
        int next = 0;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            t[printable ? b : 256 + next++] = b;
        }
        return t;
    }();
    return table;
}

// tokenizers' ByteLevel decoder on one token: every char maps back to its byte, or, when some
// char is outside the byte alphabet, the token's raw UTF-8 is kept; then from_utf8_lossy.
std::string byte_level_decode(std::string_view token) {
    const auto& table = byte_level_decode_table();
    std::string bytes;
    for (size_t i = 0; i < token.size();) {
        uint32_t cp = 0;
        i += utf8_decode(token, i, &cp);
        if (cp >= table.size() || table[cp] < 0) return utf8_lossy(token);
        bytes += static_cast<char>(table[cp]);
    }
    return utf8_lossy(bytes);
}

// transformers' clean_up_tokenization.
std::string clean_up_tokenization(std::string s) {
    static constexpr std::pair<std::string_view, std::string_view> kRules[] = {
        {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
        {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
    };
    for (const auto& [from, to] : kRules) replace_all(s, from, to);
    return s;
}

// Python int(str) for the decimal keys of added_tokens_decoder (surrounding spaces allowed).
std::optional<int64_t> parse_int(std::string_view s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    if (!s.empty() && s.front() == '+') s.remove_prefix(1);
    int64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
}

// A JSON integer id (Python isinstance(x, int), which includes bool); nullopt for anything else.
std::optional<int64_t> json_int(const Json& j) {
    if (j.is_boolean()) return j.get<bool>() ? 1 : 0;
    if (j.is_number_unsigned()) {
        const uint64_t u = j.get<uint64_t>();
        return u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max()
                                                                               : static_cast<int64_t>(u);
    }
    if (j.is_number_integer()) return j.get<int64_t>();
    return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// SpecialVocab (gguf-py/gguf/vocab.py)

struct SpecialVocabOptions {
    bool load_merges = false;
    std::optional<uint64_t> n_vocab = std::nullopt;  // ids at or above are skipped; nullopt = no check
    std::vector<std::string> types = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
    std::optional<uint32_t> config_bos = std::nullopt, config_eos = std::nullopt;  // stand in for config.json's values
};

class SpecialVocab {
public:
    SpecialVocab(const fs::path& dir, SpecialVocabOptions options) : dir_(dir), opt_(std::move(options)) {
        load_from_tokenizer_json();
        load_from_config_json();
        if (opt_.load_merges && merges_.empty()) load_merges_txt();
    }

    // SpecialVocab._set_special_token: integers only, first source wins, out-of-range skipped.
    void set_special_token(const std::string& typ, const Json& tid, const fs::path& source) {
        const auto id = json_int(tid);
        if (!id) return;
        if (*id < 0) fail("{}: invalid value for special token type {}: {}", source.string(), typ, *id);
        if (opt_.n_vocab && static_cast<uint64_t>(*id) >= *opt_.n_vocab) return;
        if (*id > std::numeric_limits<uint32_t>::max())
            fail("{}: special token type {} id {} does not fit uint32", source.string(), typ, *id);
        for (const auto& entry : ids_)
            if (entry.first == typ) return;
        ids_.emplace_back(typ, static_cast<uint32_t>(*id));
    }

    const std::vector<std::string>& merges() const { return merges_; }

    // SpecialVocab.add_to_gguf: merges, ids, add_* flags, chat template, normalizer flags.
    void add_to_gguf(GgufMetadata& md) const {
        if (!merges_.empty()) md.set("tokenizer.ggml.merges", GgufValue::string_array(merges_));
        for (const auto& [typ, id] : ids_) {
            // GGUFWriter has add_<typ>_token_id only for these; the converter skips the others
            // (cls, prefix, suffix, middle) with a warning.
            static const std::pair<std::string_view, std::string_view> kIdKeys[] = {
                {"bos", "tokenizer.ggml.bos_token_id"},     {"eos", "tokenizer.ggml.eos_token_id"},
                {"unk", "tokenizer.ggml.unknown_token_id"}, {"sep", "tokenizer.ggml.seperator_token_id"},
                {"pad", "tokenizer.ggml.padding_token_id"}, {"mask", "tokenizer.ggml.mask_token_id"},
                {"eot", "tokenizer.ggml.eot_token_id"},     {"eom", "tokenizer.ggml.eom_token_id"},
            };
            for (const auto& [name, key] : kIdKeys)
                if (typ == name) md.set(std::string(key), GgufValue::u32(id));
        }
        for (const auto& [typ, value] : add_flags_) {
            if (typ == "bos" || typ == "eos" || typ == "sep")
                md.set("tokenizer.ggml.add_" + typ + "_token", GgufValue::boolean(value));
        }
        add_chat_template(md);
        if (lowercase_) md.set("tokenizer.ggml.normalizer.lowercase", GgufValue::boolean(*lowercase_));
        if (strip_accents_) md.set("tokenizer.ggml.normalizer.strip_accents", GgufValue::boolean(*strip_accents_));
    }

private:
    fs::path tokenizer_json_path() const { return dir_ / "tokenizer.json"; }
    fs::path tokenizer_config_path() const { return dir_ / "tokenizer_config.json"; }

    void set_add_flag(const std::string& typ, bool value) {
        // A Python dict: re-assigning keeps the key's first position.
        for (auto& entry : add_flags_) {
            if (entry.first == typ) {
                entry.second = value;
                return;
            }
        }
        add_flags_.emplace_back(typ, value);
    }

    bool has_type(std::string_view typ) const {
        return std::find(opt_.types.begin(), opt_.types.end(), typ) != opt_.types.end();
    }

    void parse_merges(const Json& merges) {
        const std::string path = tokenizer_json_path().string();
        if (!merges.is_array() || merges.empty()) return;
        if (merges[0].is_string()) {
            merges_.reserve(merges.size());
            for (const auto& m : merges) {
                if (!m.is_string()) fail("{}: model.merges mixes strings with other values", path);
                merges_.push_back(m.get<std::string>());
            }
            return;
        }
        if (merges[0].is_array() && merges[0].size() == 2 && merges[0][0].is_string()) {
            // Since transformers 4.45 merges may be pairs, which allows spaces inside a part; the
            // converter joins the pair with a space and writes a space inside a part as U+0120.
            merges_.reserve(merges.size());
            for (const auto& pair : merges) {
                if (!pair.is_array() || pair.size() != 2 || !pair[0].is_string() || !pair[1].is_string())
                    fail("{}: malformed model.merges entry {}", path, one_line(pair.dump(), 80));
                std::string joined;
                for (size_t k = 0; k < 2; ++k) {
                    if (k) joined += ' ';
                    std::string part = pair[k].get<std::string>();
                    replace_all(part, " ", "\xC4\xA0");
                    joined += part;
                }
                merges_.push_back(std::move(joined));
            }
            return;
        }
        fail("{}: unknown tokenizer merges format", path);
    }

    void parse_normalizer(const Json& normalizer) {
        const Json& type = get_or_null(normalizer, "type");
        if (type == "Lowercase") {
            lowercase_ = true;
        } else if (type == "StripAccents") {
            strip_accents_ = true;
        } else if (type == "BertNormalizer") {
            // A present null resets the flag to "not written", as the Python assignment does.
            auto assign = [&](const char* key, std::optional<bool>& flag) {
                auto it = normalizer.find(key);
                if (it == normalizer.end()) return;
                flag = it->is_null() ? std::nullopt : std::optional<bool>(truthy(*it));
            };
            assign("lowercase", lowercase_);
            assign("strip_accents", strip_accents_);
        } else if (type == "Sequence") {
            const Json& list = get_or_null(normalizer, "normalizers");
            if (list.is_array())
                for (const auto& n : list) parse_normalizer(n);
        }
    }

    // The TemplateProcessing / RobertaProcessing inference of add_bos / add_eos / add_sep and of
    // missing bos/eos/cls/sep strings ("crude parsing", as the converter says; replicated as is).
    struct SpecialStrings {
        Json bos, cls, eos, sep;
    };

    void parse_post_processor(const Json& post_processor, Json& config, SpecialStrings& s) {
        Json processors = Json::array({post_processor});
        if (post_processor.is_object() && post_processor.contains("processors")) processors = post_processor["processors"];
        if (!processors.is_array()) return;
        const bool have_config = truthy(config);
        for (const auto& processor : processors) {
            const Json& type = get_or_null(processor, "type");
            if (type == "RobertaProcessing") {
                set_add_flag("bos", true);
                set_add_flag("eos", true);
                set_add_flag("sep", true);
                auto first_of = [](const Json& entry, const Json& fallback) -> Json {
                    if (entry.is_null()) return fallback;
                    return entry.is_array() && !entry.empty() ? entry[0] : Json();
                };
                if (!truthy(s.cls) && have_config) {
                    s.cls = first_of(get_or_null(processor, "cls"), s.bos);
                    config["cls_token"] = s.cls;
                }
                if (!truthy(s.sep) && have_config) {
                    s.sep = first_of(get_or_null(processor, "sep"), s.eos);
                    config["sep_token"] = s.sep;
                }
                continue;
            }
            if (type != "TemplateProcessing") continue;
            const Json& single_json = get_or_null(processor, "single");
            const Json& pair_json = get_or_null(processor, "pair");
            const Json single = single_json.is_array() ? single_json : Json::array();
            const Json pair = pair_json.is_array() ? pair_json : Json::array();
            auto special_id = [](const Json& piece) -> Json { return get_or_null(get_or_null(piece, "SpecialToken"), "id"); };
            auto sequence_id = [](const Json& piece) -> Json { return get_or_null(get_or_null(piece, "Sequence"), "id"); };
            Json first, last;
            if (single.size() > 1) {
                first = special_id(single.front());
                if (truthy(first)) {
                    if (!truthy(config)) {
                        s.bos = first;
                    } else if (first != s.bos && first != s.cls) {
                        if (!truthy(s.bos)) config["bos_token"] = s.bos = first;
                        if (!truthy(s.cls)) config["cls_token"] = s.cls = first;
                    }
                    set_add_flag("bos", first == s.bos || first == s.cls);
                }
                last = special_id(single.back());
                if (truthy(last)) {
                    if (!truthy(config)) {
                        s.eos = last;
                    } else if (last != s.eos) {
                        // The old eos becomes eot (or eom), the template's last token the eos.
                        if (!has_type("eot")) {
                            opt_.types.push_back("eot");
                            config["eot_token"] = s.eos;
                        } else if (!has_type("eom")) {
                            opt_.types.push_back("eom");
                            config["eom_token"] = s.eos;
                        }
                        config["eos_token"] = s.eos = last;
                    }
                    set_add_flag("eos", last == s.eos);
                }
            }
            if (pair.empty()) continue;
            // pair[seq_start:seq_stop] with Python slice semantics.
            const size_t start = (truthy(first) && special_id(pair.front()) == first) ? 1 : 0;
            const bool drop_last = truthy(last) && special_id(pair.back()) == last;
            const size_t stop = drop_last ? pair.size() - 1 : pair.size();
            if (start >= stop) continue;
            std::vector<Json> middle(pair.begin() + static_cast<std::ptrdiff_t>(start),
                                     pair.begin() + static_cast<std::ptrdiff_t>(stop));
            if (sequence_id(middle.front()) != "A" || sequence_id(middle.back()) != "B") continue;
            if (middle.size() <= 2) continue;  // tmpl_pair[1:-1] is empty
            middle = std::vector<Json>(middle.begin() + 1, middle.end() - 1);
            bool add_sep = false;
            const Json entry0 = special_id(middle[0]);
            if (truthy(entry0) && (entry0 == s.sep || entry0 == s.eos) && !truthy(last)) add_sep = true;
            if (middle.size() == 2) {
                const Json entry1 = special_id(middle[1]);
                if (truthy(entry1) && (entry1 == s.sep || entry1 == s.eos)) add_sep = true;
            }
            set_add_flag("sep", add_sep);
            if (add_sep && !truthy(s.sep) && truthy(config)) config["sep_token"] = s.eos;
        }
    }

    // SpecialVocab._try_load_from_tokenizer_json (which also reads tokenizer_config.json).
    void load_from_tokenizer_json() {
        std::optional<Json> tokenizer = read_json_object_if_present(tokenizer_json_path());
        Json added_tokens = Json::array();
        if (tokenizer) {
            if (opt_.load_merges) parse_merges(get_or_null(get_or_null(*tokenizer, "model"), "merges"));
            const Json& normalizer = get_or_null(*tokenizer, "normalizer");
            if (truthy(normalizer)) parse_normalizer(normalizer);
            const Json& at = get_or_null(*tokenizer, "added_tokens");
            if (at.is_array()) added_tokens = at;
        }
        Json config = read_json_object_if_present(tokenizer_config_path()).value_or(Json());
        if (tokenizer) {
            SpecialStrings s{get_or_null(config, "bos_token"), get_or_null(config, "cls_token"),
                             get_or_null(config, "eos_token"), get_or_null(config, "sep_token")};
            if (!truthy(s.bos) && truthy(s.cls) && truthy(config)) config["bos_token"] = s.bos = s.cls;
            if (!truthy(s.eos) && truthy(s.sep) && truthy(config)) config["eos_token"] = s.eos = s.sep;
            const Json& post_processor = get_or_null(*tokenizer, "post_processor");
            if (truthy(post_processor)) parse_post_processor(post_processor, config, s);
        }
        if (!truthy(config)) return;

        load_chat_template(config);
        for (const std::string& typ : opt_.types) {
            const Json& add_entry = get_or_null(config, "add_" + typ + "_token");
            if (add_entry.is_boolean()) set_add_flag(typ, add_entry.get<bool>());
            const Json& entry = get_or_null(config, typ + "_token");
            std::string content;
            if (entry.is_string()) {
                content = entry.get<std::string>();
            } else if (entry.is_object() && get_or_null(entry, "content").is_string()) {
                content = entry["content"].get<std::string>();
            } else {
                continue;
            }
            // Only tokenizer.json's added_tokens resolve a token string to an id (first match).
            for (const auto& atok : added_tokens) {
                if (get_or_null(atok, "content") == content) {
                    set_special_token(typ, get_or_null(atok, "id"), tokenizer_json_path());
                    break;
                }
            }
        }
    }

    void load_chat_template(const Json& config) {
        Json alt;  // null = none
        const fs::path jinja = dir_ / "chat_template.jinja";
        const fs::path json = dir_ / "chat_template.json";
        std::error_code ec;
        if (fs::is_regular_file(jinja, ec)) {
            alt = read_text_file(jinja);
            std::vector<fs::path> extra;
            const fs::path extra_dir = dir_ / "additional_chat_templates";
            if (fs::is_directory(extra_dir, ec)) {
                for (const auto& e : fs::directory_iterator(extra_dir, ec))
                    if (e.path().extension() == ".jinja") extra.push_back(e.path());
            }
            // The converter takes glob() order, which is the file system's; sorted here.
            std::sort(extra.begin(), extra.end());
            if (!extra.empty()) {
                Json list = Json::array({Json{{"name", "default"}, {"template", alt}}});
                for (const auto& p : extra)
                    list.push_back(Json{{"name", p.stem().string()}, {"template", read_text_file(p)}});
                alt = std::move(list);
            }
        } else if (fs::is_regular_file(json, ec)) {
            alt = get_or_null(parse_json_file(json), "chat_template");
        }
        const Json& chosen = config.contains("chat_template") ? config["chat_template"] : alt;
        // Other types are ignored with a warning by the converter.
        if (chosen.is_string() || chosen.is_array()) chat_template_ = chosen;
    }

    // GGUFWriter.add_chat_template.
    void add_chat_template(GgufMetadata& md) const {
        if (chat_template_.is_null()) return;
        const std::string path = tokenizer_config_path().string();
        auto add_string = [&](std::string key, const Json& value) {
            if (!value.is_string()) fail("{}: chat template is not a string", path);
            // GGUFWriter.add_string writes nothing for an empty string.
            if (!value.get_ref<const std::string&>().empty()) md.set(std::move(key), GgufValue::string(value.get<std::string>()));
        };
        if (chat_template_.is_string()) {
            add_string("tokenizer.chat_template", chat_template_);
            return;
        }
        std::optional<Json> template_default;
        std::vector<std::string> names;  // a Python set in the converter (arbitrary order); first-seen order here
        for (const auto& choice : chat_template_) {
            if (!choice.is_object()) fail("{}: chat_template list entry is not an object", path);
            const Json& name_json = get_or_null(choice, "name");
            if (!name_json.is_null() && !name_json.is_string()) fail("{}: chat_template name is not a string", path);
            const std::string raw_name = name_json.is_string() ? name_json.get<std::string>() : std::string();
            // Every code point that is not an ASCII letter or digit becomes '_'.
            std::string name;
            for (size_t i = 0; i < raw_name.size();) {
                uint32_t cp = 0;
                i += utf8_decode(raw_name, i, &cp);
                const bool alnum = (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9');
                name += alnum ? static_cast<char>(cp) : '_';
            }
            const Json& tmpl = get_or_null(choice, "template");
            if (name.empty() || tmpl.is_null()) continue;
            if (name == "default") {
                template_default = tmpl;
            } else {
                if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
                add_string("tokenizer.chat_template." + name, tmpl);
            }
        }
        if (!names.empty()) md.set("tokenizer.chat_templates", GgufValue::string_array(names));
        if (template_default) add_string("tokenizer.chat_template", *template_default);
    }

    // SpecialVocab._try_load_from_config_json.
    void load_from_config_json() {
        const fs::path path = dir_ / "config.json";
        std::optional<Json> config = read_json_object_if_present(path);
        for (const std::string& typ : opt_.types) {
            if (typ == "bos" && opt_.config_bos) {
                set_special_token(typ, Json(*opt_.config_bos), path);
                continue;
            }
            if (typ == "eos" && opt_.config_eos) {
                set_special_token(typ, Json(*opt_.config_eos), path);
                continue;
            }
            if (!config) continue;
            Json token_id = get_or_null(*config, typ + "_token_id");
            if (token_id.is_null() && config->contains("text_config"))
                token_id = get_or_null((*config)["text_config"], typ + "_token_id");
            set_special_token(typ, token_id, path);
        }
    }

    // SpecialVocab._try_load_merges_txt.
    void load_merges_txt() {
        const fs::path path = dir_ / "merges.txt";
        std::error_code ec;
        if (!fs::is_regular_file(path, ec)) return;
        const std::string text = read_text_file(path);
        auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
        std::vector<std::string> merges;
        bool first_line = true;
        size_t pos = 0;
        while (pos < text.size()) {
            size_t end = text.find('\n', pos);
            if (end == std::string::npos) end = text.size();
            std::string_view line(text.data() + pos, end - pos);
            pos = end + 1;
            while (!line.empty() && is_space(line.front())) line.remove_prefix(1);
            while (!line.empty() && is_space(line.back())) line.remove_suffix(1);
            // A first line starting with '#' is the "#version" header.
            if (first_line && line.starts_with("#")) {
                first_line = false;
                continue;
            }
            first_line = false;
            if (line.empty()) continue;
            std::vector<std::string_view> parts;
            for (size_t i = 0; i < line.size();) {
                while (i < line.size() && is_space(line[i])) ++i;
                size_t j = i;
                while (j < line.size() && !is_space(line[j])) ++j;
                if (j > i) parts.push_back(line.substr(i, j - i));
                i = j;
            }
            if (parts.size() != 2) continue;  // the converter ignores malformed lines
            merges.push_back(std::string(parts[0]) + " " + std::string(parts[1]));
        }
        merges_ = std::move(merges);
    }

    fs::path dir_;
    SpecialVocabOptions opt_;
    std::vector<std::string> merges_;
    std::vector<std::pair<std::string, uint32_t>> ids_;    // insertion order = write order
    std::vector<std::pair<std::string, bool>> add_flags_;  // insertion order = write order
    Json chat_template_;
    std::optional<bool> lowercase_, strip_accents_;
};

// ---------------------------------------------------------------------------------------------
// SentencePiece (_create_vocab_sentencepiece)

void add_sentencepiece_vocab(const fs::path& dir, const TokenizerExportOptions& opt, GgufMetadata& md) {
    const fs::path model_path = dir / "tokenizer.model";
    sentencepiece::SentencePieceProcessor sp;
    if (const auto status = sp.Load(model_path.string()); !status.ok())
        fail("{}: cannot load SentencePiece model: {}", model_path.string(), one_line(status.ToString()));
    const int spm_size = sp.GetPieceSize();
    const uint64_t vocab_size = opt.vocab_size ? opt.vocab_size : static_cast<uint64_t>(std::max(spm_size, 0));
    if (vocab_size > kMaxVocabSize) fail("{}: vocab_size {} is implausibly large", (dir / "config.json").string(), vocab_size);

    std::vector<std::string> tokens(vocab_size);
    std::vector<float> scores(vocab_size, -10000.0f);
    std::vector<int32_t> types(vocab_size, kUnused);
    for (uint64_t i = 0; i < vocab_size; ++i) tokens[i] = fmt::format("[PAD{}]", i);

    // Pieces beyond a smaller config vocab_size are dropped (the converter warns and stops).
    const uint64_t n_pieces = std::min<uint64_t>(vocab_size, static_cast<uint64_t>(std::max(spm_size, 0)));
    for (uint64_t i = 0; i < n_pieces; ++i) {
        const int id = static_cast<int>(i);
        int32_t type = kNormal;
        // Same precedence as the converter; note it has no user-defined case (those stay NORMAL).
        if (sp.IsUnknown(id)) type = kUnknown;
        else if (sp.IsControl(id)) type = kControl;
        else if (sp.IsUnused(id)) type = kUnused;
        else if (sp.IsByte(id)) type = kByte;
        tokens[i] = sp.IdToPiece(id);
        scores[i] = sp.GetScore(id);
        types[i] = type;
    }

    const fs::path added_path = dir / "added_tokens.json";
    if (auto added = read_json_object_if_present(added_path)) {
        for (const auto& [content, id_json] : added->items()) {
            const auto id = json_int(id_json);
            if (!id || *id < 0) fail("{}: token {} has an invalid id", added_path.string(), one_line(content, 80));
            if (static_cast<uint64_t>(*id) >= vocab_size) continue;  // out of range: ignored
            tokens[*id] = content;
            scores[*id] = -1000.0f;
            types[*id] = kUserDefined;
        }
    }

    const fs::path config_path = dir / "tokenizer_config.json";
    if (auto config = read_json_object_if_present(config_path)) {
        const Json& decoder = get_or_null(*config, "added_tokens_decoder");
        if (!decoder.is_null() && !decoder.is_object())
            fail("{}: added_tokens_decoder is not an object", config_path.string());
        if (decoder.is_object()) {
            for (const auto& [key, data] : decoder.items()) {
                const auto id = parse_int(key);
                if (!id || *id < 0) fail("{}: added_tokens_decoder key \"{}\" is not a token id", config_path.string(), one_line(key, 40));
                const Json& content_json = get_or_null(data, "content");
                if (!content_json.is_string())
                    fail("{}: added_tokens_decoder entry {} has no string \"content\"", config_path.string(), *id);
                if (static_cast<uint64_t>(*id) >= vocab_size) continue;  // out of range: ignored
                std::string token = content_json.get<std::string>();
                if (truthy(get_or_null(data, "special")) || does_token_look_special(token)) {
                    types[*id] = kControl;
                } else {
                    replace_all(token, kSentencePieceSpace, " ");  // pre-normalize user-defined spaces
                    types[*id] = kUserDefined;
                }
                scores[*id] = -1000.0f;
                tokens[*id] = std::move(token);
            }
        }
    }

    md.set("tokenizer.ggml.model", GgufValue::string("llama"));
    md.set("tokenizer.ggml.pre", GgufValue::string("default"));
    if (!tokens.empty()) {
        md.set("tokenizer.ggml.tokens", GgufValue::string_array(tokens));
        md.set("tokenizer.ggml.scores", GgufValue::f32_array(scores));
        md.set("tokenizer.ggml.token_type", GgufValue::i32_array(types));
    }
    SpecialVocab special(dir, {.load_merges = false, .n_vocab = vocab_size, .config_bos = opt.bos_token_id,
                               .config_eos = opt.eos_token_id});
    special.add_to_gguf(md);
}

// ---------------------------------------------------------------------------------------------
// Byte-level BPE (get_vocab_base, _set_vocab_gpt2)

// The Split regexes of the pre-tokenizers we can name, exactly as they appear in tokenizer.json
// (also quoted as "original regex from tokenizer.json" in llama.cpp's llama-vocab.cpp).
constexpr std::string_view kLlama3Regex =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kQwen2Regex =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

// The converter names the pre-tokenizer by hashing the ids it produces for a test string. We
// recognise the two layouts instead: Sequence[Split(regex, Isolated), ByteLevel(use_regex=false)].
std::string detect_pre_tokenizer(const Json& tokenizer, const fs::path& path) {
    const Json& pre = get_or_null(tokenizer, "pre_tokenizer");
    std::vector<Json> steps;
    if (get_or_null(pre, "type") == "Sequence" && get_or_null(pre, "pretokenizers").is_array()) {
        for (const auto& s : pre["pretokenizers"]) steps.push_back(s);
    } else if (!pre.is_null()) {
        steps.push_back(pre);
    }
    std::string regex;
    bool split_ok = false, byte_level_ok = false;
    if (steps.size() == 2) {
        const Json& split = steps[0];
        const Json& pattern = get_or_null(get_or_null(split, "pattern"), "Regex");
        if (get_or_null(split, "type") == "Split" && pattern.is_string()) {
            regex = pattern.get<std::string>();
            const Json& invert = get_or_null(split, "invert");
            split_ok = get_or_null(split, "behavior") == "Isolated" && (invert.is_null() || invert == false);
        }
        const Json& byte_level = steps[1];
        const Json& use_regex = get_or_null(byte_level, "use_regex");  // tokenizers' default is true
        byte_level_ok = get_or_null(byte_level, "type") == "ByteLevel" && use_regex == false;
    }
    if (split_ok && byte_level_ok) {
        if (regex == kLlama3Regex) return "llama-bpe";
        if (regex == kQwen2Regex) return "qwen2";
    }
    std::string found;
    if (!regex.empty()) found = fmt::format(" (Split regex \"{}\")", one_line(regex, 200));
    else if (pre.is_null()) found = " (none)";
    else found = fmt::format(" ({})", one_line(pre.dump(), 200));
    fail("{}: unrecognised pre-tokenizer{}; supported: llama-bpe (Llama 3), qwen2", path.string(), found);
}

void add_byte_level_bpe_vocab(const fs::path& dir, const TokenizerExportOptions& opt, GgufMetadata& md) {
    const fs::path path = dir / "tokenizer.json";
    const Json tokenizer = parse_json_file(path);
    if (!tokenizer.is_object()) fail("{}: expected a JSON object at the top level", path.string());
    const Json& model = get_or_null(tokenizer, "model");
    if (!model.is_object()) fail("{}: no \"model\" object", path.string());
    const Json& model_type = get_or_null(model, "type");
    if (model_type != "BPE")
        fail("{}: tokenizer model type {} is not supported (byte-level BPE only)", path.string(), one_line(model_type.dump(), 40));
    if (get_or_null(model, "byte_fallback") == true)
        fail("{}: SentencePiece-style BPE (byte_fallback) without tokenizer.model is not supported", path.string());
    const std::string pre = detect_pre_tokenizer(tokenizer, path);

    // The tokenizer's vocab: model.vocab extended by added_tokens (an added token's id wins
    // for its content, as in tokenizers' get_vocab(with_added_tokens=True)).
    const Json& vocab = get_or_null(model, "vocab");
    if (!vocab.is_object()) fail("{}: model.vocab is not an object", path.string());
    std::unordered_map<std::string, uint64_t> content_to_id;
    content_to_id.reserve(vocab.size() * 2);
    for (const auto& [content, id_json] : vocab.items()) {
        const auto id = json_int(id_json);
        if (!id || *id < 0 || id_json.is_boolean()) fail("{}: model.vocab entry {} has an invalid id", path.string(), one_line(content, 80));
        content_to_id[content] = static_cast<uint64_t>(*id);
    }
    struct Added {
        bool special;
        bool normalized;
    };
    std::unordered_map<std::string, Added> added_by_content;
    const Json& added_tokens = get_or_null(tokenizer, "added_tokens");
    if (!added_tokens.is_null() && !added_tokens.is_array()) fail("{}: added_tokens is not a list", path.string());
    if (added_tokens.is_array()) {
        for (const auto& atok : added_tokens) {
            const Json& content = get_or_null(atok, "content");
            const Json& id_json = get_or_null(atok, "id");
            const auto id = json_int(id_json);
            if (!content.is_string() || !id || *id < 0 || id_json.is_boolean())
                fail("{}: malformed added_tokens entry {}", path.string(), one_line(atok.dump(), 80));
            const bool special = get_or_null(atok, "special") == true;
            const Json& normalized = get_or_null(atok, "normalized");
            // tokenizers' AddedToken default: normalized = !special.
            added_by_content[content.get<std::string>()] = {special, normalized.is_boolean() ? normalized.get<bool>() : !special};
            content_to_id[content.get<std::string>()] = static_cast<uint64_t>(*id);
        }
    }

    uint64_t max_id = 0;
    for (const auto& [content, id] : content_to_id) max_id = std::max(max_id, id);
    const uint64_t vocab_size = opt.vocab_size ? opt.vocab_size : content_to_id.size();
    if (!content_to_id.empty() && max_id >= vocab_size)
        fail("{}: token id {} does not fit vocab_size {}{}", path.string(), max_id, vocab_size,
             opt.vocab_size ? " from config.json" : "");
    if (vocab_size > kMaxVocabSize) fail("{}: vocab_size {} is implausibly large", (dir / "config.json").string(), vocab_size);

    std::vector<const std::string*> by_id(vocab_size, nullptr);
    for (const auto& [content, id] : content_to_id) {
        if (by_id[id]) fail("{}: token id {} is used by both {} and {}", path.string(), id, one_line(*by_id[id], 60), one_line(content, 60));
        by_id[id] = &content;
    }

    // Non-normalized added tokens go through encode/decode in the converter; for a lone added
    // token that is the decoder (ByteLevel here) plus transformers' optional space clean-up.
    const bool byte_level_decoder = get_or_null(get_or_null(tokenizer, "decoder"), "type") == "ByteLevel";
    const std::optional<Json> tokenizer_config = read_json_object_if_present(dir / "tokenizer_config.json");
    const bool clean_up_spaces = tokenizer_config && get_or_null(*tokenizer_config, "clean_up_tokenization_spaces") == true;

    std::vector<std::string> tokens(vocab_size);
    std::vector<int32_t> types(vocab_size, kNormal);
    for (uint64_t i = 0; i < vocab_size; ++i) {
        if (!by_id[i]) {
            tokens[i] = fmt::format("[PAD{}]", i);
            types[i] = kUnused;
            continue;
        }
        std::string token = *by_id[i];
        auto added = added_by_content.find(token);
        if (added != added_by_content.end()) {
            if (!added->second.normalized) {
                if (byte_level_decoder) token = byte_level_decode(token);
                if (clean_up_spaces) token = clean_up_tokenization(std::move(token));
            }
            if (added->second.special || does_token_look_special(token)) {
                types[i] = kControl;
            } else {
                replace_all(token, kSentencePieceSpace, " ");  // pre-normalize user-defined spaces
                types[i] = kUserDefined;
            }
        }
        tokens[i] = std::move(token);
    }

    SpecialVocab special(dir, {.load_merges = true, .n_vocab = std::nullopt, .config_bos = opt.bos_token_id,
                               .config_eos = opt.eos_token_id});
    // The converter only warns here; llama.cpp then refuses the file ("cannot find tokenizer merges").
    if (special.merges().empty()) fail("{}: byte-level BPE without merges (none in model.merges or merges.txt)", path.string());

    md.set("tokenizer.ggml.model", GgufValue::string("gpt2"));
    md.set("tokenizer.ggml.pre", GgufValue::string(pre));
    if (!tokens.empty()) {
        md.set("tokenizer.ggml.tokens", GgufValue::string_array(tokens));
        md.set("tokenizer.ggml.token_type", GgufValue::i32_array(types));
    }
    special.add_to_gguf(md);
}

}  // namespace

void add_tokenizer_metadata(const std::string& hf_dir, const TokenizerExportOptions& opt, GgufMetadata& md) {
    const fs::path dir(hf_dir);
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) fail("{}: not a directory", hf_dir);

    if (opt.llama_model_quirks) {
        // LlamaModel.set_vocab writes this before the vocabulary.
        const fs::path config_path = dir / "tokenizer_config.json";
        if (auto config = read_json_object_if_present(config_path)) {
            const Json& add_prefix_space = get_or_null(*config, "add_prefix_space");
            if (!add_prefix_space.is_null())
                md.set("tokenizer.ggml.add_space_prefix", GgufValue::boolean(truthy(add_prefix_space)));
        }
    }

    if (fs::is_regular_file(dir / "tokenizer.model", ec)) {
        add_sentencepiece_vocab(dir, opt, md);
    } else if (fs::is_regular_file(dir / "tokenizer.json", ec)) {
        add_byte_level_bpe_vocab(dir, opt, md);
    } else {
        fail("{}: no tokenizer.model or tokenizer.json", hf_dir);
    }

    if (opt.llama_model_quirks) {
        if (opt.vocab_size == 32016) {
            // CodeLlama: fill-in-the-middle ids. GGUFWriter has no prefix/suffix/middle handler, so
            // of these only eot reaches the file; the second SpecialVocab also re-writes the
            // add_* flags and chat template it finds (in place, same values).
            SpecialVocab fim(dir, {.load_merges = false, .n_vocab = std::nullopt,
                                   .types = {"prefix", "suffix", "middle", "eot"},
                                   .config_bos = std::nullopt, .config_eos = std::nullopt});
            const fs::path here = dir / "config.json";
            fim.set_special_token("prefix", Json(32007), here);
            fim.set_special_token("suffix", Json(32008), here);
            fim.set_special_token("middle", Json(32009), here);
            fim.set_special_token("eot", Json(32010), here);
            fim.add_to_gguf(md);
        }
        if (opt.vocab_size == 49152) md.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(false));  // Granite small
    }
}

}  // namespace qf
