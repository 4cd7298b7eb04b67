// GGUF writer and reader: byte layout against a hand-built file, round trips of every
// value type and tensor shape, exact sizes, streaming, and rejection of broken files.
#include "common/error.h"
#include "common/output_file.h"
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "support/test_paths.h"
#include "unit/test_gguf_bytes.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

namespace qf {
namespace {

using test::GgufBytes;

std::vector<std::byte> read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> out(c.size());
    std::memcpy(out.data(), c.data(), c.size());
    return out;
}

std::vector<std::byte> pattern(size_t n, uint8_t seed) { return GgufBytes().pattern(n, seed).b; }

// Writes md + tensors (data[k] for tensor k) through GgufWriter and commits.
void write_gguf(const std::string& path, const GgufMetadata& md, const std::vector<GgufTensorPlan>& plans,
                const std::vector<std::vector<std::byte>>& data, uint32_t alignment = 32) {
    OutputFile out(path, true);
    GgufWriter w(out, md, plans, alignment);
    for (const auto& d : data) w.write_tensor_data(d);
    w.finish();
    out.commit();
}

// The small file of the layout tests, built by hand from the reference layout:
// two KVs, tensors a (F32 8x2, 64 bytes), b (Q8_0 32, 34 bytes + 30 padding),
// c (F32 8, 32 bytes: the file ends exactly where c's data ends).
std::vector<std::byte> small_file_by_hand() {
    GgufBytes f;
    f.header(3, 3, 2);
    f.kv_str("general.architecture", "llama");
    f.kv_u32("llama.block_count", 2);
    f.tensor_info("a", {8, 2}, 0, 0);
    f.tensor_info("b", {32}, 8, 64);
    f.tensor_info("c", {8}, 0, 128);
    f.pad_to(32);
    f.pattern(64, 1).pattern(34, 2).zeros(30).pattern(32, 3);
    return f.b;
}

GgufMetadata small_metadata() {
    GgufMetadata md;
    md.set("general.architecture", GgufValue::string("llama"));
    md.set("llama.block_count", GgufValue::u32(2));
    return md;
}

std::vector<GgufTensorPlan> small_plans() {
    return {{"a", {8, 2}, GgmlType::F32}, {"b", {32}, GgmlType::Q8_0}, {"c", {8}, GgmlType::F32}};
}

std::vector<std::vector<std::byte>> small_data() { return {pattern(64, 1), pattern(34, 2), pattern(32, 3)}; }

std::string error_of(std::span<const std::byte> bytes, const std::string& label = "crafted.gguf") {
    try {
        GgufFile f = GgufFile::from_bytes(bytes, label);
        for (const auto& t : f.tensors()) (void)f.tensor_data(t);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// The file must be refused with one line that names it and says `needle`.
void expect_rejected(std::span<const std::byte> bytes, const std::string& needle) {
    const std::string msg = error_of(bytes);
    ASSERT_FALSE(msg.empty()) << "accepted a file that should fail with: " << needle;
    EXPECT_EQ(msg.rfind("crafted.gguf: ", 0), 0u) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg << "\nexpected to contain: " << needle;
}

std::string writer_error(const GgufMetadata& md, const std::vector<GgufTensorPlan>& plans, uint32_t alignment = 32) {
    const std::string path = test::scratch_dir() + "/w.gguf";
    try {
        OutputFile out(path, true);
        GgufWriter w(out, md, plans, alignment);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// ---------------------------------------------------------------- layout

TEST(GgufWriter, MatchesHandBuiltBytes) {
    const std::string path = test::scratch_dir() + "/small.gguf";
    write_gguf(path, small_metadata(), small_plans(), small_data());
    const auto expected = small_file_by_hand();
    const auto got = read_all(path);
    ASSERT_EQ(got.size(), expected.size());
    EXPECT_TRUE(got == expected) << "writer output differs from the hand-built layout";
    EXPECT_EQ(gguf_file_bytes(small_metadata(), small_plans()), expected.size());
}

TEST(GgufWriter, SizeFormulaByHand) {
    // header 24 + KV "a" u32 (8+1+4+4 = 17) + tensor "t" F32 [4] (8+1+4+8+4+8 = 33) = 74
    // -> metadata padded to 96; data 16 bytes padded to 32 -> 128.
    GgufMetadata md;
    md.set("a", GgufValue::u32(7));
    std::vector<GgufTensorPlan> plans = {{"t", {4}, GgmlType::F32}};
    EXPECT_EQ(gguf_metadata_bytes(md, plans), 96u);
    EXPECT_EQ(gguf_file_bytes(md, plans), 128u);
    // Same with alignment 64: general.alignment (8+17+4+4 = 33) is added -> 107 -> 128; data 64.
    EXPECT_EQ(gguf_metadata_bytes(md, plans, 64), 128u);
    EXPECT_EQ(gguf_file_bytes(md, plans, 64), 192u);
    // Q4_K 512 x 3: 2 blocks * 144 bytes * 3 rows = 864 bytes -> padded 864.
    EXPECT_EQ(gguf_tensor_bytes({"q", {512, 3}, GgmlType::Q4_K}), 864u);
    EXPECT_EQ(gguf_tensor_bytes({"q", {32, 5, 2}, GgmlType::Q5_0}), 220u);  // 22 bytes per block * 10
}

TEST(GgufReader, ReadsHandBuiltFile) {
    const auto bytes = small_file_by_hand();
    GgufFile f = GgufFile::from_bytes(bytes, "small");
    EXPECT_EQ(f.path(), "small");
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.alignment(), 32u);
    EXPECT_EQ(f.file_size(), bytes.size());
    ASSERT_EQ(f.metadata().size(), 2u);
    EXPECT_EQ(f.metadata().get("general.architecture").as_string(), "llama");
    EXPECT_EQ(f.metadata().get("llama.block_count").type, GgufValueType::U32);
    EXPECT_EQ(f.metadata().get("llama.block_count").as_u64(), 2u);
    // metadata: 24 + (8+20+4+8+5) + (8+17+4+4) + (8+1+4+16+4+8) + 2*(8+1+4+8+4+8) = 24+45+33+41+66 = 209 -> 224
    EXPECT_EQ(f.metadata_end(), 209u);
    EXPECT_EQ(f.data_offset(), 224u);
    ASSERT_EQ(f.tensors().size(), 3u);
    const GgufTensorInfo* b = f.find_tensor("b");
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->type, GgmlType::Q8_0);
    EXPECT_EQ(b->shape, (std::vector<int64_t>{32}));
    EXPECT_EQ(b->offset, 64u);
    EXPECT_EQ(b->nbytes, 34u);
    EXPECT_EQ(f.find_tensor("a")->n_elements(), 16);
    EXPECT_EQ(f.find_tensor("a")->n_rows(), 2);
    EXPECT_EQ(f.find_tensor("zzz"), nullptr);
    auto data = f.tensor_data(*b);
    const auto expected = pattern(34, 2);
    EXPECT_TRUE(std::equal(data.begin(), data.end(), expected.begin(), expected.end()));
    EXPECT_TRUE(f.has_llama_layout());
}

// ---------------------------------------------------------------- round trips

GgufMetadata every_value_type() {
    GgufMetadata md;
    md.set("general.architecture", GgufValue::string("llama"));
    md.set("t.u8", GgufValue::u8(255));
    md.set("t.i8", GgufValue::i8(-128));
    md.set("t.u16", GgufValue::u16(65535));
    md.set("t.i16", GgufValue::i16(-32768));
    md.set("t.u32", GgufValue::u32(4000000000u));
    md.set("t.i32", GgufValue::i32(std::numeric_limits<int32_t>::min()));
    md.set("t.f32", GgufValue::f32(-1.5e-7f));
    md.set("t.f32_inf", GgufValue::f32(std::numeric_limits<float>::infinity()));
    md.set("t.f32_nan", GgufValue::f32(std::numeric_limits<float>::quiet_NaN()));
    md.set("t.bool_true", GgufValue::boolean(true));
    md.set("t.bool_false", GgufValue::boolean(false));
    md.set("t.str", GgufValue::string("héllo \"wörld\"\n\t"));
    md.set("t.str_empty", GgufValue::string(""));
    md.set("t.str_nul", GgufValue::string(std::string("a\0b", 3)));
    md.set("t.u64", GgufValue::u64(std::numeric_limits<uint64_t>::max()));
    md.set("t.i64", GgufValue::i64(std::numeric_limits<int64_t>::min()));
    md.set("t.f64", GgufValue::f64(3.141592653589793));
    md.set("a.u8", GgufValue::array(GgufValueType::U8, {GgufValue::u8(0), GgufValue::u8(200)}));
    md.set("a.i8", GgufValue::array(GgufValueType::I8, {GgufValue::i8(-1), GgufValue::i8(127)}));
    md.set("a.u16", GgufValue::array(GgufValueType::U16, {GgufValue::u16(1), GgufValue::u16(60000)}));
    md.set("a.i16", GgufValue::array(GgufValueType::I16, {GgufValue::i16(-300)}));
    md.set("a.u32", GgufValue::array(GgufValueType::U32, {GgufValue::u32(1), GgufValue::u32(2), GgufValue::u32(3)}));
    md.set("a.i32", GgufValue::i32_array({-1, 0, 1, 2147483647}));
    md.set("a.f32", GgufValue::f32_array({0.5f, -0.0f, 1e30f}));
    md.set("a.bool", GgufValue::array(GgufValueType::BOOL, {GgufValue::boolean(true), GgufValue::boolean(false)}));
    md.set("a.str", GgufValue::string_array({"<s>", "", "▁the", std::string(300, 'x')}));
    md.set("a.u64", GgufValue::array(GgufValueType::U64, {GgufValue::u64(1ull << 63)}));
    md.set("a.i64", GgufValue::array(GgufValueType::I64, {GgufValue::i64(-5), GgufValue::i64(1ll << 40)}));
    md.set("a.f64", GgufValue::array(GgufValueType::F64, {GgufValue::f64(-2.25), GgufValue::f64(1e300)}));
    md.set("a.empty_u8", GgufValue::array(GgufValueType::U8, {}));
    md.set("a.empty_str", GgufValue::string_array({}));
    return md;
}

TEST(GgufRoundTrip, EveryValueTypeAndTensorShape) {
    const GgufMetadata md = every_value_type();
    const std::vector<GgufTensorPlan> plans = {
        {"one_d.f32", {7}, GgmlType::F32},
        {"two_d.f16", {3, 5}, GgmlType::F16},
        {"three_d.q4_0", {64, 2, 3}, GgmlType::Q4_0},
        {"four_d.q6_K", {256, 1, 2, 2}, GgmlType::Q6_K},
        {"bf16", {10, 1}, GgmlType::BF16},
        {"i32", {3}, GgmlType::I32},
        {"empty.q8_0", {0, 4}, GgmlType::Q8_0},
        {"iq4_xs", {256, 2}, GgmlType::IQ4_XS},
        {std::string(63, 'n'), {1}, GgmlType::F64},
    };
    // Sizes computed from the block sizes in the reference table (§2.1), not from our code.
    const std::vector<uint64_t> expected_nbytes = {28, 30, 216, 840, 20, 12, 0, 272, 8};
    std::vector<std::vector<std::byte>> data;
    for (size_t k = 0; k < plans.size(); ++k) data.push_back(pattern(expected_nbytes[k], static_cast<uint8_t>(k + 10)));

    const std::string path = test::scratch_dir() + "/all.gguf";
    write_gguf(path, md, plans, data);

    GgufFile f(path);
    EXPECT_EQ(f.path(), path);
    EXPECT_EQ(f.file_size(), gguf_file_bytes(md, plans));
    EXPECT_EQ(f.data_offset(), gguf_metadata_bytes(md, plans));
    EXPECT_EQ(f.file_size() % 32, 0u) << "the last tensor is padded too";
    ASSERT_EQ(f.metadata().entries().size(), md.entries().size());
    for (size_t k = 0; k < md.entries().size(); ++k) {
        EXPECT_EQ(f.metadata().entries()[k].key, md.entries()[k].key);
        EXPECT_TRUE(f.metadata().entries()[k].value == md.entries()[k].value)
            << md.entries()[k].key << ": " << f.metadata().entries()[k].value.to_display_string();
    }
    EXPECT_TRUE(std::isnan(f.metadata().get("t.f32_nan").as_f64()));
    EXPECT_EQ(f.metadata().get("t.str_nul").as_string().size(), 3u);
    EXPECT_EQ(f.metadata().get("a.empty_str").elem_type, GgufValueType::STRING);
    EXPECT_TRUE(f.metadata().get("a.empty_str").items.empty());

    ASSERT_EQ(f.tensors().size(), plans.size());
    uint64_t running = 0;
    for (size_t k = 0; k < plans.size(); ++k) {
        const GgufTensorInfo& t = f.tensors()[k];
        EXPECT_EQ(t.name, plans[k].name);
        EXPECT_EQ(t.shape, plans[k].shape);
        EXPECT_EQ(t.type, plans[k].type);
        EXPECT_EQ(t.nbytes, expected_nbytes[k]) << t.name;
        EXPECT_EQ(t.offset, running) << t.name;
        running += (expected_nbytes[k] + 31) / 32 * 32;
        auto bytes = f.tensor_data(t);
        EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), data[k].begin(), data[k].end())) << t.name;
    }
    EXPECT_TRUE(f.has_llama_layout());
}

