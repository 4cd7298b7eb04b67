#include "hf/model_config.h"

#include "common/error.h"
#include "common/mapped_file.h"
#include "hf/safetensors.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cmath>
#include <filesystem>
#include <limits>

namespace qf {

namespace fs = std::filesystem;
using json = nlohmann::json;

const char* hf_arch_name(HfArch arch) {
    switch (arch) {
        case HfArch::Llama: return "llama";
        case HfArch::Mistral: return "mistral";
        case HfArch::Qwen2: return "qwen2";
        case HfArch::Qwen3: return "qwen3";
    }
    return "?";
}

namespace {

// JSON null counts as absent: transformers then falls back to its default as well.
const json* member(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return nullptr;
    return &*it;
}

bool integer_value(const json& v, int64_t* out) {
    if (v.is_number_unsigned()) {
        uint64_t u = v.get<uint64_t>();
        if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
        *out = static_cast<int64_t>(u);
        return true;
    }
    if (v.is_number_integer()) {
        *out = v.get<int64_t>();
        return true;
    }
    return false;
}

// A count the GGUF stores as u32; 0 is never meaningful for these keys.
uint32_t positive_u32(const json& j, const char* key, const std::string& label, std::optional<uint32_t> fallback = std::nullopt) {
    const json* v = member(j, key);
    if (!v) {
        if (fallback) return *fallback;
        fail("{}: missing '{}'", label, key);
    }
    int64_t x = 0;
    if (!integer_value(*v, &x)) fail("{}: '{}' must be an integer (got {})", label, key, printable_name(v->dump()));
    if (x <= 0 || x > std::numeric_limits<uint32_t>::max())
        fail("{}: '{}' must be a positive 32-bit integer (got {})", label, key, x);
    return static_cast<uint32_t>(x);
}

float float_value(const json& j, const char* key, const std::string& label, float fallback) {
    const json* v = member(j, key);
    if (!v) return fallback;
    if (!v->is_number()) fail("{}: '{}' must be a number (got {})", label, key, printable_name(v->dump()));
    const double d = v->get<double>();
    if (!std::isfinite(d)) fail("{}: '{}' is not finite", label, key);
    return static_cast<float>(d);
}

bool bool_value(const json& j, const char* key, const std::string& label, bool fallback) {
    const json* v = member(j, key);
    if (!v) return fallback;
    if (!v->is_boolean()) fail("{}: '{}' must be true or false (got {})", label, key, printable_name(v->dump()));
    return v->get<bool>();
}

std::optional<uint32_t> token_id(const json& j, const char* key, const std::string& label) {
    const json* v = member(j, key);
    int64_t x = 0;
    // The converter only takes plain integers here (Llama 3 lists several eos ids: ignored).
    if (!v || !integer_value(*v, &x)) return std::nullopt;
    if (x < 0 || x > std::numeric_limits<uint32_t>::max()) fail("{}: '{}' is out of range ({})", label, key, x);
    return static_cast<uint32_t>(x);
}

// rope_scaling as the converter sees it: "rope_type" (or the legacy "type"), with a top-level
// original_max_position_embeddings mirrored in when the dict lacks it.
RopeScaling parse_rope_scaling(const json& j, const std::string& label, HfArch arch) {
    RopeScaling rs;
    const json* scaling = member(j, "rope_scaling");
    if (!scaling) return rs;
    if (!scaling->is_object()) fail("{}: 'rope_scaling' must be an object or null", label);
    const json* type = member(*scaling, "rope_type");
    if (!type) type = member(*scaling, "type");
    if (!type) return rs;
    if (!type->is_string()) fail("{}: rope_scaling type must be a string (got {})", label, printable_name(type->dump()));
    std::string t = type->get<std::string>();
    for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    json params = *scaling;
    if (!member(params, "original_max_position_embeddings") && member(j, "original_max_position_embeddings"))
        params["original_max_position_embeddings"] = j["original_max_position_embeddings"];
    const std::string what = label + ": rope_scaling";

    if (t == "default" || t == "dynamic") return rs;  // the converter writes nothing for these
    if (t == "linear") {
        if (!member(params, "factor")) return rs;  // no factor: the converter writes no scaling keys
        rs.type = "linear";
        rs.factor = float_value(params, "factor", what, 1.0f);
    } else if (t == "yarn") {
        if (!member(params, "factor")) return rs;
        rs.type = "yarn";
        rs.factor = float_value(params, "factor", what, 1.0f);
        rs.original_context_length = positive_u32(params, "original_max_position_embeddings", what);
        auto opt = [&](const char* key) -> std::optional<float> {
            if (!member(params, key)) return std::nullopt;
            return float_value(params, key, what, 0.0f);
        };
        rs.yarn_ext_factor = opt("extrapolation_factor");
        rs.yarn_attn_factor = member(params, "attention_factor") ? opt("attention_factor") : opt("attn_factor");
        rs.yarn_beta_fast = opt("beta_fast");
        rs.yarn_beta_slow = opt("beta_slow");
    } else if (t == "llama3") {
        if (arch != HfArch::Llama && arch != HfArch::Mistral)
            fail("{}: rope_scaling type 'llama3' is only supported for llama/mistral models", label);
        rs.type = "llama3";
        // Defaults are the ones LlamaModel.generate_extra_tensors uses.
        rs.factor = float_value(params, "factor", what, 8.0f);
        rs.low_freq_factor = float_value(params, "low_freq_factor", what, 1.0f);
        rs.high_freq_factor = float_value(params, "high_freq_factor", what, 4.0f);
        rs.original_context_length = positive_u32(params, "original_max_position_embeddings", what, 8192u);
    } else {
        fail("{}: unsupported rope_scaling type '{}' (supported: linear, yarn, llama3)", label, printable_name(t));
    }
    return rs;
}

}  // namespace

ModelConfig parse_model_config(const json& j, const std::string& label, const std::string& name) {
    if (!j.is_object()) fail("{}: not a JSON object", label);
    ModelConfig c;
    c.name = name;
    const json* mt = member(j, "model_type");
    if (!mt || !mt->is_string()) fail("{}: missing 'model_type' (supported: llama, mistral, qwen2, qwen3)", label);
    c.model_type = mt->get<std::string>();
    // Per-arch transformers defaults for keys a config.json may leave out.
    uint32_t default_ctx = 0, default_kv = 0;
    struct Family { const char* model_type; HfArch arch; const char* gguf_arch; uint32_t default_ctx, default_kv; };
    static constexpr Family families[] = {
        {"llama", HfArch::Llama, "llama", 2048, 0},  // 0: one kv head per head
        {"mistral", HfArch::Mistral, "llama", 4096 * 32, 8},
        {"qwen2", HfArch::Qwen2, "qwen2", 32768, 32},
        {"qwen3", HfArch::Qwen3, "qwen3", 32768, 32},
    };
    const Family* family = nullptr;
    for (const auto& f : families)
        if (c.model_type == f.model_type) family = &f;
    if (family) {
        c.arch = family->arch;
        c.gguf_arch = family->gguf_arch;
        default_ctx = family->default_ctx;
        default_kv = family->default_kv;
    } else {
        fail("{}: unsupported model_type '{}' (supported: llama, mistral, qwen2, qwen3)", label, printable_name(c.model_type));
    }

    c.n_layer = positive_u32(j, "num_hidden_layers", label);
    c.n_embd = positive_u32(j, "hidden_size", label);
    c.n_ff = positive_u32(j, "intermediate_size", label);
    c.n_head = positive_u32(j, "num_attention_heads", label);
    // LlamaConfig (and an explicit null elsewhere) falls back to one kv head per head.
    const bool kv_explicit_null = j.contains("num_key_value_heads") && j["num_key_value_heads"].is_null();
    c.n_head_kv = positive_u32(j, "num_key_value_heads", label, default_kv && !kv_explicit_null ? default_kv : c.n_head);
    c.vocab_size = positive_u32(j, "vocab_size", label);
    c.context_length = positive_u32(j, "max_position_embeddings", label, default_ctx);

    if (member(j, "head_dim")) {
        c.head_dim = positive_u32(j, "head_dim", label);
    } else if (c.arch == HfArch::Qwen3) {
        c.head_dim = 128;  // Qwen3Config's default, not hidden_size / heads
    } else {
        if (c.n_embd % c.n_head != 0)
            fail("{}: hidden_size {} is not divisible by num_attention_heads {} (and no head_dim is given)", label, c.n_embd, c.n_head);
        c.head_dim = c.n_embd / c.n_head;
    }
    c.write_head_dim = c.arch != HfArch::Qwen2 || member(j, "head_dim") != nullptr;
    if (c.n_head % c.n_head_kv != 0)
        fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", label, c.n_head, c.n_head_kv);
    if (static_cast<uint64_t>(c.n_head) * c.head_dim > std::numeric_limits<uint32_t>::max())
        fail("{}: num_attention_heads {} x head_dim {} is too large", label, c.n_head, c.head_dim);

    c.rms_norm_eps = float_value(j, "rms_norm_eps", label, 1e-6f);
    c.rope_theta = float_value(j, "rope_theta", label, 10000.0f);
    if (!(c.rms_norm_eps > 0.0f)) fail("{}: 'rms_norm_eps' must be positive", label);
    if (!(c.rope_theta > 0.0f)) fail("{}: 'rope_theta' must be positive", label);
    c.rope_scaling = parse_rope_scaling(j, label, c.arch);
    c.tied_embeddings = bool_value(j, "tie_word_embeddings", label, false);

    switch (c.arch) {
        case HfArch::Llama:
            c.qkv_bias = c.o_bias = bool_value(j, "attention_bias", label, false);
            c.mlp_bias = bool_value(j, "mlp_bias", label, false);
            c.permute_qk = true;
            break;
        case HfArch::Mistral:
            c.permute_qk = true;
            break;
        case HfArch::Qwen2:
            c.qkv_bias = true;
            break;
        case HfArch::Qwen3:
            c.qk_norm = true;
            if (bool_value(j, "attention_bias", label, false))
                fail("{}: attention_bias=true is not supported for qwen3 (llama.cpp has no o_proj bias there)", label);
            break;
    }
    // ggml's NORM rope pairs adjacent values, so the q/k rows are interleaved per half head.
    if (c.permute_qk && c.head_dim % 2 != 0) fail("{}: head_dim {} must be even", label, c.head_dim);

    c.bos_token_id = token_id(j, "bos_token_id", label);
    c.eos_token_id = token_id(j, "eos_token_id", label);
    if (auto n = j.find("_name_or_path"); n != j.end() && n->is_string()) c.name_or_path = n->get<std::string>();
    return c;
}

SamplingDefaults parse_generation_config(const json& j) {
    SamplingDefaults s;
    if (!j.is_object()) return s;
    auto get_f = [&](const char* key) -> std::optional<float> {
        const json* v = member(j, key);
        if (!v || !v->is_number()) return std::nullopt;
        return static_cast<float>(v->get<double>());
    };
    auto get_i = [&](const char* key) -> std::optional<int32_t> {
        const json* v = member(j, key);
        int64_t x = 0;
        if (!v || !integer_value(*v, &x) || x < std::numeric_limits<int32_t>::min() || x > std::numeric_limits<int32_t>::max())
            return std::nullopt;
        return static_cast<int32_t>(x);
    };
    if (const json* v = member(j, "sequence"); v && v->is_string() && !v->get<std::string>().empty())
        s.sequence = v->get<std::string>();
    s.top_k = get_i("top_k");
    s.top_p = get_f("top_p");
    s.min_p = get_f("min_p");
    s.xtc_probability = get_f("xtc_probability");
    s.xtc_threshold = get_f("xtc_threshold");
    s.temp = get_f("temperature");
    s.penalty_last_n = get_i("penalty_last_n");
    s.penalty_repeat = member(j, "penalty_repeat") ? get_f("penalty_repeat") : get_f("repetition_penalty");
    s.mirostat = get_i("mirostat");
    s.mirostat_tau = get_f("mirostat_tau");
    s.mirostat_eta = get_f("mirostat_eta");
    return s;
}

namespace {

json read_json_file(const std::string& path) {
    MappedFile file(path);
    const char* text = reinterpret_cast<const char*>(file.data());
    json j = json::parse(text, text + file.size(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) fail("{}: not valid JSON", path);
    return j;
}

// The folder's own name, also for "." or a trailing slash (the converter's Path.name).
std::string folder_name(const fs::path& dir) {
    fs::path p = dir.lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    std::string name = p.filename().string();
    if (name.empty() || name == "." || name == "..") {
        std::error_code ec;
        fs::path abs = fs::weakly_canonical(fs::absolute(p), ec);
        if (!ec) name = abs.filename().string();
    }
    return name;
}

}  // namespace

ModelConfig load_model_config(const std::string& hf_dir_or_config_json) {
    std::error_code ec;
    fs::path config_path(hf_dir_or_config_json);
    if (fs::is_directory(config_path, ec)) config_path /= "config.json";
    const std::string label = config_path.string();
    if (!fs::is_regular_file(config_path, ec)) fail("{}: not found (a Hugging Face model folder has a config.json)", label);
    const fs::path dir = config_path.has_parent_path() ? config_path.parent_path() : fs::path(".");
    ModelConfig c = parse_model_config(read_json_file(label), label, folder_name(dir));

    // The converter reads generation_config.json leniently: unreadable or invalid means absent.
    const fs::path gen = dir / "generation_config.json";
    if (fs::is_regular_file(gen, ec)) {
        try {
            c.sampling = parse_generation_config(read_json_file(gen.string()));
        } catch (const Error&) {
        }
    }
    return c;
}

}  // namespace qf
