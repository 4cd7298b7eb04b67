#include "common/error.h"
#include "hf/model_config.h"
#include "hf/safetensors.h"
#include "hf/tensor_map.h"
#include "support/checkpoint_writer.h"
#include "support/test_paths.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <filesystem>
#include <set>

namespace fs = std::filesystem;
using qf::MappedTensor;
using Permute = qf::MappedTensor::Permute;

namespace {

template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const qf::Error& e) {
        std::string msg = e.what();
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
        return msg;
    }
    ADD_FAILURE() << "expected a qf::Error";
    return "";
}

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << "message: " << (msg) << "\nmissing: " << (part)

const MappedTensor* by_name(const std::vector<MappedTensor>& v, const std::string& name) {
    for (const auto& t : v)
        if (t.gguf_name == name) return &t;
    return nullptr;
}

std::vector<float> all_rows(const MappedTensor& t, const qf::ModelConfig& cfg) {
    std::vector<float> out(static_cast<size_t>(t.n_elements()));
    qf::read_rows_f32(t, cfg, 0, t.n_rows(), out.data());
    return out;
}

// Independent statement of the converter's permute: view the HF rows as (heads, 2, D/2, row)
// and swap the two middle axes, i.e. GGUF row h*D + 2j + t holds HF row h*D + t*D/2 + j.
std::vector<float> reference_permute(const std::vector<float>& hf, int64_t heads, int64_t row_len) {
    const int64_t rows = static_cast<int64_t>(hf.size()) / row_len, d = rows / heads;
    std::vector<float> out(hf.size());
    for (int64_t h = 0; h < heads; ++h)
        for (int64_t t = 0; t < 2; ++t)
            for (int64_t j = 0; j < d / 2; ++j) {
                const int64_t gguf_row = h * d + 2 * j + t, hf_row = h * d + t * (d / 2) + j;
                std::copy_n(hf.begin() + hf_row * row_len, row_len, out.begin() + gguf_row * row_len);
            }
    return out;
}