TEST(GgufRoundTrip, NoTensors) {
    const std::string path = test::scratch_dir() + "/empty.gguf";
    GgufMetadata md;
    md.set("general.name", GgufValue::string("x"));
    write_gguf(path, md, {}, {});
    GgufFile f(path);
    EXPECT_TRUE(f.tensors().empty());
    EXPECT_EQ(f.file_size(), gguf_file_bytes(md, {}));
    // 24 + 8+12+4+8+1 = 57 -> 64
    EXPECT_EQ(f.file_size(), 64u);
    EXPECT_EQ(f.data_offset(), 64u);

    // Nothing at all: just the header, padded.
    write_gguf(path, GgufMetadata{}, {}, {});
    GgufFile g(path);
    EXPECT_EQ(g.file_size(), 32u);
    EXPECT_TRUE(g.metadata().entries().empty());
}

TEST(GgufRoundTrip, NonDefaultAlignmentFromArgument) {
    const std::string path = test::scratch_dir() + "/a64.gguf";
    const std::vector<GgufTensorPlan> plans = {{"x", {3}, GgmlType::F32}, {"y", {32}, GgmlType::Q4_0}};
    write_gguf(path, small_metadata(), plans, {pattern(12, 1), pattern(18, 2)}, 64);
    GgufFile f(path);
    EXPECT_EQ(f.alignment(), 64u);
    ASSERT_NE(f.metadata().find("general.alignment"), nullptr);
    EXPECT_EQ(f.metadata().get("general.alignment").type, GgufValueType::U32);
    EXPECT_EQ(f.metadata().get("general.alignment").as_u64(), 64u);
    EXPECT_EQ(f.data_offset() % 64, 0u);
    EXPECT_EQ(f.find_tensor("y")->offset, 64u);
    EXPECT_EQ(f.file_size(), f.data_offset() + 128);
    EXPECT_EQ(f.file_size(), gguf_file_bytes(small_metadata(), plans, 64));
}

