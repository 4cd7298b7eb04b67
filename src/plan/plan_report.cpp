#include "plan/plan_report.h"
#include "plan/model_catalogue.h"

#include "common/error.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <iterator>
#include <map>

namespace qf {

using json = nlohmann::json;

namespace {

constexpr uint64_t kDefaultRam = 32ull << 30;
constexpr double kDefaultRamBandwidth = 89.6;  // DDR5-5600, two 64-bit channels

// GiB for model-sized figures, MiB below 1 GiB so small models do not read "0.00 GiB".
std::string gib(uint64_t bytes) {
    if (bytes < (1ull << 30)) return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1ull << 20));
    return fmt::format("{:.2f} GiB", static_cast<double>(bytes) / (1ull << 30));
}
std::string mib(uint64_t bytes) { return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1ull << 20)); }

std::map<std::string, int> type_counts(const SizePlan& p) {
    std::map<std::string, int> c;
    for (const auto& t : p.tensors) ++c[std::string(type_name(t.tensor.type))];
    return c;
}

std::string verdict_text(const FitResult& f, bool has_gpu) {
    switch (f.verdict) {
        case FitVerdict::Fits: return has_gpu ? "fits" : "fits (CPU)";
        case FitVerdict::Partial: return fmt::format("partial {}/{}", f.n_gpu_layers, f.n_offloadable);
        case FitVerdict::No: return "no";
    }
    return "?";
}

}  // namespace

namespace {
constexpr GgmlType kCacheTypes[] = {GgmlType::F16,  GgmlType::BF16, GgmlType::F32,  GgmlType::Q8_0,  GgmlType::Q4_0,
                                    GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::IQ4_NL};

GgmlType cache_type(const std::string& name, const char* option) {
    if (const TypeTraits* t = find_type_by_name(name);
        t && std::find(std::begin(kCacheTypes), std::end(kCacheTypes), t->id) != std::end(kCacheTypes))
        return t->id;
    std::string names;
    for (const std::string& n : cache_type_names()) names += (names.empty() ? "" : ", ") + n;
    fail("{}: unsupported KV cache type '{}' ({})", option, name, names);
}
}  // namespace

std::vector<std::string> cache_type_names() {
    std::vector<std::string> names;
    for (GgmlType t : kCacheTypes) names.emplace_back(type_name(t));
    return names;
}

PlanArgs apply_plan_options(PlanArgs args, const PlanOptions& o) {
    args.context.n_ctx = o.n_ctx ? o.n_ctx : 4096;
    args.context_given = o.n_ctx != 0;
    args.context.type_k = cache_type(o.type_k, "--ctk");
    args.context.type_v = cache_type(o.type_v, "--ctv");
    args.context.flash_attn = !o.no_flash_attn;
    args.context.kv_unified = o.kv_unified;
    if (args.context.n_seq == 0) fail("--np: must be at least 1");
    if (args.context.n_ubatch == 0 || args.context.n_batch == 0) fail("-b/--ub: must be positive");
    if (!o.vram.empty()) args.vram_bytes = parse_memory_size(o.vram);
    if (!o.ram.empty()) args.ram_bytes = parse_memory_size(o.ram);
    if (o.ram_bandwidth_gbs > 0) args.ram_bandwidth_gbs = o.ram_bandwidth_gbs;
    return args;
}

