// qforge's block quantizers and dequantizers against llama.cpp's (libggml-base.so, loaded
// with dlopen), measured in one run on the same rows, single-threaded.
//
// For every format it prints:
//   - quantization speed (MB/s of f32 input) of qf::traits(t).quantize and of
//     ggml_quantize_chunk, without and with importance weights, their ratio and the target;
//   - the (importance-weighted) RMSE of both on synthetic and on real weight rows, so a speed
//     figure is never read apart from the error it buys;
//   - dequantization speed (GB/s of f32 output) of ours and of ggml's dequantize_row_*, next
//     to memory bandwidth measured in the same run.
//
// Both sides run interleaved (ours, llama, ours, ...) so that load from other processes on a
// shared machine hits both alike; each figure is the best of several rounds.
#include "bench_env.h"
#include "common/error.h"
#include "hf/safetensors.h"
#include "quant/types.h"
#include "support/llama_dir.h"
#include "support/llama_ggml_api.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace {

using qf::GgmlType;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------
// Options

struct Options {
    bool quick = false;
    std::vector<GgmlType> formats;  // empty: all
    std::string rows_from;          // HF model folder for the real rows; empty: default
};

constexpr GgmlType kAllFormats[] = {
    GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::IQ4_NL,
    GgmlType::IQ4_XS, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K,
};

void print_usage() {
    fmt::print(
        "usage: quant_vs_llamacpp [--quick] [--format X[,Y...]] [--rows-from DIR]\n"
        "  --quick          one round per measurement and shorter timing windows (for a smoke run)\n"
        "  --format X       only these formats (e.g. Q4_K or q4_0,iq4_xs); default: all 12\n"
        "  --rows-from DIR  Hugging Face model folder whose weights form the real-row corpus\n"
        "                   (default: ../shared/models/prose-base if present, else models/prose-tiny)\n"
        "  QFORGE_COMMIT in the environment overrides the commit printed in the header.\n");
}

Options parse_options(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) qf::fail("quant_vs_llamacpp: {} needs a value", a);
            return argv[++i];
        };
        if (a == "--quick") {
            o.quick = true;
        } else if (a == "--format") {
            std::string list = value();
            size_t begin = 0;
            while (begin <= list.size()) {
                const size_t end = std::min(list.find(',', begin), list.size());
                const std::string name = list.substr(begin, end - begin);
                const qf::TypeTraits* t = qf::find_type_by_name(name);
                if (!t || std::find(std::begin(kAllFormats), std::end(kAllFormats), t->id) == std::end(kAllFormats))
                    qf::fail("quant_vs_llamacpp: --format {}: not one of the benchmarked formats", name);
                o.formats.push_back(t->id);
                begin = end + 1;
            }
        } else if (a == "--rows-from") {
            o.rows_from = value();
        } else if (a == "--help" || a == "-h") {
            print_usage();
            std::exit(0);
        } else {
            qf::fail("quant_vs_llamacpp: unknown argument '{}' (see --help)", a);
        }
    }
    if (o.formats.empty()) o.formats.assign(std::begin(kAllFormats), std::end(kAllFormats));
    return o;
}

// ---------------------------------------------------------------------------------------
// Environment: CPU, commit, load

using qf::bench::cpu_model;
using qf::bench::git_commit;
using qf::bench::load_average;
using qf::bench::run_line;

int cpu_count() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    int n = 0;
    while (std::getline(in, line)) n += line.rfind("processor", 0) == 0;
    return n;
}

// ---------------------------------------------------------------------------------------
// Data

