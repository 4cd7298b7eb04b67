#include "plan/plan_model.h"

#include "common/error.h"
#include "gguf/gguf_reader.h"
#include "recipe/recipe.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <limits>

namespace qf {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const json* member(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return nullptr;
    return &*it;
}

uint32_t count(const json& j, const char* key, const std::string& label, std::optional<uint32_t> fallback = std::nullopt) {
    const json* v = member(j, key);
    if (!v) {
        if (fallback) return *fallback;
        fail("{}: missing '{}'", label, key);
    }
    if (!v->is_number_integer()) fail("{}: '{}' must be an integer", label, key);
    const int64_t x = v->get<int64_t>();
    if (x <= 0 || x > std::numeric_limits<uint32_t>::max())
        fail("{}: '{}' must be a positive 32-bit integer (got {})", label, key, x);
    return static_cast<uint32_t>(x);
}

bool flag(const json& j, const char* key, bool fallback) {
    const json* v = member(j, key);
    return v && v->is_boolean() ? v->get<bool>() : fallback;
}

std::string rope_type(const json& j) {
    const json* rs = member(j, "rope_scaling");
    if (!rs || !rs->is_object()) return "";
    for (const char* key : {"rope_type", "type"})
        if (const json* t = member(*rs, key); t && t->is_string()) return t->get<std::string>();
    return "";
}

// Dense attention + FFN hyperparameters shared by every family handled here.
void read_common(PlanModel& m, const json& j, const std::string& label) {
    m.n_layer = count(j, "num_hidden_layers", label);
    m.n_embd = count(j, "hidden_size", label);
    m.n_head = count(j, "num_attention_heads", label);
    m.n_head_kv = count(j, "num_key_value_heads", label, m.n_head);
    if (m.n_embd % m.n_head != 0 && !member(j, "head_dim"))
        fail("{}: hidden_size {} is not a multiple of num_attention_heads {}", label, m.n_embd, m.n_head);
    m.head_dim = count(j, "head_dim", label, m.n_embd / m.n_head);
    m.n_vocab = count(j, "vocab_size", label);
    m.context_length = count(j, "max_position_embeddings", label, 4096);
}

// Keeps every later product in range: the widest row and the largest tensor stay far below
// int64, and KV rows (head_dim x n_head_kv) fit in 32 bits.
void check_dimensions(const PlanModel& m, const std::string& label) {
    constexpr uint64_t kMaxWidth = uint64_t{1} << 31, kMaxElements = uint64_t{1} << 40;
    const uint64_t q = uint64_t{m.head_dim} * m.n_head, kv = uint64_t{m.head_dim} * m.n_head_kv;
    const uint64_t ff = std::max<uint64_t>(m.n_ff, m.n_ff_exp);
    for (uint64_t w : {q, kv, uint64_t{m.n_embd}, 2 * ff, uint64_t{m.n_vocab}})
        if (w > kMaxWidth) fail("{}: a tensor dimension of {} is too large to plan", label, w);
    const uint64_t biggest = std::max({uint64_t{m.n_embd} * m.n_vocab, uint64_t{m.n_embd} * 2 * ff * std::max(m.n_expert, 1u),
                                       uint64_t{m.n_embd} * (q + 2 * kv)});
    if (biggest > kMaxElements || m.n_layer > 100000) fail("{}: model too large to plan", label);
    if (m.n_expert && (m.n_expert_used == 0 || m.n_expert_used > m.n_expert))
        fail("{}: num_experts_per_tok {} must be between 1 and the {} experts", label, m.n_expert_used, m.n_expert);
}

PlanModel from_hf_config(const ModelConfig& cfg, const std::string& dir) {
    PlanModel m;
    m.model_type = cfg.model_type;
    m.gguf_arch = cfg.gguf_arch;
    m.dir = dir;
    m.n_layer = cfg.n_layer;
    m.n_embd = cfg.n_embd;
    m.n_ff = cfg.n_ff;
    m.n_head = cfg.n_head;
    m.n_head_kv = cfg.n_head_kv;
    m.head_dim = cfg.head_dim;
    m.n_vocab = cfg.vocab_size;
    m.context_length = cfg.context_length;
    m.tied = cfg.tied_embeddings;
    m.qkv_bias = cfg.qkv_bias;
    m.qk_norm = cfg.qk_norm;
    m.rope_freqs = cfg.rope_scaling.type == "llama3";
    m.hf = cfg;
    return m;
}

}  // namespace

