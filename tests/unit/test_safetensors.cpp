#include "common/error.h"
#include "hf/safetensors.h"
#include "support/checkpoint_writer.h"
#include "support/test_paths.h"

#include <gtest/gtest.h>
#include <immintrin.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

namespace fs = std::filesystem;
using qf::StDtype;
using qf::test::RawTensor;

namespace {

std::vector<std::byte> bytes_of(std::initializer_list<float> values) {
    std::vector<std::byte> out(values.size() * 4);
    std::memcpy(out.data(), values.begin(), out.size());
    return out;
}

__attribute__((target("f16c"))) float hw_f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }

std::vector<std::byte> zeros(size_t n) { return std::vector<std::byte>(n); }

// Runs f, which must throw qf::Error; returns the message (one line, naming what it must name).
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

std::string parse_error(const std::vector<std::byte>& file) {
    return error_of([&] { qf::parse_safetensors(file, "bad.safetensors"); });
}

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << "message: " << (msg) << "\nmissing: " << (part)

// Header length (first 8 bytes) and the data-area size of a file on disk, read independently.
std::pair<uint64_t, uint64_t> header_and_data_size(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    unsigned char len[8];
    f.read(reinterpret_cast<char*>(len), 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
    return {n, fs::file_size(path) - 8 - n};
}

}  // namespace