TEST(GgufRoundTrip, NonDefaultAlignmentFromMetadata) {
    const std::string path = test::scratch_dir() + "/a128.gguf";
    GgufMetadata md = small_metadata();
    md.set("general.alignment", GgufValue::u32(128));
    const std::vector<GgufTensorPlan> plans = {{"x", {3}, GgmlType::F32}, {"y", {1}, GgmlType::F32}};
    write_gguf(path, md, plans, {pattern(12, 1), pattern(4, 2)});
    GgufFile f(path);
    EXPECT_EQ(f.alignment(), 128u);
    EXPECT_EQ(f.metadata().size(), md.size()) << "no second alignment key";
    EXPECT_EQ(f.data_offset() % 128, 0u);
    EXPECT_EQ(f.find_tensor("y")->offset, 128u);
    EXPECT_EQ(f.file_size(), f.data_offset() + 256);
    EXPECT_EQ(f.file_size(), gguf_file_bytes(md, plans));
    // The same alignment passed explicitly agrees and is fine; a different one conflicts.
    EXPECT_EQ(gguf_file_bytes(md, plans, 128), f.file_size());
    EXPECT_NE(writer_error(md, plans, 64).find("alignment 64 requested"), std::string::npos);
}

TEST(GgufRoundTrip, VersionTwoIsAccepted) {
    auto bytes = small_file_by_hand();
    bytes[4] = std::byte{2};
    GgufFile f = GgufFile::from_bytes(bytes, "v2");
    EXPECT_EQ(f.version(), 2u);
    EXPECT_EQ(f.tensors().size(), 3u);
}