// Every GGUF name a plain llama checkpoint maps to, stated by hand.
std::set<std::string> llama_names(int layers, bool output) {
    std::set<std::string> s = {"token_embd.weight", "output_norm.weight"};
    if (output) s.insert("output.weight");
    for (int i = 0; i < layers; ++i)
        for (const char* n : {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"})
            s.insert("blk." + std::to_string(i) + "." + n + ".weight");
    return s;
}

struct Loaded {
    qf::ModelConfig cfg;
    qf::SafetensorsModel st;
    std::vector<MappedTensor> mapped;
};

Loaded load(const std::string& dir) {
    Loaded l{qf::load_model_config(dir), qf::SafetensorsModel::open_dir(dir), {}};
    l.mapped = qf::map_hf_tensors(l.cfg, l.st);
    return l;
}

void expect_converter_order(const std::vector<MappedTensor>& mapped) {
    // Within a shard, sources come sorted by HF name.
    for (size_t i = 1; i < mapped.size(); ++i) {
        if (!mapped[i].source || !mapped[i - 1].source || mapped[i].source->file != mapped[i - 1].source->file) continue;
        EXPECT_LT(mapped[i - 1].source->name, mapped[i].source->name);
    }
}

}  // namespace

TEST(TensorMap, BundledProseTiny) {
    auto l = load(qf::test::bundled_model("prose-tiny"));
    ASSERT_EQ(l.mapped.size(), 56u);
    std::set<std::string> names;
    for (const auto& t : l.mapped) names.insert(t.gguf_name);
    EXPECT_EQ(names, llama_names(6, /*output=*/false));  // tied: no output.weight
    EXPECT_EQ(l.mapped.front().gguf_name, "token_embd.weight");
    EXPECT_EQ(l.mapped.back().gguf_name, "output_norm.weight");
    expect_converter_order(l.mapped);

    const auto* embd = by_name(l.mapped, "token_embd.weight");
    EXPECT_EQ(embd->shape, (std::vector<int64_t>{256, 8192}));
    EXPECT_FALSE(embd->keep_f32);
    EXPECT_EQ(by_name(l.mapped, "blk.0.attn_k.weight")->shape, (std::vector<int64_t>{256, 128}));
    EXPECT_EQ(by_name(l.mapped, "blk.0.ffn_down.weight")->shape, (std::vector<int64_t>{768, 256}));
    EXPECT_EQ(by_name(l.mapped, "blk.0.ffn_up.weight")->shape, (std::vector<int64_t>{256, 768}));
    for (const auto& t : l.mapped) {
        EXPECT_EQ(t.keep_f32, t.shape.size() == 1) << t.gguf_name;
        const bool q = t.gguf_name.ends_with("attn_q.weight"), k = t.gguf_name.ends_with("attn_k.weight");
        EXPECT_EQ(t.permute, q ? Permute::Q : k ? Permute::K : Permute::None) << t.gguf_name;
        EXPECT_NE(t.source, nullptr);
    }
    EXPECT_EQ(by_name(l.mapped, "blk.3.ffn_norm.weight")->source->name, "model.layers.3.post_attention_layernorm.weight");
    EXPECT_EQ(qf::count_parameters(l.mapped), 6819072u);
}

TEST(TensorMap, BundledStories260k) {
    auto l = load(qf::test::bundled_model("stories260k"));
    ASSERT_EQ(l.mapped.size(), 47u);
    std::set<std::string> names;
    for (const auto& t : l.mapped) names.insert(t.gguf_name);
    EXPECT_EQ(names, llama_names(5, false));
    EXPECT_EQ(by_name(l.mapped, "blk.4.attn_v.weight")->shape, (std::vector<int64_t>{64, 32}));
    // F32 source, permuted rows: row 1 of GGUF attn_q is HF row D/2 = 4 (head_dim 8).
    const auto* q = by_name(l.mapped, "blk.0.attn_q.weight");
    std::vector<float> row(64), hf(64);
    qf::read_rows_f32(*q, l.cfg, 1, 1, row.data());
    qf::convert_to_f32(*q->source, 4 * 64, 64, hf.data());
    EXPECT_EQ(row, hf);
}

TEST(TensorMap, SharedProseBase) {
    auto shared = qf::test::shared_dir();
    if (!shared) GTEST_SKIP() << "../shared is not available";
    auto l = load(*shared + "/models/prose-base");
    ASSERT_EQ(l.mapped.size(), 75u);
    std::set<std::string> names;
    for (const auto& t : l.mapped) names.insert(t.gguf_name);
    EXPECT_EQ(names, llama_names(8, true));
    const auto* out = by_name(l.mapped, "output.weight");
    EXPECT_EQ(out->shape, (std::vector<int64_t>{512, 8192}));
    EXPECT_FALSE(out->keep_f32);
    EXPECT_EQ(out->permute, Permute::None);
    // "lm_head.weight" sorts first, so the converter writes output.weight first.
    EXPECT_EQ(l.mapped.front().gguf_name, "output.weight");
}

TEST(TensorMap, ShardsSortedByNameWithinEachFile) {
    const std::string dir = qf::test::scratch_dir();
    qf::test::CheckpointSpec spec;
    spec.n_layer = 3;
    spec.shards = 3;
    auto ck = qf::test::write_checkpoint(dir, spec);
    auto l = load(dir);
    ASSERT_EQ(l.mapped.size(), ck.names.size());
    // Expected order: the writer's shards in order, each one's names sorted.
    std::vector<std::string> expected;
    for (const auto& file : ck.files) {
        std::vector<std::string> part;
        for (const auto& n : ck.names)
            if (ck.tensors[n].file == file) part.push_back(n);
        std::sort(part.begin(), part.end());
        expected.insert(expected.end(), part.begin(), part.end());
    }
    std::vector<std::string> got;
    for (const auto& t : l.mapped) got.push_back(t.source->name);
    EXPECT_EQ(got, expected);
    EXPECT_NE(got, ck.names);  // the header order differs, so this checks the sort
}

TEST(TensorMap, QkPermutationMatchesReference) {
    for (auto dtype : {qf::StDtype::F32, qf::StDtype::F16, qf::StDtype::BF16}) {
        const std::string dir = qf::test::scratch_dir() + "/" + qf::st_dtype_name(dtype);
        qf::test::CheckpointSpec spec;
        spec.dtype = dtype;
        spec.n_head = 4;
        spec.n_head_kv = 2;
        spec.n_embd = 48;
        spec.head_dim = 12;  // head_dim * heads != n_embd on purpose
        spec.attention_bias = true;
        spec.mlp_bias = true;
        spec.seed = 11;
        auto ck = qf::test::write_checkpoint(dir, spec);
        auto l = load(dir);
        for (int layer = 0; layer < 2; ++layer) {
            const std::string p = "blk." + std::to_string(layer) + ".";
            const std::string h = "model.layers." + std::to_string(layer) + ".self_attn.";
            struct Case { std::string gguf, hf; int64_t heads, row_len; Permute permute; };
            const std::vector<Case> cases = {
                {p + "attn_q.weight", h + "q_proj.weight", 4, 48, Permute::Q},
                {p + "attn_k.weight", h + "k_proj.weight", 2, 48, Permute::K},
                {p + "attn_q.bias", h + "q_proj.bias", 4, 1, Permute::Q},
                {p + "attn_k.bias", h + "k_proj.bias", 2, 1, Permute::K},
            };
            for (const auto& c : cases) {
                const auto* t = by_name(l.mapped, c.gguf);
                ASSERT_NE(t, nullptr) << c.gguf;
                EXPECT_EQ(t->permute, c.permute);
                const auto& stored = ck.tensors[c.hf].values;
                const auto expect = reference_permute(stored, c.heads, c.row_len);
                ASSERT_NE(expect, stored);  // a permutation that would be the identity could not fail
                EXPECT_EQ(all_rows(*t, l.cfg), expect) << c.gguf << " " << qf::st_dtype_name(dtype);
            }
            // Chunks of rows read separately equal the same rows of the whole.
            const auto* q = by_name(l.mapped, p + "attn_q.weight");
            const auto whole = reference_permute(ck.tensors[h + "q_proj.weight"].values, 4, 48);
            std::vector<float> chunk(5 * 48);
            qf::read_rows_f32(*q, l.cfg, 7, 5, chunk.data());
            EXPECT_TRUE(std::equal(chunk.begin(), chunk.end(), whole.begin() + 7 * 48));
            // v, o, biases other than q/k and the MLP are copied unchanged.
            for (const auto& [gguf, hf] : std::vector<std::pair<std::string, std::string>>{
                     {p + "attn_v.weight", h + "v_proj.weight"},
                     {p + "attn_v.bias", h + "v_proj.bias"},
                     {p + "attn_output.weight", h + "o_proj.weight"},
                     {p + "attn_output.bias", h + "o_proj.bias"},
                     {p + "ffn_down.bias", "model.layers." + std::to_string(layer) + ".mlp.down_proj.bias"}}) {
                const auto* t = by_name(l.mapped, gguf);
                ASSERT_NE(t, nullptr) << gguf;
                EXPECT_EQ(t->permute, Permute::None);
                EXPECT_EQ(all_rows(*t, l.cfg), ck.tensors[hf].values) << gguf;
            }
            EXPECT_TRUE(by_name(l.mapped, p + "attn_q.bias")->keep_f32);
            EXPECT_TRUE(by_name(l.mapped, p + "ffn_gate.bias")->keep_f32);
            EXPECT_FALSE(by_name(l.mapped, p + "attn_q.weight")->keep_f32);
        }
    }
}

TEST(TensorMap, MistralPermutesQwenDoesNot) {
    const std::string root = qf::test::scratch_dir();
    qf::test::CheckpointSpec spec;
    spec.model_type = "mistral";
    auto ck = qf::test::write_checkpoint(root + "/mistral", spec);
    auto m = load(root + "/mistral");
    const auto* k = by_name(m.mapped, "blk.1.attn_k.weight");
    EXPECT_EQ(k->permute, Permute::K);
    EXPECT_EQ(all_rows(*k, m.cfg), reference_permute(ck.tensors["model.layers.1.self_attn.k_proj.weight"].values, 2, 32));

    spec.model_type = "qwen2";
    spec.dtype = qf::StDtype::BF16;
    ck = qf::test::write_checkpoint(root + "/qwen2", spec);
    auto q2 = load(root + "/qwen2");
    ASSERT_EQ(q2.mapped.size(), 2 + 2 * 12 + 1u);  // 9 weights + 3 biases per layer, embeddings, norm, lm_head
    for (const char* n : {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_q.bias", "blk.0.attn_k.bias"}) {
        const auto* t = by_name(q2.mapped, n);
        ASSERT_NE(t, nullptr) << n;
        EXPECT_EQ(t->permute, Permute::None) << n;
    }
    EXPECT_EQ(all_rows(*by_name(q2.mapped, "blk.0.attn_k.bias"), q2.cfg), ck.tensors["model.layers.0.self_attn.k_proj.bias"].values);
    EXPECT_EQ(by_name(q2.mapped, "blk.0.attn_k.bias")->shape, (std::vector<int64_t>{16}));

    spec.model_type = "qwen3";
    spec.dtype = qf::StDtype::F16;
    ck = qf::test::write_checkpoint(root + "/qwen3", spec);
    auto q3 = load(root + "/qwen3");
    ASSERT_EQ(q3.mapped.size(), 2 + 2 * 11 + 1u);
    const auto* qn = by_name(q3.mapped, "blk.1.attn_q_norm.weight");
    ASSERT_NE(qn, nullptr);
    EXPECT_EQ(qn->shape, (std::vector<int64_t>{8}));
    EXPECT_TRUE(qn->keep_f32);
    EXPECT_EQ(all_rows(*qn, q3.cfg), ck.tensors["model.layers.1.self_attn.q_norm.weight"].values);
    EXPECT_NE(by_name(q3.mapped, "blk.1.attn_k_norm.weight"), nullptr);
    EXPECT_EQ(by_name(q3.mapped, "blk.1.attn_q.weight")->permute, Permute::None);
}

TEST(TensorMap, TiedAndUntiedHead) {
    const std::string root = qf::test::scratch_dir();
    qf::test::CheckpointSpec spec;
    spec.tied = true;
    qf::test::write_checkpoint(root + "/tied", spec);
    EXPECT_EQ(by_name(load(root + "/tied").mapped, "output.weight"), nullptr);
    // lm_head present although tie_word_embeddings is true: the converter writes it anyway.
    spec.tied = false;
    spec.config_overrides = {{"tie_word_embeddings", true}};
    auto ck = qf::test::write_checkpoint(root + "/both", spec);
    auto l = load(root + "/both");
    EXPECT_TRUE(l.cfg.tied_embeddings);
    const auto* out = by_name(l.mapped, "output.weight");
    ASSERT_NE(out, nullptr);
    EXPECT_EQ(all_rows(*out, l.cfg), ck.tensors["lm_head.weight"].values);
}

TEST(TensorMap, Llama3RopeFreqsComeFirst) {
    const std::string dir = qf::test::scratch_dir();
    qf::test::CheckpointSpec spec;
    spec.n_embd = 64;
    spec.n_head = 2;
    spec.n_head_kv = 1;  // head_dim 32: 16 factors
    spec.rope_scaling = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 64}};
    qf::test::write_checkpoint(dir, spec);
    auto l = load(dir);
    const auto& r = l.mapped.front();
    EXPECT_EQ(r.gguf_name, "rope_freqs.weight");
    EXPECT_EQ(r.source, nullptr);
    EXPECT_TRUE(r.keep_f32);
    EXPECT_EQ(r.shape, (std::vector<int64_t>{16}));
    const auto values = all_rows(r, l.cfg);
    EXPECT_EQ(values, r.generated);
    // Wavelength 2*pi*10000^(2i/32): below 64/4 -> 1, above 64/1 -> factor, between: smooth.
    for (size_t i = 0; i < values.size(); ++i) {
        const double wavelen = 2 * M_PI * std::pow(10000.0, 2.0 * static_cast<double>(i) / 32.0);
        if (wavelen < 15.9) EXPECT_EQ(values[i], 1.0f) << i;
        else if (wavelen > 64.1) EXPECT_EQ(values[i], 8.0f) << i;
        else {
            const double smooth = (64.0 / wavelen - 1.0) / 3.0;
            EXPECT_NEAR(values[i], 1.0 / ((1 - smooth) / 8.0 + smooth), 1e-5) << i;
        }
    }
    EXPECT_EQ(qf::count_parameters(l.mapped), qf::count_parameters(std::vector<MappedTensor>(l.mapped.begin() + 1, l.mapped.end())) + 16);
    // Qwen never gets rope_freqs; plain llama neither.
    spec.rope_scaling = nullptr;
    qf::test::write_checkpoint(dir + "/plain", spec);
    EXPECT_NE(load(dir + "/plain").mapped.front().gguf_name, "rope_freqs.weight");
}

