// The fuzz_gguf seed corpus (tests/fuzz/corpus/fuzz_gguf/) is made by our writer: run
//   QFORGE_WRITE_FUZZ_SEEDS=1 build/tests/qforge_tests --gtest_filter='GgufFuzzSeeds.*'
// to regenerate it. This test keeps the stored seeds valid and small.
#include "common/error.h"
#include "common/output_file.h"
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "support/test_paths.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

namespace qf {
namespace {

namespace fs = std::filesystem;

void write_seed(const std::string& path, const GgufMetadata& md, const std::vector<GgufTensorPlan>& plans,
                uint32_t alignment = 32) {
    OutputFile out(path, true);
    GgufWriter w(out, md, plans, alignment);
    for (const auto& t : plans) {
        std::vector<std::byte> data(gguf_tensor_bytes(t));
        for (size_t k = 0; k < data.size(); ++k) data[k] = static_cast<std::byte>(k * 31 + 7);
        w.write_tensor_data(data);
    }
    w.finish();
    out.commit();
}

void write_all_seeds(const std::string& dir) {
    GgufMetadata small;
    small.set("general.architecture", GgufValue::string("llama"));
    small.set("llama.block_count", GgufValue::u32(1));
    write_seed(dir + "/small.gguf", small,
               {{"a", {8, 2}, GgmlType::F32}, {"b", {32}, GgmlType::Q8_0}, {"c", {8}, GgmlType::F16}});

    GgufMetadata values;
    values.set("u8", GgufValue::u8(1));
    values.set("i8", GgufValue::i8(-1));
    values.set("u16", GgufValue::u16(2));
    values.set("i16", GgufValue::i16(-2));
    values.set("u32", GgufValue::u32(3));
    values.set("i32", GgufValue::i32(-3));
    values.set("f32", GgufValue::f32(0.5f));
    values.set("bool", GgufValue::boolean(true));
    values.set("str", GgufValue::string("text"));
    values.set("u64", GgufValue::u64(4));
    values.set("i64", GgufValue::i64(-4));
    values.set("f64", GgufValue::f64(0.25));
    values.set("a.str", GgufValue::string_array({"x", "", "yz"}));
    values.set("a.i32", GgufValue::i32_array({1, 2}));
    values.set("a.f32", GgufValue::f32_array({1.0f}));
    values.set("a.empty", GgufValue::array(GgufValueType::U8, {}));
    write_seed(dir + "/values.gguf", values,
               {{"q4", {32, 1, 2}, GgmlType::Q4_0}, {"k", {256}, GgmlType::Q4_K}, {"d4", {1, 1, 1, 2}, GgmlType::I8}});

    write_seed(dir + "/no_tensors.gguf", small, {});
    write_seed(dir + "/align64.gguf", small, {{"x", {3}, GgmlType::F32}, {"y", {2, 2}, GgmlType::BF16}}, 64);
}

TEST(GgufFuzzSeeds, CorpusIsValidAndSmall) {
    const std::string dir = test::source_dir() + "/tests/fuzz/corpus/fuzz_gguf";
    if (std::getenv("QFORGE_WRITE_FUZZ_SEEDS")) {
        fs::create_directories(dir);
        write_all_seeds(dir);
    }
    // The seeds as the writer makes them now must parse too, not only the stored ones.
    const std::string fresh = test::scratch_dir();
    write_all_seeds(fresh);
    size_t n = 0;
    for (const std::string& folder : {dir, fresh}) {
        for (const auto& entry : fs::directory_iterator(folder)) {
            SCOPED_TRACE(entry.path().string());
            EXPECT_LT(entry.file_size(), 4096u);
            GgufFile f(entry.path().string());
            EXPECT_GT(f.metadata().size(), 0u);
            for (const auto& t : f.tensors()) EXPECT_EQ(f.tensor_data(t).size(), t.nbytes);
            ++n;
        }
    }
    EXPECT_GE(n, 8u);
}

}  // namespace
}  // namespace qf