// ---------------------------------------------------------------- streaming

TEST(GgufWriter, StreamsTensorsInPieces) {
    const std::string path = test::scratch_dir() + "/pieces.gguf";
    const auto plans = small_plans();
    const auto data = small_data();
    {
        OutputFile out(path, true);
        GgufWriter w(out, small_metadata(), plans);
        EXPECT_EQ(out.bytes_written(), 224u) << "metadata and padding are written by the constructor";
        EXPECT_EQ(w.current_tensor(), 0u);
        for (size_t k = 0; k < data.size(); ++k) {
            // pieces of 1, 2, 3, ... bytes
            size_t pos = 0, piece = 1;
            while (pos < data[k].size()) {
                EXPECT_EQ(w.current_tensor(), k);
                const size_t n = std::min(piece++, data[k].size() - pos);
                w.write_tensor_data(std::span(data[k]).subspan(pos, n));
                pos += n;
            }
            EXPECT_EQ(w.current_tensor(), k + 1);
        }
        w.write_tensor_data({});  // empty pieces are harmless
        w.finish();
        out.commit();
    }
    EXPECT_TRUE(read_all(path) == small_file_by_hand());
}

TEST(GgufWriter, ZeroByteTensorsAreSkipped) {
    const std::string path = test::scratch_dir() + "/zero.gguf";
    OutputFile out(path, true);
    const std::vector<GgufTensorPlan> plans = {
        {"e0", {0}, GgmlType::F32}, {"x", {2}, GgmlType::F32}, {"e1", {32, 0}, GgmlType::Q8_0}};
    GgufWriter w(out, GgufMetadata{}, plans);
    EXPECT_EQ(w.current_tensor(), 1u);
    w.write_tensor_data(pattern(8, 1));
    EXPECT_EQ(w.current_tensor(), 3u);
    w.finish();
    out.commit();
    GgufFile f(path);
    EXPECT_EQ(f.find_tensor("e1")->nbytes, 0u);
    EXPECT_EQ(f.find_tensor("e1")->offset, 32u);
    EXPECT_TRUE(f.tensor_data(*f.find_tensor("e0")).empty());
}

