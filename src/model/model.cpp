// Over 600 lines on purpose: loading, the kernels, the stages forward() runs and the weight
// overrides all work on Transformer::Impl, which stays private to this file.
//
// The llama-family forward pass. Facts from llama.cpp (src/llama-model.cpp, src/models/*.cpp,
// ggml-cpu ops): RMSNorm with the mean square summed in double; RoPE "normal" (adjacent
// pairs) for llama, whose q/k rows the converter permuted, and NEOX (pairs half a head apart)
// for qwen2/qwen3; theta_i = pos * base^(-2i/n_rot) computed as ggml does (a float running
// product), divided by rope_freqs[i] (llama3 scaling) and multiplied by 1/factor (linear
// scaling); qwen3 normalizes every q/k head (RMSNorm over head_dim) before RoPE; attention
// scale 1/sqrt(head_dim), causal mask, softmax with max subtraction; SwiGLU feed-forward;
// the output matrix is token_embd when output.weight is absent.
//
// Two roundings follow llama.cpp's CPU backend on purpose, so that perplexity and KL
// divergence are the figures a llama.cpp user gets: activations are rounded to the weight
// type's dot-product type before every weight product (see ActivationRounding), and K and V
// are rounded to f16 (llama.cpp's default KV cache type). Everything else is f32.
#include "model/model.h"

#include "common/error.h"
#include "common/half.h"
#include "model/gemm.h"
#include "quant/types.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <vector>

namespace qf {

namespace {

// A weight matrix left in the mapped file: `rows` rows of `cols` values in its stored type.
struct Weight {
    std::string name;
    GgmlType type = GgmlType::F32;
    const std::byte* data = nullptr;
    int64_t cols = 0, rows = 0;
    uint64_t row_bytes = 0;
    DequantizeRowFn dequantize = nullptr;
};

struct Layer {
    std::vector<float> attn_norm, ffn_norm, q_norm, k_norm;  // q/k norm: qwen3 only
    std::vector<float> bq, bk, bv, bo, b_gate, b_up, b_down;  // empty when absent
    Weight wq, wk, wv, wo, w_gate, w_up, w_down;
};

enum class RopeStyle { Normal, Neox };

// llama.cpp's CPU backend does not multiply a weight by f32 activations: it first converts
// them to the weight type's "vec_dot_type" (ggml-cpu.c, type_traits_cpu): f16 for F16
// weights, bf16 for BF16, 8-bit blocks of 32 with an f16 scale (Q8_0/Q8_1) for the legacy
// quants, 8-bit blocks of 256 with an f32 scale (Q8_K) for the k- and i-quants. That
// rounding is part of what a quant costs in llama.cpp (for Q4_K_M it is a few percent of
// the KL divergence), so the activations are rounded the same way here before the f32
// product: qforge's figures are the ones llama.cpp users get.
enum class ActivationRounding { None, F16, BF16, Q8_0, Q8_K };

ActivationRounding activation_rounding(GgmlType t) {
    switch (t) {
        case GgmlType::F32: return ActivationRounding::None;
        case GgmlType::F16: return ActivationRounding::F16;
        case GgmlType::BF16: return ActivationRounding::BF16;
        case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1: case GgmlType::Q8_0:
        case GgmlType::IQ4_NL: case GgmlType::MXFP4:
            return ActivationRounding::Q8_0;
        default: return ActivationRounding::Q8_K;
    }
}

// x -> d * q with q = round(x / d) in 8 bits, per block, as quantize_row_q8_0 (x86: round
// half to even, scale stored as f16) and quantize_row_q8_K_ref (scale -max/127 of the value
// of largest magnitude, f32) compute it; then back to floats.
void round_activations(ActivationRounding mode, const float* x, int64_t n, float* y) {
    switch (mode) {
        case ActivationRounding::None:
            std::memcpy(y, x, sizeof(float) * static_cast<size_t>(n));
            return;
        case ActivationRounding::F16:
            gemm::round_through_f16(x, y, n);
            return;
        case ActivationRounding::BF16:
            for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(f32_to_bf16(x[i]));
            return;
        case ActivationRounding::Q8_0:
            for (int64_t b = 0; b + 32 <= n; b += 32) {
                float amax = 0;
                for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b + j]));
                const float d = amax / 127.0f;
                const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
                const float d16 = f16_to_f32(f32_to_f16(d));
                for (int j = 0; j < 32; ++j) y[b + j] = d16 * static_cast<float>(nearest_int(x[b + j] * id));
            }
            return;
        case ActivationRounding::Q8_K:
            for (int64_t b = 0; b + 256 <= n; b += 256) {
                float amax = 0, max = 0;
                for (int j = 0; j < 256; ++j)
                    if (std::fabs(x[b + j]) > amax) {
                        amax = std::fabs(x[b + j]);
                        max = x[b + j];
                    }
                if (amax == 0.0f) {
                    std::fill(y + b, y + b + 256, 0.0f);
                    continue;
                }
                const float iscale = -127.0f / max;
                const float d = 1.0f / iscale;
                for (int j = 0; j < 256; ++j) y[b + j] = d * static_cast<float>(std::min(127, nearest_int(iscale * x[b + j])));
            }
            return;
    }
}