PlanReport build_plan_report(const PlanArgs& a) {
    PlanReport r;
    if (a.config) {
        r.model = parse_plan_model(*a.config, "pasted config.json", a.config_name);
        r.model.config_only = true;
    } else if (a.model_from_catalogue) {
        const CatalogueModel* row = find_catalogue_model(a.model);
        if (!row) fail("{}: not a model of the catalogue", a.model);
        r.model = catalogue_plan_model(*row);
    } else {
        r.model = resolve_plan_model(a.model);
    }
    r.metadata = plan_metadata(r.model);
    if (!r.metadata.exact) r.assumptions.push_back("file sizes: " + r.metadata.note);

    FitRequest& q = r.request;
    q.context = a.context;
    if (!a.context_given)
        r.assumptions.push_back(fmt::format("context: {} tokens by default (-c to change; the model was trained for {})",
                                            a.context.n_ctx, r.model.context_length));
    if (a.context_given && a.context.n_ctx > r.model.context_length)
        r.assumptions.push_back(fmt::format("context: {} tokens is more than the {} the model was trained for",
                                            a.context.n_ctx, r.model.context_length));
    q.n_gpu_layers = a.n_gpu_layers;
    if (!a.gpus.empty()) {
        HardwareCatalogue cat = load_default_hardware_catalogue(a.hardware_path);
        q.gpus = parse_gpu_list(cat, a.gpus);
    } else if (a.vram_bytes) {
        Device d;
        d.name = "GPU (--vram)";
        d.kind = "gpu";
        d.vendor = "?";
        d.source = "--vram";
        q.gpus.push_back(d);
        r.assumptions.push_back("GPU bandwidth unknown without --gpu: no speed for the GPU part");
    }
    if (a.vram_bytes)
        for (Device& d : q.gpus) {
            d.memory_bytes = *a.vram_bytes;
            d.usable_fraction = 1.0;
        }
    const bool unified = !q.gpus.empty() && q.gpus.front().kind == "unified";
    if (a.ram_bytes) {
        q.ram_bytes = *a.ram_bytes;
    } else if (unified) {
        q.ram_bytes = q.gpus.front().memory_bytes - q.gpus.front().usable_bytes();
        r.assumptions.push_back(fmt::format("unified memory: the GPU may wire {:.0f}% ({}); the rest ({}) is left to the "
                                            "CPU side",
                                            q.gpus.front().usable_fraction * 100, gib(q.gpus.front().usable_bytes()),
                                            gib(q.ram_bytes)));
    } else {
        q.ram_bytes = kDefaultRam;
        r.assumptions.push_back(fmt::format("host RAM: {} assumed (--ram to change)", gib(kDefaultRam)));
    }
    if (a.ram_bandwidth_gbs) {
        q.ram_bandwidth_gbs = *a.ram_bandwidth_gbs;
    } else if (unified) {
        q.ram_bandwidth_gbs = q.gpus.front().bandwidth_gbs;
    } else {
        q.ram_bandwidth_gbs = kDefaultRamBandwidth;
        r.assumptions.push_back(
            fmt::format("host memory bandwidth: {} GB/s assumed (DDR5-5600 dual channel; --ram-bw to change)", kDefaultRamBandwidth));
    }
    int n_discrete = 0;
    for (const Device& d : q.gpus) n_discrete += d.kind != "unified";
    if (n_discrete)
        r.assumptions.push_back(fmt::format("each discrete GPU keeps {} for the runtime (CUDA/ROCm context, not in llama.cpp's "
                                            "log)",
                                            mib(q.gpu_overhead_bytes)));
    r.assumptions.push_back("tok/s: upper bound of decoding = memory bandwidth / bytes read per token (weights + the full "
                            "KV cache); expect 60-80% of it");

    auto types = a.types.empty() ? default_plan_types() : parse_file_types(a.types);
    if (r.model.gguf) {
        const PlanGgufFile& g = *r.model.gguf;
        r.sizes.push_back(plan_as_is(r.model));
        r.fits.push_back(plan_fit(r.model, r.sizes.back(), q));
        std::string stored;
        for (const auto& [t, n] : type_counts(r.sizes.back())) stored += fmt::format("{}{} {}", stored.empty() ? "" : ", ", n, t);
        r.assumptions.push_back(fmt::format("as-is: {} itself ({}; tensors {})", g.path,
                                            g.file_type ? g.file_type->name
                                            : g.file_type_id ? fmt::format("general.file_type {}", *g.file_type_id)
                                                             : std::string("no general.file_type"),
                                            stored));
        r.assumptions.push_back("other rows: requantizing this file with llama-quantize (its metadata kept; an imatrix "
                                "adds quantize.imatrix.* keys, not counted)");
        if (g.has_quantized_tensors())
            r.assumptions.push_back("requantizing: this file's tensors are already quantized; every requantized type "
                                    "(needs --allow-requantize) loses quality against quantizing the F16/BF16 original, "
                                    "and no type recovers what the file lost");
    }
    for (const FileTypeInfo* ft : types) {
        try {
            r.sizes.push_back(plan_size(r.model, r.metadata, *ft));
        } catch (const Error& e) {
            r.assumptions.push_back(fmt::format("{} skipped: {}", ft->name, e.what()));
            continue;
        }
        r.fits.push_back(plan_fit(r.model, r.sizes.back(), q));
    }
    if (r.model.gguf) {
        // Requantizing adds no information: a type larger than the file itself is never the advice.
        std::vector<FitResult> eligible = r.fits;
        for (size_t i = 1; i < r.sizes.size(); ++i)
            if (r.sizes[i].tensor_bytes > r.sizes.front().tensor_bytes) eligible[i].verdict = FitVerdict::No;
        r.recommended = recommend(r.sizes, eligible);
    } else {
        r.recommended = recommend(r.sizes, r.fits);
    }
    return r;
}