TEST(TensorMap, DroppedAndUnexpectedTensors) {
    const std::string dir = qf::test::scratch_dir();
    qf::test::CheckpointSpec spec;
    spec.shards = 2;
    qf::test::write_checkpoint(dir, spec);
    fs::remove(fs::path(dir) / "model.safetensors.index.json");
    std::vector<std::byte> four(4);
    // Buffers the converter skips silently.
    qf::test::write_file(dir + "/model-00003-extra.safetensors",
                         qf::test::safetensors_bytes({{"model.layers.0.self_attn.rotary_emb.inv_freq", "F32", {1}, four}}));
    auto l = load(dir);
    EXPECT_EQ(l.mapped.size(), 2 + 2 * 9 + 1u);

    qf::test::write_file(dir + "/model-00003-extra.safetensors",
                         qf::test::safetensors_bytes({{"model.layers.0.self_attn.rope.weight", "F32", {1}, four}}));
    auto msg = error_of([&] { load(dir); });
    EXPECT_HAS(msg, "model-00003-extra.safetensors");
    EXPECT_HAS(msg, "'model.layers.0.self_attn.rope.weight' is not expected");

    qf::test::write_file(dir + "/model-00003-extra.safetensors",
                         qf::test::safetensors_bytes({{"model.layers.2.input_layernorm.weight", "F32", {1}, four}}));
    msg = error_of([&] { load(dir); });
    EXPECT_HAS(msg, "'model.layers.2.input_layernorm.weight'");
    EXPECT_HAS(msg, "2 layers");

    // A name with a line break still gives a one-line message (error_of checks that).
    qf::test::write_file(dir + "/model-00003-extra.safetensors",
                         qf::test::safetensors_bytes({{"model.layers.0.x\nforged: line", "F32", {1}, four}}));
    msg = error_of([&] { load(dir); });
    EXPECT_HAS(msg, "'model.layers.0.x?forged: line'");
}

