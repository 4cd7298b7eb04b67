// qf::Transformer on tiny hand-built GGUF files, against a naive reference forward pass
// written from the model definitions (llama / qwen2 / qwen3 as llama.cpp computes them), and
// the refusals: unsupported architectures, types, shapes, MoE, bad tokens, non-finite values.
#include "common/error.h"
#include "common/half.h"
#include "common/output_file.h"
#include "gguf/gguf_writer.h"
#include "model/gemm.h"
#include "model/model.h"
#include "support/test_paths.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>

using namespace qf;

namespace {

struct Spec {
    std::string arch = "llama";
    int64_t n_embd = 32, n_head = 4, n_head_kv = 2, head_dim = 8, n_ff = 64, n_layer = 2, n_vocab = 40;
    float eps = 1e-5f, theta = 10000.0f;
    bool tied = true;
    bool rope_freqs = false;    // llama3-style frequency divisors
    float linear_factor = 0;    // > 0: rope.scaling.type linear
    GgmlType weight_type = GgmlType::F32;
};

struct Tensor {
    std::vector<int64_t> shape;
    std::vector<float> values;  // as the model will see them (rounded to the stored type)
    GgmlType type = GgmlType::F32;
};

using Tensors = std::map<std::string, Tensor>;

Tensors make_tensors(const Spec& s, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    Tensors t;
    auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale, float offset, bool matrix) {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        Tensor x;
        x.shape = std::move(shape);
        x.type = matrix ? s.weight_type : GgmlType::F32;
        x.values.resize(static_cast<size_t>(n));
        for (auto& v : x.values) {
            v = offset + scale * normal(rng);
            if (x.type == GgmlType::F16) v = f16_to_f32(f32_to_f16(v));
        }
        t[name] = std::move(x);
    };
    const int64_t E = s.n_embd, q = s.n_head * s.head_dim, kv = s.n_head_kv * s.head_dim;
    const float w = 1.0f / std::sqrt(static_cast<float>(E));
    add("token_embd.weight", {E, s.n_vocab}, 1.0f, 0.0f, true);
    add("output_norm.weight", {E}, 0.1f, 1.0f, false);
    if (!s.tied) add("output.weight", {E, s.n_vocab}, w, 0.0f, true);
    if (s.rope_freqs) {
        add("rope_freqs.weight", {s.head_dim / 2}, 0.0f, 1.0f, false);
        auto& f = t["rope_freqs.weight"].values;
        for (size_t i = 0; i < f.size(); ++i) f[i] = 1.0f + static_cast<float>(i);
    }
    for (int64_t l = 0; l < s.n_layer; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        add(p + "attn_norm.weight", {E}, 0.1f, 1.0f, false);
        add(p + "attn_q.weight", {E, q}, w, 0.0f, true);
        add(p + "attn_k.weight", {E, kv}, w, 0.0f, true);
        add(p + "attn_v.weight", {E, kv}, w, 0.0f, true);
        add(p + "attn_output.weight", {q, E}, 1.0f / std::sqrt(static_cast<float>(q)), 0.0f, true);
        add(p + "ffn_norm.weight", {E}, 0.1f, 1.0f, false);
        add(p + "ffn_gate.weight", {E, s.n_ff}, w, 0.0f, true);
        add(p + "ffn_up.weight", {E, s.n_ff}, w, 0.0f, true);
        add(p + "ffn_down.weight", {s.n_ff, E}, 1.0f / std::sqrt(static_cast<float>(s.n_ff)), 0.0f, true);
        if (s.arch == "qwen2") {
            add(p + "attn_q.bias", {q}, 0.2f, 0.0f, false);
            add(p + "attn_k.bias", {kv}, 0.2f, 0.0f, false);
            add(p + "attn_v.bias", {kv}, 0.2f, 0.0f, false);
        }
        if (s.arch == "qwen3") {
            add(p + "attn_q_norm.weight", {s.head_dim}, 0.1f, 1.0f, false);
            add(p + "attn_k_norm.weight", {s.head_dim}, 0.1f, 1.0f, false);
        }
    }
    return t;
}

