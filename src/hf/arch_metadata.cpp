#include "hf/arch_metadata.h"

#include "hf/tensor_map.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <regex>
#include <vector>

namespace qf {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }
bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
// Python's str.isalpha on one character; non-ASCII bytes are taken to be letters (UTF-8 names).
bool is_alpha(char c) { return is_upper(c) || is_lower(c) || static_cast<unsigned char>(c) >= 0x80; }
char to_upper(char c) { return is_lower(c) ? static_cast<char>(c - 'a' + 'A') : c; }
char to_lower(char c) { return is_upper(c) ? static_cast<char>(c - 'A' + 'a') : c; }

bool full_match(const std::string& s, const char* pattern) {
    // std::regex is slow to build; these run a handful of times per conversion.
    return std::regex_match(s, std::regex(pattern, std::regex::ECMAScript | std::regex::icase));
}

// Python float() on the number part of a size label ("7", "1.5"); nullopt where it raises.
std::optional<double> parse_python_float(const std::string& s) {
    if (s.empty()) return std::nullopt;
    size_t dots = 0, digits = 0;
    for (char c : s) {
        if (c == '.') ++dots;
        else if (is_digit(c)) ++digits;
        else return std::nullopt;
    }
    if (dots > 1 || digits == 0) return std::nullopt;
    return std::strtod(s.c_str(), nullptr);
}

enum : unsigned { kVersion = 1, kType = 2, kSizeLabel = 4, kFinetune = 8, kBasename = 16 };

std::optional<std::string> join_parts(const std::vector<std::string>& parts, const std::vector<unsigned>& types, unsigned want,
                                      unsigned exclude = 0, bool dedup = false) {
    std::vector<std::string> chosen;
    for (size_t i = 0; i < parts.size(); ++i) {
        if (!(types[i] & want) || (types[i] & exclude)) continue;
        if (dedup && std::find(chosen.begin(), chosen.end(), parts[i]) != chosen.end()) continue;
        chosen.push_back(parts[i]);
    }
    if (chosen.empty()) return std::nullopt;
    std::string out = chosen[0];
    for (size_t i = 1; i < chosen.size(); ++i) out += "-" + chosen[i];
    if (out.empty()) return std::nullopt;  // Python's `"-".join(...) or None`
    return out;
}

void set_u32(GgufMetadata& md, const std::string& key, uint64_t v) { md.set(key, GgufValue::u32(static_cast<uint32_t>(v))); }
void set_f32(GgufMetadata& md, const std::string& key, float v) { md.set(key, GgufValue::f32(v)); }
// GGUFWriter.add_string skips empty strings.
void set_string(GgufMetadata& md, const std::string& key, const std::optional<std::string>& v) {
    if (v && !v->empty()) md.set(key, GgufValue::string(*v));
}

}  // namespace

std::string id_to_title(std::string_view id) {
    // Words split on whitespace after '-' becomes ' '; all-lowercase words that are not a
    // version ("v1.2") or start with a digit get Python's str.title().
    std::string text(id);
    std::replace(text.begin(), text.end(), '-', ' ');
    std::vector<std::string> words;
    std::string word;
    for (char c : text + " ") {
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            if (!word.empty()) words.push_back(word);
            word.clear();
        } else {
            word += c;
        }
    }
    static const std::regex version_like(R"(^(v\d+(?:\.\d+)*|\d.*)$)");
    std::string out;
    for (const auto& w : words) {
        const bool has_lower = std::any_of(w.begin(), w.end(), is_lower);
        const bool has_upper = std::any_of(w.begin(), w.end(), is_upper);
        std::string shown = w;
        if (has_lower && !has_upper && !std::regex_match(w, version_like)) {
            bool prev_letter = false;
            for (char& c : shown) {
                const bool letter = is_lower(c) || is_upper(c);
                if (letter) c = prev_letter ? to_lower(c) : to_upper(c);
                prev_letter = letter;
            }
        }
        out += (out.empty() ? "" : " ") + shown;
    }
    return out;
}