TEST(TensorMap, ShapeThatDisagreesWithConfig) {
    const std::string dir = qf::test::scratch_dir();
    qf::test::CheckpointSpec spec;
    spec.config_overrides = {{"num_key_value_heads", 4}};  // tensors written for 2 kv heads
    qf::test::write_checkpoint(dir, spec);
    auto msg = error_of([&] { load(dir); });
    EXPECT_HAS(msg, "model.safetensors");
    EXPECT_HAS(msg, "'model.layers.0.self_attn.k_proj.weight'");
    EXPECT_HAS(msg, "shape [16, 32]");
    EXPECT_HAS(msg, "expected [32, 32]");

    spec.config_overrides = {{"vocab_size", 65}};
    qf::test::write_checkpoint(dir, spec);
    msg = error_of([&] { load(dir); });
    EXPECT_HAS(msg, "shape [64, 32]");
    EXPECT_HAS(msg, "expected [65, 32]");
}

TEST(TensorMap, MissingTensor) {
    const std::string dir = qf::test::scratch_dir();
    qf::test::CheckpointSpec spec;
    spec.shards = 2;
    auto ck = qf::test::write_checkpoint(dir, spec);
    fs::remove(fs::path(dir) / "model.safetensors.index.json");
    fs::remove(ck.files[1]);
    auto msg = error_of([&] { load(dir); });
    EXPECT_HAS(msg, dir);
    EXPECT_HAS(msg, "missing tensor 'model.");

    // A qwen2 checkpoint without its biases.
    spec = {};
    spec.model_type = "llama";
    spec.shards = 1;
    spec.config_overrides = {{"model_type", "qwen2"}};
    const std::string d2 = dir + "/qwen";
    qf::test::write_checkpoint(d2, spec);
    msg = error_of([&] { load(d2); });
    EXPECT_HAS(msg, "missing tensor 'model.layers.0.self_attn.k_proj.bias'");
}