GgufMetadata make_metadata(const Spec& s) {
    GgufMetadata md;
    const std::string& a = s.arch;
    md.set("general.architecture", GgufValue::string(a));
    md.set(a + ".block_count", GgufValue::u32(static_cast<uint32_t>(s.n_layer)));
    md.set(a + ".context_length", GgufValue::u32(256));
    md.set(a + ".embedding_length", GgufValue::u32(static_cast<uint32_t>(s.n_embd)));
    md.set(a + ".feed_forward_length", GgufValue::u32(static_cast<uint32_t>(s.n_ff)));
    md.set(a + ".attention.head_count", GgufValue::u32(static_cast<uint32_t>(s.n_head)));
    md.set(a + ".attention.head_count_kv", GgufValue::u32(static_cast<uint32_t>(s.n_head_kv)));
    md.set(a + ".attention.key_length", GgufValue::u32(static_cast<uint32_t>(s.head_dim)));
    md.set(a + ".attention.layer_norm_rms_epsilon", GgufValue::f32(s.eps));
    md.set(a + ".rope.freq_base", GgufValue::f32(s.theta));
    if (s.linear_factor > 0) {
        md.set(a + ".rope.scaling.type", GgufValue::string("linear"));
        md.set(a + ".rope.scaling.factor", GgufValue::f32(s.linear_factor));
    }
    return md;
}

void write_model(const std::string& path, const GgufMetadata& md, const Tensors& tensors) {
    std::vector<GgufTensorPlan> plan;
    for (const auto& [name, t] : tensors) plan.push_back({name, t.shape, t.type});
    OutputFile out(path, true);
    GgufWriter w(out, md, plan);
    for (const auto& [name, t] : tensors) {
        std::vector<std::byte> bytes;
        if (t.type == GgmlType::F32) {
            bytes.resize(t.values.size() * 4);
            std::memcpy(bytes.data(), t.values.data(), bytes.size());
        } else if (t.type == GgmlType::F16) {
            bytes.resize(t.values.size() * 2);
            for (size_t i = 0; i < t.values.size(); ++i) {
                const uint16_t h = f32_to_f16(t.values[i]);
                std::memcpy(bytes.data() + 2 * i, &h, 2);
            }
        } else {
            bytes.resize(gguf_tensor_bytes({name, t.shape, t.type}));  // zeros: only the type matters
        }
        if (!bytes.empty()) w.write_tensor_data(bytes);
    }
    w.finish();
    out.commit();
}

// ---------------------------------------------------------------------------------------------
// The reference: one token at a time, double accumulation, nothing shared with the model code.

std::vector<double> rms_norm(const std::vector<double>& x, const std::vector<float>& w, float eps) {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double scale = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * scale * w[i];
    return y;
}

// y[o] = sum_k W[o][k] x[k] (W stored as rows of ne[0] values), with optional bias. Inputs of
// F16 weights are rounded to f16 first, as llama.cpp (and qforge) do.
std::vector<double> matvec(const Tensor& w, const std::vector<double>& x, const Tensor* bias = nullptr) {
    const int64_t K = w.shape[0], N = w.shape[1];
    std::vector<double> xr(x);
    if (w.type == GgmlType::F16)
        for (auto& v : xr) v = f16_to_f32(f32_to_f16(static_cast<float>(v)));
    std::vector<double> y(static_cast<size_t>(N), 0.0);
    for (int64_t o = 0; o < N; ++o) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += static_cast<double>(w.values[static_cast<size_t>(o * K + k)]) * xr[static_cast<size_t>(k)];
        y[static_cast<size_t>(o)] = s + (bias ? bias->values[static_cast<size_t>(o)] : 0.0);
    }
    return y;
}

void rope(std::vector<double>& v, int64_t n_heads, int64_t hd, int64_t pos, const Spec& s, const Tensors& t) {
    const bool neox = s.arch != "llama";
    const double scale = s.linear_factor > 0 ? 1.0 / s.linear_factor : 1.0;
    for (int64_t h = 0; h < n_heads; ++h)
        for (int64_t i = 0; i < hd / 2; ++i) {
            double theta = static_cast<double>(pos) * std::pow(static_cast<double>(s.theta), -2.0 * static_cast<double>(i) / static_cast<double>(hd));
            if (s.rope_freqs) theta /= t.at("rope_freqs.weight").values[static_cast<size_t>(i)];
            theta *= scale;
            const size_t a = static_cast<size_t>(h * hd + (neox ? i : 2 * i));
            const size_t b = static_cast<size_t>(h * hd + (neox ? i + hd / 2 : 2 * i + 1));
            const double x0 = v[a], x1 = v[b];
            v[a] = x0 * std::cos(theta) - x1 * std::sin(theta);
            v[b] = x0 * std::sin(theta) + x1 * std::cos(theta);
        }
}