std::optional<uint64_t> find_uint(const GgufMetadata& md, const std::string& key) {
    const GgufValue* v = md.find(key);
    if (!v) return std::nullopt;
    return v->as_u64();
}

}  // namespace

struct Transformer::Impl {
    GgufFile file;
    ModelHparams hp;
    RopeStyle rope_style = RopeStyle::Normal;
    int64_t n_rot = 0;
    float freq_scale = 1.0f;
    std::vector<float> rope_factors;  // n_rot/2 divisors of theta (llama3), or empty
    Weight token_embd, output;
    std::vector<float> output_norm;
    std::vector<Layer> layers;

    explicit Impl(const std::string& path) : file(path) { load(); }

    [[noreturn]] void bad(const std::string& what) const { fail("{}: {}", file.path(), what); }

    void load();
    const GgufTensorInfo& tensor(const std::string& name, std::initializer_list<int64_t> shape) const;
    Weight weight(const std::string& name, int64_t cols, int64_t rows) const;
    std::vector<float> vector_tensor(const std::string& name, int64_t n, bool required) const;

    bool output_tied = false;                    // output is token_embd (no output.weight)
    std::map<std::string, Weight, std::less<>> originals;  // mapped weights replaced by override_weight

    const Layer& layer(int64_t il) const {
        if (il < 0 || il >= hp.n_layer) bad(fmt::format("layer {} is outside 0..{}", il, hp.n_layer - 1));
        return layers[static_cast<size_t>(il)];
    }
    const Weight* find_weight(std::string_view name) const;
    Weight* find_weight(std::string_view name) {
        return const_cast<Weight*>(static_cast<const Impl*>(this)->find_weight(name));
    }
    void norm_rows(const float* in, const std::vector<float>& weight, int64_t T, float* out) const;
    void norm_heads(float* rows, int64_t T, int64_t n_heads, int64_t row_len, const std::vector<float>& weight) const;
    void rope_angles(int64_t T, std::vector<float>& cos_t, std::vector<float>& sin_t) const;
    void rope(float* rows, int64_t T, int64_t n_heads, int64_t row_len, const std::vector<float>& cos_t,
              const std::vector<float>& sin_t) const;
    void matmul(const Weight& w, const float* x, int64_t n_tokens, float* y, const std::vector<float>& bias,
                const ActivationObserver* observer) const;
    void attention(const float* q, const float* k, const float* v, int64_t T, float* out) const;
    void check_finite(const float* x, int64_t n, int64_t row_len, const std::string& where) const;
};

// ---------------------------------------------------------------------------------------------
// Loading

const GgufTensorInfo& Transformer::Impl::tensor(const std::string& name, std::initializer_list<int64_t> shape) const {
    const GgufTensorInfo* t = file.find_tensor(name);
    if (!t) bad(fmt::format("missing tensor '{}'", name));
    const std::vector<int64_t> want(shape);
    if (t->shape != want) {
        auto show = [](const std::vector<int64_t>& s) {
            std::string out;
            for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
            return "[" + out + "]";
        };
        bad(fmt::format("tensor '{}' has shape {}, expected {}", name, show(t->shape), show(want)));
    }
    const TypeTraits& tr = traits(t->type);
    if (!tr.dequantize) bad(fmt::format("tensor '{}' has type {}, which qforge cannot evaluate", name, tr.name));
    return *t;
}

