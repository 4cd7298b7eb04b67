// Whole-model quantization, `qforge quantize` against llama.cpp's llama_model_quantize, in one
// run on the same input: wall time and peak resident memory of each.
//
// The input is generated, never downloaded or committed: an F16 llama GGUF of realistic size
// (TinyLlama-1.1B's shape by default) with Gaussian weights from a fixed seed, written with
// qforge's own GgufWriter and the metadata `qforge convert` produces for the bundled
// prose-tiny (shape keys changed, vocabulary padded), plus an importance matrix in
// llama-imatrix's GGUF format with random positive values for every blk.* weight.
//
// Both quantizers run as child processes so that each peak RSS (wait4's ru_maxrss) belongs to
// one run: qforge as the built `qforge` binary, llama.cpp through this executable started
// again in a hidden mode (--llama-quantize IN OUT FTYPE NTHREADS [IMATRIX]) that calls
// llama_model_quantize from the dlopen'ed libllama.
#include "bench_env.h"
#include "common/error.h"
#include "common/half.h"
#include "common/output_file.h"
#include "gguf/gguf_value.h"
#include "gguf/gguf_writer.h"
#include "pipeline/tensor_source.h"
#include "support/llama_api.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// llama_ftype values of the build we test against (include/llama.h).
constexpr int kFtypeQ8_0 = 7;
constexpr int kFtypeQ4_K_M = 15;

// ---------------------------------------------------------------------------------------
// Options

struct Shape {
    int64_t n_embd = 2048;
    int64_t n_ff = 5632;
    int64_t n_layer = 22;
    int64_t n_head = 32;
    int64_t n_head_kv = 4;
    int64_t n_vocab = 32000;
};

struct Options {
    std::string dir = "/tmp/qforge-bench-quantize";
    std::string qforge;  // the qforge binary; default: next to this executable's folder
    Shape shape;
    int threads = 0;  // 0: all cores
    bool keep = false;
    bool with_exact = false;
    bool with_hf = true;
};

void print_usage() {
    fmt::print(
        "usage: quantize_vs_llamacpp [--dir DIR] [--small | --params-scale S] [--threads N] [--qforge PATH]\n"
        "                            [--llama-exact] [--no-hf] [--keep]\n"
        "  --dir DIR          scratch folder for the generated model, imatrix and outputs\n"
        "                     (default /tmp/qforge-bench-quantize; its files are removed at the end unless --keep)\n"
        "  --small            a ~125M model (n_embd 768, n_ff 2048, 12 layers, 12/4 heads) for a quick run\n"
        "  --params-scale S   the default 1.1B shape with round(22*S) layers (embeddings unchanged)\n"
        "  --threads N        threads for both quantizers (default: all cores)\n"
        "  --qforge PATH      the qforge binary (default: ../qforge relative to this executable)\n"
        "  --llama-exact      also time `qforge quantize --llama-exact` (llama.cpp's block algorithms)\n"
        "  --no-hf            skip the Hugging Face folder -> Q4_K_M end-to-end run\n"
        "  --keep             keep the scratch folder\n"
        "  QFORGE_COMMIT in the environment overrides the commit printed in the header.\n");
}

Options parse_options(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) qf::fail("quantize_vs_llamacpp: {} needs a value", a);
            return argv[++i];
        };
        if (a == "--dir") {
            o.dir = value();
        } else if (a == "--small") {
            o.shape = Shape{768, 2048, 12, 12, 4, 32000};
        } else if (a == "--params-scale") {
            const double s = std::stod(value());
            if (!(s > 0 && s <= 10)) qf::fail("quantize_vs_llamacpp: --params-scale must be in (0, 10]");
            o.shape.n_layer = std::max<int64_t>(1, std::llround(22 * s));
        } else if (a == "--threads") {
            o.threads = std::stoi(value());
        } else if (a == "--qforge") {
            o.qforge = value();
        } else if (a == "--llama-exact") {
            o.with_exact = true;
        } else if (a == "--no-hf") {
            o.with_hf = false;
        } else if (a == "--keep") {
            o.keep = true;
        } else if (a == "-h" || a == "--help") {
            print_usage();
            std::exit(0);
        } else {
            print_usage();
            qf::fail("quantize_vs_llamacpp: unknown argument '{}'", a);
        }
    }
    if (o.threads <= 0) o.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    if (o.qforge.empty()) o.qforge = (fs::canonical("/proc/self/exe").parent_path().parent_path() / "qforge").string();
    return o;
}