std::string render_plan_text(const PlanReport& r, bool verbose) {
    const PlanModel& m = r.model;
    const FitRequest& q = r.request;
    std::string s;
    uint64_t n_params = r.sizes.empty() ? 0 : r.sizes.front().n_params;
    s += fmt::format("Model: {} ({}, {} layers, n_embd {}, {} heads / {} KV, vocab {}, {:.2f} B parameters, trained "
                     "context {})\n",
                     m.gguf ? m.gguf->path : m.dir, m.gguf_arch, m.n_layer, m.n_embd, m.n_head, m.n_head_kv, m.n_vocab,
                     static_cast<double>(n_params) / 1e9, m.context_length);
    if (!r.fits.empty()) {
        const FitResult& f = r.fits.front();
        s += fmt::format("Context: {} tokens x {} sequence(s), KV cache K {} / V {} = {}, compute buffer ~{}\n",
                         q.context.n_ctx, q.context.n_seq, type_name(q.context.type_k), type_name(q.context.type_v),
                         mib(f.kv_bytes), mib(f.compute_bytes));
    }
    if (q.gpus.empty()) {
        s += "Devices: CPU only";
    } else {
        s += "Devices:";
        for (size_t i = 0; i < q.gpus.size(); ++i)
            s += fmt::format("{} {} ({} usable, {:.0f} GB/s)", i ? "," : "", q.gpus[i].name, gib(q.gpus[i].usable_bytes()),
                             q.gpus[i].bandwidth_gbs);
    }
    s += fmt::format("; host RAM {} at {:.1f} GB/s\n\n", gib(q.ram_bytes), q.ram_bandwidth_gbs);

    s += fmt::format("{:<8} {:>7} {:>11} {:>11} {:>11} {:<14} {:>8} {:>8}\n", "type", "bpw", "file", "GPU", "RAM", "verdict",
                     "max ctx", "tok/s<=");
    for (size_t i = 0; i < r.sizes.size(); ++i) {
        const SizePlan& p = r.sizes[i];
        const FitResult& f = r.fits[i];
        s += fmt::format("{:<8} {:>7.4f} {:>11} {:>11} {:>11} {:<14} {:>8} {:>8}{}\n", p.name(), p.bpw(),
                         gib(p.file_bytes), q.gpus.empty() ? "-" : gib(f.gpu_bytes()), gib(f.ram_bytes()),
                         verdict_text(f, !q.gpus.empty()), f.max_context ? std::to_string(f.max_context) : "-",
                         f.tokens_per_second > 0 ? fmt::format("{:.1f}", f.tokens_per_second) : "?",
                         static_cast<int>(i) == r.recommended ? "  <- recommended" : "");
        if (verbose) {
            std::string counts;
            for (const auto& [t, n] : type_counts(p)) counts += fmt::format(" {}:{}", t, n);
            s += fmt::format("         tensors{}; data {}, metadata {}\n", counts, gib(p.tensor_bytes), mib(p.metadata_bytes));
            if (!q.gpus.empty())
                s += fmt::format("         GPU: weights {} + KV {} + compute {} + runtime {} of {}\n", gib(f.gpu_weights),
                                 mib(f.gpu_kv), mib(f.gpu_compute), mib(f.gpu_overhead), gib(f.gpu_capacity));
            s += fmt::format("         RAM: weights {} + KV {} + buffers {} of {}\n", gib(f.ram_weights), mib(f.ram_kv),
                             mib(f.ram_buffers), gib(f.ram_capacity));
        }
    }
    if (r.recommended < 0) s += "\nNothing fits: try a smaller type, a shorter context (-c) or a quantized KV cache (--ctk/--ctv q8_0).\n";
    s += "\n";
    for (const auto& note : r.assumptions) s += "note: " + note + "\n";
    return s;
}

