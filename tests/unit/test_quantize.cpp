// `qforge quantize` on bad input and its promises: a clear one-line error that names the
// problem (unknown type with the valid list, OUTPUT == INPUT, imatrix mismatch naming the
// tensor, requantizing without permission), dry runs that write nothing, and the same
// bytes for any thread count. Agreement with llama.cpp itself: tests/interop/test_quantize_interop.cpp.
#include "common/error.h"
#include "common/output_file.h"
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "pipeline/imatrix_file.h"
#include "pipeline/quantize.h"
#include "support/test_paths.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;
using namespace qf::test;

namespace {

void expect_error(const QforgeRun& r, const std::string& must_contain) {
    EXPECT_NE(r.rc, 0) << r.out;
    EXPECT_NE(r.out.find("error:"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(must_contain), std::string::npos) << "expected '" << must_contain << "' in: " << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
}

// stories260k as an F16 GGUF in dir (64- and 172-column rows: the recipe's fallbacks show up).
std::string stories_f16(const std::string& dir) {
    const std::string out = dir + "/stories-f16.gguf";
    QforgeRun r = qforge(fmt::format("convert '{}' -o '{}' --force", bundled_model("stories260k"), out));
    EXPECT_EQ(r.rc, 0) << r.out;
    return out;
}

// A GGUF imatrix (llama-imatrix layout) with one entry per given (name, length, count).
struct Entry {
    std::string name;
    int64_t ne0;
    float count;
    float sum;
};
void write_gguf_imatrix(const std::string& path, const std::vector<Entry>& entries) {
    qf::GgufMetadata md;
    md.set("general.type", qf::GgufValue::string("imatrix"));
    md.set("imatrix.datasets", qf::GgufValue::string_array({"calib.txt"}));
    md.set("imatrix.chunk_count", qf::GgufValue::u32(4));
    md.set("imatrix.chunk_size", qf::GgufValue::u32(512));
    std::vector<qf::GgufTensorPlan> plan;
    for (const auto& e : entries) {
        plan.push_back({e.name + ".counts", {1, 1}, qf::GgmlType::F32});
        plan.push_back({e.name + ".in_sum2", {e.ne0, 1}, qf::GgmlType::F32});
    }
    qf::OutputFile out(path, true);
    qf::GgufWriter w(out, md, plan);
    for (const auto& e : entries) {
        w.write_tensor_data(std::as_bytes(std::span<const float>(&e.count, 1)));
        std::vector<float> sums(static_cast<size_t>(e.ne0));
        for (size_t i = 0; i < sums.size(); ++i) sums[i] = e.sum + static_cast<float>(i);
        w.write_tensor_data(std::as_bytes(std::span<const float>(sums)));
    }
    w.finish();
    out.commit();
}

// Entries of the right length for every 2-D blk.* weight of a GGUF model.
std::vector<Entry> entries_for(const std::string& model) {
    qf::GgufFile m(model);
    std::vector<Entry> out;
    for (const auto& t : m.tensors())
        if (t.name.starts_with("blk.") && t.shape.size() == 2) out.push_back({t.name, t.shape[0], 100.0f, 5.0f});
    return out;
}

}  // namespace

TEST(Quantize, UnknownTypeListsTheValidOnes) {
    const std::string s = scratch_dir();
    const std::string in = stories_f16(s);
    QforgeRun r = qforge(fmt::format("quantize '{}' '{}/o.gguf' Q9_X", in, s));
    expect_error(r, "unknown type 'Q9_X'");
    for (const char* t : {"Q4_K_M", "Q8_0", "Q2_K_S", "IQ4_XS"}) EXPECT_NE(r.out.find(t), std::string::npos) << t;
    EXPECT_FALSE(fs::exists(s + "/o.gguf"));
    // Also when OUTPUT is left out.
    expect_error(qforge(fmt::format("quantize '{}' q4_k_x", in)), "valid types:");
}

TEST(Quantize, TypeIsCaseInsensitiveAndOutputNameIsDerived) {
    const std::string s = scratch_dir();
    const std::string in = stories_f16(s);
    QforgeRun r;
    r.rc = run_command(fmt::format("cd '{}' && '{}' quantize '{}' q4_k_m", s, qforge_binary(), in), &r.out);
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_TRUE(fs::exists(s + "/stories-Q4_K_M.gguf")) << r.out;
    EXPECT_NE(r.out.find("bpw"), std::string::npos) << r.out;
    qf::GgufFile q(s + "/stories-Q4_K_M.gguf");
    EXPECT_EQ(q.metadata().get("general.file_type").as_u64(), 15u);
    // llama-quantize re-sets these two keys, which moves them to the end.
    const auto& kv = q.metadata().entries();
    ASSERT_GE(kv.size(), 2u);
    EXPECT_EQ(kv[kv.size() - 2].key, "general.quantization_version");
    EXPECT_EQ(kv.back().key, "general.file_type");
    EXPECT_EQ(qf::default_quantize_output_name("/x/prose-tiny", "Q4_K_M"), "prose-tiny-Q4_K_M.gguf");
    EXPECT_EQ(qf::default_quantize_output_name("a/prose-tiny-F16.gguf", "Q8_0"), "prose-tiny-Q8_0.gguf");
}

TEST(Quantize, OutputEqualToInputIsRefused) {
    const std::string s = scratch_dir();
    const std::string in = stories_f16(s);
    const std::string before = read_file(in);
    expect_error(qforge(fmt::format("quantize --force '{}' '{}' Q8_0", in, in)), "overwrite the input");
    // The same file under another name too.
    expect_error(qforge(fmt::format("quantize --force '{}' '{}/./stories-f16.gguf' Q8_0", in, s)), "overwrite the input");
    EXPECT_EQ(read_file(in), before);
    EXPECT_FALSE(fs::exists(in + ".tmp"));
}

TEST(Quantize, ImatrixOfTheWrongLengthNamesTheTensor) {
    const std::string s = scratch_dir();
    const std::string in = stories_f16(s);
    auto entries = entries_for(in);
    ASSERT_FALSE(entries.empty());
    const std::string victim = "blk.2.attn_q.weight";
    for (auto& e : entries)
        if (e.name == victim) e.ne0 += 32;
    write_gguf_imatrix(s + "/bad.gguf", entries);
    QforgeRun r = qforge(fmt::format("quantize --imatrix '{}/bad.gguf' '{}' '{}/o.gguf' Q4_K_M", s, in, s));
    expect_error(r, victim);
    EXPECT_FALSE(fs::exists(s + "/o.gguf"));

    // An entry missing for a block weight: an imatrix of another model.
    entries = entries_for(in);
    entries.erase(std::remove_if(entries.begin(), entries.end(), [&](const Entry& e) { return e.name == victim; }),
                  entries.end());
    write_gguf_imatrix(s + "/missing.gguf", entries);
    expect_error(qforge(fmt::format("quantize --imatrix '{}/missing.gguf' '{}' '{}/o.gguf' Q4_K_M", s, in, s)), victim);

    // A matching one works and is recorded as llama-quantize records it.
    write_gguf_imatrix(s + "/good.gguf", entries_for(in));
    QforgeRun ok = qforge(fmt::format("quantize --imatrix '{}/good.gguf' '{}' '{}/o.gguf' Q4_K_M", s, in, s));
    ASSERT_EQ(ok.rc, 0) << ok.out;
    qf::GgufFile q(s + "/o.gguf");
    EXPECT_EQ(q.metadata().get("quantize.imatrix.file").as_string(), s + "/good.gguf");
    EXPECT_EQ(q.metadata().get("quantize.imatrix.dataset").as_string(), "calib.txt");
    EXPECT_EQ(q.metadata().get("quantize.imatrix.entries_count").as_u64(), entries_for(in).size());
    EXPECT_EQ(q.metadata().get("quantize.imatrix.chunks_count").as_u64(), 4u);
}

TEST(Quantize, TypesThatNeedAnImatrixRefuseWithoutOne) {
    const std::string s = scratch_dir();
    const std::string in = stories_f16(s);
    // stories260k's rows are too short for q2_K, but prose-tiny's are not.
    const std::string prose = s + "/prose-f16.gguf";
    ASSERT_EQ(qforge(fmt::format("convert '{}' -o '{}'", bundled_model("prose-tiny"), prose)).rc, 0);
    QforgeRun r = qforge(fmt::format("quantize '{}' '{}/o.gguf' Q2_K_S", prose, s));
    expect_error(r, "--imatrix");
    EXPECT_FALSE(fs::exists(s + "/o.gguf"));
}

TEST(Quantize, RequantizingNeedsTheFlag) {
    const std::string s = scratch_dir();
    const std::string in = stories_f16(s);
    ASSERT_EQ(qforge(fmt::format("quantize '{}' '{}/q8.gguf' Q8_0", in, s)).rc, 0);
    QforgeRun r = qforge(fmt::format("quantize '{}/q8.gguf' '{}/q4.gguf' Q4_K_M", s, s));
    expect_error(r, "--allow-requantize");
    EXPECT_FALSE(fs::exists(s + "/q4.gguf"));
    r = qforge(fmt::format("quantize --allow-requantize '{}/q8.gguf' '{}/q4.gguf' Q4_K_M", s, s));
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_NE(r.out.find("warning"), std::string::npos) << r.out;
    qf::GgufFile q(s + "/q4.gguf");
    EXPECT_EQ(q.metadata().get("general.file_type").as_u64(), 15u);
}

TEST(Quantize, DryRunWritesNothingAndShowsEveryTensor) {
    const std::string s = scratch_dir();
    const std::string in = stories_f16(s);
    const auto before = fs::directory_iterator(s);
    QforgeRun r = qforge(fmt::format("quantize --dry-run '{}' '{}/o.gguf' Q4_K_M", in, s));
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_FALSE(fs::exists(s + "/o.gguf"));
    EXPECT_FALSE(fs::exists(s + "/o.gguf.tmp"));
    EXPECT_NE(r.out.find("blk.0.ffn_down.weight"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("nothing written"), std::string::npos) << r.out;
    size_t files = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(s)) ++files;
    EXPECT_EQ(files, 1u);  // just the input

    r = qforge(fmt::format("quantize --dry-run --json '{}' Q5_K_M", in));
    ASSERT_EQ(r.rc, 0) << r.out;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j.at("tensors").size(), qf::GgufFile(in).tensors().size());
    EXPECT_FALSE(j.at("written").get<bool>());
}