// ---------------------------------------------------------------------------------------
// Environment: CPU, commit, load

using qf::bench::cpu_model;
using qf::bench::git_commit;
using qf::bench::load_average;
using qf::bench::run_line;

// ---------------------------------------------------------------------------------------
// The generated model

// splitmix64: a fast, well-mixed generator; one state per row keeps the output independent of
// the thread count.
uint64_t splitmix(uint64_t& s) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Standard normal values by Box-Muller (two per pair of uniforms).
void fill_gaussian(uint64_t seed, float stddev, std::span<float> out) {
    uint64_t s = seed;
    for (size_t i = 0; i < out.size(); i += 2) {
        const double u1 = (static_cast<double>(splitmix(s) >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
        const double u2 = static_cast<double>(splitmix(s) >> 11) * 0x1.0p-53;
        const double r = std::sqrt(-2.0 * std::log(u1)) * stddev;
        out[i] = static_cast<float>(r * std::cos(2 * M_PI * u2));
        if (i + 1 < out.size()) out[i + 1] = static_cast<float>(r * std::sin(2 * M_PI * u2));
    }
}

struct ModelTensor {
    std::string name;
    std::vector<int64_t> shape;  // ne
    bool norm = false;           // F32, all ones
};

std::vector<ModelTensor> model_tensors(const Shape& s) {
    const int64_t head_dim = s.n_embd / s.n_head;
    const int64_t n_embd_kv = head_dim * s.n_head_kv;
    std::vector<ModelTensor> t;
    // The converter's order for a llama checkpoint: embeddings, blocks, output norm, output.
    t.push_back({"token_embd.weight", {s.n_embd, s.n_vocab}});
    for (int64_t l = 0; l < s.n_layer; ++l) {
        const std::string b = fmt::format("blk.{}.", l);
        t.push_back({b + "attn_norm.weight", {s.n_embd}, true});
        t.push_back({b + "ffn_down.weight", {s.n_ff, s.n_embd}});
        t.push_back({b + "ffn_gate.weight", {s.n_embd, s.n_ff}});
        t.push_back({b + "ffn_up.weight", {s.n_embd, s.n_ff}});
        t.push_back({b + "ffn_norm.weight", {s.n_embd}, true});
        t.push_back({b + "attn_k.weight", {s.n_embd, n_embd_kv}});
        t.push_back({b + "attn_output.weight", {s.n_embd, s.n_embd}});
        t.push_back({b + "attn_q.weight", {s.n_embd, s.n_embd}});
        t.push_back({b + "attn_v.weight", {s.n_embd, n_embd_kv}});
    }
    t.push_back({"output_norm.weight", {s.n_embd}, true});
    t.push_back({"output.weight", {s.n_embd, s.n_vocab}});
    return t;
}

int64_t n_elements(const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

// The metadata `qforge convert` writes for the bundled prose-tiny (a llama model with a
// SentencePiece vocabulary), turned into the metadata of a model of shape `s`.
qf::GgufMetadata model_metadata(const Shape& s, uint64_t n_params) {
    const std::string templ = fmt::format("{}/models/prose-tiny", QFORGE_SOURCE_DIR);
    qf::GgufMetadata md = qf::TensorSource::open(templ).metadata();
    if (md.get("general.architecture").as_string() != "llama")
        qf::fail("{}: expected a llama model as the metadata template", templ);
    md.set("general.file_type", qf::GgufValue::u32(1));  // MOSTLY_F16
    md.set("llama.block_count", qf::GgufValue::u32(static_cast<uint32_t>(s.n_layer)));
    md.set("llama.context_length", qf::GgufValue::u32(2048));
    md.set("llama.embedding_length", qf::GgufValue::u32(static_cast<uint32_t>(s.n_embd)));
    md.set("llama.feed_forward_length", qf::GgufValue::u32(static_cast<uint32_t>(s.n_ff)));
    md.set("llama.attention.head_count", qf::GgufValue::u32(static_cast<uint32_t>(s.n_head)));
    md.set("llama.attention.head_count_kv", qf::GgufValue::u32(static_cast<uint32_t>(s.n_head_kv)));
    md.set("llama.rope.dimension_count", qf::GgufValue::u32(static_cast<uint32_t>(s.n_embd / s.n_head)));
    if (md.find("llama.vocab_size")) md.set("llama.vocab_size", qf::GgufValue::u32(static_cast<uint32_t>(s.n_vocab)));
    if (md.find("general.parameter_count")) md.set("general.parameter_count", qf::GgufValue::u64(n_params));

    // The vocabulary must have one token per token_embd row: pad as the converter pads
    // (placeholder pieces, score 0, type 5 = unused) or cut.
    const auto size = static_cast<size_t>(s.n_vocab);
    qf::GgufValue tokens = md.get("tokenizer.ggml.tokens");
    qf::GgufValue scores = md.get("tokenizer.ggml.scores");
    qf::GgufValue types = md.get("tokenizer.ggml.token_type");
    for (size_t i = tokens.items.size(); i < size; ++i) {
        tokens.items.push_back(qf::GgufValue::string(fmt::format("[PAD{}]", i)));
        scores.items.push_back(qf::GgufValue::f32(0.0f));
        types.items.push_back(qf::GgufValue::i32(5));
    }
    tokens.items.resize(size);
    scores.items.resize(size);
    types.items.resize(size);
    md.set("tokenizer.ggml.tokens", std::move(tokens));
    md.set("tokenizer.ggml.scores", std::move(scores));
    md.set("tokenizer.ggml.token_type", std::move(types));
    return md;
}

// Runs fn(i) for i in [0, n) on `threads` threads, in interleaved order.
template <class Fn>
void parallel_for(int64_t n, int threads, Fn fn) {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            for (int64_t i = t; i < n; i += threads) fn(i);
        });
    for (auto& th : pool) th.join();
}

uint64_t write_model(const std::string& path, const Shape& s, int threads) {
    const std::vector<ModelTensor> tensors = model_tensors(s);
    std::vector<qf::GgufTensorPlan> plan;
    uint64_t n_params = 0;
    for (const auto& t : tensors) {
        plan.push_back({t.name, t.shape, t.norm ? qf::GgmlType::F32 : qf::GgmlType::F16});
        n_params += static_cast<uint64_t>(n_elements(t.shape));
    }
    qf::OutputFile out(path, true);
    qf::GgufWriter writer(out, model_metadata(s, n_params), plan);
    std::vector<uint16_t> half;
    for (size_t k = 0; k < tensors.size(); ++k) {
        const ModelTensor& t = tensors[k];
        if (t.norm) {
            const std::vector<float> ones(static_cast<size_t>(t.shape[0]), 1.0f);
            writer.write_tensor_data(std::as_bytes(std::span<const float>(ones)));
            continue;
        }
        const int64_t ne0 = t.shape[0];
        const int64_t rows = n_elements(t.shape) / ne0;
        half.resize(static_cast<size_t>(ne0 * rows));
        parallel_for(rows, threads, [&](int64_t r) {
            std::vector<float> row(static_cast<size_t>(ne0));
            fill_gaussian(0x5eed0000ull + k * 0x100000000ull + static_cast<uint64_t>(r), 0.02f, row);
            for (int64_t c = 0; c < ne0; ++c) half[static_cast<size_t>(r * ne0 + c)] = qf::f32_to_f16(row[c]);
        });
        writer.write_tensor_data(std::as_bytes(std::span<const uint16_t>(half)));
    }
    writer.finish();
    out.commit();
    return n_params;
}

// llama-imatrix's GGUF format: per weight `<name>.in_sum2` [ne0, 1] and `<name>.counts` [1, 1],
// names sorted, plus the three imatrix.* keys llama-quantize requires.
void write_imatrix(const std::string& path, const Shape& s) {
    constexpr float kTokens = 512;
    std::vector<ModelTensor> weights;
    for (auto& t : model_tensors(s))
        if (!t.norm && t.name.starts_with("blk.")) weights.push_back(std::move(t));
    std::sort(weights.begin(), weights.end(), [](const auto& a, const auto& b) { return a.name < b.name; });

    qf::GgufMetadata md;
    md.set("general.type", qf::GgufValue::string("imatrix"));
    md.set("imatrix.datasets", qf::GgufValue::string_array({"random (quantize_vs_llamacpp)"}));
    md.set("imatrix.chunk_count", qf::GgufValue::u32(1));
    md.set("imatrix.chunk_size", qf::GgufValue::u32(static_cast<uint32_t>(kTokens)));
    std::vector<qf::GgufTensorPlan> plan;
    for (const auto& w : weights) {
        plan.push_back({w.name + ".counts", {1, 1}, qf::GgmlType::F32});
        plan.push_back({w.name + ".in_sum2", {w.shape[0], 1}, qf::GgmlType::F32});
    }
    std::sort(plan.begin(), plan.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    qf::OutputFile out(path, true);
    qf::GgufWriter writer(out, md, plan);
    for (size_t k = 0; k < plan.size(); ++k) {
        std::vector<float> v(static_cast<size_t>(plan[k].shape[0]));
        if (plan[k].name.ends_with(".counts")) {
            v[0] = kTokens;
        } else {
            // Mean squared activations spread over about two decades (log-normal), times the count.
            fill_gaussian(0x1a7a0000ull + k, 1.0f, v);
            for (float& x : v) x = kTokens * std::exp(x);
        }
        writer.write_tensor_data(std::as_bytes(std::span<const float>(v)));
    }
    writer.finish();
    out.commit();
}

// The same model as a Hugging Face folder: config.json, prose-tiny's tokenizer files (the
// converter pads the vocabulary to vocab_size as convert_hf_to_gguf.py does) and one
// model.safetensors of BF16 weights (what HF checkpoints ship), streamed tensor by tensor.
// Weights are regenerated from the same seeds; q/k are random either way, so the converter's
// permutation changes nothing about the work.
void write_hf_folder(const std::string& dir, const Shape& s, int threads) {
    fs::create_directories(dir);
    const std::string templ = fmt::format("{}/models/prose-tiny", QFORGE_SOURCE_DIR);
    for (const char* f : {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"})
        fs::copy_file(templ + "/" + f, dir + "/" + f, fs::copy_options::overwrite_existing);
    {
        std::ofstream cfg(dir + "/config.json");
        cfg << fmt::format(
            R"({{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": {}, "intermediate_size": {},
"num_hidden_layers": {}, "num_attention_heads": {}, "num_key_value_heads": {}, "vocab_size": {},
"max_position_embeddings": 2048, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": false,
"bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "torch_dtype": "bfloat16"}})",
            s.n_embd, s.n_ff, s.n_layer, s.n_head, s.n_head_kv, s.n_vocab);
    }
    struct HfTensor {
        std::string name;
        std::vector<int64_t> shape;  // HF order: [rows, cols]
        bool norm;
        size_t gguf_index;
    };
    // GGUF name -> HF name; shapes reversed.
    auto hf_name = [](const std::string& g) -> std::string {
        if (g == "token_embd.weight") return "model.embed_tokens.weight";
        if (g == "output_norm.weight") return "model.norm.weight";
        if (g == "output.weight") return "lm_head.weight";
        const size_t dot = g.find('.', 4);
        const std::string layer = g.substr(4, dot - 4), rest = g.substr(dot + 1);
        static const std::pair<const char*, const char*> map[] = {
            {"attn_norm.weight", "input_layernorm.weight"},    {"ffn_norm.weight", "post_attention_layernorm.weight"},
            {"attn_q.weight", "self_attn.q_proj.weight"},      {"attn_k.weight", "self_attn.k_proj.weight"},
            {"attn_v.weight", "self_attn.v_proj.weight"},      {"attn_output.weight", "self_attn.o_proj.weight"},
            {"ffn_gate.weight", "mlp.gate_proj.weight"},       {"ffn_up.weight", "mlp.up_proj.weight"},
            {"ffn_down.weight", "mlp.down_proj.weight"}};
        for (const auto& [from, to] : map)
            if (rest == from) return fmt::format("model.layers.{}.{}", layer, to);
        qf::fail("write_hf_folder: no HF name for {}", g);
    };
    const std::vector<ModelTensor> tensors = model_tensors(s);
    std::vector<HfTensor> hf;
    for (size_t k = 0; k < tensors.size(); ++k)
        hf.push_back({hf_name(tensors[k].name), {tensors[k].shape.rbegin(), tensors[k].shape.rend()}, tensors[k].norm, k});
    std::string header = "{";
    uint64_t offset = 0;
    for (const auto& t : hf) {
        const uint64_t bytes = static_cast<uint64_t>(n_elements(t.shape)) * 2;
        header += fmt::format(R"({}"{}": {{"dtype": "BF16", "shape": [{}], "data_offsets": [{}, {}]}})",
                              header.size() > 1 ? ", " : "", t.name, fmt::join(t.shape, ", "), offset, offset + bytes);
        offset += bytes;
    }
    header += "}";
    while (header.size() % 8) header += ' ';
    std::ofstream out(dir + "/model.safetensors", std::ios::binary);
    const uint64_t header_len = header.size();
    out.write(reinterpret_cast<const char*>(&header_len), 8);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    std::vector<uint16_t> bf;
    for (const auto& t : hf) {
        const int64_t ne0 = t.shape.back();
        const int64_t rows = n_elements(t.shape) / ne0;
        bf.resize(static_cast<size_t>(ne0 * rows));
        if (t.norm) {
            std::fill(bf.begin(), bf.end(), uint16_t{0x3F80});  // 1.0
        } else {
            parallel_for(rows, threads, [&](int64_t r) {
                std::vector<float> row(static_cast<size_t>(ne0));
                fill_gaussian(0x5eed0000ull + t.gguf_index * 0x100000000ull + static_cast<uint64_t>(r), 0.02f, row);
                for (int64_t c = 0; c < ne0; ++c) bf[static_cast<size_t>(r * ne0 + c)] = qf::f32_to_bf16(row[c]);
            });
        }
        out.write(reinterpret_cast<const char*>(bf.data()), static_cast<std::streamsize>(bf.size() * 2));
    }
    if (!out) qf::fail("{}/model.safetensors: write failed", dir);
}

// ---------------------------------------------------------------------------------------
// Child processes

struct ChildResult {
    int status = -1;
    double seconds = 0;
    double max_rss_mib = 0;
};

// Runs argv with stdout and stderr appended to `log`; returns wall time and peak RSS.
ChildResult run_child(const std::vector<std::string>& args, const std::string& log) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::fflush(stdout);
    const auto start = Clock::now();
    const pid_t pid = ::fork();
    if (pid < 0) qf::fail("fork: {}", std::strerror(errno));
    if (pid == 0) {
        const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            ::dup2(fd, 1);
            ::dup2(fd, 2);
        }
        ::execv(argv[0], argv.data());
        std::fprintf(stderr, "%s: cannot execute: %s\n", argv[0], std::strerror(errno));
        ::_exit(127);
    }
    int status = 0;
    struct rusage ru {};
    if (::wait4(pid, &status, 0, &ru) < 0) qf::fail("wait4: {}", std::strerror(errno));
    ChildResult r;
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.max_rss_mib = static_cast<double>(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
    return r;
}

// The hidden child mode: llama.cpp quantizes, nothing else happens in this process.
int llama_quantize_main(int argc, char** argv) {
    if (argc < 6) {
        std::fprintf(stderr, "--llama-quantize IN OUT FTYPE NTHREADS [IMATRIX]\n");
        return 2;
    }
    qf::test::QuantizeOptions opt;
    opt.ftype = std::stoi(argv[4]);
    opt.nthread = std::stoi(argv[5]);
    if (argc > 6) opt.imatrix_path = argv[6];
    const int rc = qf::test::model_quantize(argv[2], argv[3], opt);
    if (rc != 0) {
        for (const auto& line : qf::test::LlamaApi::get().take_log()) std::fprintf(stderr, "%s\n", line.c_str());
        std::fprintf(stderr, "llama_model_quantize returned %d\n", rc);
        return 1;
    }
    return 0;
}

struct Row {
    std::string type;
    bool imatrix = false;
    ChildResult qforge, llama, exact;
};

std::string fmt_ratio(double x) { return std::isfinite(x) ? fmt::format("{:.2f}", x) : "-"; }

int bench_main(int argc, char** argv) {
    const Options opt = parse_options(argc, argv);
    if (!fs::exists(opt.qforge)) qf::fail("{}: qforge binary not found (build it, or pass --qforge)", opt.qforge);
    fs::create_directories(opt.dir);
    const std::string self = fs::canonical("/proc/self/exe").string();
    const std::string model = opt.dir + "/model-f16.gguf";
    const std::string imatrix = opt.dir + "/imatrix.gguf";
    const std::string log = opt.dir + "/children.log";
    fs::remove(log);

    char date[64];
    const std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
    fmt::print("## quantize_vs_llamacpp\n\n");
    fmt::print("- date: {}\n- commit: {}\n- cpu: {} x{}\n- threads: {} (both sides)\n- load average at start: {}\n",
               date, git_commit(), cpu_model(), std::thread::hardware_concurrency(), opt.threads, load_average());

    const Shape& s = opt.shape;
    auto t0 = Clock::now();
    const uint64_t n_params = write_model(model, s, opt.threads);
    write_imatrix(imatrix, s);
    const double gen_s = std::chrono::duration<double>(Clock::now() - t0).count();
    fmt::print(
        "- model: F16 llama GGUF, random N(0, 0.02) weights, {:.2f}B parameters (n_embd {}, n_ff {}, {} layers, "
        "{}/{} heads, vocab {}, untied), {:.0f} MiB, generated in {:.0f} s\n- imatrix: random positive values for "
        "every blk.* weight (GGUF format)\n\n",
        static_cast<double>(n_params) / 1e9, s.n_embd, s.n_ff, s.n_layer, s.n_head, s.n_head_kv, s.n_vocab,
        static_cast<double>(fs::file_size(model)) / (1 << 20), gen_s);
    std::fflush(stdout);

    struct Case {
        const char* type;
        int ftype;
        bool imatrix;
    };
    const Case cases[] = {{"Q4_K_M", kFtypeQ4_K_M, false},
                          {"Q4_K_M", kFtypeQ4_K_M, true},
                          {"Q8_0", kFtypeQ8_0, false},
                          {"Q8_0", kFtypeQ8_0, true}};
    std::vector<Row> rows;
    bool failed = false;
    const std::string out = opt.dir + "/out.gguf";
    for (const Case& c : cases) {
        Row row{c.type, c.imatrix, {}, {}, {}};
        auto qforge_args = [&](bool exact) {
            std::vector<std::string> a = {opt.qforge, "quantize", model, out, c.type, "--threads",
                                          std::to_string(opt.threads), "--force"};
            if (c.imatrix) a.insert(a.end(), {"--imatrix", imatrix});
            if (exact) a.push_back("--llama-exact");
            return a;
        };
        fs::remove(out);
        row.qforge = run_child(qforge_args(false), log);
        fs::remove(out);
        std::vector<std::string> largs = {self, "--llama-quantize", model, out, std::to_string(c.ftype),
                                          std::to_string(opt.threads)};
        if (c.imatrix) largs.push_back(imatrix);
        row.llama = run_child(largs, log);
        if (opt.with_exact) {
            fs::remove(out);
            row.exact = run_child(qforge_args(true), log);
        }
        fs::remove(out);
        for (const ChildResult* r : {&row.qforge, &row.llama, &row.exact})
            if (r->status != 0 && (r != &row.exact || opt.with_exact)) failed = true;
        fmt::print(stderr, "{} imatrix={}: qforge {:.1f} s {:.0f} MiB (rc {}), llama {:.1f} s {:.0f} MiB (rc {})\n",
                   c.type, c.imatrix, row.qforge.seconds, row.qforge.max_rss_mib, row.qforge.status,
                   row.llama.seconds, row.llama.max_rss_mib, row.llama.status);
        rows.push_back(row);
    }

    // End to end from a Hugging Face folder: qforge reads safetensors and writes Q4_K_M in one
    // pass; llama.cpp needs convert_hf_to_gguf.py (Python) before the quantize step timed above.
    ChildResult hf_run;
    const std::string hf_dir = opt.dir + "/hf";
    if (opt.with_hf) {
        const auto h0 = Clock::now();
        write_hf_folder(hf_dir, s, opt.threads);
        fmt::print(stderr, "HF folder written in {:.0f} s\n", std::chrono::duration<double>(Clock::now() - h0).count());
        fs::remove(out);
        hf_run = run_child({opt.qforge, "quantize", hf_dir, out, "Q4_K_M", "--threads", std::to_string(opt.threads),
                            "--force"},
                           log);
        fs::remove(out);
        if (hf_run.status != 0) failed = true;
    }

    fmt::print("| type | imatrix | qforge s | llama.cpp s | speed (llama s / qforge s) | target | qforge peak RSS MiB | "
               "llama.cpp peak RSS MiB | RSS (qforge / llama) | target |\n");
    fmt::print("|---|---|---:|---:|---:|---|---:|---:|---:|---|\n");
    for (const Row& r : rows) {
        const bool ok = r.qforge.status == 0 && r.llama.status == 0;
        const double speed = ok ? r.llama.seconds / r.qforge.seconds : NAN;
        const double rss = ok ? r.qforge.max_rss_mib / r.llama.max_rss_mib : NAN;
        fmt::print("| {} | {} | {:.1f} | {:.1f} | {}x | {} | {:.0f} | {:.0f} | {} | <= 0.25 |\n", r.type,
                   r.imatrix ? "yes" : "no", r.qforge.seconds, r.llama.seconds, fmt_ratio(speed),
                   r.type == std::string("Q4_K_M") ? ">= 3x" : "-", r.qforge.max_rss_mib, r.llama.max_rss_mib,
                   fmt_ratio(rss));
    }
    if (opt.with_hf && !rows.empty()) {
        const Row& q4 = rows.front();  // Q4_K_M without imatrix
        const double ratio = hf_run.status == 0 ? q4.llama.seconds / hf_run.seconds : NAN;
        fmt::print("\nHugging Face folder (BF16 safetensors) -> Q4_K_M in one `qforge quantize` run, against llama.cpp's "
                   "quantize step alone from the F16 GGUF (its convert_hf_to_gguf.py step not counted):\n\n");
        fmt::print("| qforge HF -> Q4_K_M s | llama.cpp quantize step s | speed (llama / qforge) | target | qforge peak RSS "
                   "MiB |\n|---:|---:|---:|---|---:|\n");
        fmt::print("| {:.1f} | {:.1f} | {}x | > 1x | {:.0f} |\n", hf_run.seconds, q4.llama.seconds, fmt_ratio(ratio),
                   hf_run.max_rss_mib);
    }
    if (opt.with_exact) {
        fmt::print("\n`qforge quantize --llama-exact` (llama.cpp's block algorithms, byte-identical output):\n\n");
        fmt::print("| type | imatrix | qforge --llama-exact s | llama.cpp s | speed (llama / exact) | peak RSS MiB |\n");
        fmt::print("|---|---|---:|---:|---:|---:|\n");
        for (const Row& r : rows)
            fmt::print("| {} | {} | {:.1f} | {:.1f} | {}x | {:.0f} |\n", r.type, r.imatrix ? "yes" : "no",
                       r.exact.seconds, r.llama.seconds,
                       fmt_ratio(r.exact.status == 0 ? r.llama.seconds / r.exact.seconds : NAN), r.exact.max_rss_mib);
    }
    fmt::print("\n- load average at end: {}\n", load_average());
    if (failed) fmt::print("- SOME RUNS FAILED (non-zero exit status); their output is in {}\n", log);
    if (!opt.keep && !failed) {
        // Only what this run wrote; the folder itself only if that leaves it empty.
        for (const std::string& f : {model, imatrix, log}) fs::remove(f);
        fs::remove_all(hf_dir);
        std::error_code ec;
        fs::remove(opt.dir, ec);
    }
    return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        if (argc > 1 && std::strcmp(argv[1], "--llama-quantize") == 0) return llama_quantize_main(argc, argv);
        return bench_main(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