std::vector<float> reference_forward(const Spec& s, const Tensors& t, const std::vector<int32_t>& tokens) {
    const int64_t T = static_cast<int64_t>(tokens.size()), E = s.n_embd, hd = s.head_dim;
    const int64_t group = s.n_head / s.n_head_kv;
    std::vector<std::vector<double>> x(static_cast<size_t>(T));
    for (int64_t i = 0; i < T; ++i) {
        const auto& e = t.at("token_embd.weight").values;
        x[static_cast<size_t>(i)].assign(e.begin() + tokens[static_cast<size_t>(i)] * E, e.begin() + (tokens[static_cast<size_t>(i)] + 1) * E);
    }
    auto bias = [&](const std::string& name) -> const Tensor* {
        auto it = t.find(name);
        return it == t.end() ? nullptr : &it->second;
    };
    for (int64_t l = 0; l < s.n_layer; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        std::vector<std::vector<double>> q(static_cast<size_t>(T)), k(static_cast<size_t>(T)), v(static_cast<size_t>(T));
        for (int64_t i = 0; i < T; ++i) {
            const auto xn = rms_norm(x[static_cast<size_t>(i)], t.at(p + "attn_norm.weight").values, s.eps);
            q[static_cast<size_t>(i)] = matvec(t.at(p + "attn_q.weight"), xn, bias(p + "attn_q.bias"));
            k[static_cast<size_t>(i)] = matvec(t.at(p + "attn_k.weight"), xn, bias(p + "attn_k.bias"));
            v[static_cast<size_t>(i)] = matvec(t.at(p + "attn_v.weight"), xn, bias(p + "attn_v.bias"));
            if (s.arch == "qwen3") {
                for (auto* m : {&q[static_cast<size_t>(i)], &k[static_cast<size_t>(i)]}) {
                    const auto& w = t.at(m == &q[static_cast<size_t>(i)] ? p + "attn_q_norm.weight" : p + "attn_k_norm.weight").values;
                    for (size_t h = 0; h < m->size() / static_cast<size_t>(hd); ++h) {
                        std::vector<double> head(m->begin() + static_cast<ptrdiff_t>(h * hd), m->begin() + static_cast<ptrdiff_t>((h + 1) * hd));
                        head = rms_norm(head, w, s.eps);
                        std::copy(head.begin(), head.end(), m->begin() + static_cast<ptrdiff_t>(h * hd));
                    }
                }
            }
            rope(q[static_cast<size_t>(i)], s.n_head, hd, i, s, t);
            rope(k[static_cast<size_t>(i)], s.n_head_kv, hd, i, s, t);
            // The KV cache holds f16 values, as llama.cpp's default cache type.
            for (auto* m : {&k[static_cast<size_t>(i)], &v[static_cast<size_t>(i)]})
                for (auto& e : *m) e = f16_to_f32(f32_to_f16(static_cast<float>(e)));
        }
        for (int64_t i = 0; i < T; ++i) {
            std::vector<double> att(static_cast<size_t>(s.n_head * hd), 0.0);
            for (int64_t h = 0; h < s.n_head; ++h) {
                const int64_t g = h / group;
                std::vector<double> sc(static_cast<size_t>(i + 1));
                double mx = -1e300;
                for (int64_t j = 0; j <= i; ++j) {
                    double d = 0;
                    for (int64_t c = 0; c < hd; ++c)
                        d += q[static_cast<size_t>(i)][static_cast<size_t>(h * hd + c)] * k[static_cast<size_t>(j)][static_cast<size_t>(g * hd + c)];
                    sc[static_cast<size_t>(j)] = d / std::sqrt(static_cast<double>(hd));
                    mx = std::max(mx, sc[static_cast<size_t>(j)]);
                }
                double sum = 0;
                for (auto& e : sc) sum += (e = std::exp(e - mx));
                for (int64_t j = 0; j <= i; ++j)
                    for (int64_t c = 0; c < hd; ++c)
                        att[static_cast<size_t>(h * hd + c)] += sc[static_cast<size_t>(j)] / sum * v[static_cast<size_t>(j)][static_cast<size_t>(g * hd + c)];
            }
            const auto o = matvec(t.at(p + "attn_output.weight"), att);
            for (int64_t c = 0; c < E; ++c) x[static_cast<size_t>(i)][static_cast<size_t>(c)] += o[static_cast<size_t>(c)];
            const auto xn = rms_norm(x[static_cast<size_t>(i)], t.at(p + "ffn_norm.weight").values, s.eps);
            auto gate = matvec(t.at(p + "ffn_gate.weight"), xn);
            const auto up = matvec(t.at(p + "ffn_up.weight"), xn);
            for (size_t c = 0; c < gate.size(); ++c) gate[c] = gate[c] / (1.0 + std::exp(-gate[c])) * up[c];
            const auto d = matvec(t.at(p + "ffn_down.weight"), gate);
            for (int64_t c = 0; c < E; ++c) x[static_cast<size_t>(i)][static_cast<size_t>(c)] += d[static_cast<size_t>(c)];
        }
    }
    const Tensor& out = s.tied ? t.at("token_embd.weight") : t.at("output.weight");
    std::vector<float> logits;
    for (int64_t i = 0; i < T; ++i) {
        const auto y = matvec(out, rms_norm(x[static_cast<size_t>(i)], t.at("output_norm.weight").values, s.eps));
        for (double v : y) logits.push_back(static_cast<float>(v));
    }
    return logits;
}