ModelIdComponents model_id_components(const std::optional<std::string>& model_id, int64_t total_params) {
    ModelIdComponents r;
    if (!model_id) return r;
    const std::string& id = *model_id;
    if (id.find(' ') != std::string::npos) {  // a human sentence, not a HF id
        r.full_name = id;
        return r;
    }
    std::string full = id;
    if (auto slash = id.find('/'); slash != std::string::npos) {
        r.organization = id.substr(0, slash);
        full = id.substr(slash + 1);
    }
    if (r.organization && !r.organization->empty() && (*r.organization)[0] == '.') r.organization.reset();  // "./x", "../x"
    r.full_name = full;

    std::vector<std::string> parts;
    size_t start = 0;
    for (size_t i = 0; i <= full.size(); ++i) {
        if (i == full.size() || full[i] == '-') {
            if (i > start) parts.push_back(full.substr(start, i - start));
            start = i + 1;
        }
    }
    std::vector<unsigned> types(parts.size(), 0);

    for (size_t i = 0; i < parts.size(); ++i) {
        std::string part = parts[i];
        if (full_match(part, R"((v|iter)?\d+([.]\d+)*)")) {
            types[i] |= kVersion;
        } else if (full_match(part, R"(i?q\d(_\w)*|b?fp?(16|32))")) {
            types[i] |= kType;
            std::transform(part.begin(), part.end(), part.begin(), to_upper);
            parts[i] = part;
        } else if (i > 0 && full_match(part, R"((([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl))")) {
            std::replace(part.begin(), part.end(), '_', '.');
            if (is_digit(part.back()))  // bloom-7b1 -> 7.1B
                part = part.substr(0, part.size() - 2) + "." + part.back() + part[part.size() - 2];
            if (part.size() > 1 && is_digit(part[part.size() - 2]) && std::string("kmbt").find(part.back()) != std::string::npos)
                part.back() = to_upper(part.back());
            if (total_params != 0) {
                if (auto number = parse_python_float(part.substr(0, part.size() - 1))) {
                    const auto scale_index = std::string(" KMBT").find(part.back());
                    const double label_params =
                        *number * std::pow(1000.0, scale_index == std::string::npos ? -1.0 : static_cast<double>(scale_index));
                    const int64_t abs_total = total_params < 0 ? -total_params : total_params;
                    // Far from the real size: probably a context length ("-32k"), so a finetune part.
                    if ((total_params < 0 && label_params < static_cast<double>(abs_total / 8)) ||
                        (total_params > 0 &&
                         std::abs(label_params - static_cast<double>(total_params)) > static_cast<double>(7 * total_params / 8))) {
                        types[i] |= kFinetune;
                        part.back() = to_lower(part.back());
                    }
                }
            }
            if (types[i] == 0) types[i] |= kSizeLabel;
            parts[i] = part;
        } else if (i > 0 && full_match(part, R"(chat|instruct|vision|lora)")) {
            std::string lower = part;
            std::transform(lower.begin(), lower.end(), lower.begin(), to_lower);
            types[i] |= (total_params < 0 && lower == "lora") ? kType : kFinetune;
        }
    }

    // Word-based size labels ("small") give way to a number-based one.
    bool numeric_size = false;
    for (size_t i = 0; i < parts.size(); ++i)
        if ((types[i] & kSizeLabel) && std::any_of(parts[i].begin(), parts[i].end(), is_digit)) numeric_size = true;
    if (numeric_size) {
        for (size_t i = 0; i < parts.size(); ++i)
            if ((types[i] & kSizeLabel) && std::all_of(parts[i].begin(), parts[i].end(), is_alpha)) types[i] &= ~kSizeLabel;
    }

    bool at_start = true;
    for (size_t i = 0; i < parts.size(); ++i) {
        if (at_start && ((types[i] == 0 && is_alpha(parts[i][0])) || (types[i] & kVersion))) {
            types[i] |= kBasename;
        } else {
            at_start = false;
            if (types[i] == 0) types[i] |= kFinetune;
        }
    }
    for (size_t i = parts.size(); i-- > 0;) {  // a trailing version is not part of the base name
        if ((types[i] & kBasename) && types[i] != kBasename) types[i] &= ~kBasename;
        else break;
    }

    r.basename = join_parts(parts, types, kBasename);
    r.size_label = join_parts(parts, types, kSizeLabel, 0, /*dedup=*/true);
    r.finetune = join_parts(parts, types, kFinetune);
    r.version = join_parts(parts, types, kVersion, kBasename);
    if (!r.size_label && !r.finetune && !r.version) r.basename.reset();  // too ambiguous
    return r;
}