TEST(Quantize, SameBytesForAnyThreadCount) {
    // prose-tiny: its matrices are large enough to be split across threads (stories260k's are not).
    const std::string s = scratch_dir();
    const std::string in = s + "/prose-f16.gguf";
    ASSERT_EQ(qforge(fmt::format("convert '{}' -o '{}'", bundled_model("prose-tiny"), in)).rc, 0);
    for (const char* type : {"Q4_K_S"}) {
        ASSERT_EQ(qforge(fmt::format("quantize --threads 1 '{}' '{}/t1.gguf' {} --force", in, s, type)).rc, 0);
        ASSERT_EQ(qforge(fmt::format("quantize '{}' '{}/t2.gguf' {} 2 --force", in, s, type)).rc, 0);
        EXPECT_EQ(read_file(s + "/t1.gguf"), read_file(s + "/t2.gguf")) << type;
    }
}

// The three block searches write files of one size and layout, with different bytes: the default
// (llama.cpp's encoding polished), --thorough (a wider search) and --llama-exact (llama.cpp's).
TEST(Quantize, ThoroughAndLlamaExactWriteTheSameLayoutWithOtherBytes) {
    const std::string s = scratch_dir();
    const std::string in = s + "/prose-f16.gguf";
    ASSERT_EQ(qforge(fmt::format("convert '{}' -o '{}'", bundled_model("prose-tiny"), in)).rc, 0);
    for (const char* type : {"Q4_K_M", "Q8_0", "IQ4_XS"}) {
        std::string files[3];
        const char* flags[3] = {"", " --thorough", " --llama-exact"};
        for (int i = 0; i < 3; ++i) {
            const std::string out = fmt::format("{}/{}-{}.gguf", s, type, i);
            const QforgeRun r = qforge(fmt::format("quantize '{}' '{}' {}{} --force", in, out, type, flags[i]));
            ASSERT_EQ(r.rc, 0) << r.out;
            files[i] = read_file(out);
        }
        qf::GgufFile a(s + fmt::format("/{}-0.gguf", type)), b(s + fmt::format("/{}-1.gguf", type));
        ASSERT_EQ(files[0].size(), files[1].size()) << type;
        ASSERT_EQ(files[0].size(), files[2].size()) << type;
        ASSERT_EQ(a.tensors().size(), b.tensors().size());
        for (size_t t = 0; t < a.tensors().size(); ++t) EXPECT_EQ(a.tensors()[t].type, b.tensors()[t].type);
        EXPECT_NE(files[0], files[1]) << type << ": --thorough changed nothing";
        EXPECT_NE(files[0], files[2]) << type << ": the default equals llama.cpp's bytes";
    }
}