TEST(TensorMap, ReadRowsBounds) {
    const std::string dir = qf::test::scratch_dir();
    qf::test::CheckpointSpec spec;
    spec.dtype = qf::StDtype::BF16;
    auto ck = qf::test::write_checkpoint(dir, spec);
    auto l = load(dir);
    const auto* up = by_name(l.mapped, "blk.1.ffn_up.weight");
    EXPECT_EQ(up->row_size(), 32);
    EXPECT_EQ(up->n_rows(), 48);
    std::vector<float> rows(2 * 32);
    qf::read_rows_f32(*up, l.cfg, 46, 2, rows.data());
    const auto& stored = ck.tensors["model.layers.1.mlp.up_proj.weight"].values;
    EXPECT_TRUE(std::equal(rows.begin(), rows.end(), stored.begin() + 46 * 32));
    auto msg = error_of([&] { qf::read_rows_f32(*up, l.cfg, 47, 2, rows.data()); });
    EXPECT_HAS(msg, "blk.1.ffn_up.weight");
    const auto* norm = by_name(l.mapped, "output_norm.weight");
    EXPECT_EQ(norm->n_rows(), 1);
    std::vector<float> n(32);
    qf::read_rows_f32(*norm, l.cfg, 0, 1, n.data());
    EXPECT_EQ(n, ck.tensors["model.norm.weight"].values);
}