std::string size_label_for_count(uint64_t total_params) {
    const double n = static_cast<double>(total_params);
    double scaled;
    const char* suffix;
    if (n > 1e12) scaled = n * 1e-12, suffix = "T";
    else if (n > 1e9) scaled = n * 1e-9, suffix = "B";
    else if (n > 1e6) scaled = n * 1e-6, suffix = "M";
    else scaled = n * 1e-3, suffix = "K";
    // Python: max(min_digits - len(str(round(scaled)).lstrip('0')), 0), round half to even.
    std::string rounded = fmt::format("{:.0f}", std::nearbyint(scaled));
    rounded.erase(0, rounded.find_first_not_of('0') == std::string::npos ? rounded.size() : rounded.find_first_not_of('0'));
    const int fix = std::max(2 - static_cast<int>(rounded.size()), 0);
    return fmt::format("{:.{}f}{}", scaled, fix, suffix);
}

uint64_t config_parameter_count(const ModelConfig& c) {
    const uint64_t embd = c.n_embd, ff = c.n_ff, vocab = c.vocab_size, hd = c.head_dim;
    const uint64_t q = uint64_t{c.n_head} * hd, kv = uint64_t{c.n_head_kv} * hd;
    uint64_t layer = 2 * embd + 2 * q * embd + 2 * kv * embd + 3 * ff * embd;
    if (c.qkv_bias) layer += q + 2 * kv;
    if (c.o_bias) layer += embd;
    if (c.mlp_bias) layer += 2 * ff + embd;
    if (c.qk_norm) layer += 2 * hd;
    uint64_t total = vocab * embd + embd + uint64_t{c.n_layer} * layer;
    if (!c.tied_embeddings) total += vocab * embd;
    if (c.rope_scaling.type == "llama3" && c.gguf_arch == "llama") total += hd / 2;
    return total;
}