PlanModel parse_plan_model(const json& j, const std::string& label, const std::string& dir) {
    if (!j.is_object()) fail("{}: not a JSON object", label);
    const json* mt = member(j, "model_type");
    if (!mt || !mt->is_string()) fail("{}: missing 'model_type'", label);
    const std::string model_type = mt->get<std::string>();

    if (model_type == "llama" || model_type == "mistral" || model_type == "qwen2" || model_type == "qwen3") {
        PlanModel m = from_hf_config(parse_model_config(j, label, fs::path(dir).filename().string()), dir);
        check_dimensions(m, label);
        return m;
    }

    PlanModel m;
    m.model_type = model_type;
    m.dir = dir;
    read_common(m, j, label);
    if (model_type == "mixtral") {
        m.gguf_arch = "llama";
        m.n_ff_exp = m.n_ff = count(j, "intermediate_size", label);
        m.n_expert = count(j, "num_local_experts", label);
        m.n_expert_used = count(j, "num_experts_per_tok", label);
        m.tied = flag(j, "tie_word_embeddings", false);
        m.rope_freqs = rope_type(j) == "llama3";
    } else if (model_type == "qwen3_moe") {
        m.gguf_arch = "qwen3moe";
        m.n_ff = count(j, "intermediate_size", label, 1);
        m.n_ff_exp = count(j, "moe_intermediate_size", label);
        m.n_expert = count(j, "num_experts", label);
        m.n_expert_used = count(j, "num_experts_per_tok", label);
        m.head_dim = count(j, "head_dim", label, 128);  // transformers' Qwen3MoeConfig default
        m.tied = flag(j, "tie_word_embeddings", false);
        m.qk_norm = true;
    } else if (model_type == "gemma2") {
        m.gguf_arch = "gemma2";
        m.n_ff = count(j, "intermediate_size", label);
        m.head_dim = count(j, "head_dim", label, 256);  // Gemma2Config default
        m.tied = true;  // the converter skips lm_head: the output matrix is always token_embd
        m.n_swa = count(j, "sliding_window", label, 4096);
    } else if (model_type == "phi3") {
        m.gguf_arch = "phi3";
        m.n_ff = count(j, "intermediate_size", label);
        m.tied = flag(j, "tie_word_embeddings", false);
        const std::string rt = rope_type(j);
        m.rope_factors_long_short = rt == "longrope" || rt == "su";
    } else {
        fail("{}: model_type '{}' is not supported by the planner (supported: llama, mistral, qwen2, qwen3, "
             "mixtral, qwen3_moe, gemma2, phi3)",
             label, model_type);
    }
    check_dimensions(m, label);
    return m;
}

PlanModel load_plan_model(const std::string& model_path) {
    fs::path p(model_path);
    std::error_code ec;
    if (fs::is_regular_file(p, ec) && is_gguf_file(model_path)) return load_plan_model_from_gguf(model_path);
    fs::path config = fs::is_directory(p, ec) ? p / "config.json" : p;
    const std::string label = config.string();
    std::ifstream in(config);
    if (!in) fail("{}: cannot open (expected a model folder, its config.json or a GGUF file)", label);
    json j;
    try {
        j = json::parse(in);
    } catch (const json::parse_error& e) {
        // The parser's own text quotes the offending bytes, which in a binary file are anything.
        fail("{}: neither a GGUF file (no GGUF magic) nor valid JSON (parse error at byte {})", label, e.byte);
    } catch (const json::exception& e) {
        fail("{}: invalid JSON: {}", label, e.what());
    }
    std::string dir = config.parent_path().string();
    if (dir.empty()) dir = ".";
    PlanModel m = parse_plan_model(j, label, dir);
    if (m.hf) {
        // The converter's parser also reads generation_config.json (general.sampling.* keys).
        m.hf = load_model_config(config.string());
    }
    return m;
}

