// `qforge imatrix` end to end on stories260k (F32 GGUF, a few chunks of 64 tokens): what it
// collects (one entry per blk.* 2-D weight, counts = chunks * ctx, Q/K/V and gate/up seeing
// the same input), both output formats, thread-count independence, and its refusals: a text
// shorter than two chunks (saying how many tokens are needed), an existing output without
// --force, a too-small context, an MoE model, the model as output.
// The sums against llama.cpp's own collector: tests/interop/test_imatrix_interop.cpp.
#include "common/error.h"
#include "common/output_file.h"
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "pipeline/imatrix_file.h"
#include "support/test_paths.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;
using namespace qf::test;

namespace {

void write_file(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
}

void expect_error(const QforgeRun& r, const std::string& must_contain) {
    EXPECT_NE(r.rc, 0) << r.out;
    EXPECT_NE(r.out.find("error:"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(must_contain), std::string::npos) << "expected '" << must_contain << "' in: " << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
}

std::string story_text(int repeats) {
    std::string t;
    for (int i = 0; i < repeats; ++i)
        t += "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. "
             "One day she saw a big red ball in the park and she was very happy.\n";
    return t;
}

// stories260k as an F32 GGUF and a story text in dir.
struct Inputs {
    std::string dir, model, text;
};

Inputs make_inputs() {
    Inputs in;
    in.dir = scratch_dir();
    in.model = in.dir + "/stories-f32.gguf";
    in.text = in.dir + "/story.txt";
    QforgeRun r = qforge(fmt::format("convert '{}' -o '{}' --outtype f32", bundled_model("stories260k"), in.model));
    EXPECT_EQ(r.rc, 0) << r.out;
    write_file(in.text, story_text(30));
    return in;
}

std::vector<float> f32_data(const qf::GgufFile& f, const std::string& name) {
    const qf::GgufTensorInfo* t = f.find_tensor(name);
    if (!t) return {};
    auto b = f.tensor_data(*t);
    std::vector<float> v(b.size() / sizeof(float));
    std::memcpy(v.data(), b.data(), v.size() * sizeof(float));
    return v;
}

}  // namespace

TEST(ImatrixCli, CollectsEveryBlockWeightOverTheChunks) {
    const Inputs in = make_inputs();
    const std::string out = in.dir + "/im.gguf";
    QforgeRun r = qforge(fmt::format("imatrix '{}' --text '{}' -o '{}' -c 64 --chunks 3", in.model, in.text, out));
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_NE(r.out.find("3 chunks of 64 tokens (192 tokens), 35 tensors collected"), std::string::npos) << r.out;

    qf::GgufFile f(out);
    EXPECT_EQ(f.metadata().get("imatrix.chunk_count").as_u64(), 3u);
    EXPECT_EQ(f.metadata().get("imatrix.chunk_size").as_u64(), 64u);
    ASSERT_EQ(f.metadata().get("imatrix.datasets").items.size(), 1u);
    EXPECT_EQ(f.metadata().get("imatrix.datasets").items[0].as_string(), in.text);
    // One entry per 2-D blk.* weight of the model (5 layers x 7), nothing else.
    qf::GgufFile model(in.model);
    size_t expected = 0;
    for (const auto& t : model.tensors()) {
        if (!t.name.starts_with("blk.") || t.shape.size() != 2) continue;
        ++expected;
        SCOPED_TRACE(t.name);
        EXPECT_EQ(f32_data(f, t.name + ".counts"), std::vector<float>({192.0f}));
        const std::vector<float> sums = f32_data(f, t.name + ".in_sum2");
        ASSERT_EQ(sums.size(), static_cast<size_t>(t.shape[0]));
        EXPECT_TRUE(std::all_of(sums.begin(), sums.end(), [](float v) { return v > 0; }));
    }
    EXPECT_EQ(expected, 35u);
    EXPECT_EQ(f.tensors().size(), 2 * expected);
    // Products that share their input have the same sums: Q, K and V; gate and up.
    for (int layer = 0; layer < 5; ++layer) {
        const std::string b = fmt::format("blk.{}.", layer);
        const auto q = f32_data(f, b + "attn_q.weight.in_sum2");
        EXPECT_EQ(q, f32_data(f, b + "attn_k.weight.in_sum2")) << layer;
        EXPECT_EQ(q, f32_data(f, b + "attn_v.weight.in_sum2")) << layer;
        EXPECT_NE(q, f32_data(f, b + "attn_output.weight.in_sum2")) << layer;
        EXPECT_EQ(f32_data(f, b + "ffn_gate.weight.in_sum2"), f32_data(f, b + "ffn_up.weight.in_sum2")) << layer;
    }

    // The legacy format holds the same importance (sums / count).
    const std::string dat = in.dir + "/im.dat";
    r = qforge(fmt::format("imatrix '{}' --text '{}' -o '{}' -c 64 --chunks 3 --output-format dat", in.model, in.text, dat));
    ASSERT_EQ(r.rc, 0) << r.out;
    const qf::Imatrix a = qf::load_imatrix(out), b = qf::load_imatrix(dat);
    EXPECT_TRUE(b.legacy);
    EXPECT_EQ(b.chunk_count, 3);
    ASSERT_EQ(a.entries.size(), b.entries.size());
    for (const auto& [name, values] : a.entries) {
        const auto* other = b.find(name);
        ASSERT_NE(other, nullptr) << name;
        ASSERT_EQ(other->size(), values.size()) << name;
        for (size_t i = 0; i < values.size(); ++i) EXPECT_FLOAT_EQ((*other)[i], values[i]) << name << " " << i;
    }

    // A thread count changes nothing.
    const std::string one = in.dir + "/im1.gguf";
    r = qforge(fmt::format("imatrix '{}' --text '{}' -o '{}' -c 64 --chunks 3 -t 1", in.model, in.text, one));
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_EQ(read_file(one), read_file(out));

    // --process-output: this model's output is tied to token_embd.weight, which llama-imatrix
    // never collects either.
    const std::string po = in.dir + "/po.gguf";
    r = qforge(fmt::format("imatrix '{}' --text '{}' -o '{}' -c 64 --chunks 2 --process-output", in.model, in.text, po));
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_EQ(qf::GgufFile(po).tensors().size(), 2 * expected);
}

TEST(ImatrixCli, Refusals) {
    const Inputs in = make_inputs();
    const std::string out = in.dir + "/im.gguf";

    const std::string short_text = in.dir + "/short.txt";
    write_file(short_text, story_text(1));
    QforgeRun r = qforge(fmt::format("imatrix '{}' --text '{}' -o '{}' -c 64", in.model, short_text, out));
    expect_error(r, "needs at least 128");
    EXPECT_FALSE(fs::exists(out));

    expect_error(qforge(fmt::format("imatrix '{}' --text '{}' -o '{}' -c 8", in.model, in.text, out)), "-c must be at least 16");
    expect_error(qforge(fmt::format("imatrix '{}' --text '{}' -o '{}' -c 64", in.model, in.dir + "/missing.txt", out)),
                 "missing.txt");
    expect_error(qforge(fmt::format("imatrix '{}' --text '{}' -o '{}' -c 64", in.model, in.text, in.model)),
                 "overwrite an input");

    write_file(out, "keep me");
    expect_error(qforge(fmt::format("imatrix '{}' --text '{}' -o '{}' -c 64 --chunks 2", in.model, in.text, out)), "--force");
    EXPECT_EQ(read_file(out), "keep me");
    r = qforge(fmt::format("imatrix '{}' --text '{}' -o '{}' -c 64 --chunks 2 --force", in.model, in.text, out));
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_EQ(qf::load_imatrix(out).chunk_count, 2);
    EXPECT_FALSE(fs::exists(out + ".tmp"));

    // The same model declared as a mixture of experts.
    const std::string moe = in.dir + "/moe.gguf";
    {
        qf::GgufFile src(in.model);
        qf::GgufMetadata md = src.metadata();
        md.set("llama.expert_count", qf::GgufValue::u32(4));
        std::vector<qf::GgufTensorPlan> layout;
        for (const auto& t : src.tensors()) layout.push_back({t.name, t.shape, t.type});
        qf::OutputFile o(moe, true);
        qf::GgufWriter w(o, md, layout);
        for (const auto& t : src.tensors()) w.write_tensor_data(src.tensor_data(t));
        w.finish();
        o.commit();
    }
    expect_error(qforge(fmt::format("imatrix '{}' --text '{}' -o '{}' -c 64 --force", moe, in.text, out)), "MoE");
}