Weight Transformer::Impl::weight(const std::string& name, int64_t cols, int64_t rows) const {
    const GgufTensorInfo& t = tensor(name, {cols, rows});
    Weight w;
    w.name = name;
    w.type = t.type;
    w.cols = cols;
    w.rows = rows;
    const auto rb = row_bytes(t.type, cols);
    if (!rb) bad(fmt::format("tensor '{}': row of {} is not a whole number of {} blocks", name, cols, type_name(t.type)));
    w.row_bytes = *rb;
    const auto bytes = file.tensor_data(t);
    uint64_t need = 0;
    if (mul_overflows(w.row_bytes, static_cast<uint64_t>(rows), &need) || need > bytes.size())
        bad(fmt::format("tensor '{}' is shorter than its shape", name));
    w.data = bytes.data();
    w.dequantize = traits(t.type).dequantize;  // F16 rows: F16C where the CPU has it
    return w;
}

std::vector<float> Transformer::Impl::vector_tensor(const std::string& name, int64_t n, bool required) const {
    if (!required && !file.find_tensor(name)) return {};
    const GgufTensorInfo& t = tensor(name, {n});
    if (!row_bytes(t.type, n)) bad(fmt::format("tensor '{}': {} values are not whole {} blocks", name, n, type_name(t.type)));
    std::vector<float> out(static_cast<size_t>(n));
    traits(t.type).dequantize(file.tensor_data(t).data(), out.data(), n);
    return out;
}