std::vector<int32_t> some_tokens(int64_t n, int64_t vocab, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& v : t) v = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
    return t;
}

double max_abs_diff(const std::vector<float>& a, std::span<const float> b) {
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
    return m;
}

struct ForwardCase {
    const char* name;
    Spec spec;
    int64_t n_tokens;
};
void PrintTo(const ForwardCase& c, std::ostream* os) { *os << c.name; }

class ModelForward : public ::testing::TestWithParam<ForwardCase> {};

std::string expect_error(const std::string& path) {
    try {
        Transformer m(path);
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
        EXPECT_EQ(msg.rfind(path, 0), 0u) << "the message should start with the path: " << msg;
        return msg;
    }
    ADD_FAILURE() << path << ": loaded without an error";
    return "";
}

}  // namespace

TEST_P(ModelForward, MatchesNaiveReference) {
    const ForwardCase& c = GetParam();
    const std::string path = test::scratch_dir() + "/m.gguf";
    const Tensors t = make_tensors(c.spec, 42);
    write_model(path, make_metadata(c.spec), t);
    Transformer model(path);
    EXPECT_EQ(model.hparams().arch, c.spec.arch);
    EXPECT_EQ(model.hparams().n_vocab, c.spec.n_vocab);
    EXPECT_EQ(model.hparams().head_dim, c.spec.head_dim);
    const auto tokens = some_tokens(c.n_tokens, c.spec.n_vocab, 7);
    std::vector<float> logits(tokens.size() * static_cast<size_t>(c.spec.n_vocab));
    model.forward(tokens, logits);
    const std::vector<float> ref = reference_forward(c.spec, t, tokens);
    double scale = 0;
    for (float v : ref) scale = std::max(scale, static_cast<double>(std::fabs(v)));
    const double tol = (c.spec.weight_type == GgmlType::F32 ? 2e-5 : 2e-3) * std::max(1.0, scale);
    EXPECT_LT(max_abs_diff(ref, logits), tol) << "largest |logit| " << scale;

    // forward_from: the same rows as the tail of a full pass.
    const size_t first = tokens.size() / 2;
    std::vector<float> tail((tokens.size() - first) * static_cast<size_t>(c.spec.n_vocab));
    model.forward_from(tokens, first, tail);
    EXPECT_LT(max_abs_diff(tail, std::span<const float>(logits).subspan(first * static_cast<size_t>(c.spec.n_vocab))), 1e-5);

    // Causality: the first rows do not depend on later tokens.
    auto changed = tokens;
    changed.back() = (changed.back() + 1) % static_cast<int32_t>(c.spec.n_vocab);
    std::vector<float> logits2(logits.size());
    model.forward(changed, logits2);
    const size_t keep = (tokens.size() - 1) * static_cast<size_t>(c.spec.n_vocab);
    EXPECT_EQ(std::vector<float>(logits.begin(), logits.begin() + static_cast<ptrdiff_t>(keep)),
              std::vector<float>(logits2.begin(), logits2.begin() + static_cast<ptrdiff_t>(keep)));
}

namespace {
Spec spec_with(std::function<void(Spec&)> f) {
    Spec s;
    f(s);
    return s;
}
}  // namespace

