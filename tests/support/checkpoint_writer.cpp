#include "support/checkpoint_writer.h"

#include "common/error.h"
#include "common/half.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

namespace qf::test {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

std::vector<std::byte> safetensors_bytes_raw(std::string_view header, std::span<const std::byte> data) {
    std::vector<std::byte> out(8 + header.size() + data.size());
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>((n >> (8 * i)) & 0xFF);
    std::memcpy(out.data() + 8, header.data(), header.size());
    if (!data.empty()) std::memcpy(out.data() + 8 + header.size(), data.data(), data.size());
    return out;
}

std::vector<std::byte> safetensors_bytes(const std::vector<RawTensor>& tensors, const nlohmann::json& metadata) {
    ojson header = ojson::object();
    std::vector<std::byte> data;
    for (const auto& t : tensors) {
        ojson entry = ojson::object();
        entry["dtype"] = t.dtype;
        entry["shape"] = t.shape;
        entry["data_offsets"] = {data.size(), data.size() + t.bytes.size()};
        header[t.name] = entry;
        data.insert(data.end(), t.bytes.begin(), t.bytes.end());
    }
    if (!metadata.is_null()) header["__metadata__"] = metadata;
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');  // the reference writer pads the header with spaces
    return safetensors_bytes_raw(text, data);
}

void write_file(const std::string& path, std::span<const std::byte> bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    if (!f) fail("{}: cannot create", path);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!f) fail("{}: write failed", path);
}

void write_text(const std::string& path, std::string_view text) {
    write_file(path, std::span(reinterpret_cast<const std::byte*>(text.data()), text.size()));
}

std::vector<std::pair<std::string, std::vector<int64_t>>> checkpoint_tensor_list(const CheckpointSpec& s) {
    const int64_t embd = s.n_embd, ff = s.n_ff, vocab = s.vocab;
    const int64_t hd = s.head_dim ? s.head_dim : s.n_embd / s.n_head;
    const int64_t q = s.n_head * hd, kv = s.n_head_kv * hd;
    const bool qwen2 = s.model_type == "qwen2", qwen3 = s.model_type == "qwen3";
    std::vector<std::pair<std::string, std::vector<int64_t>>> list;
    list.push_back({"model.embed_tokens.weight", {vocab, embd}});
    for (uint32_t i = 0; i < s.n_layer; ++i) {
        const std::string p = "model.layers." + std::to_string(i) + ".";
        list.push_back({p + "input_layernorm.weight", {embd}});
        list.push_back({p + "self_attn.q_proj.weight", {q, embd}});
        list.push_back({p + "self_attn.k_proj.weight", {kv, embd}});
        list.push_back({p + "self_attn.v_proj.weight", {kv, embd}});
        if (qwen2 || s.attention_bias) {
            list.push_back({p + "self_attn.q_proj.bias", {q}});
            list.push_back({p + "self_attn.k_proj.bias", {kv}});
            list.push_back({p + "self_attn.v_proj.bias", {kv}});
        }
        if (qwen3) {
            list.push_back({p + "self_attn.q_norm.weight", {hd}});
            list.push_back({p + "self_attn.k_norm.weight", {hd}});
        }
        list.push_back({p + "self_attn.o_proj.weight", {embd, q}});
        if (s.attention_bias) list.push_back({p + "self_attn.o_proj.bias", {embd}});
        list.push_back({p + "post_attention_layernorm.weight", {embd}});
        list.push_back({p + "mlp.gate_proj.weight", {ff, embd}});
        list.push_back({p + "mlp.up_proj.weight", {ff, embd}});
        list.push_back({p + "mlp.down_proj.weight", {embd, ff}});
        if (s.mlp_bias) {
            list.push_back({p + "mlp.gate_proj.bias", {ff}});
            list.push_back({p + "mlp.up_proj.bias", {ff}});
            list.push_back({p + "mlp.down_proj.bias", {embd}});
        }
    }
    list.push_back({"model.norm.weight", {embd}});
    if (!s.tied) list.push_back({"lm_head.weight", {vocab, embd}});
    return list;
}