void add_arch_metadata(const ModelConfig& cfg, uint32_t file_type, GgufMetadata& md, std::optional<uint64_t> total_params) {
    const uint64_t total = total_params ? *total_params : config_parameter_count(cfg);
    const std::string& arch = cfg.gguf_arch;

    // GGUFWriter(arch=...) writes the architecture first; ModelBase.set_type the file type.
    md.set("general.architecture", GgufValue::string(arch));
    md.set("general.type", GgufValue::string("model"));

    // gguf.Metadata.load: generation_config.json sampling values ...
    const SamplingDefaults& s = cfg.sampling;
    set_string(md, "general.sampling.sequence", s.sequence);
    if (s.top_k) md.set("general.sampling.top_k", GgufValue::i32(*s.top_k));
    if (s.top_p) set_f32(md, "general.sampling.top_p", *s.top_p);
    if (s.min_p) set_f32(md, "general.sampling.min_p", *s.min_p);
    if (s.xtc_probability) set_f32(md, "general.sampling.xtc_probability", *s.xtc_probability);
    if (s.xtc_threshold) set_f32(md, "general.sampling.xtc_threshold", *s.xtc_threshold);
    if (s.temp) set_f32(md, "general.sampling.temp", *s.temp);
    if (s.penalty_last_n) md.set("general.sampling.penalty_last_n", GgufValue::i32(*s.penalty_last_n));
    if (s.penalty_repeat) set_f32(md, "general.sampling.penalty_repeat", *s.penalty_repeat);
    if (s.mirostat) md.set("general.sampling.mirostat", GgufValue::i32(*s.mirostat));
    if (s.mirostat_tau) set_f32(md, "general.sampling.mirostat_tau", *s.mirostat_tau);
    if (s.mirostat_eta) set_f32(md, "general.sampling.mirostat_eta", *s.mirostat_eta);

    // ... then the naming heuristics: "_name_or_path" when it looks like a HF id, then the folder.
    ModelIdComponents naming;
    auto merge = [&](const ModelIdComponents& from) {
        if (!naming.full_name && from.full_name) naming.full_name = id_to_title(*from.full_name);
        if (!naming.organization && from.organization) naming.organization = id_to_title(*from.organization);
        if (!naming.basename) naming.basename = from.basename;
        if (!naming.finetune) naming.finetune = from.finetune;
        if (!naming.version) naming.version = from.version;
        if (!naming.size_label) naming.size_label = from.size_label;
    };
    const int64_t signed_total = static_cast<int64_t>(total);
    if (cfg.name_or_path && std::count(cfg.name_or_path->begin(), cfg.name_or_path->end(), '/') <= 1)
        merge(model_id_components(cfg.name_or_path, signed_total));
    merge(model_id_components(cfg.name, signed_total));
    if (!naming.size_label && total > 0) naming.size_label = size_label_for_count(total);

    set_string(md, "general.name", naming.full_name);
    set_string(md, "general.version", naming.version);
    set_string(md, "general.organization", naming.organization);
    set_string(md, "general.finetune", naming.finetune);
    set_string(md, "general.basename", naming.basename);
    set_string(md, "general.size_label", naming.size_label);

    // TextModel.set_gguf_parameters
    set_u32(md, arch + ".block_count", cfg.n_layer);
    set_u32(md, arch + ".context_length", cfg.context_length);
    set_u32(md, arch + ".embedding_length", cfg.n_embd);
    set_u32(md, arch + ".feed_forward_length", cfg.n_ff);
    set_u32(md, arch + ".attention.head_count", cfg.n_head);
    set_u32(md, arch + ".attention.head_count_kv", cfg.n_head_kv);
    const RopeScaling& rs = cfg.rope_scaling;
    if (rs.type == "linear" || rs.type == "yarn") {
        md.set(arch + ".rope.scaling.type", GgufValue::string(rs.type));
        set_f32(md, arch + ".rope.scaling.factor", rs.factor);
    }
    if (rs.type == "yarn") {
        set_u32(md, arch + ".rope.scaling.original_context_length", rs.original_context_length);
        if (rs.yarn_ext_factor) set_f32(md, arch + ".rope.scaling.yarn_ext_factor", *rs.yarn_ext_factor);
        if (rs.yarn_attn_factor) set_f32(md, arch + ".rope.scaling.yarn_attn_factor", *rs.yarn_attn_factor);
        if (rs.yarn_beta_fast) set_f32(md, arch + ".rope.scaling.yarn_beta_fast", *rs.yarn_beta_fast);
        if (rs.yarn_beta_slow) set_f32(md, arch + ".rope.scaling.yarn_beta_slow", *rs.yarn_beta_slow);
    }
    // "llama3" scaling writes no keys: it becomes the rope_freqs tensor.
    set_f32(md, arch + ".rope.freq_base", cfg.rope_theta);
    set_f32(md, arch + ".attention.layer_norm_rms_epsilon", cfg.rms_norm_eps);
    if (cfg.write_head_dim) {
        set_u32(md, arch + ".attention.key_length", cfg.head_dim);
        set_u32(md, arch + ".attention.value_length", cfg.head_dim);
    }
    set_u32(md, "general.file_type", file_type);
    if (cfg.arch == HfArch::Llama || cfg.arch == HfArch::Mistral) {  // LlamaModel.set_gguf_parameters
        set_u32(md, arch + ".vocab_size", cfg.vocab_size);
        set_u32(md, arch + ".rope.dimension_count", cfg.head_dim);
    }
    set_u32(md, "general.quantization_version", 2);
}

}  // namespace qf