TEST(Safetensors, ParsesTensorsInHeaderOrder) {
    std::vector<RawTensor> raw = {
        {"zeta", "F32", {2, 3}, bytes_of({1, 2, 3, 4, 5, 6})},
        {"alpha", "BF16", {4}, zeros(8)},
        {"mid", "F16", {}, zeros(2)},
        {"empty", "F32", {0, 5}, {}},
    };
    auto file = qf::test::safetensors_bytes(raw);
    auto tensors = qf::parse_safetensors(file, "x.safetensors");
    ASSERT_EQ(tensors.size(), 4u);
    EXPECT_EQ(tensors[0].name, "zeta");
    EXPECT_EQ(tensors[1].name, "alpha");
    EXPECT_EQ(tensors[2].name, "mid");
    EXPECT_EQ(tensors[3].name, "empty");
    EXPECT_EQ(tensors[0].dtype, StDtype::F32);
    EXPECT_EQ(tensors[1].dtype, StDtype::BF16);
    EXPECT_EQ(tensors[2].dtype, StDtype::F16);
    EXPECT_EQ(tensors[0].shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(tensors[0].n_elements(), 6);
    EXPECT_EQ(tensors[2].n_elements(), 1);  // a scalar
    EXPECT_EQ(tensors[3].n_elements(), 0);
    EXPECT_EQ(tensors[0].file, "x.safetensors");
    ASSERT_EQ(tensors[0].data.size(), 24u);
    EXPECT_EQ(std::memcmp(tensors[0].data.data(), raw[0].bytes.data(), 24), 0);
    // The data span points into the file buffer itself, past the header.
    EXPECT_GE(tensors[0].data.data(), file.data() + 8);
    EXPECT_LE(tensors[1].data.data() + tensors[1].data.size(), file.data() + file.size());
    float out[6];
    qf::convert_to_f32(tensors[0], 1, 4, out);
    EXPECT_EQ(out[0], 2.0f);
    EXPECT_EQ(out[3], 5.0f);
}

TEST(Safetensors, WidensBf16AndF16Exactly) {
    std::mt19937 rng(7);
    std::vector<uint16_t> bits(4096);
    for (auto& b : bits) b = static_cast<uint16_t>(rng());
    bits[0] = 0x3F80;  // bf16 1.0 / f16 1.875
    bits[1] = 0x0001;  // smallest subnormal in both
    bits[2] = 0x8000;  // -0
    std::vector<std::byte> data(bits.size() * 2);
    std::memcpy(data.data(), bits.data(), data.size());
    auto file = qf::test::safetensors_bytes({{"b", "BF16", {64, 64}, data}, {"h", "F16", {4096}, data}});
    auto tensors = qf::parse_safetensors(file, "w.safetensors");
    std::vector<float> out(bits.size());

    qf::convert_to_f32(tensors[0], 0, 4096, out.data());
    for (size_t i = 0; i < bits.size(); ++i) {
        // bf16 is the top half of an f32: widening is a shift.
        const uint32_t expect = static_cast<uint32_t>(bits[i]) << 16;
        ASSERT_EQ(std::bit_cast<uint32_t>(out[i]), expect) << i;
    }
    EXPECT_EQ(out[0], 1.0f);

    qf::convert_to_f32(tensors[1], 0, 4096, out.data());
    EXPECT_EQ(out[0], 1.875f);
    EXPECT_EQ(out[1], std::ldexp(1.0f, -24));
    EXPECT_TRUE(std::signbit(out[2]) && out[2] == 0.0f);
    if (__builtin_cpu_supports("f16c")) {
        for (size_t i = 0; i < bits.size(); ++i) {
            const float hw = hw_f16_to_f32(bits[i]);
            if (std::isnan(hw)) {
                ASSERT_TRUE(std::isnan(out[i])) << i;
                continue;
            }
            ASSERT_EQ(std::bit_cast<uint32_t>(out[i]), std::bit_cast<uint32_t>(hw)) << i;
        }
    }

    // Partial ranges, and a range past the end is refused with the tensor named.
    qf::convert_to_f32(tensors[0], 4000, 96, out.data());
    EXPECT_EQ(std::bit_cast<uint32_t>(out[0]), static_cast<uint32_t>(bits[4000]) << 16);
    auto msg = error_of([&] { qf::convert_to_f32(tensors[0], 4000, 97, out.data()); });
    EXPECT_HAS(msg, "w.safetensors");
    EXPECT_HAS(msg, "'b'");
}

TEST(Safetensors, RejectsTruncatedFile) {
    std::vector<std::byte> file(5);
    auto msg = parse_error(file);
    EXPECT_HAS(msg, "bad.safetensors");
    EXPECT_HAS(msg, "truncated");
    // A valid file cut short inside its data: the last tensor's offsets leave the data area.
    auto good = qf::test::safetensors_bytes({{"w", "F32", {4}, bytes_of({1, 2, 3, 4})}});
    good.resize(good.size() - 3);
    msg = parse_error(good);
    EXPECT_HAS(msg, "'w'");
    EXPECT_HAS(msg, "outside the data area");
}

TEST(Safetensors, RejectsHeaderLongerThanFile) {
    auto file = qf::test::safetensors_bytes_raw("{}", {});
    file[0] = std::byte{200};  // claims 200 header bytes, the file has 2
    auto msg = parse_error(file);
    EXPECT_HAS(msg, "bad.safetensors");
    EXPECT_HAS(msg, "header length 200 exceeds");
    file[7] = std::byte{0xFF};  // a length near 2^64 must not wrap around
    EXPECT_HAS(parse_error(file), "exceeds");
}

TEST(Safetensors, RejectsInvalidJson) {
    EXPECT_HAS(parse_error(qf::test::safetensors_bytes_raw("{\"w\": {\"dtype\": ", {})), "not valid JSON");
    EXPECT_HAS(parse_error(qf::test::safetensors_bytes_raw("[1, 2]", {})), "not a JSON object");
    EXPECT_HAS(parse_error(qf::test::safetensors_bytes_raw("{\"w\": 5}", {})), "'w': entry is not a JSON object");
    EXPECT_HAS(parse_error(qf::test::safetensors_bytes_raw(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", zeros(4))),
               "missing string 'dtype'");
    EXPECT_HAS(parse_error(qf::test::safetensors_bytes_raw(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", zeros(4))),
               "missing array 'shape'");
    EXPECT_HAS(parse_error(qf::test::safetensors_bytes_raw(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", zeros(4))),
               "data_offsets");
}

TEST(Safetensors, RejectsUnknownDtypeNamingTensorAndDtype) {
    auto msg = parse_error(qf::test::safetensors_bytes({{"model.layers.0.q", "I8", {4}, zeros(4)}}));
    EXPECT_HAS(msg, "bad.safetensors");
    EXPECT_HAS(msg, "'model.layers.0.q'");
    EXPECT_HAS(msg, "'I8'");
    EXPECT_HAS(msg, "F32, F16, BF16");
    EXPECT_HAS(parse_error(qf::test::safetensors_bytes({{"d", "F64", {1}, zeros(8)}})), "'F64'");
    EXPECT_HAS(parse_error(qf::test::safetensors_bytes({{"d", "f32", {1}, zeros(4)}})), "'f32'");  // case matters
}

TEST(Safetensors, RejectsOffsetsOutsideData) {
    auto msg = parse_error(qf::test::safetensors_bytes_raw(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", zeros(8)));
    EXPECT_HAS(msg, "'w'");
    EXPECT_HAS(msg, "[4, 12]");
    EXPECT_HAS(msg, "outside the data area (8 bytes)");
    msg = parse_error(qf::test::safetensors_bytes_raw(R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})", zeros(8)));
    EXPECT_HAS(msg, "end before begin");
    msg = parse_error(qf::test::safetensors_bytes_raw(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", zeros(8)));
    EXPECT_HAS(msg, "non-negative");
}

TEST(Safetensors, RejectsSizeThatDisagreesWithShape) {
    auto msg = parse_error(qf::test::safetensors_bytes_raw(R"({"w": {"dtype": "BF16", "shape": [3, 2], "data_offsets": [0, 8]}})", zeros(16)));
    EXPECT_HAS(msg, "bad.safetensors: tensor 'w'");
    EXPECT_HAS(msg, "hold 8 bytes");
    EXPECT_HAS(msg, "needs 12");
}

TEST(Safetensors, RejectsOverlappingTensors) {
    auto msg = parse_error(qf::test::safetensors_bytes_raw(
        R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
        zeros(12)));
    EXPECT_HAS(msg, "overlap");
    EXPECT_HAS(msg, "'a'");
    EXPECT_HAS(msg, "'b'");
    // Zero-sized tensors take no bytes and never overlap.
    auto ok = qf::test::safetensors_bytes_raw(
        R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "z": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}})", zeros(8));
    EXPECT_EQ(qf::parse_safetensors(ok, "ok").size(), 2u);
}

TEST(Safetensors, RejectsShapeOverflowAndNegativeDims) {
    auto msg = parse_error(qf::test::safetensors_bytes_raw(
        R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})", {}));
    EXPECT_HAS(msg, "'w'");
    EXPECT_HAS(msg, "overflow");
    // Fits in int64 elements but not in bytes.
    msg = parse_error(qf::test::safetensors_bytes_raw(
        R"({"w": {"dtype": "F32", "shape": [4611686018427387904, 2], "data_offsets": [0, 0]}})", {}));
    EXPECT_HAS(msg, "overflow");
    msg = parse_error(qf::test::safetensors_bytes_raw(R"({"w": {"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 0]}})", {}));
    EXPECT_HAS(msg, "non-negative");
    msg = parse_error(qf::test::safetensors_bytes_raw(R"({"w": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}})", zeros(8)));
    EXPECT_HAS(msg, "non-negative integer");
}

TEST(Safetensors, BundledProseTiny) {
    const std::string dir = qf::test::bundled_model("prose-tiny");
    auto model = qf::SafetensorsModel::open_dir(dir);
    const auto& t = model.tensors();
    ASSERT_EQ(t.size(), 56u);  // embeddings + final norm + 6 layers x 9, no lm_head (tied)
    EXPECT_EQ(model.files(), std::vector<std::string>{(fs::path(dir) / "model.safetensors").string()});
    uint64_t bytes = 0;
    for (const auto& x : t) {
        EXPECT_EQ(x.dtype, StDtype::BF16) << x.name;
        bytes += x.data.size();
    }
    // The tensors cover the whole data area (the reference writer packs them).
    EXPECT_EQ(bytes, header_and_data_size(model.files()[0]).second);
    EXPECT_EQ(t.front().name, "model.embed_tokens.weight");
    EXPECT_EQ(t.front().shape, (std::vector<int64_t>{8192, 256}));
    EXPECT_EQ(t.back().name, "model.norm.weight");
    ASSERT_NE(model.find("model.layers.5.self_attn.k_proj.weight"), nullptr);
    EXPECT_EQ(model.find("model.layers.5.self_attn.k_proj.weight")->shape, (std::vector<int64_t>{128, 256}));
    EXPECT_EQ(model.find("model.layers.0.mlp.down_proj.weight")->shape, (std::vector<int64_t>{256, 768}));
    EXPECT_EQ(model.find("model.layers.0.input_layernorm.weight")->shape, (std::vector<int64_t>{256}));
    EXPECT_EQ(model.find("lm_head.weight"), nullptr);
    EXPECT_EQ(model.find("model.layers.6.mlp.up_proj.weight"), nullptr);
    // Trained RMSNorm weights are finite and mostly near 1.
    std::vector<float> norm(256);
    qf::convert_to_f32(*model.find("model.norm.weight"), 0, 256, norm.data());
    for (float v : norm) ASSERT_TRUE(std::isfinite(v));
}

TEST(Safetensors, BundledStories260k) {
    auto model = qf::SafetensorsModel::open_file(qf::test::bundled_model("stories260k") + "/model.safetensors");
    ASSERT_EQ(model.tensors().size(), 47u);  // 2 + 5 layers x 9
    for (const auto& x : model.tensors()) EXPECT_EQ(x.dtype, StDtype::F32) << x.name;
    EXPECT_EQ(model.find("model.embed_tokens.weight")->shape, (std::vector<int64_t>{512, 64}));
    EXPECT_EQ(model.find("model.layers.4.mlp.gate_proj.weight")->shape, (std::vector<int64_t>{172, 64}));
    EXPECT_EQ(model.find("model.layers.4.self_attn.v_proj.weight")->shape, (std::vector<int64_t>{32, 64}));
}

TEST(Safetensors, SharedProseBase) {
    auto shared = qf::test::shared_dir();
    if (!shared) GTEST_SKIP() << "../shared is not available";
    auto model = qf::SafetensorsModel::open_dir(*shared + "/models/prose-base");
    ASSERT_EQ(model.tensors().size(), 75u);  // 2 + 8 layers x 9 + lm_head
    for (const auto& x : model.tensors()) EXPECT_EQ(x.dtype, StDtype::BF16) << x.name;
    ASSERT_NE(model.find("lm_head.weight"), nullptr);
    EXPECT_EQ(model.find("lm_head.weight")->shape, (std::vector<int64_t>{8192, 512}));
    EXPECT_EQ(model.find("model.layers.7.self_attn.q_proj.weight")->shape, (std::vector<int64_t>{512, 512}));
}

TEST(Safetensors, ShardedWithIndex) {
    const std::string dir = qf::test::scratch_dir();
    qf::test::CheckpointSpec spec;
    spec.shards = 3;
    spec.dtype = StDtype::BF16;
    auto ck = qf::test::write_checkpoint(dir, spec);
    auto model = qf::SafetensorsModel::open_dir(dir);
    EXPECT_EQ(model.files(), ck.files);
    ASSERT_EQ(model.tensors().size(), ck.names.size());
    // Shards in file-name order, tensors in header order: here exactly the writing order.
    for (size_t i = 0; i < ck.names.size(); ++i) {
        EXPECT_EQ(model.tensors()[i].name, ck.names[i]);
        EXPECT_EQ(model.tensors()[i].file, ck.tensors[ck.names[i]].file);
    }
    const auto* up = model.find("model.layers.1.mlp.up_proj.weight");
    ASSERT_NE(up, nullptr);
    std::vector<float> v(static_cast<size_t>(up->n_elements()));
    qf::convert_to_f32(*up, 0, up->n_elements(), v.data());
    EXPECT_EQ(v, ck.tensors["model.layers.1.mlp.up_proj.weight"].values);

    // Without the index every *.safetensors is read, sorted by name: the same result.
    fs::remove(fs::path(dir) / "model.safetensors.index.json");
    auto again = qf::SafetensorsModel::open_dir(dir);
    ASSERT_EQ(again.tensors().size(), ck.names.size());
    for (size_t i = 0; i < ck.names.size(); ++i) EXPECT_EQ(again.tensors()[i].name, ck.names[i]);
}

TEST(Safetensors, IndexNamingMissingShard) {
    const std::string dir = qf::test::scratch_dir();
    qf::test::CheckpointSpec spec;
    spec.shards = 2;
    auto ck = qf::test::write_checkpoint(dir, spec);
    fs::remove(ck.files[1]);
    auto msg = error_of([&] { qf::SafetensorsModel::open_dir(dir); });
    EXPECT_HAS(msg, "model.safetensors.index.json");
    EXPECT_HAS(msg, "'model-00002-of-00002.safetensors'");
    EXPECT_HAS(msg, "does not exist");
}

TEST(Safetensors, ShardMissingATensorTheIndexLists) {
    const std::string dir = qf::test::scratch_dir();
    qf::test::CheckpointSpec spec;
    spec.shards = 2;
    auto ck = qf::test::write_checkpoint(dir, spec);
    nlohmann::json index = nlohmann::json::parse(std::ifstream(fs::path(dir) / "model.safetensors.index.json"));
    index["weight_map"]["model.layers.9.mlp.up_proj.weight"] = "model-00001-of-00002.safetensors";
    qf::test::write_text((fs::path(dir) / "model.safetensors.index.json").string(), index.dump());
    auto msg = error_of([&] { qf::SafetensorsModel::open_dir(dir); });
    EXPECT_HAS(msg, "model.safetensors.index.json");
    EXPECT_HAS(msg, "'model.layers.9.mlp.up_proj.weight'");
    EXPECT_HAS(msg, "model-00001-of-00002.safetensors");

    // A tensor listed in the wrong shard.
    index = nlohmann::json::parse(std::ifstream(fs::path(dir) / "model.safetensors.index.json"));
    index["weight_map"].erase("model.layers.9.mlp.up_proj.weight");
    index["weight_map"]["model.embed_tokens.weight"] = "model-00002-of-00002.safetensors";
    qf::test::write_text((fs::path(dir) / "model.safetensors.index.json").string(), index.dump());
    msg = error_of([&] { qf::SafetensorsModel::open_dir(dir); });
    EXPECT_HAS(msg, "'model.embed_tokens.weight'");
    EXPECT_HAS(msg, "does not contain it");

    // A tensor present in a shard but absent from the index.
    index["weight_map"]["model.embed_tokens.weight"] = "model-00001-of-00002.safetensors";
    index["weight_map"].erase("model.norm.weight");
    qf::test::write_text((fs::path(dir) / "model.safetensors.index.json").string(), index.dump());
    msg = error_of([&] { qf::SafetensorsModel::open_dir(dir); });
    EXPECT_HAS(msg, "'model.norm.weight' is not listed");
}

TEST(Safetensors, BadIndexAndFolders) {
    const std::string dir = qf::test::scratch_dir();
    auto msg = error_of([&] { qf::SafetensorsModel::open_dir(dir); });
    EXPECT_HAS(msg, dir);
    EXPECT_HAS(msg, "no model.safetensors");
    msg = error_of([&] { qf::SafetensorsModel::open_dir(dir + "/nope"); });
    EXPECT_HAS(msg, "not a directory");
    msg = error_of([&] { qf::SafetensorsModel::open_file(dir + "/nope.safetensors"); });
    EXPECT_HAS(msg, "nope.safetensors");

    qf::test::write_text(dir + "/model.safetensors.index.json", "{\"weight_map\": {\"a\": \"../elsewhere.safetensors\"}}");
    msg = error_of([&] { qf::SafetensorsModel::open_dir(dir); });
    EXPECT_HAS(msg, "not a file inside the model folder");
    qf::test::write_text(dir + "/model.safetensors.index.json", "{\"metadata\": {}}");
    msg = error_of([&] { qf::SafetensorsModel::open_dir(dir); });
    EXPECT_HAS(msg, "no 'weight_map'");
    qf::test::write_text(dir + "/model.safetensors.index.json", "{");
    msg = error_of([&] { qf::SafetensorsModel::open_dir(dir); });
    EXPECT_HAS(msg, "model.safetensors.index.json: not valid JSON");
}

TEST(Safetensors, DuplicateTensorAcrossShards) {
    const std::string dir = qf::test::scratch_dir();
    qf::test::write_file(dir + "/a.safetensors", qf::test::safetensors_bytes({{"w", "F32", {1}, bytes_of({1})}}));
    qf::test::write_file(dir + "/b.safetensors", qf::test::safetensors_bytes({{"w", "F32", {1}, bytes_of({2})}}));
    auto msg = error_of([&] { qf::SafetensorsModel::open_dir(dir); });
    EXPECT_HAS(msg, "b.safetensors");
    EXPECT_HAS(msg, "'w'");
    EXPECT_HAS(msg, "a.safetensors");
}

TEST(Safetensors, BrokenShardIsNamed) {
    const std::string dir = qf::test::scratch_dir();
    qf::test::CheckpointSpec spec;
    spec.shards = 2;
    auto ck = qf::test::write_checkpoint(dir, spec);
    qf::test::write_text(ck.files[1], "short");
    auto msg = error_of([&] { qf::SafetensorsModel::open_dir(dir); });
    EXPECT_HAS(msg, ck.files[1]);
    EXPECT_HAS(msg, "truncated");
}