nlohmann::json checkpoint_config(const CheckpointSpec& s) {
    static const std::map<std::string, std::string> architectures = {
        {"llama", "LlamaForCausalLM"}, {"mistral", "MistralForCausalLM"}, {"qwen2", "Qwen2ForCausalLM"}, {"qwen3", "Qwen3ForCausalLM"}};
    nlohmann::json c;
    auto arch = architectures.find(s.model_type);
    c["architectures"] = {arch == architectures.end() ? "UnknownForCausalLM" : arch->second};
    c["model_type"] = s.model_type;
    c["hidden_size"] = s.n_embd;
    c["intermediate_size"] = s.n_ff;
    c["num_hidden_layers"] = s.n_layer;
    c["num_attention_heads"] = s.n_head;
    c["num_key_value_heads"] = s.n_head_kv;
    c["vocab_size"] = s.vocab;
    c["max_position_embeddings"] = s.context_length;
    c["rms_norm_eps"] = 1e-5;
    c["rope_theta"] = 10000.0;
    c["rope_scaling"] = s.rope_scaling;
    c["tie_word_embeddings"] = s.tied;
    c["bos_token_id"] = 1;
    c["eos_token_id"] = 2;
    c["hidden_act"] = "silu";
    c["torch_dtype"] = s.dtype == StDtype::F32 ? "float32" : s.dtype == StDtype::F16 ? "float16" : "bfloat16";
    if (s.head_dim) c["head_dim"] = s.head_dim;
    else if (s.model_type == "qwen3") c["head_dim"] = s.n_embd / s.n_head;  // Qwen3's default would be 128
    if (s.model_type == "llama") {
        c["attention_bias"] = s.attention_bias;
        c["mlp_bias"] = s.mlp_bias;
    }
    for (const auto& [k, v] : s.config_overrides.items()) c[k] = v;
    return c;
}

namespace {

// Stores f32 values as the dtype; returns the bytes and replaces values by what was stored.
std::vector<std::byte> encode(StDtype dtype, std::vector<float>& values) {
    std::vector<std::byte> bytes(values.size() * st_dtype_size(dtype));
    for (size_t i = 0; i < values.size(); ++i) {
        if (dtype == StDtype::F32) {
            std::memcpy(bytes.data() + 4 * i, &values[i], 4);
            continue;
        }
        uint16_t h = dtype == StDtype::F16 ? f32_to_f16(values[i]) : f32_to_bf16(values[i]);
        values[i] = dtype == StDtype::F16 ? f16_to_f32(h) : bf16_to_f32(h);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
    return bytes;
}

std::string shard_name(int i, int n) { return fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, n); }

}  // namespace

Checkpoint write_checkpoint(const std::string& dir, const CheckpointSpec& spec) {
    fs::create_directories(dir);
    Checkpoint ck;
    ck.dir = dir;
    ck.config = checkpoint_config(spec);
    write_text((fs::path(dir) / "config.json").string(), ck.config.dump(2));

    std::mt19937 rng(spec.seed);
    std::uniform_real_distribution<float> weight(-1.0f, 1.0f);
    const auto list = checkpoint_tensor_list(spec);
    const int shards = std::max(spec.shards, 1);
    const size_t per_shard = (list.size() + shards - 1) / shards;
    nlohmann::json weight_map = nlohmann::json::object();
    uint64_t total_size = 0;
    for (int s = 0; s < shards; ++s) {
        const std::string fname = shards == 1 ? "model.safetensors" : shard_name(s, shards);
        const std::string path = (fs::path(dir) / fname).string();
        std::vector<RawTensor> raw;
        for (size_t i = s * per_shard; i < std::min(list.size(), (s + 1) * per_shard); ++i) {
            const auto& [name, shape] = list[i];
            int64_t n = 1;
            for (int64_t d : shape) n *= d;
            StoredTensor st;
            st.shape = shape;
            st.file = path;
            st.values.resize(static_cast<size_t>(n));
            const bool norm = name.ends_with("norm.weight");
            for (auto& v : st.values) v = norm ? 1.0f + 0.25f * weight(rng) : weight(rng);
            raw.push_back({name, st_dtype_name(spec.dtype), shape, encode(spec.dtype, st.values)});
            total_size += raw.back().bytes.size();
            weight_map[name] = fname;
            ck.names.push_back(name);
            ck.tensors[name] = std::move(st);
        }
        write_file(path, safetensors_bytes(raw));
        ck.files.push_back(path);
    }
    if (shards > 1) {
        nlohmann::json index;
        index["metadata"] = {{"total_size", total_size}};
        index["weight_map"] = weight_map;
        write_text((fs::path(dir) / "model.safetensors.index.json").string(), index.dump(2));
    }
    return ck;
}

}  // namespace qf::test
