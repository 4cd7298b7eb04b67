#include "hf/tensor_map.h"

#include "common/error.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numbers>

namespace qf {

int64_t MappedTensor::n_elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

int64_t MappedTensor::n_rows() const { return shape.empty() ? 1 : n_elements() / shape[0]; }

namespace {

struct Expected {
    std::string gguf_name;
    std::vector<int64_t> torch_shape;
    MappedTensor::Permute permute = MappedTensor::Permute::None;
    bool optional = false;
};

std::string shape_str(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

// Every tensor a checkpoint of this config holds, keyed by its HF name.
std::map<std::string, Expected> expected_tensors(const ModelConfig& c) {
    using P = MappedTensor::Permute;
    const int64_t embd = c.n_embd, ff = c.n_ff, vocab = c.vocab_size, hd = c.head_dim;
    const int64_t q_rows = int64_t{c.n_head} * hd, kv_rows = int64_t{c.n_head_kv} * hd;
    const P pq = c.permute_qk ? P::Q : P::None, pk = c.permute_qk ? P::K : P::None;

    std::map<std::string, Expected> e;
    e["model.embed_tokens.weight"] = {"token_embd.weight", {vocab, embd}};
    e["model.norm.weight"] = {"output_norm.weight", {embd}};
    e["lm_head.weight"] = {"output.weight", {vocab, embd}, P::None, /*optional=*/true};
    for (uint32_t i = 0; i < c.n_layer; ++i) {
        const std::string hf = "model.layers." + std::to_string(i) + ".";
        const std::string gg = "blk." + std::to_string(i) + ".";
        auto add = [&](const std::string& hf_suffix, const std::string& gguf_suffix, std::vector<int64_t> shape, P permute = P::None) {
            e[hf + hf_suffix] = {gg + gguf_suffix, std::move(shape), permute};
        };
        add("input_layernorm.weight", "attn_norm.weight", {embd});
        add("self_attn.q_proj.weight", "attn_q.weight", {q_rows, embd}, pq);
        add("self_attn.k_proj.weight", "attn_k.weight", {kv_rows, embd}, pk);
        add("self_attn.v_proj.weight", "attn_v.weight", {kv_rows, embd});
        add("self_attn.o_proj.weight", "attn_output.weight", {embd, q_rows});
        if (c.qkv_bias) {
            add("self_attn.q_proj.bias", "attn_q.bias", {q_rows}, pq);
            add("self_attn.k_proj.bias", "attn_k.bias", {kv_rows}, pk);
            add("self_attn.v_proj.bias", "attn_v.bias", {kv_rows});
        }
        if (c.o_bias) add("self_attn.o_proj.bias", "attn_output.bias", {embd});
        if (c.qk_norm) {
            add("self_attn.q_norm.weight", "attn_q_norm.weight", {hd});
            add("self_attn.k_norm.weight", "attn_k_norm.weight", {hd});
        }
        add("post_attention_layernorm.weight", "ffn_norm.weight", {embd});
        add("mlp.gate_proj.weight", "ffn_gate.weight", {ff, embd});
        add("mlp.up_proj.weight", "ffn_up.weight", {ff, embd});
        add("mlp.down_proj.weight", "ffn_down.weight", {embd, ff});
        if (c.mlp_bias) {
            add("mlp.gate_proj.bias", "ffn_gate.bias", {ff});
            add("mlp.up_proj.bias", "ffn_up.bias", {ff});
            add("mlp.down_proj.bias", "ffn_down.bias", {embd});
        }
    }
    return e;
}

// The converter skips these buffers (saved by some older exports) without a word.
bool dropped(const std::string& name) {
    return name.ends_with(".attention.masked_bias") || name.ends_with(".attention.bias") || name.ends_with(".rotary_emb.inv_freq");
}

// ModelBase.prepare_tensors: 1-D tensors, norms and anything not ending ".weight" stay F32.
bool keep_f32(const std::string& gguf_name, size_t n_dims) {
    return n_dims <= 1 || gguf_name.ends_with("_norm.weight") || !gguf_name.ends_with(".weight");
}

// A product in float32 that the compiler may not fuse with a following add (FMA would round
// once where torch rounds twice).
[[gnu::noinline]] float mul_f32(float a, float b) {
    volatile float p = a * b;
    return p;
}

// HF row (or bias element) feeding GGUF row r of a permuted q/k tensor with head size d.
int64_t permuted_source(int64_t r, int64_t d) {
    const int64_t head = r / d, within = r % d;
    return head * d + (within % 2) * (d / 2) + within / 2;
}

}  // namespace

std::vector<float> llama3_rope_factors(const ModelConfig& cfg) {
    const RopeScaling& rs = cfg.rope_scaling;
    const int64_t dim = cfg.head_dim;
    // torch turns each Python float into float32 when it meets a float32 tensor; the two
    // wavelength thresholds and the factor range are computed in Python (double) first.
    const double old_ctx = rs.original_context_length;
    const float high_wavelen = static_cast<float>(old_ctx / static_cast<double>(rs.high_freq_factor));
    const float low_wavelen = static_cast<float>(old_ctx / static_cast<double>(rs.low_freq_factor));
    const float factor_range = static_cast<float>(static_cast<double>(rs.high_freq_factor) - static_cast<double>(rs.low_freq_factor));
    const float two_pi = static_cast<float>(2.0 * std::numbers::pi);
    const float old_ctx_f = static_cast<float>(old_ctx);

    std::vector<float> factors;
    for (int64_t i = 0; i < dim; i += 2) {
        // freqs = 1 / (base ** (arange(0, dim, 2, float32) / dim)); "x / t" in torch is t.reciprocal() * x.
        const float exponent = static_cast<float>(i) / static_cast<float>(dim);
        const float power = static_cast<float>(std::pow(static_cast<double>(cfg.rope_theta), static_cast<double>(exponent)));
        const float freq = 1.0f / power;
        const float wavelen = mul_f32(1.0f / freq, two_pi);
        if (wavelen < high_wavelen) {
            factors.push_back(1.0f);
        } else if (wavelen > low_wavelen) {
            factors.push_back(rs.factor);
        } else {
            const float smooth = (mul_f32(1.0f / wavelen, old_ctx_f) - rs.low_freq_factor) / factor_range;
            factors.push_back(1.0f / ((1.0f - smooth) / rs.factor + smooth));
        }
    }
    return factors;
}

std::vector<MappedTensor> map_hf_tensors(const ModelConfig& cfg, const SafetensorsModel& st) {
    std::vector<MappedTensor> out;
    if (cfg.rope_scaling.type == "llama3" && cfg.gguf_arch == "llama") {
        MappedTensor t;
        t.gguf_name = "rope_freqs.weight";
        t.generated = llama3_rope_factors(cfg);
        t.shape = {static_cast<int64_t>(t.generated.size())};
        t.keep_f32 = true;
        out.push_back(std::move(t));
    }

    const auto expected = expected_tensors(cfg);
    // Shards are already in file order; the converter sorts each shard's tensors by name.
    const auto& all = st.tensors();
    std::vector<const StTensor*> order;
    for (size_t begin = 0; begin < all.size();) {
        size_t end = begin;
        while (end < all.size() && all[end].file == all[begin].file) ++end;
        std::vector<const StTensor*> part;
        for (size_t i = begin; i < end; ++i) part.push_back(&all[i]);
        std::sort(part.begin(), part.end(), [](const StTensor* a, const StTensor* b) { return a->name < b->name; });
        order.insert(order.end(), part.begin(), part.end());
        begin = end;
    }

    size_t found_required = 0;
    for (const StTensor* src : order) {
        if (dropped(src->name)) continue;
        auto it = expected.find(src->name);
        if (it == expected.end())
            fail("{}: tensor '{}' is not expected in a {} checkpoint with {} layers (model_type '{}')", src->file, printable_name(src->name),
                 cfg.gguf_arch, cfg.n_layer, cfg.model_type);
        const Expected& e = it->second;
        if (src->shape != e.torch_shape)
            fail("{}: tensor '{}': shape {} does not match config.json (expected {})", src->file, printable_name(src->name), shape_str(src->shape),
                 shape_str(e.torch_shape));
        MappedTensor t;
        t.gguf_name = e.gguf_name;
        t.source = src;
        t.shape.assign(src->shape.rbegin(), src->shape.rend());
        t.permute = e.permute;
        t.keep_f32 = keep_f32(t.gguf_name, t.shape.size());
        out.push_back(std::move(t));
        if (!e.optional) ++found_required;
    }

    const size_t required = static_cast<size_t>(std::count_if(expected.begin(), expected.end(), [](const auto& kv) { return !kv.second.optional; }));
    if (found_required != required) {
        for (const auto& [name, e] : expected)
            if (!e.optional && !st.find(name)) fail("{}: missing tensor '{}' ({} expects it)", st.source(), name, cfg.model_type);
    }
    return out;
}

void read_rows_f32(const MappedTensor& t, const ModelConfig& cfg, int64_t first_row, int64_t n_rows, float* dst) {
    const int64_t row = t.row_size(), rows = t.n_rows();
    if (first_row < 0 || n_rows < 0 || first_row > rows || n_rows > rows - first_row)
        fail("{}: rows [{}, {}) requested, the tensor has {}", t.gguf_name, first_row, first_row + n_rows, rows);
    if (!t.source) {
        if (static_cast<int64_t>(t.generated.size()) != t.n_elements())
            fail("{}: generated data holds {} values, the shape needs {}", t.gguf_name, t.generated.size(), t.n_elements());
        if (n_rows > 0) std::memcpy(dst, t.generated.data() + first_row * row, static_cast<size_t>(n_rows * row) * sizeof(float));
        return;
    }
    if (t.permute == MappedTensor::Permute::None) {
        convert_to_f32(*t.source, first_row * row, n_rows * row, dst);
        return;
    }

    const int64_t heads = t.permute == MappedTensor::Permute::Q ? cfg.n_head : cfg.n_head_kv;
    if (t.shape.size() == 1) {
        // A bias: one GGUF row whose elements are permuted like the weight's rows.
        if (heads <= 0 || row % heads != 0 || (row / heads) % 2 != 0)
            fail("{}: cannot permute {} values over {} heads", t.gguf_name, row, heads);
        if (n_rows == 0) return;
        std::vector<float> hf(static_cast<size_t>(row));
        convert_to_f32(*t.source, 0, row, hf.data());
        for (int64_t e = 0; e < row; ++e) dst[e] = hf[static_cast<size_t>(permuted_source(e, row / heads))];
        return;
    }
    if (heads <= 0 || rows % heads != 0 || (rows / heads) % 2 != 0)
        fail("{}: cannot permute {} rows over {} heads", t.gguf_name, rows, heads);
    const int64_t d = rows / heads;
    for (int64_t i = 0; i < n_rows; ++i) convert_to_f32(*t.source, permuted_source(first_row + i, d) * row, row, dst + i * row);
}

uint64_t count_parameters(const std::vector<MappedTensor>& tensors) {
    uint64_t n = 0;
    for (const auto& t : tensors) n += static_cast<uint64_t>(t.n_elements());
    return n;
}

}  // namespace qf