TEST(GgufWriter, RefusesWrongAmountsOfData) {
    const std::string dir = test::scratch_dir();
    {
        OutputFile out(dir + "/too_much.gguf", true);
        GgufWriter w(out, GgufMetadata{}, small_plans());
        w.write_tensor_data(pattern(60, 1));
        try {
            w.write_tensor_data(pattern(5, 1));
            FAIL() << "accepted 65 bytes for a 64-byte tensor";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(dir + "/too_much.gguf: tensor 'a'"), std::string::npos) << e.what();
        }
    }
    {
        OutputFile out(dir + "/too_little.gguf", true);
        GgufWriter w(out, GgufMetadata{}, small_plans());
        w.write_tensor_data(pattern(64, 1));
        w.write_tensor_data(pattern(33, 1));
        try {
            w.finish();
            FAIL() << "finished with a tensor one byte short";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("too_little.gguf: tensor 'b' got 33 of its 34 bytes"),
                      std::string::npos)
                << e.what();
        }
    }
    {
        OutputFile out(dir + "/after_end.gguf", true);
        GgufWriter w(out, GgufMetadata{}, {{"x", {1}, GgmlType::F32}});
        w.write_tensor_data(pattern(4, 1));
        EXPECT_THROW(w.write_tensor_data(pattern(1, 1)), Error);
        w.finish();
    }
    {
        OutputFile out(dir + "/none.gguf", true);
        GgufWriter w(out, GgufMetadata{}, small_plans());
        EXPECT_THROW(w.finish(), Error);
    }
}

TEST(GgufWriter, RejectsWhatLlamaCppWouldRefuse) {
    const std::vector<GgufTensorPlan> one = {{"x", {32}, GgmlType::F32}};
    auto md_with = [](std::string key, GgufValue v) {
        GgufMetadata md;
        md.set(std::move(key), std::move(v));
        return md;
    };
    auto expect = [](const std::string& msg, const std::string& needle) {
        EXPECT_NE(msg.find(needle), std::string::npos) << "message: '" << msg << "' expected: " << needle;
        EXPECT_NE(msg.find("w.gguf: "), std::string::npos) << msg;
    };

    GgufValue nested = GgufValue::array(GgufValueType::ARRAY, {GgufValue::i32_array({1})});
    expect(writer_error(md_with("k", nested), one), "array of arrays");
    GgufValue nested_item = GgufValue::array(GgufValueType::I32, {GgufValue::i32_array({1})});
    expect(writer_error(md_with("k", nested_item), one), "nested arrays");
    GgufValue mixed = GgufValue::array(GgufValueType::I32, {GgufValue::i32(1), GgufValue::u32(2)});
    expect(writer_error(md_with("k", mixed), one), "item 1 has type u32");
    GgufValue big = GgufValue::u8(1);
    big.u = 300;
    expect(writer_error(md_with("k", big), one), "300 does not fit type u8");
    expect(writer_error(md_with("", GgufValue::u8(1)), one), "empty key");

    expect(writer_error({}, {{std::string(64, 'n'), {1}, GgmlType::F32}}), "at most 63");
    expect(writer_error({}, {{"x", {1}, GgmlType::F32}, {"x", {1}, GgmlType::F32}}), "duplicate tensor name 'x'");
    expect(writer_error({}, {{"x", {100}, GgmlType::Q4_K}}), "not a multiple of the block size 256");
    expect(writer_error({}, {{"x", {}, GgmlType::F32}}), "0 dimensions");
    expect(writer_error({}, {{"x", {1, 1, 1, 1, 1}, GgmlType::F32}}), "5 dimensions");
    expect(writer_error({}, {{"x", {-1}, GgmlType::F32}}), "negative");
    expect(writer_error({}, {{"x", {1ll << 40, 1ll << 40}, GgmlType::F32}}), "too many elements");
    expect(writer_error({}, {{"x", {4}, static_cast<GgmlType>(4)}}), "unknown ggml type id 4");

    expect(writer_error({}, one, 48), "alignment 48 is not a power of two");
    expect(writer_error(md_with("general.alignment", GgufValue::i32(64)), one), "must be of type u32 but is i32");
    expect(writer_error(md_with("general.alignment", GgufValue::u32(24)), one), "not a power of two");
    // The size functions apply the same checks.
    EXPECT_THROW(gguf_file_bytes(md_with("k", nested), one), Error);
}

// ---------------------------------------------------------------- hostile input

TEST(GgufReader, EveryTruncationIsAnError) {
    const auto bytes = small_file_by_hand();
    for (size_t n = 0; n < bytes.size(); ++n) {
        const std::string msg = error_of(std::span(bytes).first(n));
        ASSERT_FALSE(msg.empty()) << "accepted a file truncated to " << n << " of " << bytes.size() << " bytes";
        EXPECT_EQ(msg.rfind("crafted.gguf: ", 0), 0u) << msg;
    }
    EXPECT_EQ(error_of(bytes), "");
}

TEST(GgufReader, MessagesForTruncatedPlaces) {
    const auto bytes = small_file_by_hand();
    expect_rejected(std::span(bytes).first(0), "only 0 bytes");
    expect_rejected(std::span(bytes).first(10), "truncated: tensor count");
    expect_rejected(std::span(bytes).first(40), "key-value count 2 cannot fit in the remaining 16 bytes");
    expect_rejected(std::span(bytes).first(100), "2 key-value pairs and 3 tensors cannot fit");
    expect_rejected(std::span(bytes).first(150), "truncated: name of tensor 1 needs 8 bytes but only 7 remain");
    expect_rejected(std::span(bytes).first(215), "data section should start at byte 224");
    expect_rejected(std::span(bytes).first(bytes.size() - 1), "tensor 'c' data (32 bytes at offset 128) extends past");
}