void Transformer::Impl::load() {
    const GgufMetadata& md = file.metadata();
    const GgufValue* arch_value = md.find("general.architecture");
    if (!arch_value || arch_value->type != GgufValueType::STRING) bad("no general.architecture string");
    hp.arch = arch_value->as_string();
    const std::string& a = hp.arch;
    if (a == "llama") {
        rope_style = RopeStyle::Normal;
    } else if (a == "qwen2" || a == "qwen3") {
        rope_style = RopeStyle::Neox;
    } else {
        bad(fmt::format("unsupported architecture '{}' (supported: llama, qwen2, qwen3)", a));
    }
    if (auto experts = find_uint(md, a + ".expert_count"); experts && *experts > 0)
        bad(fmt::format("mixture-of-experts models ({} experts) are not supported", *experts));

    auto required_uint = [&](const std::string& key) -> int64_t {
        auto v = find_uint(md, key);
        if (!v) bad(fmt::format("missing metadata key '{}'", key));
        if (*v == 0 || *v > (uint64_t{1} << 31)) bad(fmt::format("metadata '{}' = {} is out of range", key, *v));
        return static_cast<int64_t>(*v);
    };
    hp.n_layer = required_uint(a + ".block_count");
    hp.n_embd = required_uint(a + ".embedding_length");
    hp.n_ff = required_uint(a + ".feed_forward_length");
    hp.n_head = required_uint(a + ".attention.head_count");
    hp.n_head_kv = md.find(a + ".attention.head_count_kv") ? required_uint(a + ".attention.head_count_kv") : hp.n_head;
    hp.n_ctx_train = md.find(a + ".context_length") ? required_uint(a + ".context_length") : 0;
    if (hp.n_head % hp.n_head_kv != 0)
        bad(fmt::format("head_count {} is not a multiple of head_count_kv {}", hp.n_head, hp.n_head_kv));
    if (md.find(a + ".attention.key_length")) {
        hp.head_dim = required_uint(a + ".attention.key_length");
    } else {
        if (hp.n_embd % hp.n_head != 0) bad(fmt::format("embedding_length {} is not a multiple of head_count {}", hp.n_embd, hp.n_head));
        hp.head_dim = hp.n_embd / hp.n_head;
    }
    if (md.find(a + ".attention.value_length") && required_uint(a + ".attention.value_length") != hp.head_dim)
        bad("attention.value_length differs from key_length (not supported)");
    n_rot = md.find(a + ".rope.dimension_count") ? required_uint(a + ".rope.dimension_count") : hp.head_dim;
    if (n_rot > hp.head_dim || n_rot % 2 != 0) bad(fmt::format("rope.dimension_count {} does not fit head size {}", n_rot, hp.head_dim));
    if (a == "qwen3" && n_rot != hp.head_dim) bad("qwen3 needs rope.dimension_count equal to the head size");

    auto float_key = [&](const std::string& key, float fallback) {
        const GgufValue* v = md.find(key);
        return v ? static_cast<float>(v->as_f64()) : fallback;
    };
    hp.rms_eps = float_key(a + ".attention.layer_norm_rms_epsilon", 1e-5f);
    hp.rope_theta = float_key(a + ".rope.freq_base", 10000.0f);
    if (!(hp.rms_eps > 0) || !std::isfinite(hp.rms_eps)) bad("attention.layer_norm_rms_epsilon must be positive");
    if (!(hp.rope_theta > 0) || !std::isfinite(hp.rope_theta)) bad("rope.freq_base must be positive");
    if (const GgufValue* st = md.find(a + ".rope.scaling.type")) {
        const std::string& type = st->as_string();
        if (type == "linear") {
            const float factor = float_key(a + ".rope.scaling.factor", 1.0f);
            if (!(factor > 0) || !std::isfinite(factor)) bad("rope.scaling.factor must be positive");
            freq_scale = 1.0f / factor;
        } else if (type != "none") {
            bad(fmt::format("rope scaling type '{}' is not supported (supported: none, linear, llama3 via rope_freqs)", type));
        }
    } else if (const GgufValue* f = md.find(a + ".rope.scaling.factor")) {
        // llama.cpp reads the factor even without a type; linear is its default for llama.
        const float factor = static_cast<float>(f->as_f64());
        if (factor > 0 && std::isfinite(factor)) freq_scale = 1.0f / factor;
    }

    // Vocabulary size and embedding width from the embedding matrix itself.
    const GgufTensorInfo* te = file.find_tensor("token_embd.weight");
    if (!te) bad("missing tensor 'token_embd.weight'");
    if (te->shape.size() != 2 || te->shape[0] != hp.n_embd)
        bad(fmt::format("tensor 'token_embd.weight' does not have {} columns", hp.n_embd));
    hp.n_vocab = te->shape[1];
    token_embd = weight("token_embd.weight", hp.n_embd, hp.n_vocab);
    output_norm = vector_tensor("output_norm.weight", hp.n_embd, true);
    output_tied = !file.find_tensor("output.weight");
    output = output_tied ? token_embd : weight("output.weight", hp.n_embd, hp.n_vocab);
    if (file.find_tensor("rope_freqs.weight")) {
        rope_factors = vector_tensor("rope_freqs.weight", n_rot / 2, true);
        for (float f : rope_factors)
            if (!(f > 0) || !std::isfinite(f)) bad("tensor 'rope_freqs.weight' holds a non-positive factor");
    }

    const int64_t E = hp.n_embd, hd = hp.head_dim, q_dim = hp.n_head * hd, kv_dim = hp.n_head_kv * hd, F = hp.n_ff;
    layers.resize(static_cast<size_t>(hp.n_layer));
    for (int64_t i = 0; i < hp.n_layer; ++i) {
        Layer& L = layers[static_cast<size_t>(i)];
        const std::string p = "blk." + std::to_string(i) + ".";
        L.attn_norm = vector_tensor(p + "attn_norm.weight", E, true);
        L.ffn_norm = vector_tensor(p + "ffn_norm.weight", E, true);
        L.wq = weight(p + "attn_q.weight", E, q_dim);
        L.wk = weight(p + "attn_k.weight", E, kv_dim);
        L.wv = weight(p + "attn_v.weight", E, kv_dim);
        L.wo = weight(p + "attn_output.weight", q_dim, E);
        if (file.find_tensor(p + "ffn_gate_inp.weight")) bad("mixture-of-experts models are not supported");
        L.w_gate = weight(p + "ffn_gate.weight", E, F);
        L.w_up = weight(p + "ffn_up.weight", E, F);
        L.w_down = weight(p + "ffn_down.weight", F, E);
        L.bq = vector_tensor(p + "attn_q.bias", q_dim, a == "qwen2");
        L.bk = vector_tensor(p + "attn_k.bias", kv_dim, a == "qwen2");
        L.bv = vector_tensor(p + "attn_v.bias", kv_dim, a == "qwen2");
        L.bo = vector_tensor(p + "attn_output.bias", E, false);
        L.b_gate = vector_tensor(p + "ffn_gate.bias", F, false);
        L.b_up = vector_tensor(p + "ffn_up.bias", F, false);
        L.b_down = vector_tensor(p + "ffn_down.bias", E, false);
        if (a == "qwen3") {
            L.q_norm = vector_tensor(p + "attn_q_norm.weight", hd, true);
            L.k_norm = vector_tensor(p + "attn_k_norm.weight", hd, true);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Kernels

namespace {

// y = x / sqrt(mean(x^2) + eps) * weight, the mean square summed in double as ggml does.
void rms_norm_row(const float* x, const float* weight, int64_t n, float eps, float* y) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
    const float scale = 1.0f / std::sqrt(static_cast<float>(sum / static_cast<double>(n)) + eps);
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * scale) * weight[i];
}

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

}  // namespace

// y[t][o] = sum_k x[t][k] * W[o][k] (+ bias[o]). Panels of 16 weight rows are dequantized into
// a per-thread buffer, transposed to k-major and multiplied against every token; threads take
// panels, so each weight byte is read once per call and the tokens stream through the cache.
void Transformer::Impl::matmul(const Weight& w, const float* x, int64_t n_tokens, float* y, const std::vector<float>& bias,
                               const ActivationObserver* observer) const {
    if (observer && *observer)
        (*observer)(w.name, std::span<const float>(x, static_cast<size_t>(n_tokens * w.cols)), n_tokens);
    constexpr int P = gemm::kPanelCols;
    const int64_t K = w.cols, N = w.rows;
    const int64_t n_panels = (N + P - 1) / P;
    const ActivationRounding rounding = activation_rounding(w.type);
    std::vector<float> rounded;
    if (rounding != ActivationRounding::None) {
        rounded.resize(static_cast<size_t>(n_tokens * K));
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < n_tokens; ++t) round_activations(rounding, x + t * K, K, rounded.data() + t * K);
        x = rounded.data();
    }
#pragma omp parallel
    {
        std::vector<float> rows(static_cast<size_t>(P * K));
        std::vector<float> panel(static_cast<size_t>(P * K));
#pragma omp for schedule(dynamic, 1)
        for (int64_t p = 0; p < n_panels; ++p) {
            const int64_t r0 = p * P;
            const int nr = static_cast<int>(std::min<int64_t>(P, N - r0));
            for (int r = 0; r < nr; ++r)
                w.dequantize(w.data + static_cast<uint64_t>(r0 + r) * w.row_bytes, rows.data() + r * K, K);
            for (int64_t k = 0; k < K; ++k) {
                float* dst = panel.data() + k * P;
                for (int r = 0; r < nr; ++r) dst[r] = rows[static_cast<size_t>(r * K + k)];
                for (int r = nr; r < P; ++r) dst[r] = 0.0f;
            }
            gemm::panel_product(x, K, n_tokens, panel.data(), P, K, y + r0, N, nr);
        }
    }
    if (!bias.empty()) {
        for (int64_t t = 0; t < n_tokens; ++t)
            for (int64_t o = 0; o < N; ++o) y[t * N + o] += bias[static_cast<size_t>(o)];
    }
}