bool is_gguf_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    char magic[4] = {};
    return in.read(magic, 4) && std::string_view(magic, 4) == "GGUF";
}

bool PlanGgufFile::has_quantized_tensors() const {
    return std::any_of(tensors.begin(), tensors.end(), [](const GgufTensorPlan& t) { return is_quantized(t.type); });
}

namespace {

// Any GGUF integer as int64 (unsigned values beyond int64 clamped: they fail the range checks).
int64_t clamped_integer(const GgufValue& v) {
    return v.type == GgufValueType::U64 ? static_cast<int64_t>(std::min<uint64_t>(v.u, INT64_MAX)) : v.as_i64();
}

// A positive 32-bit count from GGUF metadata. Per-layer arrays (head_count_kv of hybrid
// models) give layer 0's value, as llama-quantize's recipe reads them.
std::optional<uint32_t> gguf_count(const GgufMetadata& md, const std::string& key, const std::string& label) {
    const GgufValue* v = md.find(key);
    if (!v) return std::nullopt;
    const GgufValue* scalar = v;
    if (v->type == GgufValueType::ARRAY) {
        if (v->items.empty()) fail("{}: metadata key {} is an empty array", label, key);
        scalar = &v->items.front();
    }
    if (!scalar->is_integer()) fail("{}: metadata key {} is not an integer", label, key);
    const int64_t x = clamped_integer(*scalar);
    if (x <= 0 || x > std::numeric_limits<uint32_t>::max())
        fail("{}: metadata key {} must be a positive 32-bit integer (got {})", label, key, x);
    return static_cast<uint32_t>(x);
}

uint32_t gguf_required(const GgufMetadata& md, const std::string& key, const std::string& label) {
    auto v = gguf_count(md, key, label);
    if (!v) fail("{}: missing metadata key {}", label, key);
    return *v;
}

}  // namespace

