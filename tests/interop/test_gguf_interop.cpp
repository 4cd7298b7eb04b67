// Our GGUF files read by llama.cpp's own reader (gguf_init_from_file in libggml-base.so,
// loaded with dlopen): same keys, value types and values, same tensor names, types, shapes,
// sizes and offsets, same data section offset. And files we refuse, ggml refuses too.
#include "common/error.h"
#include "common/output_file.h"
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "support/llama_gguf_api.h"
#include "support/test_paths.h"

#include <gtest/gtest.h>

#include <cstring>
#include <dlfcn.h>
#include <fstream>
#include <limits>

namespace qf {
namespace {

using test::GgufApi;
using test::GgmlGguf;
using test::GgufInitParams;
using test::GgufContext;

// The bytes ggml keeps for a scalar (bool as one byte), encoded independently of the writer.
std::vector<std::byte> scalar_bytes(const GgufValue& v) {
    std::vector<std::byte> out;
    auto put = [&](auto x) {
        const auto* p = reinterpret_cast<const std::byte*>(&x);
        out.insert(out.end(), p, p + sizeof x);
    };
    switch (v.type) {
        case GgufValueType::U8: put(static_cast<uint8_t>(v.u)); break;
        case GgufValueType::I8: put(static_cast<int8_t>(v.i)); break;
        case GgufValueType::U16: put(static_cast<uint16_t>(v.u)); break;
        case GgufValueType::I16: put(static_cast<int16_t>(v.i)); break;
        case GgufValueType::U32: put(static_cast<uint32_t>(v.u)); break;
        case GgufValueType::I32: put(static_cast<int32_t>(v.i)); break;
        case GgufValueType::F32: put(static_cast<float>(v.f)); break;
        case GgufValueType::BOOL: put(static_cast<int8_t>(v.u != 0)); break;
        case GgufValueType::U64: put(v.u); break;
        case GgufValueType::I64: put(v.i); break;
        case GgufValueType::F64: put(v.f); break;
        default: ADD_FAILURE() << "not a scalar";
    }
    return out;
}

GgufMetadata many_values() {
    GgufMetadata md;
    md.set("general.architecture", GgufValue::string("llama"));
    md.set("general.name", GgufValue::string("interop ✓"));
    md.set("general.empty", GgufValue::string(""));
    md.set("t.u8", GgufValue::u8(250));
    md.set("t.i8", GgufValue::i8(-100));
    md.set("t.u16", GgufValue::u16(65000));
    md.set("t.i16", GgufValue::i16(-31000));
    md.set("llama.block_count", GgufValue::u32(2));
    md.set("t.i32", GgufValue::i32(-2000000000));
    md.set("llama.rope.freq_base", GgufValue::f32(10000.0f));
    md.set("t.bool", GgufValue::boolean(true));
    md.set("t.u64", GgufValue::u64(std::numeric_limits<uint64_t>::max() - 3));
    md.set("t.i64", GgufValue::i64(std::numeric_limits<int64_t>::min() + 5));
    md.set("t.f64", GgufValue::f64(-1.0 / 3.0));
    md.set("tokenizer.ggml.tokens", GgufValue::string_array({"<unk>", "<s>", "</s>", "", "▁a"}));
    md.set("tokenizer.ggml.scores", GgufValue::f32_array({0.0f, -1.5f, 2.25f, -0.0f, 1e-20f}));
    md.set("tokenizer.ggml.token_type", GgufValue::i32_array({2, 3, 3, 1, 1}));
    md.set("a.u8", GgufValue::array(GgufValueType::U8, {GgufValue::u8(1), GgufValue::u8(255)}));
    md.set("a.i16", GgufValue::array(GgufValueType::I16, {GgufValue::i16(-7)}));
    md.set("a.u64", GgufValue::array(GgufValueType::U64, {GgufValue::u64(1ull << 60), GgufValue::u64(3)}));
    md.set("a.f64", GgufValue::array(GgufValueType::F64, {GgufValue::f64(1e-300)}));
    md.set("a.bool", GgufValue::array(GgufValueType::BOOL, {GgufValue::boolean(false), GgufValue::boolean(true)}));
    md.set("a.empty", GgufValue::array(GgufValueType::I32, {}));
    md.set("a.empty_str", GgufValue::string_array({}));
    return md;
}

std::string write_file(const std::string& path, const GgufMetadata& md, const std::vector<GgufTensorPlan>& plans,
                       uint32_t alignment = 32) {
    OutputFile out(path, true);
    GgufWriter w(out, md, plans, alignment);
    for (const auto& t : plans) {
        std::vector<std::byte> data(gguf_tensor_bytes(t));
        for (size_t k = 0; k < data.size(); ++k) data[k] = static_cast<std::byte>(k * 13 + t.name.size());
        w.write_tensor_data(data);
    }
    w.finish();
    out.commit();
    return path;
}

void expect_ggml_reads_same(const std::string& path) {
    auto& api = GgufApi::get();
    GgufFile ours(path);
    GgmlGguf theirs(path);
    ASSERT_NE(theirs.ctx, nullptr) << "llama.cpp's reader refused " << path;
    GgufContext* c = theirs.ctx;

    EXPECT_EQ(api.get_version(c), ours.version());
    EXPECT_EQ(api.get_alignment(c), ours.alignment());
    EXPECT_EQ(api.get_data_offset(c), ours.data_offset());

    const auto& kvs = ours.metadata().entries();
    ASSERT_EQ(api.get_n_kv(c), static_cast<int64_t>(kvs.size()));
    for (int64_t k = 0; k < api.get_n_kv(c); ++k) {
        const GgufKV& kv = kvs[static_cast<size_t>(k)];
        SCOPED_TRACE(kv.key);
        EXPECT_EQ(std::string(api.get_key(c, k)), kv.key);
        ASSERT_EQ(api.get_kv_type(c, k), static_cast<int>(kv.value.type));
        if (kv.value.type == GgufValueType::STRING) {
            EXPECT_EQ(std::string(api.get_val_str(c, k)), kv.value.str);
        } else if (kv.value.type == GgufValueType::ARRAY) {
            ASSERT_EQ(api.get_arr_type(c, k), static_cast<int>(kv.value.elem_type));
            ASSERT_EQ(api.get_arr_n(c, k), kv.value.items.size());
            if (kv.value.elem_type == GgufValueType::STRING) {
                for (size_t j = 0; j < kv.value.items.size(); ++j)
                    EXPECT_EQ(std::string(api.get_arr_str(c, k, j)), kv.value.items[j].str);
            } else if (!kv.value.items.empty()) {
                std::vector<std::byte> expected;
                for (const auto& item : kv.value.items) {
                    auto b = scalar_bytes(item);
                    expected.insert(expected.end(), b.begin(), b.end());
                }
                EXPECT_EQ(std::memcmp(api.get_arr_data(c, k), expected.data(), expected.size()), 0);
            }
        } else {
            const auto expected = scalar_bytes(kv.value);
            EXPECT_EQ(std::memcmp(api.get_val_data(c, k), expected.data(), expected.size()), 0);
        }
    }

    const auto& tensors = ours.tensors();
    ASSERT_EQ(api.get_n_tensors(c), static_cast<int64_t>(tensors.size()));
    for (int64_t k = 0; k < api.get_n_tensors(c); ++k) {
        const GgufTensorInfo& t = tensors[static_cast<size_t>(k)];
        SCOPED_TRACE(t.name);
        EXPECT_EQ(std::string(api.get_tensor_name(c, k)), t.name);
        EXPECT_EQ(api.get_tensor_type(c, k), static_cast<int>(t.type));
        EXPECT_EQ(api.get_tensor_offset(c, k), t.offset);
        EXPECT_EQ(api.get_tensor_size(c, k), t.nbytes);
        const int64_t* ne = api.get_tensor_ne(c, k);
        for (size_t d = 0; d < 4; ++d) EXPECT_EQ(ne[d], d < t.shape.size() ? t.shape[d] : 1) << "dim " << d;
    }
}

TEST(GgufInterop, LlamaCppReadsOurFileIdentically) {
    auto& api = GgufApi::get();
    ASSERT_TRUE(api.available()) << api.error();
    const std::vector<GgufTensorPlan> plans = {
        {"token_embd.weight", {64, 5}, GgmlType::Q8_0},  {"blk.0.attn_q.weight", {256, 4}, GgmlType::Q4_K},
        {"blk.0.ffn_down.weight", {256, 2, 3}, GgmlType::Q6_K}, {"blk.0.attn_norm.weight", {64}, GgmlType::F32},
        {"output.weight", {64, 5}, GgmlType::F16},       {"blk.0.ffn_up.weight", {32, 3}, GgmlType::Q4_0},
        {"blk.0.x", {256, 1, 1, 2}, GgmlType::IQ4_XS},   {"blk.0.y", {7, 3}, GgmlType::BF16},
        {"blk.0.z", {32, 2}, GgmlType::Q5_1},
    };
    expect_ggml_reads_same(write_file(test::scratch_dir() + "/interop.gguf", many_values(), plans));
}

TEST(GgufInterop, LlamaCppHonoursOurAlignment) {
    ASSERT_TRUE(GgufApi::get().available()) << GgufApi::get().error();
    const std::vector<GgufTensorPlan> plans = {{"a", {3}, GgmlType::F32}, {"b", {32, 3}, GgmlType::Q8_0}};
    expect_ggml_reads_same(write_file(test::scratch_dir() + "/a256.gguf", many_values(), plans, 256));
}

TEST(GgufInterop, NoTensors) {
    ASSERT_TRUE(GgufApi::get().available()) << GgufApi::get().error();
    const std::string path = write_file(test::scratch_dir() + "/empty.gguf", many_values(), {});
    GgmlGguf theirs(path);
    ASSERT_NE(theirs.ctx, nullptr);
    EXPECT_EQ(GgufApi::get().get_n_kv(theirs.ctx), static_cast<int64_t>(many_values().size()));
    EXPECT_EQ(GgufApi::get().get_n_tensors(theirs.ctx), 0);
}

TEST(GgufInterop, FilesWeRefuseGgmlRefusesToo) {
    ASSERT_TRUE(GgufApi::get().available()) << GgufApi::get().error();
    const std::string dir = test::scratch_dir();
    GgufMetadata md;
    md.set("general.architecture", GgufValue::string("llama"));
    const std::string good = write_file(dir + "/good.gguf", md, {{"a", {32}, GgmlType::F32}, {"b", {8}, GgmlType::F32}});
    std::ifstream in(good, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // Offsets of fields in this file: header 24, KV 8+20+4+8+5 = 45 -> tensor 'a' at 69.
    const size_t a_info = 69, a_ndims = a_info + 9, a_ne0 = a_ndims + 4, a_type = a_ne0 + 8;
    const size_t b_info = a_type + 12, b_offset = b_info + 8 + 1 + 4 + 8 + 4;
    auto mutate = [&](const std::string& name, size_t pos, const void* v, size_t n) {
        std::string b = bytes;
        std::memcpy(b.data() + pos, v, n);
        const std::string path = dir + "/" + name + ".gguf";
        std::ofstream(path, std::ios::binary) << b;
        return path;
    };
    const uint32_t bad_version = 4, bad_dims = 5, bad_type = 4;
    const int64_t bad_ne = -32;
    const uint64_t misaligned = 16, past_end = 1 << 20, reversed = 0;
    const char bad_magic = 'X';
    const std::vector<std::string> bad = {
        mutate("magic", 0, &bad_magic, 1),     mutate("version", 4, &bad_version, 4),
        mutate("dims", a_ndims, &bad_dims, 4), mutate("ne", a_ne0, &bad_ne, 8),
        mutate("type", a_type, &bad_type, 4),  mutate("misaligned", b_offset, &misaligned, 8),
        mutate("past_end", b_offset, &past_end, 8),
    };
    for (const auto& path : bad) {
        SCOPED_TRACE(path);
        EXPECT_THROW(GgufFile f(path), Error);
        GgmlGguf theirs(path);
        EXPECT_EQ(theirs.ctx, nullptr);
    }
    // Sanity: the unmutated file and our field positions are right.
    GgufFile ok(good);
    EXPECT_EQ(ok.find_tensor("b")->offset, 128u);
    // An overlapping layout (b on top of a): both refuse. ggml demands running offsets.
    const std::string overlap = mutate("overlap", b_offset, &reversed, 8);
    EXPECT_THROW(GgufFile f(overlap), Error);
    GgmlGguf theirs(overlap);
    EXPECT_EQ(theirs.ctx, nullptr);
}

}  // namespace
}  // namespace qf