// Causal multi-head attention with grouped KV heads, everything f32. q: T x (n_head*hd),
// k/v: T x (n_head_kv*hd) (v padded by 16 floats at the end), out: T x (n_head*hd).
void Transformer::Impl::attention(const float* q, const float* k, const float* v, int64_t T, float* out) const {
    constexpr int P = gemm::kPanelCols;
    const int64_t hd = hp.head_dim, H = hp.n_head, Hkv = hp.n_head_kv, group = H / Hkv;
    const int64_t q_dim = H * hd, kv_dim = Hkv * hd, Tpad = round_up(T, P);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

    // K^T per KV head ([hd][Tpad], zero padded) so a panel of 16 keys is 16 adjacent floats.
    std::vector<float> kt(static_cast<size_t>(Hkv * hd * Tpad), 0.0f);
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < Hkv; ++g)
        for (int64_t j = 0; j < T; ++j)
            for (int64_t d = 0; d < hd; ++d) kt[static_cast<size_t>((g * hd + d) * Tpad + j)] = k[j * kv_dim + g * hd + d];

    constexpr int64_t kQueryBlock = 48;
    const int64_t n_qblocks = (T + kQueryBlock - 1) / kQueryBlock;
#pragma omp parallel
    {
        std::vector<float> scores(static_cast<size_t>(kQueryBlock * Tpad));
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < H * n_qblocks; ++item) {
            const int64_t h = item / n_qblocks, qb = item % n_qblocks;
            const int64_t g = h / group;
            const int64_t i0 = qb * kQueryBlock, i1 = std::min(T, i0 + kQueryBlock);
            const int64_t n_keys = i1;  // keys 0..i1-1 can be seen by some query of the block
            const int64_t ld = round_up(n_keys, P);
            // scores[i - i0][j] = q_i . k_j for the keys a query of the block may see.
            for (int64_t j0 = 0; j0 < n_keys; j0 += P) {
                const int64_t first = std::max(i0, j0);  // earlier queries see none of these keys
                gemm::panel_product(q + first * q_dim + h * hd, q_dim, i1 - first, kt.data() + g * hd * Tpad + j0, Tpad, hd,
                                    scores.data() + (first - i0) * ld + j0, ld, P);
            }
            for (int64_t i = i0; i < i1; ++i) {
                float* s = scores.data() + (i - i0) * ld;
                float mx = -INFINITY;
                for (int64_t j = 0; j <= i; ++j) {
                    s[j] *= scale;
                    mx = std::max(mx, s[j]);
                }
                double sum = 0;
                for (int64_t j = 0; j <= i; ++j) {
                    s[j] = std::exp(s[j] - mx);
                    sum += s[j];
                }
                const float inv = static_cast<float>(1.0 / sum);
                for (int64_t j = 0; j <= i; ++j) s[j] *= inv;
                for (int64_t j = i + 1; j < ld; ++j) s[j] = 0.0f;  // masked: the P.V product reads them
            }
            // out_i = sum_j p_ij v_j, 16 head dims at a time, V read in place (rows of kv_dim).
            for (int64_t d0 = 0; d0 < hd; d0 += P) {
                const int nc = static_cast<int>(std::min<int64_t>(P, hd - d0));
                gemm::panel_product(scores.data(), ld, i1 - i0, v + g * hd + d0, kv_dim, n_keys,
                                    out + i0 * q_dim + h * hd + d0, q_dim, nc);
            }
        }
    }
}