// splitmix64: the same stream with every standard library, so runs are comparable.
class Rng {
public:
    explicit Rng(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {}
    uint64_t next() {
        uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1p-53; }  // (0, 1)
    double normal() { return std::sqrt(-2.0 * std::log(uniform())) * std::cos(6.283185307179586 * uniform()); }
    double laplace() { return uniform() < 0.5 ? std::log(uniform()) : -std::log(uniform()); }

private:
    uint64_t state_;
};

// Rows of one length, quantized with one call of ggml_quantize_chunk (and one call of our
// quantize per row). importance: n_per_row positive per-column weights.
struct RowGroup {
    std::string name;
    int64_t n_per_row = 0;
    std::vector<float> data;
    std::vector<float> importance;
    int64_t n_rows() const { return static_cast<int64_t>(data.size()) / n_per_row; }
};

struct Corpus {
    std::string label;
    std::vector<RowGroup> groups;
    int64_t elements() const {
        int64_t n = 0;
        for (const auto& g : groups) n += static_cast<int64_t>(g.data.size());
        return n;
    }
};

// Heavy-tailed like an importance matrix: log-normal, with about 2% of columns 50x above.
std::vector<float> random_importance(int64_t n, uint64_t seed) {
    Rng rng(seed ^ 0xA5A5A5A5ull);
    std::vector<float> w(n);
    for (auto& v : w) {
        double x = std::exp(1.5 * rng.normal());
        if (rng.uniform() < 0.02) x *= 50;
        v = static_cast<float>(x);
    }
    return w;
}

// Gaussian and Laplace rows, row scales spread over two decades as real layers differ.
Corpus synthetic_corpus(int64_t elements) {
    constexpr int64_t n_per_row = 4096;
    const int64_t rows_each = std::max<int64_t>(1, elements / n_per_row / 2);
    Corpus c{"synthetic", {}};
    for (int kind = 0; kind < 2; ++kind) {
        Rng rng(1234 + kind);
        RowGroup g{kind == 0 ? "gaussian" : "laplace", n_per_row, std::vector<float>(rows_each * n_per_row),
                   random_importance(n_per_row, 77 + kind)};
        for (int64_t r = 0; r < rows_each; ++r) {
            const double sigma = 0.01 * std::pow(10.0, 2.0 * static_cast<double>(r) / std::max<int64_t>(1, rows_each - 1));
            for (int64_t j = 0; j < n_per_row; ++j)
                g.data[r * n_per_row + j] = static_cast<float>(sigma * (kind == 0 ? rng.normal() : rng.laplace()));
        }
        c.groups.push_back(std::move(g));
    }
    return c;
}

// About `elements` values of real weights: from every >= 2-D tensor whose rows are a whole
// number of 256-blocks (so every format applies), the same fraction of its rows, evenly spread.
Corpus model_corpus(const std::string& dir, int64_t elements) {
    const qf::SafetensorsModel st = qf::SafetensorsModel::open_dir(dir);
    int64_t total = 0;
    auto usable = [](const qf::StTensor& t) {
        return t.shape.size() >= 2 && t.shape.back() > 0 && t.shape.back() % 256 == 0;
    };
    for (const auto& t : st.tensors())
        if (usable(t)) total += t.n_elements();
    if (total == 0) qf::fail("{}: no 2-D weight tensor with rows a multiple of 256", dir);
    const double fraction = std::min(1.0, static_cast<double>(elements) / static_cast<double>(total));
    std::string model = std::filesystem::path(dir).lexically_normal().filename().string();
    if (model.empty()) model = std::filesystem::path(dir).lexically_normal().parent_path().filename().string();
    Corpus c{"model:" + model, {}};
    uint64_t seed = 1000;
    for (const auto& t : st.tensors()) {
        if (!usable(t)) continue;
        const int64_t n_per_row = t.shape.back();
        const int64_t rows = t.n_elements() / n_per_row;
        const int64_t take = std::clamp<int64_t>(static_cast<int64_t>(std::llround(rows * fraction)), 1, rows);
        RowGroup g{t.name, n_per_row, std::vector<float>(take * n_per_row), random_importance(n_per_row, seed++)};
        for (int64_t i = 0; i < take; ++i)
            qf::convert_to_f32(t, (i * rows / take) * n_per_row, n_per_row, g.data.data() + i * n_per_row);
        c.groups.push_back(std::move(g));
    }
    return c;
}

std::string default_rows_dir() {
    namespace fs = std::filesystem;
    const fs::path source = QFORGE_SOURCE_DIR;
    const fs::path base = source / ".." / "shared" / "models" / "prose-base";
    if (fs::exists(base / "config.json")) return base.lexically_normal().string();
    return (source / "models" / "prose-tiny").string();
}

// ---------------------------------------------------------------------------------------
// Timing

struct Timing {
    double min_seconds;  // one round repeats the work until at least this long
    int rounds;          // best of this many rounds
};

// Runs the callables alternately, `rounds` times each; returns each one's best rate in
// units of `amount` per second.
std::vector<double> best_rates(const std::vector<std::function<void()>>& work, double amount, const Timing& timing) {
    std::vector<double> best(work.size(), 0.0);
    for (int round = 0; round < timing.rounds; ++round) {
        for (size_t k = 0; k < work.size(); ++k) {
            int passes = 0;
            const auto start = Clock::now();
            double elapsed = 0;
            do {
                work[k]();
                ++passes;
                elapsed = std::chrono::duration<double>(Clock::now() - start).count();
            } while (elapsed < timing.min_seconds);
            best[k] = std::max(best[k], amount * passes / elapsed);
        }
    }
    return best;
}

// ---------------------------------------------------------------------------------------
// Quantization

struct Encoded {
    std::vector<uint8_t> bytes;       // all groups of a corpus, one after the other
    std::vector<size_t> group_offset;  // where each group's rows start
};

Encoded allocate(GgmlType type, const Corpus& c) {
    Encoded e;
    size_t total = 0;
    for (const auto& g : c.groups) {
        e.group_offset.push_back(total);
        total += *qf::row_bytes(type, g.n_per_row) * static_cast<size_t>(g.n_rows());
    }
    e.bytes.assign(total, 0);
    return e;
}

void quantize_ours(GgmlType type, const Corpus& c, bool with_importance, Encoded& out) {
    const qf::TypeTraits& tr = qf::traits(type);
    for (size_t gi = 0; gi < c.groups.size(); ++gi) {
        const RowGroup& g = c.groups[gi];
        const size_t row_bytes = *qf::row_bytes(type, g.n_per_row);
        const float* imp = with_importance ? g.importance.data() : nullptr;
        uint8_t* dst = out.bytes.data() + out.group_offset[gi];
        for (int64_t r = 0; r < g.n_rows(); ++r)
            tr.quantize(g.data.data() + r * g.n_per_row, dst + r * row_bytes, g.n_per_row, imp);
    }
}

void quantize_llama(GgmlType type, const Corpus& c, bool with_importance, Encoded& out) {
    const auto& api = qf::test::GgmlApi::get();
    for (size_t gi = 0; gi < c.groups.size(); ++gi) {
        const RowGroup& g = c.groups[gi];
        const size_t written = api.quantize_chunk(type, g.data.data(), out.bytes.data() + out.group_offset[gi], 0,
                                                  g.n_rows(), g.n_per_row, with_importance ? g.importance.data() : nullptr);
        if (written != *qf::row_bytes(type, g.n_per_row) * static_cast<size_t>(g.n_rows()))
            qf::fail("ggml_quantize_chunk({}, {}): wrote {} bytes, expected {}", qf::type_name(type), g.name, written,
                     *qf::row_bytes(type, g.n_per_row) * static_cast<size_t>(g.n_rows()));
    }
}

// Weighted RMSE, decoded with ggml's own dequantizer so both sides are judged by the same
// reader. Weights are the importance when quantized with it, else all ones.
double rmse(GgmlType type, const Corpus& c, bool with_importance, const Encoded& e) {
    const auto& api = qf::test::GgmlApi::get();
    double sum_w_err2 = 0, sum_w = 0;
    std::vector<float> back;
    for (size_t gi = 0; gi < c.groups.size(); ++gi) {
        const RowGroup& g = c.groups[gi];
        back.resize(g.data.size());
        api.dequantize_row(type, e.bytes.data() + e.group_offset[gi], back.data(), static_cast<int64_t>(g.data.size()));
        for (size_t i = 0; i < back.size(); ++i) {
            const double w = with_importance ? g.importance[i % static_cast<size_t>(g.n_per_row)] : 1.0;
            const double d = static_cast<double>(g.data[i]) - static_cast<double>(back[i]);
            sum_w_err2 += w * d * d;
            sum_w += w;
        }
    }
    return sum_w > 0 ? std::sqrt(sum_w_err2 / sum_w) : 0.0;
}

struct QuantRow {
    GgmlType type;
    bool importance;
    double ours_mbs, llama_mbs;
    std::vector<double> ours_rmse, llama_rmse;  // per corpus
    double target;
};

double target_for(GgmlType t, bool importance) {
    const bool big_k = t == GgmlType::Q4_K || t == GgmlType::Q5_K || t == GgmlType::Q6_K;
    return big_k && !importance ? 4.0 : 2.0;
}

QuantRow measure_quantize(GgmlType type, bool importance, const std::vector<Corpus>& corpora, const Timing& timing) {
    std::vector<Encoded> ours, llama;
    for (const auto& c : corpora) {
        ours.push_back(allocate(type, c));
        llama.push_back(allocate(type, c));
    }
    double mb = 0;
    for (const auto& c : corpora) mb += static_cast<double>(c.elements()) * sizeof(float) / 1e6;
    const auto rates = best_rates(
        {[&] { for (size_t i = 0; i < corpora.size(); ++i) quantize_ours(type, corpora[i], importance, ours[i]); },
         [&] { for (size_t i = 0; i < corpora.size(); ++i) quantize_llama(type, corpora[i], importance, llama[i]); }},
        mb, timing);
    QuantRow row{type, importance, rates[0], rates[1], {}, {}, target_for(type, importance)};
    for (size_t i = 0; i < corpora.size(); ++i) {
        row.ours_rmse.push_back(rmse(type, corpora[i], importance, ours[i]));
        row.llama_rmse.push_back(rmse(type, corpora[i], importance, llama[i]));
    }
    return row;
}

// ---------------------------------------------------------------------------------------
// Dequantization and memory bandwidth

struct Bandwidth {
    double read_gbs, write_gbs, memset_gbs, copy_gbs;
};

// Buffers far larger than the last-level cache, so these are DRAM figures. The loops are
// written so that the compiler vectorizes them even at the baseline ISA (integer sums are
// associative, float sums are not), so they measure memory and not arithmetic. Write uses
// plain stores, as the dequantizers do (each line is read before it is written); memset and
// memcpy are glibc's, which use non-temporal stores at these sizes, so memset is the ceiling
// for any writer. Copy is counted as bytes copied per second.
Bandwidth measure_bandwidth(size_t bytes, const Timing& timing) {
    const size_t n = bytes / sizeof(uint64_t);
    std::vector<uint64_t> a(n, 1), b(n, 0);
    volatile uint64_t sink = 0;
    const double gb = static_cast<double>(n * sizeof(uint64_t)) / 1e9;
    uint64_t bump = 0;
    const auto rates = best_rates(
        {[&] {
             uint64_t s = 0;
             for (size_t i = 0; i < n; ++i) s += a[i];
             sink = s;
         },
         [&] {
             // A value that changes per pass: a constant fill could be folded into memset.
             ++bump;
             std::fill(b.begin(), b.end(), bump * 0x0101010101010101ull + 0x0123456789ull);
         },
         [&] { std::memset(b.data(), static_cast<int>(++bump & 0xff), n * sizeof(uint64_t)); },
         [&] { std::memcpy(b.data(), a.data(), n * sizeof(uint64_t)); }},
        gb, timing);
    (void)sink;
    return {rates[0], rates[1], rates[2], rates[3]};
}

struct DequantRow {
    GgmlType type;
    double ours_gbs, llama_gbs;
    bool identical;
};

// Our encoding of the synthetic rows, repeated until the f32 output is `out_bytes` long, then
// decoded in one call by each side.
DequantRow measure_dequantize(GgmlType type, const Corpus& synthetic, size_t out_bytes, const Timing& timing) {
    Encoded e = allocate(type, synthetic);
    quantize_ours(type, synthetic, false, e);
    const qf::TypeTraits& tr = qf::traits(type);
    const size_t copies = std::max<size_t>(1, out_bytes / (static_cast<size_t>(synthetic.elements()) * sizeof(float)));
    std::vector<uint8_t> src;
    src.reserve(e.bytes.size() * copies);
    for (size_t k = 0; k < copies; ++k) src.insert(src.end(), e.bytes.begin(), e.bytes.end());
    const int64_t n = synthetic.elements() * static_cast<int64_t>(copies);
    std::vector<float> out_ours(n), out_llama(n);
    const auto& api = qf::test::GgmlApi::get();
    const double gb = static_cast<double>(n) * sizeof(float) / 1e9;
    const auto rates = best_rates({[&] { tr.dequantize(src.data(), out_ours.data(), n); },
                                   [&] { api.dequantize_row(type, src.data(), out_llama.data(), n); }},
                                  gb, timing);
    const bool identical = std::memcmp(out_ours.data(), out_llama.data(), n * sizeof(float)) == 0;
    return {type, rates[0], rates[1], identical};
}

// ---------------------------------------------------------------------------------------

std::string upper(std::string_view name) {
    std::string s(name);
    for (auto& ch : s) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    return s;
}

int run(int argc, char** argv) {
    const Options opt = parse_options(argc, argv);
    const auto& api = qf::test::GgmlApi::get();
    if (!api.available()) qf::fail("{}", api.error());

    // 4 MB of synthetic rows plus up to 4 MB of real rows per quantization measurement;
    // 256 MB buffers for bandwidth (8x the 32 MB L3 of the reference machine).
    const int64_t corpus_elements = (opt.quick ? 256 : 1024) * 1024;
    const Timing quant_timing = opt.quick ? Timing{0.1, 1} : Timing{0.3, 3};
    const Timing stream_timing = opt.quick ? Timing{0.1, 1} : Timing{0.3, 3};
    const Timing bandwidth_timing = opt.quick ? Timing{0.1, 2} : Timing{0.3, 5};
    const size_t dequant_out_bytes = size_t{256} << 20;  // 8x the L3: a DRAM-bound figure

    const std::string rows_dir = opt.rows_from.empty() ? default_rows_dir() : opt.rows_from;
    std::vector<Corpus> corpora;
    corpora.push_back(synthetic_corpus(corpus_elements));
    corpora.push_back(model_corpus(rows_dir, corpus_elements));

    std::time_t now = std::time(nullptr);
    char date[64];
    std::strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %Z", std::localtime(&now));
    fmt::print("# quant_vs_llamacpp\n\n");
    fmt::print("- date: {}\n- commit: {}\n- cpu: {} x{}\n- load average at start: {}\n", date, git_commit(),
               cpu_model(), cpu_count(), load_average());
    fmt::print("- llama.cpp: {}/libggml-base.so (ggml_quantize_chunk, dequantize_row_*)\n", qf::test::llama_lib_dir());
    fmt::print("- mode: {}, single thread; quantize: best of {} rounds of >= {:.1f} s; dequantize: best of {} of >= {:.1f} s\n",
               opt.quick ? "--quick" : "full", quant_timing.rounds, quant_timing.min_seconds, stream_timing.rounds,
               stream_timing.min_seconds);
    for (const auto& c : corpora) {
        std::vector<int64_t> widths;
        for (const auto& g : c.groups)
            if (std::find(widths.begin(), widths.end(), g.n_per_row) == widths.end()) widths.push_back(g.n_per_row);
        fmt::print("- corpus {}: {:.1f} MB f32, {} row groups, row lengths {}\n", c.label,
                   static_cast<double>(c.elements()) * 4 / 1e6, c.groups.size(), fmt::join(widths, "/"));
    }
    fmt::print("\n");
    std::fflush(stdout);

    const auto t0 = Clock::now();
    fmt::print("## Quantization (MB/s of f32 input; RMSE weighted by the importance when used)\n\n");
    fmt::print("| format | imp | ours MB/s | llama MB/s | ours/llama | target | met |");
    for (const auto& c : corpora) fmt::print(" RMSE ours {0} | RMSE llama {0} | ratio |", c.label);
    fmt::print("\n|---|---|--:|--:|--:|--:|---|");
    for (size_t i = 0; i < corpora.size(); ++i) fmt::print("--:|--:|--:|");
    fmt::print("\n");
    std::vector<QuantRow> quant_rows;
    for (GgmlType t : opt.formats) {
        for (bool imp : {false, true}) {
            const QuantRow r = measure_quantize(t, imp, corpora, quant_timing);
            const double ratio = r.ours_mbs / r.llama_mbs;
            fmt::print("| {} | {} | {:.1f} | {:.1f} | {:.2f}x | >= {:.0f}x | {} |", upper(qf::type_name(t)), imp ? "yes" : "no",
                       r.ours_mbs, r.llama_mbs, ratio, r.target, ratio >= r.target ? "yes" : "NO");
            for (size_t i = 0; i < corpora.size(); ++i)
                fmt::print(" {:.4e} | {:.4e} | {:.4f} |", r.ours_rmse[i], r.llama_rmse[i],
                           r.llama_rmse[i] > 0 ? r.ours_rmse[i] / r.llama_rmse[i] : 1.0);
            fmt::print("\n");
            std::fflush(stdout);
            quant_rows.push_back(r);
        }
    }
    const double quant_seconds = std::chrono::duration<double>(Clock::now() - t0).count();

    const auto t1 = Clock::now();
    const Bandwidth bw = measure_bandwidth(size_t{256} << 20, bandwidth_timing);
    fmt::print("\n## Memory bandwidth (single thread, 256 MB buffers, GB/s)\n\n");
    fmt::print("| read (sum) | write (plain stores) | memset (non-temporal) | copy (memcpy, bytes copied) |\n|--:|--:|--:|--:|\n");
    fmt::print("| {:.2f} | {:.2f} | {:.2f} | {:.2f} |\n", bw.read_gbs, bw.write_gbs, bw.memset_gbs, bw.copy_gbs);

    fmt::print("\n## Dequantization (GB/s of f32 output, {} MB output per pass)\n\n", dequant_out_bytes >> 20);
    fmt::print("| format | ours GB/s | llama GB/s | ours/llama | ours % of write bw | llama % of write bw | same floats |\n"
               "|---|--:|--:|--:|--:|--:|---|\n");
    for (GgmlType t : opt.formats) {
        const DequantRow r = measure_dequantize(t, corpora[0], dequant_out_bytes, stream_timing);
        fmt::print("| {} | {:.2f} | {:.2f} | {:.2f}x | {:.0f}% | {:.0f}% | {} |\n", upper(qf::type_name(t)), r.ours_gbs,
                   r.llama_gbs, r.ours_gbs / r.llama_gbs, 100.0 * r.ours_gbs / bw.write_gbs,
                   100.0 * r.llama_gbs / bw.write_gbs, r.identical ? "yes" : "NO");
        std::fflush(stdout);
    }
    const double dequant_seconds = std::chrono::duration<double>(Clock::now() - t1).count();

    int met = 0, error_ok = 0;
    for (const auto& r : quant_rows) {
        met += r.ours_mbs / r.llama_mbs >= r.target;
        bool ok = true;
        for (size_t i = 0; i < r.ours_rmse.size(); ++i) ok &= r.ours_rmse[i] <= r.llama_rmse[i];
        error_ok += ok;
    }
    fmt::print("\n- speed targets met: {} of {}; RMSE <= llama's on every corpus: {} of {}\n", met, quant_rows.size(),
               error_ok, quant_rows.size());
    fmt::print("- time: quantization {:.0f} s, bandwidth + dequantization {:.0f} s; load average at end: {}\n",
               quant_seconds, dequant_seconds, load_average());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