TEST(GgufReader, BadMagicAndVersions) {
    auto bytes = small_file_by_hand();
    auto with_version = [&](uint32_t v) {
        auto b = bytes;
        std::memcpy(b.data() + 4, &v, 4);
        return b;
    };
    auto magic = bytes;
    magic[3] = std::byte{'X'};
    expect_rejected(magic, "magic is 'GGUX', expected 'GGUF'");
    expect_rejected(with_version(0), "bad GGUF version 0");
    expect_rejected(with_version(1), "version 1 is no longer supported");
    expect_rejected(with_version(4), "version 4 is newer");
    expect_rejected(with_version(0x00030000), "wrong endianness");
    expect_rejected(with_version(0x03000000), "wrong endianness");  // a big-endian v3 file
}

// The hand-built small file with one piece replaced, for targeted corruptions.
struct Crafted {
    uint64_t n_tensors = 1;
    uint64_t n_kv = 1;
    GgufBytes kvs = GgufBytes().kv_u32("k", 1);
    GgufBytes infos = GgufBytes().tensor_info("t", {8}, 0, 0);
    size_t data_bytes = 32;
    uint32_t alignment = 32;

    std::vector<std::byte> bytes() const {
        GgufBytes f;
        f.header(3, n_tensors, n_kv).append(kvs).append(infos).pad_to(alignment).pattern(data_bytes, 1);
        return f.b;
    }
};

TEST(GgufReader, CraftedBaselineIsValid) { EXPECT_EQ(error_of(Crafted{}.bytes()), ""); }

TEST(GgufReader, ImplausibleCounts) {
    Crafted c;
    c.n_kv = 1ull << 62;
    expect_rejected(c.bytes(), "key-value count 4611686018427387904 cannot fit");
    c = Crafted{};
    c.n_kv = 100;
    expect_rejected(c.bytes(), "key-value count 100 cannot fit");
    c = Crafted{};
    c.n_tensors = ~0ull;
    expect_rejected(c.bytes(), "tensor count 18446744073709551615 cannot fit");
    c = Crafted{};
    c.n_tensors = 2;  // plausible by size, but the second record is the padding and data
    expect_rejected(c.bytes(), "crafted.gguf: ");
}

TEST(GgufReader, LengthsBeyondTheFile) {
    Crafted c;
    c.kvs = GgufBytes().str("k").u32(8).u64(1000).str("x");
    expect_rejected(c.bytes(), "value of key 'k' needs 1000 bytes");
    c.kvs = GgufBytes().str("k").u32(8).u64((1ull << 30) + 1);
    expect_rejected(c.bytes(), "more than the GGUF limit of 2^30");
    c.kvs = GgufBytes().u64(~0ull);
    expect_rejected(c.bytes(), "key 0 has length 18446744073709551615");
    c.kvs = GgufBytes().str("k").u32(9).u32(4).u64(1000);
    expect_rejected(c.bytes(), "array of 1000 u32 cannot fit");
    c.kvs = GgufBytes().str("k").u32(9).u32(8).u64(100);
    expect_rejected(c.bytes(), "array of 100 str cannot fit");
    c.kvs = GgufBytes().str("k").u32(9).u32(0).u64(1ull << 31);
    expect_rejected(c.bytes(), "2^30");
    c = Crafted{};
    c.infos = GgufBytes().u64(5000);
    expect_rejected(c.bytes(), "name of tensor 0 needs 5000 bytes");
}

TEST(GgufReader, BadValues) {
    Crafted c;
    c.kvs = GgufBytes().str("k").u32(13).u32(0);
    expect_rejected(c.bytes(), "key 'k' has invalid value type 13");
    c.kvs = GgufBytes().str("k").u32(9).u32(9).u64(0);
    expect_rejected(c.bytes(), "key 'k' is an array of arrays");
    c.kvs = GgufBytes().str("k").u32(9).u32(77).u64(0);
    expect_rejected(c.bytes(), "invalid array element type 77");
    c.kvs = GgufBytes().str("").u32(4).u32(0);
    expect_rejected(c.bytes(), "key 0 is empty");
    c.n_kv = 2;
    c.kvs = GgufBytes().kv_u32("dup", 1).kv_u32("dup", 2);
    expect_rejected(c.bytes(), "duplicate key 'dup'");
}

TEST(GgufReader, BadAlignmentKey) {
    Crafted c;
    c.kvs = GgufBytes().str("general.alignment").u32(5).i32(64);
    expect_rejected(c.bytes(), "'general.alignment' must be of type u32 but is i32");
    c.kvs = GgufBytes().kv_u32("general.alignment", 48);
    expect_rejected(c.bytes(), "is 48, not a power of two");
    c.kvs = GgufBytes().kv_u32("general.alignment", 0);
    expect_rejected(c.bytes(), "is 0, not a power of two");
    // A valid custom alignment is honoured: data must then start at a multiple of 64.
    c.kvs = GgufBytes().kv_u32("general.alignment", 64);
    c.alignment = 64;
    GgufFile f = GgufFile::from_bytes(c.bytes(), "a64");
    EXPECT_EQ(f.alignment(), 64u);
    EXPECT_EQ(f.data_offset(), 128u);
}