void Transformer::Impl::check_finite(const float* x, int64_t n_rows, int64_t row_len, const std::string& where) const {
    for (int64_t r = 0; r < n_rows; ++r)
        for (int64_t i = 0; i < row_len; ++i)
            if (!std::isfinite(x[r * row_len + i]))
                bad(fmt::format("non-finite values (NaN or Inf) first appear in {} (token position {})", where, r));
}

void Transformer::Impl::norm_rows(const float* in, const std::vector<float>& weight, int64_t T, float* out) const {
    const int64_t E = hp.n_embd;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < T; ++t) rms_norm_row(in + t * E, weight.data(), E, hp.rms_eps, out + t * E);
}

void Transformer::Impl::norm_heads(float* rows, int64_t T, int64_t n_heads, int64_t row_len,
                                   const std::vector<float>& weight) const {
    const int64_t hd = hp.head_dim;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < n_heads; ++h) {
            float* r = rows + t * row_len + h * hd;
            rms_norm_row(r, weight.data(), hd, hp.rms_eps, r);
        }
}

// RoPE angles per position, as ggml_rope_cache_init computes them (float running product).
void Transformer::Impl::rope_angles(int64_t T, std::vector<float>& cos_t, std::vector<float>& sin_t) const {
    const int64_t half = n_rot / 2;
    cos_t.assign(static_cast<size_t>(T * half), 0.0f);
    sin_t.assign(static_cast<size_t>(T * half), 0.0f);
    const float theta_scale = std::pow(hp.rope_theta, -2.0f / static_cast<float>(n_rot));
    for (int64_t t = 0; t < T; ++t) {
        float theta = static_cast<float>(t);
        for (int64_t i = 0; i < half; ++i) {
            const float ff = rope_factors.empty() ? 1.0f : rope_factors[static_cast<size_t>(i)];
            const float angle = freq_scale * (theta / ff);
            cos_t[static_cast<size_t>(t * half + i)] = std::cos(angle);
            sin_t[static_cast<size_t>(t * half + i)] = std::sin(angle);
            theta *= theta_scale;
        }
    }
}