PlanModel load_plan_model_from_gguf(const std::string& path) {
    const GgufFile file(path);
    const GgufMetadata& md = file.metadata();
    const GgufValue* arch_value = md.find("general.architecture");
    if (!arch_value || arch_value->type != GgufValueType::STRING) fail("{}: missing general.architecture", path);
    const std::string arch = arch_value->as_string();
    static constexpr const char* kSupported[] = {"llama", "qwen2", "qwen3", "qwen3moe", "gemma2", "phi3"};
    if (std::find(std::begin(kSupported), std::end(kSupported), arch) == std::end(kSupported))
        fail("{}: architecture '{}' is not supported by the planner (supported: llama, qwen2, qwen3, qwen3moe, gemma2, "
             "phi3)",
             path, arch);

    auto gguf = std::make_shared<PlanGgufFile>();
    gguf->path = path;
    gguf->file_bytes = file.file_size();
    gguf->data_offset = file.data_offset();
    gguf->metadata = md;
    gguf->tensors.reserve(file.tensors().size());
    for (const GgufTensorInfo& t : file.tensors()) gguf->tensors.push_back({t.name, t.shape, t.type});
    if (const GgufValue* ft = md.find("general.file_type");
        ft && ft->is_integer() && clamped_integer(*ft) >= 0 && clamped_integer(*ft) <= std::numeric_limits<uint32_t>::max()) {
        gguf->file_type_id = static_cast<uint32_t>(ft->as_i64());
        gguf->file_type = find_file_type(*gguf->file_type_id);
    }
    const GgufTensorInfo* token_embd = file.find_tensor("token_embd.weight");

    PlanModel m;
    m.model_type = arch;
    m.gguf_arch = arch;
    m.dir = fs::path(path).parent_path().string();
    if (m.dir.empty()) m.dir = ".";
    const std::string a = arch + ".";
    m.n_layer = gguf_required(md, a + "block_count", path);
    m.n_embd = gguf_required(md, a + "embedding_length", path);
    m.n_head = gguf_required(md, a + "attention.head_count", path);
    m.n_head_kv = gguf_count(md, a + "attention.head_count_kv", path).value_or(m.n_head);
    m.head_dim = gguf_count(md, a + "attention.key_length", path).value_or(m.n_embd / m.n_head);
    if (m.head_dim == 0) fail("{}: embedding_length {} is smaller than head_count {}", path, m.n_embd, m.n_head);
    const uint32_t head_dim_v = gguf_count(md, a + "attention.value_length", path).value_or(m.head_dim);
    if (head_dim_v != m.head_dim) m.head_dim_v = head_dim_v;
    m.context_length = gguf_count(md, a + "context_length", path).value_or(4096);

    // llama.cpp's n_vocab is the tokenizer's; without one, the arch key, then the embedding rows.
    if (const GgufValue* tokens = md.find("tokenizer.ggml.tokens"); tokens && tokens->type == GgufValueType::ARRAY) {
        if (tokens->items.empty() || tokens->items.size() > std::numeric_limits<uint32_t>::max())
            fail("{}: tokenizer.ggml.tokens has {} entries", path, tokens->items.size());
        m.n_vocab = static_cast<uint32_t>(tokens->items.size());
    } else if (auto v = gguf_count(md, a + "vocab_size", path)) {
        m.n_vocab = *v;
    } else if (token_embd && token_embd->shape.size() == 2 && token_embd->shape[1] > 0 &&
               token_embd->shape[1] <= std::numeric_limits<uint32_t>::max()) {
        m.n_vocab = static_cast<uint32_t>(token_embd->shape[1]);
    } else {
        fail("{}: no vocabulary size (tokenizer.ggml.tokens, {}vocab_size or token_embd.weight)", path, a);
    }

    m.n_expert = gguf_count(md, a + "expert_count", path).value_or(0);
    if (m.n_expert) {
        m.n_expert_used = gguf_count(md, a + "expert_used_count", path).value_or(0);
        m.n_ff = gguf_count(md, a + "feed_forward_length", path).value_or(1);
        m.n_ff_exp = gguf_count(md, a + "expert_feed_forward_length", path).value_or(m.n_ff);
    } else {
        m.n_ff = gguf_required(md, a + "feed_forward_length", path);
    }
    // Only gemma2's alternating pattern (is_swa_layer) is modelled, as for config.json.
    if (arch == "gemma2") m.n_swa = gguf_count(md, a + "attention.sliding_window", path).value_or(4096);

    m.tied = file.find_tensor("output.weight") == nullptr;
    m.qkv_bias = file.find_tensor("blk.0.attn_q.bias") != nullptr;
    m.qk_norm = file.find_tensor("blk.0.attn_q_norm.weight") != nullptr;
    m.rope_freqs = file.find_tensor("rope_freqs.weight") != nullptr;
    m.rope_factors_long_short = file.find_tensor("rope_factors_long.weight") != nullptr;
    check_dimensions(m, path);

    // The fit groups tensors by layer: a block number past block_count is a broken file.
    for (const GgufTensorPlan& t : gguf->tensors) {
        if (!t.name.starts_with("blk.")) continue;
        uint32_t il = 0;
        auto [end, ec] = std::from_chars(t.name.data() + 4, t.name.data() + t.name.size(), il);
        if (ec != std::errc() || end == t.name.data() + t.name.size() || *end != '.' || il >= m.n_layer)
            fail("{}: tensor '{}' is not in one of the {} blocks ({}block_count)", path, t.name, m.n_layer, a);
    }
    m.gguf = std::move(gguf);
    return m;
}

uint64_t tensor_elements(const GgufTensorPlan& t) {
    uint64_t n = 1;
    for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
    return n;
}