// Bits of rope_freqs from running the converter's own arithmetic (torch float32 tensors) for
// these settings; everything outside the listed range is exactly 1 (left) or factor (right).
TEST(TensorMap, Llama3RopeFactorsMatchTorch) {
    struct Case {
        float theta;
        uint32_t head_dim;
        float factor;
        uint32_t orig_ctx;
        size_t first_smooth;
        std::vector<uint32_t> smooth_bits;
    };
    const std::vector<Case> cases = {
        // Llama 3.1 8B: theta 500000, head_dim 128, factor 8, low 1, high 4, original context 8192
        {500000.0f, 128, 8.0f, 8192, 29, {0x3f9a8ed5, 0x3fc6d64a, 0x4001af1d, 0x402c732e, 0x406bcace, 0x40a83c06}},
        {10000.0f, 32, 8.0f, 64, 2, {0x3fa5a100, 0x4030f899, 0x40f55b38}},
        // Llama 3.2 style factor 32
        {500000.0f, 64, 32.0f, 8192, 15, {0x3fd35ec2, 0x4052b46f, 0x411aaaee}},
        {10000.0f, 64, 16.0f, 256, 9, {0x3fb59cf8, 0x4009572a, 0x405f0ee8, 0x40d1a6fb}},
    };
    for (const auto& c : cases) {
        qf::ModelConfig cfg;
        cfg.head_dim = c.head_dim;
        cfg.rope_theta = c.theta;
        cfg.rope_scaling.type = "llama3";
        cfg.rope_scaling.factor = c.factor;
        cfg.rope_scaling.low_freq_factor = 1.0f;
        cfg.rope_scaling.high_freq_factor = 4.0f;
        cfg.rope_scaling.original_context_length = c.orig_ctx;
        const auto f = qf::llama3_rope_factors(cfg);
        ASSERT_EQ(f.size(), c.head_dim / 2);
        for (size_t i = 0; i < f.size(); ++i) {
            const size_t k = i - c.first_smooth;
            if (i < c.first_smooth) EXPECT_EQ(f[i], 1.0f) << i;
            else if (k < c.smooth_bits.size()) EXPECT_EQ(std::bit_cast<uint32_t>(f[i]), c.smooth_bits[k]) << c.head_dim << " " << i;
            else EXPECT_EQ(f[i], c.factor) << i;
        }
    }
}