void Transformer::Impl::rope(float* rows, int64_t T, int64_t n_heads, int64_t row_len, const std::vector<float>& cos_t,
                             const std::vector<float>& sin_t) const {
    const int64_t half = n_rot / 2, hd = hp.head_dim;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < T; ++t) {
        const float* c = cos_t.data() + t * half;
        const float* s = sin_t.data() + t * half;
        for (int64_t h = 0; h < n_heads; ++h) {
            float* r = rows + t * row_len + h * hd;
            for (int64_t i = 0; i < half; ++i) {
                // normal: (r[2i], r[2i+1]); neox: (r[i], r[i + n_rot/2])
                float* a = rope_style == RopeStyle::Normal ? r + 2 * i : r + i;
                float* b = rope_style == RopeStyle::Normal ? r + 2 * i + 1 : r + i + half;
                const float x0 = *a, x1 = *b;
                *a = x0 * c[i] - x1 * s[i];
                *b = x0 * s[i] + x1 * c[i];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Forward pass

Transformer::Transformer(const std::string& gguf_path) : impl_(std::make_unique<Impl>(gguf_path)) {}
Transformer::~Transformer() = default;
Transformer::Transformer(Transformer&&) noexcept = default;
Transformer& Transformer::operator=(Transformer&&) noexcept = default;

const ModelHparams& Transformer::hparams() const { return impl_->hp; }
const GgufFile& Transformer::file() const { return impl_->file; }

void Transformer::forward(std::span<const int32_t> tokens, std::span<float> logits, const ActivationObserver* observer) const {
    forward_from(tokens, 0, logits, observer);
}

void Transformer::forward_from(std::span<const int32_t> tokens, size_t first_output, std::span<float> logits,
                               const ActivationObserver* observer) const {
    const Impl& m = *impl_;
    const ModelHparams& hp = m.hp;
    const int64_t T = static_cast<int64_t>(tokens.size());
    if (first_output > tokens.size())
        m.bad(fmt::format("forward: first output position {} is past the {} tokens", first_output, T));
    const int64_t first = static_cast<int64_t>(first_output), n_out = T - first;
    if (logits.size() != static_cast<size_t>(n_out) * static_cast<size_t>(hp.n_vocab))
        m.bad(fmt::format("forward: logits hold {} floats, {} output positions x {} vocabulary need {}", logits.size(), n_out,
                          hp.n_vocab, n_out * hp.n_vocab));
    if (T == 0) return;
    const int64_t E = hp.n_embd;
    std::vector<float> x(static_cast<size_t>(T * E)), xn(static_cast<size_t>(T * E));
    std::vector<float> att(static_cast<size_t>(T * hp.n_head * hp.head_dim)), h(static_cast<size_t>(T * hp.n_ff));
    embed(tokens, x.data());
    for (int64_t il = 0; il < hp.n_layer; ++il) {
        attention_input(il, x.data(), T, xn.data());
        attention(il, xn.data(), T, att.data(), observer);
        attention_output(il, att.data(), T, x.data(), observer);
        ffn_input(il, x.data(), T, xn.data());
        ffn_hidden(il, xn.data(), T, h.data(), observer);
        ffn_output(il, h.data(), T, x.data(), observer);
    }
    if (n_out == 0) return;
    output_input(x.data() + first * E, n_out, xn.data());
    output_logits(xn.data(), n_out, logits.data(), observer);
}

void Transformer::embed(std::span<const int32_t> tokens, float* x) const {
    const Impl& m = *impl_;
    const int64_t E = m.hp.n_embd;
    for (size_t t = 0; t < tokens.size(); ++t) {
        const int32_t id = tokens[t];
        if (id < 0 || id >= m.hp.n_vocab)
            m.bad(fmt::format("forward: token id {} at position {} is outside the vocabulary of {}", id, t, m.hp.n_vocab));
        m.token_embd.dequantize(m.token_embd.data + static_cast<uint64_t>(id) * m.token_embd.row_bytes,
                                x + static_cast<int64_t>(t) * E, E);
    }
}

void Transformer::attention_input(int64_t layer, const float* x, int64_t T, float* xn) const {
    const Impl& m = *impl_;
    m.norm_rows(x, m.layer(layer).attn_norm, T, xn);
}

void Transformer::ffn_input(int64_t layer, const float* x, int64_t T, float* xn) const {
    const Impl& m = *impl_;
    m.norm_rows(x, m.layer(layer).ffn_norm, T, xn);
}

void Transformer::output_input(const float* x, int64_t T, float* xn) const {
    const Impl& m = *impl_;
    m.norm_rows(x, m.output_norm, T, xn);
}

void Transformer::attention(int64_t layer, const float* xn, int64_t T, float* att, const ActivationObserver* observer) const {
    const Impl& m = *impl_;
    const ModelHparams& hp = m.hp;
    const Layer& L = m.layer(layer);
    const int64_t hd = hp.head_dim, H = hp.n_head, Hkv = hp.n_head_kv;
    const int64_t q_dim = H * hd, kv_dim = Hkv * hd;
    std::vector<float> q(static_cast<size_t>(T * q_dim)), k(static_cast<size_t>(T * kv_dim)),
        v(static_cast<size_t>(T * kv_dim + gemm::kPanelCols));
    m.matmul(L.wq, xn, T, q.data(), L.bq, observer);
    m.matmul(L.wk, xn, T, k.data(), L.bk, observer);
    m.matmul(L.wv, xn, T, v.data(), L.bv, observer);
    if (!L.q_norm.empty()) {
        m.norm_heads(q.data(), T, H, q_dim, L.q_norm);
        m.norm_heads(k.data(), T, Hkv, kv_dim, L.k_norm);
    }
    std::vector<float> cos_t, sin_t;
    m.rope_angles(T, cos_t, sin_t);
    m.rope(q.data(), T, H, q_dim, cos_t, sin_t);
    m.rope(k.data(), T, Hkv, kv_dim, cos_t, sin_t);
    // llama.cpp keeps K (after RoPE) and V in an F16 cache by default; rounding them the same
    // way halves the divergence from its logits (quantized activations amplify tiny differences).
    gemm::round_through_f16(k.data(), k.data(), T * kv_dim);
    gemm::round_through_f16(v.data(), v.data(), T * kv_dim);
    m.attention(q.data(), k.data(), v.data(), T, att);
}

void Transformer::attention_output(int64_t layer, const float* att, int64_t T, float* x,
                                   const ActivationObserver* observer) const {
    const Impl& m = *impl_;
    const Layer& L = m.layer(layer);
    const int64_t E = m.hp.n_embd;
    std::vector<float> tmp(static_cast<size_t>(T * E));
    m.matmul(L.wo, att, T, tmp.data(), L.bo, observer);
    for (int64_t i = 0; i < T * E; ++i) x[i] += tmp[static_cast<size_t>(i)];
}

void Transformer::ffn_hidden(int64_t layer, const float* xn, int64_t T, float* h, const ActivationObserver* observer) const {
    const Impl& m = *impl_;
    const Layer& L = m.layer(layer);
    const int64_t F = m.hp.n_ff;
    std::vector<float> up(static_cast<size_t>(T * F));
    m.matmul(L.w_gate, xn, T, h, L.b_gate, observer);
    m.matmul(L.w_up, xn, T, up.data(), L.b_up, observer);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < T * F; ++i) {
        const float g = h[i];
        h[i] = g / (1.0f + std::exp(-g)) * up[static_cast<size_t>(i)];
    }
}

void Transformer::ffn_output(int64_t layer, const float* h, int64_t T, float* x, const ActivationObserver* observer) const {
    const Impl& m = *impl_;
    const Layer& L = m.layer(layer);
    const int64_t E = m.hp.n_embd;
    std::vector<float> tmp(static_cast<size_t>(T * E));
    m.matmul(L.w_down, h, T, tmp.data(), L.b_down, observer);
    for (int64_t i = 0; i < T * E; ++i) x[i] += tmp[static_cast<size_t>(i)];
    m.check_finite(x, T, E, fmt::format("layer {} (output of blk.{})", layer, layer));
}

void Transformer::output_logits(const float* xn, int64_t T, float* logits, const ActivationObserver* observer) const {
    const Impl& m = *impl_;
    static const std::vector<float> no_bias;
    m.matmul(m.output, xn, T, logits, no_bias, observer);
    m.check_finite(logits, T, m.hp.n_vocab, "the output logits");
}

// ---------------------------------------------------------------------------------------------
// Weight overrides

const Weight* Transformer::Impl::find_weight(std::string_view name) const {
    if (name == token_embd.name) return &token_embd;
    if (name == output.name) return &output;
    for (const Layer& L : layers)
        for (const Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
            if (w->name == name) return w;
    return nullptr;
}

void Transformer::override_weight(std::string_view name, GgmlType type, std::span<const std::byte> data) {
    Impl& m = *impl_;
    Weight* w = m.find_weight(name);
    if (!w) m.bad(fmt::format("override: no weight product named '{}'", name));
    const TypeTraits& tr = traits(type);
    if (!tr.dequantize) m.bad(fmt::format("override: '{}' cannot be evaluated in type {}", name, tr.name));
    const auto rb = row_bytes(type, w->cols);
    if (!rb || *rb * static_cast<uint64_t>(w->rows) != data.size())
        m.bad(fmt::format("override: {} bytes of {} do not hold '{}' ({} x {})", data.size(), tr.name, name, w->rows, w->cols));
    if (!m.originals.contains(w->name)) m.originals.emplace(w->name, *w);
    w->type = type;
    w->data = data.data();
    w->row_bytes = *rb;
    w->dequantize = tr.dequantize;
    if (m.output_tied && w == &m.token_embd) m.output = m.token_embd;
}

void Transformer::clear_overrides() {
    Impl& m = *impl_;
    for (auto& [name, original] : m.originals) *m.find_weight(name) = original;
    m.originals.clear();
    if (m.output_tied) m.output = m.token_embd;
}

std::optional<std::pair<int64_t, int64_t>> Transformer::weight_shape(std::string_view name) const {
    const Weight* w = impl_->find_weight(name);
    if (!w) return std::nullopt;
    return std::pair<int64_t, int64_t>{w->cols, w->rows};
}

}  // namespace qf