TEST(Quantize, TensorTypeOverridesFirstMatchWins) {
    const std::string s = scratch_dir();
    const std::string in = stories_f16(s);
    std::ofstream(s + "/types.txt") << "BLK\\.1\\.attn_q=q8_0\n";
    QforgeRun r = qforge(fmt::format("quantize --dry-run --json --tensor-type 'attn_q=q5_0' --tensor-type 'attn_.*=q4_0' "
                               "--tensor-type-file '{}/types.txt' '{}' Q4_K_M",
                               s, in));
    ASSERT_EQ(r.rc, 0) << r.out;
    auto j = nlohmann::json::parse(r.out);
    for (const auto& t : j.at("tensors")) {
        const std::string name = t.at("name");
        if (name.find("attn_q.weight") != std::string::npos) {
            EXPECT_EQ(t.at("type"), "q5_0") << name;
        } else if (name.find("attn_k.weight") != std::string::npos) {
            EXPECT_EQ(t.at("type"), "q4_0") << name;
        }
    }
    EXPECT_THROW(qf::parse_tensor_type_override("attn_q"), qf::Error);
    EXPECT_THROW(qf::parse_tensor_type_override("attn_q=q9_9"), qf::Error);
    EXPECT_EQ(qf::parse_tensor_type_override("ATTN_Q=Q8_0").pattern, "attn_q");
}