INSTANTIATE_TEST_SUITE_P(
    Archs, ModelForward,
    ::testing::Values(ForwardCase{"llama_f32", Spec{}, 23},
                      ForwardCase{"llama_untied_rope_scaling", spec_with([](Spec& s) {
                                      s.tied = false;
                                      s.rope_freqs = true;
                                      s.linear_factor = 2.0f;
                                  }), 40},
                      ForwardCase{"llama_f16_mha", spec_with([](Spec& s) {
                                      s.weight_type = GgmlType::F16;
                                      s.n_head_kv = 4;
                                  }), 19},
                      ForwardCase{"qwen2_biases", spec_with([](Spec& s) { s.arch = "qwen2"; }), 17},
                      ForwardCase{"qwen3_qk_norm", spec_with([](Spec& s) {
                                      s.arch = "qwen3";
                                      s.head_dim = 16;  // head_dim != n_embd / n_head
                                      s.theta = 1000000.0f;
                                  }), 33}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(ModelForward, ObserverSeesEveryWeightProductInput) {
    Spec s;
    s.tied = false;
    const std::string path = test::scratch_dir() + "/m.gguf";
    write_model(path, make_metadata(s), make_tensors(s, 3));
    Transformer model(path);
    const auto tokens = some_tokens(9, s.n_vocab, 1);
    std::vector<float> logits(tokens.size() * static_cast<size_t>(s.n_vocab));
    std::vector<std::pair<std::string, size_t>> seen;
    ActivationObserver obs = [&](std::string_view name, std::span<const float> x, int64_t n) {
        EXPECT_EQ(n, 9);
        seen.emplace_back(std::string(name), x.size());
    };
    model.forward(tokens, logits, &obs);
    ASSERT_EQ(seen.size(), 7u * 2 + 1);
    EXPECT_EQ(seen[0], (std::pair<std::string, size_t>{"blk.0.attn_q.weight", 9 * 32}));
    EXPECT_EQ(seen[3], (std::pair<std::string, size_t>{"blk.0.attn_output.weight", 9 * 32}));
    EXPECT_EQ(seen[6], (std::pair<std::string, size_t>{"blk.0.ffn_down.weight", 9 * 64}));
    EXPECT_EQ(seen.back(), (std::pair<std::string, size_t>{"output.weight", 9 * 32}));
}

TEST(ModelForward, SameLogitsWithOneOrTwoThreads) {
    Spec s;
    const std::string path = test::scratch_dir() + "/m.gguf";
    write_model(path, make_metadata(s), make_tensors(s, 5));
    Transformer model(path);
    const auto tokens = some_tokens(50, s.n_vocab, 2);
    std::vector<float> a(tokens.size() * 40), b(a.size());
    const int before = omp_get_max_threads();
    omp_set_num_threads(1);
    model.forward(tokens, a);
    omp_set_num_threads(2);
    model.forward(tokens, b);
    omp_set_num_threads(before);
    EXPECT_EQ(a, b);  // every output element is computed by one thread in a fixed order
}

TEST(GemmKernel, PanelProductMatchesNaiveOnOddSizes) {
    std::mt19937 rng(9);
    std::uniform_real_distribution<float> u(-1, 1);
    for (int64_t rows : {1, 5, 6, 7, 12, 13, 25})
        for (int64_t K : {1, 3, 16, 37})
            for (int cols : {1, 9, 16}) {
                const int64_t ldx = K + 3, ldw = 16 + 5, ldy = cols + 2;
                std::vector<float> x(static_cast<size_t>(rows * ldx)), w(static_cast<size_t>(K * ldw)), y(static_cast<size_t>(rows * ldy), 7.0f);
                for (auto& v : x) v = u(rng);
                for (auto& v : w) v = u(rng);
                gemm::panel_product(x.data(), ldx, rows, w.data(), ldw, K, y.data(), ldy, cols);
                for (int64_t r = 0; r < rows; ++r)
                    for (int64_t j = 0; j < ldy; ++j) {
                        if (j >= cols) {
                            ASSERT_EQ(y[static_cast<size_t>(r * ldy + j)], 7.0f) << "wrote past n_cols";
                            continue;
                        }
                        double s = 0;
                        for (int64_t k = 0; k < K; ++k) s += static_cast<double>(x[static_cast<size_t>(r * ldx + k)]) * w[static_cast<size_t>(k * ldw + j)];
                        ASSERT_NEAR(y[static_cast<size_t>(r * ldy + j)], s, 1e-5) << gemm::kernel_name() << " rows " << rows << " K " << K;
                    }
            }
}

TEST(ModelErrors, RefusesWhatItCannotEvaluate) {
    const std::string dir = test::scratch_dir();
    {
        Spec s;
        GgufMetadata md = make_metadata(s);
        md.set("general.architecture", GgufValue::string("gpt2"));
        write_model(dir + "/arch.gguf", md, make_tensors(s, 1));
        EXPECT_NE(expect_error(dir + "/arch.gguf").find("unsupported architecture 'gpt2'"), std::string::npos);
    }
    {
        Spec s;
        GgufMetadata md = make_metadata(s);
        md.set("llama.expert_count", GgufValue::u32(8));
        write_model(dir + "/moe.gguf", md, make_tensors(s, 1));
        EXPECT_NE(expect_error(dir + "/moe.gguf").find("mixture-of-experts"), std::string::npos);
    }
    {
        Spec s;
        Tensors t = make_tensors(s, 1);
        t.erase("blk.1.ffn_up.weight");
        write_model(dir + "/missing.gguf", make_metadata(s), t);
        EXPECT_NE(expect_error(dir + "/missing.gguf").find("'blk.1.ffn_up.weight'"), std::string::npos);
    }
    {
        Spec s;
        Tensors t = make_tensors(s, 1);
        t["blk.0.attn_k.weight"].shape = {32, 8};  // 8 rows where 2 heads x 8 = 16 are needed
        t["blk.0.attn_k.weight"].values.resize(256);
        write_model(dir + "/shape.gguf", make_metadata(s), t);
        const std::string msg = expect_error(dir + "/shape.gguf");
        EXPECT_NE(msg.find("'blk.0.attn_k.weight' has shape [32, 8], expected [32, 16]"), std::string::npos) << msg;
    }
    {
        Spec s;
        s.n_embd = 256;  // a whole Q8_K block per row
        Tensors t = make_tensors(s, 1);
        t["blk.0.attn_q.weight"].type = GgmlType::Q8_K;  // an intermediate type: no dequantizer
        write_model(dir + "/type.gguf", make_metadata(s), t);
        const std::string msg = expect_error(dir + "/type.gguf");
        EXPECT_NE(msg.find("'blk.0.attn_q.weight' has type q8_K"), std::string::npos) << msg;
    }
    {
        Spec s;
        GgufMetadata md = make_metadata(s);
        md.set("llama.rope.scaling.type", GgufValue::string("yarn"));
        write_model(dir + "/yarn.gguf", md, make_tensors(s, 1));
        EXPECT_NE(expect_error(dir + "/yarn.gguf").find("'yarn'"), std::string::npos);
    }
    {
        Spec s;
        GgufMetadata md = make_metadata(s);
        md.erase("llama.block_count");
        write_model(dir + "/nokey.gguf", md, make_tensors(s, 1));
        EXPECT_NE(expect_error(dir + "/nokey.gguf").find("llama.block_count"), std::string::npos);
    }
}

TEST(ModelErrors, BadTokensAndNonFiniteValuesAreNamed) {
    const std::string dir = test::scratch_dir();
    Spec s;
    Tensors t = make_tensors(s, 1);
    write_model(dir + "/ok.gguf", make_metadata(s), t);
    Transformer ok(dir + "/ok.gguf");
    std::vector<float> logits(2 * 40);
    const std::vector<int32_t> bad = {1, 40};
    try {
        ok.forward(bad, logits);
        ADD_FAILURE() << "token 40 of a 40-token vocabulary accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("token id 40 at position 1"), std::string::npos) << e.what();
    }
    std::vector<float> wrong(3);
    EXPECT_THROW(ok.forward(std::vector<int32_t>{1, 2}, wrong), Error);

    t["blk.1.ffn_down.weight"].values[5] = NAN;
    write_model(dir + "/nan.gguf", make_metadata(s), t);
    Transformer nan(dir + "/nan.gguf");
    try {
        nan.forward(std::vector<int32_t>{1, 2}, logits);
        ADD_FAILURE() << "NaN weights gave no error";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("blk.1"), std::string::npos) << msg;
        EXPECT_NE(msg.find("non-finite"), std::string::npos) << msg;
    }
}

// ---------------------------------------------------------------------------------------------
// Perplexity and KL divergence over a tiny model (the statistics alone: test_eval.cpp)

#include "eval/kld.h"
#include "eval/perplexity.h"

TEST(ModelEval, PerplexityFollowsTheChunkProcedure) {
    Spec s;
    const std::string path = test::scratch_dir() + "/m.gguf";
    write_model(path, make_metadata(s), make_tensors(s, 11));
    Transformer model(path);
    const int n_ctx = 16;
    const auto tokens = some_tokens(3 * n_ctx + 5, s.n_vocab, 4);  // 3 whole chunks, a tail left out
    const int32_t bos = 1;

    // By hand: each chunk with BOS first, positions 8..14 predicting the next token.
    NllStats by_hand;
    for (int c = 0; c < 3; ++c) {
        std::vector<int32_t> chunk(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
        chunk[0] = bos;
        std::vector<float> logits(chunk.size() * 40);
        model.forward(chunk, logits);
        for (int j = n_ctx / 2; j < n_ctx - 1; ++j)
            by_hand.add(token_nll(std::span<const float>(logits).subspan(static_cast<size_t>(j) * 40, 40), chunk[static_cast<size_t>(j) + 1]));
    }
    int callbacks = 0;
    const PerplexityResult r = perplexity(model, tokens, bos, ChunkPlan{n_ctx, -1}, "text.txt",
                                          [&](int chunk, std::span<const float> logits, std::span<const int32_t> targets) {
                                              EXPECT_EQ(chunk, callbacks++);
                                              EXPECT_EQ(targets.size(), 7u);
                                              EXPECT_EQ(logits.size(), 7u * 40);
                                          });
    EXPECT_EQ(callbacks, 3);
    EXPECT_EQ(r.chunks, 3);
    EXPECT_EQ(r.scored, 21u);
    EXPECT_NEAR(r.ppl, by_hand.ppl(), 1e-9 * r.ppl);
    EXPECT_NEAR(r.ppl_stderr, by_hand.ppl() * by_hand.mean_stderr(), 1e-9);
    EXPECT_GT(r.ppl, 1.0);

    const PerplexityResult capped = perplexity(model, tokens, bos, ChunkPlan{n_ctx, 2}, "text.txt");
    EXPECT_EQ(capped.chunks, 2);
    try {
        perplexity(model, std::span<const int32_t>(tokens).first(31), bos, ChunkPlan{n_ctx, -1}, "text.txt");
        ADD_FAILURE() << "31 tokens accepted for context 16";
    } catch (const Error& e) {
        EXPECT_STREQ(e.what(), "text.txt: the text has 31 tokens; context 16 needs at least 32 (2 x context)");
    }
}

TEST(ModelEval, KlDivergenceOfAModelFromItselfIsZero) {
    Spec s;
    const std::string dir = test::scratch_dir();
    write_model(dir + "/a.gguf", make_metadata(s), make_tensors(s, 11));
    write_model(dir + "/b.gguf", make_metadata(s), make_tensors(s, 12));  // other weights
    Transformer a(dir + "/a.gguf"), b(dir + "/b.gguf");
    const auto tokens = some_tokens(64, s.n_vocab, 4);
    const Transformer* quants[] = {&a, &b};
    const auto stats = kl_divergence(a, quants, tokens, 1, ChunkPlan{16, -1}, "t");
    ASSERT_EQ(stats.size(), 2u);
    EXPECT_EQ(stats[0].count, 4u * 7);
    EXPECT_NEAR(stats[0].kld_mean, 0.0, 1e-12);
    EXPECT_EQ(stats[0].same_top, 1.0);
    EXPECT_NEAR(stats[0].ppl, stats[0].ppl_base, 1e-12);
    EXPECT_GT(stats[1].kld_mean, 0.01);  // a different model is far away
    EXPECT_LT(stats[1].same_top, 1.0);
    const PerplexityResult pa = perplexity(a, tokens, 1, ChunkPlan{16, -1}, "t");
    const PerplexityResult pb = perplexity(b, tokens, 1, ChunkPlan{16, -1}, "t");
    EXPECT_NEAR(stats[1].ppl_base, pa.ppl, 1e-9 * pa.ppl);
    EXPECT_NEAR(stats[1].ppl, pb.ppl, 1e-9 * pb.ppl);
    EXPECT_NEAR(stats[1].ppl_diff, pb.ppl - pa.ppl, 1e-9 * pa.ppl);
}