TEST(GgufReader, BadTensorInfos) {
    Crafted c;
    c.infos = GgufBytes().tensor_info("t", {}, 0, 0);
    expect_rejected(c.bytes(), "tensor 't' has 0 dimensions");
    c.infos = GgufBytes().tensor_info("t", {1, 1, 1, 1, 1}, 0, 0);
    expect_rejected(c.bytes(), "tensor 't' has 5 dimensions");
    c.infos = GgufBytes().tensor_info("t", {8, -2}, 0, 0);
    expect_rejected(c.bytes(), "tensor 't' dimension 1 is negative");
    c.infos = GgufBytes().tensor_info("t", {1ll << 32, 1ll << 32}, 0, 0);
    expect_rejected(c.bytes(), "tensor 't' has too many elements");
    c.infos = GgufBytes().tensor_info("t", {1ll << 31, 1ll << 31, 2}, 0, 0);
    expect_rejected(c.bytes(), "too many elements");
    // A zero-sized row length must not hide an overflowing row count (found by fuzz_gguf).
    c.infos = GgufBytes().tensor_info("t", {0, 1ll << 40, 1ll << 40}, 0, 0);
    expect_rejected(c.bytes(), "too many elements");
    c.infos = GgufBytes().tensor_info("t", {8}, 4, 0);
    expect_rejected(c.bytes(), "tensor 't' has unknown ggml type id 4");
    c.infos = GgufBytes().tensor_info("t", {8}, 1000, 0);
    expect_rejected(c.bytes(), "unknown ggml type id 1000");
    c.infos = GgufBytes().tensor_info("t", {8}, 2, 0);
    expect_rejected(c.bytes(), "rows of 8 elements, not a multiple of the block size 32");
    // F64 with INT64_MAX/2 elements: element count fine, bytes overflow.
    c.infos = GgufBytes().tensor_info("t", {std::numeric_limits<int64_t>::max() / 2}, 28, 0);
    expect_rejected(c.bytes(), "byte size overflows");
    c.infos = GgufBytes().tensor_info(std::string(64, 'n'), {8}, 0, 0);
    expect_rejected(c.bytes(), "at most 63 allowed");
    c.infos = GgufBytes().tensor_info("t", {8}, 0, 16);
    expect_rejected(c.bytes(), "tensor 't' offset 16 is not a multiple of the alignment 32");
    c.infos = GgufBytes().tensor_info("t", {8}, 0, 32);
    expect_rejected(c.bytes(), "tensor 't' data (32 bytes at offset 32) extends past the end of the file");
    c.infos = GgufBytes().tensor_info("t", {8}, 0, ~0ull - 31);
    expect_rejected(c.bytes(), "extends past the end of the file");
    c.infos = GgufBytes().tensor_info("t", {1ll << 40}, 24, 0);
    expect_rejected(c.bytes(), "extends past the end of the file");
    c.n_tensors = 2;
    c.infos = GgufBytes().tensor_info("t", {8}, 0, 0).tensor_info("t", {8}, 0, 0);
    expect_rejected(c.bytes(), "duplicate tensor name 't'");
    c.infos = GgufBytes().tensor_info("t", {16}, 0, 0).tensor_info("u", {8}, 0, 32);
    c.data_bytes = 64;
    expect_rejected(c.bytes(), "tensor 't' (data offset 0, 64 bytes) overlaps tensor 'u' (data offset 32)");
}

TEST(GgufReader, AcceptsButFlagsOtherLayouts) {
    // Two tensors stored in reverse order: readable here, but not llama.cpp's layout.
    Crafted c;
    c.n_tensors = 2;
    c.infos = GgufBytes().tensor_info("t", {8}, 0, 32).tensor_info("u", {8}, 0, 0);
    c.data_bytes = 64;
    GgufFile f = GgufFile::from_bytes(c.bytes(), "reversed");
    EXPECT_FALSE(f.has_llama_layout());
    EXPECT_EQ(f.tensor_data(*f.find_tensor("t")).data(), f.tensor_data(*f.find_tensor("u")).data() + 32);
}

TEST(GgufReader, ForeignTensorInfoAndMissingFile) {
    const auto bytes = small_file_by_hand();
    GgufFile f = GgufFile::from_bytes(bytes, "small");
    GgufTensorInfo foreign = f.tensors()[0];
    foreign.offset = 1 << 20;
    EXPECT_THROW(f.tensor_data(foreign), Error);
    const std::string missing = test::scratch_dir() + "/missing.gguf";
    try {
        GgufFile g(missing);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()).rfind(missing + ": ", 0), 0u) << e.what();
    }
}