TEST(QuantizeImatrix, GgufAndLegacyFormats) {
    const std::string s = scratch_dir();
    write_gguf_imatrix(s + "/m.gguf", {{"a.weight", 4, 4.0f, 2.0f}, {"b.weight", 2, 0.0f, 9.0f}});
    qf::Imatrix g = qf::load_imatrix(s + "/m.gguf");
    ASSERT_EQ(g.entries.size(), 2u);
    EXPECT_EQ(*g.find("a.weight"), (std::vector<float>{0.5f, 0.75f, 1.0f, 1.25f}));  // (2+i)/4
    EXPECT_EQ(*g.find("b.weight"), (std::vector<float>{1.0f, 1.0f}));              // count 0: ones
    EXPECT_EQ(g.chunk_count, 4);
    EXPECT_EQ(g.datasets, std::vector<std::string>{"calib.txt"});

    // Legacy .dat: values stored as mean * ncall.
    std::string dat;
    auto i32 = [&](int32_t v) { dat.append(reinterpret_cast<const char*>(&v), 4); };
    auto f32 = [&](float v) { dat.append(reinterpret_cast<const char*>(&v), 4); };
    i32(1);
    i32(8);
    dat += "x.weight";
    i32(2);  // ncall
    i32(3);
    f32(2.0f);
    f32(4.0f);
    f32(6.0f);
    i32(7);  // chunks
    i32(4);
    dat += "wiki";
    std::ofstream(s + "/m.dat", std::ios::binary) << dat;
    qf::Imatrix l = qf::load_imatrix(s + "/m.dat");
    EXPECT_TRUE(l.legacy);
    EXPECT_EQ(*l.find("x.weight"), (std::vector<float>{1.0f, 2.0f, 3.0f}));
    EXPECT_EQ(l.chunk_count, 7);
    EXPECT_EQ(l.datasets, std::vector<std::string>{"wiki"});

    // Truncated: one line naming the file.
    std::ofstream(s + "/t.dat", std::ios::binary) << dat.substr(0, 20);
    try {
        qf::load_imatrix(s + "/t.dat");
        ADD_FAILURE() << "truncated legacy imatrix accepted";
    } catch (const qf::Error& e) {
        EXPECT_NE(std::string(e.what()).find("t.dat"), std::string::npos) << e.what();
    }
}