std::vector<GgufTensorPlan> plan_tensors(const PlanModel& m, GgmlType ft) {
    if (m.gguf) return m.gguf->tensors;
    if (ft != GgmlType::F32 && ft != GgmlType::F16 && ft != GgmlType::BF16)
        fail("plan: float type must be f32, f16 or bf16 (got {})", type_name(ft));
    const int64_t E = m.n_embd, V = m.n_vocab, F = m.n_ff, D = m.head_dim;
    const int64_t Q = D * m.n_head, KV = D * m.n_head_kv;
    const GgmlType F32 = GgmlType::F32;
    std::vector<GgufTensorPlan> t;
    auto add = [&](std::string name, std::vector<int64_t> shape, GgmlType type) {
        // The converter keeps 1-D tensors in F32 whatever the out type (facts §5.1).
        if (shape.size() == 1) type = F32;
        t.push_back({std::move(name), std::move(shape), type});
    };

    if (m.rope_freqs) add("rope_freqs.weight", {D / 2}, F32);
    if (m.rope_factors_long_short) {
        add("rope_factors_long.weight", {D / 2}, F32);
        add("rope_factors_short.weight", {D / 2}, F32);
    }
    add("token_embd.weight", {E, V}, ft);
    add("output_norm.weight", {E}, F32);
    if (!m.tied) add("output.weight", {E, V}, ft);

    for (uint32_t il = 0; il < m.n_layer; ++il) {
        const std::string b = "blk." + std::to_string(il) + ".";
        add(b + "attn_norm.weight", {E}, F32);
        if (m.gguf_arch == "phi3") {
            add(b + "attn_qkv.weight", {E, Q + 2 * KV}, ft);
        } else {
            add(b + "attn_q.weight", {E, Q}, ft);
            add(b + "attn_k.weight", {E, KV}, ft);
            add(b + "attn_v.weight", {E, KV}, ft);
        }
        if (m.qkv_bias) {
            add(b + "attn_q.bias", {Q}, F32);
            add(b + "attn_k.bias", {KV}, F32);
            add(b + "attn_v.bias", {KV}, F32);
        }
        if (m.hf && m.hf->o_bias) add(b + "attn_output.bias", {E}, F32);
        if (m.qk_norm) {
            add(b + "attn_q_norm.weight", {D}, F32);
            add(b + "attn_k_norm.weight", {D}, F32);
        }
        add(b + "attn_output.weight", {Q, E}, ft);
        if (m.gguf_arch == "gemma2") add(b + "post_attention_norm.weight", {E}, F32);
        add(b + "ffn_norm.weight", {E}, F32);
        if (m.n_expert > 0) {
            const int64_t FE = m.n_ff_exp, NE = m.n_expert;
            add(b + "ffn_gate_inp.weight", {E, NE}, F32);  // router: always F32 (facts §5.1)
            add(b + "ffn_gate_exps.weight", {E, FE, NE}, ft);
            add(b + "ffn_up_exps.weight", {E, FE, NE}, ft);
            add(b + "ffn_down_exps.weight", {FE, E, NE}, ft);
        } else if (m.gguf_arch == "phi3") {
            add(b + "ffn_up.weight", {E, 2 * F}, ft);  // gate and up fused, split at run time
            add(b + "ffn_down.weight", {F, E}, ft);
        } else {
            add(b + "ffn_gate.weight", {E, F}, ft);
            add(b + "ffn_up.weight", {E, F}, ft);
            add(b + "ffn_down.weight", {F, E}, ft);
            if (m.hf && m.hf->mlp_bias) {
                add(b + "ffn_gate.bias", {F}, F32);
                add(b + "ffn_up.bias", {F}, F32);
                add(b + "ffn_down.bias", {E}, F32);
            }
        }
        if (m.gguf_arch == "gemma2") add(b + "post_ffw_norm.weight", {E}, F32);
    }
    return t;
}

}  // namespace qf