TEST(GgufReader, SingleBitFlipsNeverCrash) {
    // Not a fuzzer, but a cheap sweep: every byte of the metadata set to a few values.
    const auto good = small_file_by_hand();
    for (size_t pos = 0; pos < 224; ++pos) {
        for (uint8_t v : {uint8_t{0}, uint8_t{1}, uint8_t{0x7F}, uint8_t{0x80}, uint8_t{0xFF}}) {
            auto b = good;
            b[pos] = std::byte{v};
            const std::string msg = error_of(b);
            if (!msg.empty()) {
                EXPECT_EQ(msg.rfind("crafted.gguf: ", 0), 0u) << msg;
            }
        }
    }
}

// ---------------------------------------------------------------- values

TEST(GgufValue, ConversionsAndSizes) {
    EXPECT_EQ(GgufValue::i32(-3).as_i64(), -3);
    EXPECT_THROW(GgufValue::i32(-3).as_u64(), Error);
    EXPECT_EQ(GgufValue::i32(3).as_u64(), 3u);
    EXPECT_THROW(GgufValue::u64(~0ull).as_i64(), Error);
    EXPECT_EQ(GgufValue::u16(9).as_f64(), 9.0);
    EXPECT_THROW(GgufValue::string("x").as_u64(), Error);
    EXPECT_THROW(GgufValue::u8(1).as_bool(), Error);
    EXPECT_TRUE(GgufValue::boolean(true).as_bool());
    EXPECT_THROW(GgufValue::u8(1).as_string(), Error);
    EXPECT_TRUE(GgufValue::u8(1).is_integer());
    EXPECT_FALSE(GgufValue::f32(1).is_integer());
    EXPECT_FALSE(GgufValue::boolean(true).is_integer());

    EXPECT_EQ(GgufValue::u8(1).encoded_size(), 1u);
    EXPECT_EQ(GgufValue::f64(1).encoded_size(), 8u);
    EXPECT_EQ(GgufValue::string("abc").encoded_size(), 11u);
    EXPECT_EQ(GgufValue::string_array({"a", "bc"}).encoded_size(), 4u + 8 + 9 + 10);
    EXPECT_EQ(GgufValue::i32_array({1, 2, 3}).encoded_size(), 4u + 8 + 12);
    EXPECT_EQ(gguf_scalar_size(GgufValueType::I16), 2u);
    EXPECT_STREQ(gguf_value_type_name(GgufValueType::STRING), "str");

    EXPECT_EQ(GgufValue::i32_array({1, 2, 3}).to_display_string(), "[1, 2, 3]");
    EXPECT_EQ(GgufValue::i32_array({1, 2, 3}).to_display_string(2), "[1, 2, ...] (3 items)");
    EXPECT_EQ(GgufValue::string("a\"b\n").to_display_string(), "\"a\\\"b\\n\"");
    EXPECT_EQ(GgufValue::boolean(false).to_display_string(), "false");
    EXPECT_EQ(GgufValue::f32(0.5f).to_display_string(), "0.5");

    EXPECT_TRUE(GgufValue::f32(1.0f) == GgufValue::f32(1.0f));
    EXPECT_FALSE(GgufValue::f32(1.0f) == GgufValue::f64(1.0));
    EXPECT_FALSE(GgufValue::u32(1) == GgufValue::i32(1));
    EXPECT_FALSE(GgufValue::i32_array({1}) == GgufValue::i32_array({1, 2}));
}

TEST(GgufMetadata, OrderedSetFindErase) {
    GgufMetadata md;
    md.set("a", GgufValue::u32(1));
    md.set("b", GgufValue::u32(2));
    md.set("c", GgufValue::u32(3));
    md.set("a", GgufValue::string("x"));  // replaced in place
    ASSERT_EQ(md.size(), 3u);
    EXPECT_EQ(md.entries()[0].key, "a");
    EXPECT_EQ(md.get("a").as_string(), "x");
    EXPECT_TRUE(md.erase("b"));
    EXPECT_FALSE(md.erase("b"));
    EXPECT_EQ(md.find("b"), nullptr);
    EXPECT_EQ(md.get("c").as_u64(), 3u);
    md.set("d", GgufValue::u32(4));
    EXPECT_EQ(md.entries()[2].key, "d");
    EXPECT_EQ(md.get("d").as_u64(), 4u);
    try {
        md.get("missing");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("'missing'"), std::string::npos);
    }
}

}  // namespace
}  // namespace qf

// Inputs the fuzzer once crashed on (tests/fuzz/regressions/fuzz_gguf/): each must now be
// refused with a qf::Error naming the file, never crash.
TEST(GgufReader, FuzzRegressionsAreRefusedCleanly) {
    const std::filesystem::path dir = std::filesystem::path(qf::test::source_dir()) / "tests/fuzz/regressions/fuzz_gguf";
    int n = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        ++n;
        bool refused = false;
        try {
            qf::GgufFile file(entry.path().string());
        } catch (const qf::Error& e) {
            refused = true;
            EXPECT_NE(std::string(e.what()).find(entry.path().filename().string()), std::string::npos) << e.what();
        }
        EXPECT_TRUE(refused) << entry.path();
    }
    EXPECT_GE(n, 1);
}