json render_plan_json(const PlanReport& r, bool verbose) {
    const PlanModel& m = r.model;
    const FitRequest& q = r.request;
    json j;
    j["model"] = {{"path", m.gguf ? m.gguf->path : m.dir}, {"gguf", m.gguf != nullptr},           {"model_type", m.model_type}, {"architecture", m.gguf_arch},
                  {"n_layer", m.n_layer},    {"n_embd", m.n_embd},         {"n_ff", m.n_ff},
                  {"n_head", m.n_head},      {"n_head_kv", m.n_head_kv},   {"head_dim", m.head_dim},
                  {"n_vocab", m.n_vocab},    {"n_expert", m.n_expert},     {"n_expert_used", m.n_expert_used},
                  {"tied_embeddings", m.tied}, {"context_length", m.context_length}};
    j["metadata"] = {{"exact", r.metadata.exact}, {"note", r.metadata.note}};
    j["context"] = {{"n_ctx", q.context.n_ctx},       {"n_seq", q.context.n_seq},
                    {"n_batch", q.context.n_batch},   {"n_ubatch", q.context.n_ubatch},
                    {"type_k", type_name(q.context.type_k)}, {"type_v", type_name(q.context.type_v)},
                    {"flash_attn", q.context.flash_attn}};
    json devs = json::array();
    for (const Device& d : q.gpus)
        devs.push_back({{"name", d.name}, {"kind", d.kind}, {"memory_bytes", d.memory_bytes}, {"usable_bytes", d.usable_bytes()},
                        {"bandwidth_gbs", d.bandwidth_gbs}, {"source", d.source}});
    j["gpus"] = devs;
    j["host"] = {{"ram_bytes", q.ram_bytes}, {"bandwidth_gbs", q.ram_bandwidth_gbs}};
    json plans = json::array();
    for (size_t i = 0; i < r.sizes.size(); ++i) {
        const SizePlan& p = r.sizes[i];
        const FitResult& f = r.fits[i];
        json file_type = p.file_type ? json(static_cast<uint32_t>(p.file_type->id)) : json(nullptr);
        if (p.as_is && m.gguf && m.gguf->file_type_id) file_type = *m.gguf->file_type_id;
        json e = {{"type", p.name()},
                  {"as_is", p.as_is},
                  {"file_type", file_type},
                  {"bpw", p.bpw()},
                  {"n_params", p.n_params},
                  {"tensor_bytes", p.tensor_bytes},
                  {"metadata_bytes", p.metadata_bytes},
                  {"file_bytes", p.file_bytes},
                  {"tensor_types", type_counts(p)},
                  {"verdict", verdict_name(f.verdict)},
                  {"n_gpu_layers", f.n_gpu_layers},
                  {"n_offloadable", f.n_offloadable},
                  {"kv_bytes", f.kv_bytes},
                  {"compute_bytes", f.compute_bytes},
                  {"gpu",
                   {{"weights", f.gpu_weights}, {"kv", f.gpu_kv}, {"compute", f.gpu_compute}, {"overhead", f.gpu_overhead},
                    {"total", f.gpu_bytes()}, {"capacity", f.gpu_capacity}}},
                  {"ram",
                   {{"weights", f.ram_weights}, {"kv", f.ram_kv}, {"buffers", f.ram_buffers}, {"total", f.ram_bytes()},
                    {"capacity", f.ram_capacity}}},
                  {"max_context", f.max_context},
                  {"tokens_per_second_upper_bound", f.tokens_per_second}};
        if (verbose) {
            json ts = json::array();
            for (const auto& t : p.tensors)
                ts.push_back({{"name", t.tensor.name}, {"shape", t.tensor.shape}, {"type", type_name(t.tensor.type)},
                              {"bytes", t.bytes}, {"rule", t.rule}});
            e["tensors"] = ts;
        }
        plans.push_back(e);
    }
    j["plans"] = plans;
    j["recommended"] = r.recommended >= 0 ? json(r.sizes[static_cast<size_t>(r.recommended)].name()) : json(nullptr);
    j["assumptions"] = r.assumptions;
    return j;
}

}  // namespace qf
