#include "pipeline/quantize.h"

#include "common/error.h"
#include "common/output_file.h"
#include "common/progress.h"
#include "gguf/gguf_writer.h"
#include "pipeline/calibrate.h"
#include "pipeline/convert.h"
#include "pipeline/imatrix_file.h"
#include "pipeline/row_convert.h"
#include "pipeline/tensor_source.h"
#include "quant/iq4.h"
#include "quant/q2_k.h"
#include "quant/q3_k.h"
#include "quant/q4_0.h"
#include "quant/q4_1.h"
#include "quant/q4_k.h"
#include "quant/q5_0.h"
#include "quant/q5_1.h"
#include "quant/q5_k.h"
#include "quant/q6_k.h"
#include "quant/q8_0.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>

namespace qf {

namespace fs = std::filesystem;

namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// llama-quantize sets keys with gguf_set_val_*, which removes an existing key and appends it.
void reset_at_end(GgufMetadata& md, const std::string& key, GgufValue value) {
    md.erase(key);
    md.set(key, std::move(value));
}

// llama.cpp copies these strings into a 128-byte buffer: at most 127 bytes survive.
std::string truncate127(const std::string& s) { return s.size() <= 127 ? s : s.substr(0, 127); }

bool is_token_embd(std::string_view name) { return name.starts_with("token_embd."); }

}  // namespace

QuantizeRowFn llama_exact_quantize_fn(GgmlType type) {
    switch (type) {
        case GgmlType::Q4_0: return quantize_row_q4_0_llama;
        case GgmlType::Q4_1: return quantize_row_q4_1_llama;
        case GgmlType::Q5_0: return quantize_row_q5_0_llama;
        case GgmlType::Q5_1: return quantize_row_q5_1_llama;
        case GgmlType::Q8_0: return quantize_row_q8_0_llama;
        case GgmlType::Q2_K: return quantize_row_q2_K_llama;
        case GgmlType::Q3_K: return quantize_row_q3_K_llama;
        case GgmlType::Q4_K: return quantize_row_q4_K_llama;
        case GgmlType::Q5_K: return quantize_row_q5_K_llama;
        case GgmlType::Q6_K: return quantize_row_q6_K_llama;
        case GgmlType::IQ4_NL: return quantize_row_iq4_nl_llama;
        case GgmlType::IQ4_XS: return quantize_row_iq4_xs_llama;
        default: return is_quantized(type) ? nullptr : traits(type).quantize;
    }
}

QuantizeRowFn quantize_fn_for(GgmlType type, const QuantizeOptions& options) {
    if (options.llama_exact) return llama_exact_quantize_fn(type);
    if (options.thorough) {
        switch (type) {
            case GgmlType::Q2_K: return quantize_row_q2_K_thorough;
            case GgmlType::Q3_K: return quantize_row_q3_K_thorough;
            case GgmlType::Q4_K: return quantize_row_q4_K_thorough;
            case GgmlType::Q5_K: return quantize_row_q5_K_thorough;
            case GgmlType::Q6_K: return quantize_row_q6_K_thorough;
            case GgmlType::Q4_0: return quantize_row_q4_0_thorough;
            case GgmlType::Q4_1: return quantize_row_q4_1_thorough;
            case GgmlType::Q5_0: return quantize_row_q5_0_thorough;
            case GgmlType::Q5_1: return quantize_row_q5_1_thorough;
            case GgmlType::Q8_0: return quantize_row_q8_0_thorough;
            case GgmlType::IQ4_NL: return quantize_row_iq4_nl_thorough;
            case GgmlType::IQ4_XS: return quantize_row_iq4_xs_thorough;
            default: break;
        }
    }
    return traits(type).quantize;
}

std::string valid_file_type_names() {
    std::string out;
    for (const auto& ft : all_file_types()) {
        if (!out.empty()) out += ", ";
        out += ft.name;
    }
    return out;
}

std::string default_quantize_output_name(const std::string& input, std::string_view ftype_name) {
    fs::path p = fs::path(input).lexically_normal();
    std::string base = p.filename().string();
    if (base.empty() || base == ".") base = p.parent_path().filename().string();
    if (ends_with(lower(base), ".gguf")) {
        base.resize(base.size() - 5);
        for (std::string_view suffix : {"-f32", "-f16", "-bf16"})
            if (ends_with(lower(base), suffix) && base.size() > suffix.size()) {
                base.resize(base.size() - suffix.size());
                break;
            }
    }
    if (base.empty() || base == "." || base == "..") base = "model";
    return fmt::format("{}-{}.gguf", base, ftype_name);
}

TensorTypeOverride parse_tensor_type_override(std::string_view spec) {
    const size_t eq = spec.find('=');
    if (eq == std::string_view::npos) fail("--tensor-type: malformed '{}' (expected REGEX=TYPE)", spec);
    if (eq == 0) fail("--tensor-type: missing tensor name pattern in '{}'", spec);
    if (eq + 1 == spec.size()) fail("--tensor-type: missing quantization type in '{}'", spec);
    const TypeTraits* t = find_type_by_name(spec.substr(eq + 1));
    if (!t) fail("--tensor-type: invalid quantization type '{}' in '{}'", spec.substr(eq + 1), spec);
    TensorTypeOverride o{lower(spec.substr(0, eq)), t->id};
    try {
        std::regex check(o.pattern);
    } catch (const std::regex_error& e) {
        fail("--tensor-type: invalid regular expression '{}': {}", o.pattern, e.what());
    }
    return o;
}

std::vector<TensorTypeOverride> read_tensor_type_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) fail("{}: cannot open tensor type file", path);
    std::vector<TensorTypeOverride> out;
    std::string spec;
    while (in >> spec) {
        try {
            out.push_back(parse_tensor_type_override(spec));
        } catch (const Error& e) {
            fail("{}: {}", path, e.what());
        }
    }
    return out;
}

QuantizePlan plan_quantize(const QuantizeOptions& options, const TensorSource& source, const Imatrix* imatrix) {
    const FileTypeInfo& ft = file_type_info(options.ftype);
    QuantizePlan plan;
    plan.output = options.output.empty() ? default_quantize_output_name(options.input, ft.name) : options.output;

    RecipeOptions ro;
    ro.ftype = options.ftype;
    // A calibrated run has importance for every weight product, so it takes llama.cpp's
    // with-imatrix rules (the same types and sizes as llama-quantize given an imatrix).
    const bool calibrated = !options.calibrate_path.empty();
    ro.has_imatrix = (imatrix != nullptr && !imatrix->entries.empty()) || calibrated;
    ro.output_tensor_type = options.output_tensor_type;
    ro.token_embedding_type = options.token_embedding_type;
    ro.overrides = options.overrides;
    ro.pure = options.pure;
    ro.leave_output_tensor = options.leave_output_tensor;

    const std::vector<RecipeTensor>& tensors = source.tensors();
    const std::vector<TensorDecision> decisions = decide_tensor_types(source.recipe_model(), tensors, ro);
    const std::vector<size_t> order = llama_quantize_order(tensors);

    std::vector<GgufTensorPlan> layout;
    size_t requantized = 0;
    GgmlType requantized_from = GgmlType::F32;
    for (size_t i : order) {
        const RecipeTensor& t = tensors[i];
        const TensorDecision& d = decisions[i];
        QuantizeTensorPlan tp;
        tp.name = t.name;
        tp.shape = t.shape;
        tp.source_type = t.source_type;
        tp.type = d.type;
        tp.source_index = i;
        tp.reason = d.rule;
        if (d.fallback && !d.note.empty()) tp.reason += fmt::format(" ({})", d.note);
        const bool converts = d.type != t.source_type;
        tp.copy = !converts && source.is_gguf();

        if (converts) {
            if (is_quantized(t.source_type)) {
                if (!options.allow_requantize)
                    fail("{}: tensor '{}' is already {}: requantizing is disabled (pass --allow-requantize; the "
                         "result is worse than quantizing the F16/BF16 original)",
                         source.path(), t.name, type_name(t.source_type));
                ++requantized;
                requantized_from = t.source_type;
            }
            if (!traits(t.source_type).dequantize)
                fail("{}: tensor '{}' has type {} which qforge cannot read", source.path(), t.name,
                     type_name(t.source_type));
            if (!quantize_fn_for(d.type, options))
                fail("{}: tensor '{}': qforge cannot write type {}", source.path(), t.name, type_name(d.type));

            const std::vector<float>* entry = imatrix ? imatrix->find(t.name) : nullptr;
            if (entry) {
                const int64_t expected = t.shape.at(0) * (t.shape.size() > 2 ? t.shape[2] : 1);
                if (static_cast<int64_t>(entry->size()) == expected) {
                    tp.uses_imatrix = true;
                } else if (is_token_embd(t.name)) {
                    // llama-quantize only warns here: token_embd has no activations to measure.
                    plan.warnings.push_back(fmt::format("{}: imatrix entry for '{}' has {} values, expected {}; not used",
                                                        imatrix->path, t.name, entry->size(), expected));
                } else {
                    fail("{}: imatrix entry for tensor '{}' has {} values, expected {} (an imatrix of another model?)",
                         imatrix->path, t.name, entry->size(), expected);
                }
            } else if (imatrix && t.name.starts_with("blk.")) {
                // llama-imatrix records every matrix multiplication inside the blocks, so a missing
                // entry means the file belongs to another model (llama-quantize would go on silently).
                fail("{}: imatrix has no entry for tensor '{}' (an imatrix of another model?)", imatrix->path, t.name);
            }
            if (!tp.uses_imatrix && !(calibrated && t.name.starts_with("blk.")) &&
                tensor_requires_imatrix(t.name, d.type, options.ftype))
                fail("{}: tensor '{}' gets {} in {}, which needs an importance matrix: pass --imatrix FILE", source.path(),
                     t.name, type_name(d.type), ft.name);
        }
        plan.tensors.push_back(std::move(tp));
        layout.push_back({t.name, t.shape, d.type});
    }
    if (requantized)
        plan.warnings.push_back(fmt::format("{}: requantizing {} tensors (e.g. from {}): quality is lower than quantizing "
                                            "the F16/BF16 original",
                                            source.path(), requantized, type_name(requantized_from)));

    // Metadata, as llama-quantize builds it.
    plan.metadata = source.metadata();
    reset_at_end(plan.metadata, "general.quantization_version", GgufValue::u32(2));
    reset_at_end(plan.metadata, "general.file_type", GgufValue::u32(static_cast<uint32_t>(options.ftype)));
    for (const char* key : {"split.no", "split.count", "split.tensors.count"}) plan.metadata.erase(key);
    if (imatrix && !imatrix->entries.empty()) {
        reset_at_end(plan.metadata, "quantize.imatrix.file", GgufValue::string(truncate127(options.imatrix_path)));
        if (!imatrix->datasets.empty())
            reset_at_end(plan.metadata, "quantize.imatrix.dataset", GgufValue::string(truncate127(imatrix->datasets[0])));
        reset_at_end(plan.metadata, "quantize.imatrix.entries_count",
                     GgufValue::u32(static_cast<uint32_t>(imatrix->entries.size())));
        if (imatrix->chunk_count > 0)
            reset_at_end(plan.metadata, "quantize.imatrix.chunks_count",
                         GgufValue::u32(static_cast<uint32_t>(imatrix->chunk_count)));
    }

    for (size_t k = 0; k < layout.size(); ++k) {
        plan.tensors[k].bytes = gguf_tensor_bytes(layout[k]);
        plan.tensor_bytes += plan.tensors[k].bytes;
        int64_t n = 1;
        for (int64_t dim : layout[k].shape) n *= dim;
        plan.n_params += static_cast<uint64_t>(n);
    }
    plan.file_bytes = gguf_file_bytes(plan.metadata, layout);
    return plan;
}

QuantizeResult quantize_model(const QuantizeOptions& options) {
    const auto start = std::chrono::steady_clock::now();
    TensorSource source = TensorSource::open(options.input);
    std::optional<Imatrix> imatrix;
    if (!options.imatrix_path.empty()) imatrix = load_imatrix(options.imatrix_path);

    QuantizeResult result;
    result.plan = plan_quantize(options, source, imatrix ? &*imatrix : nullptr);
    const QuantizePlan& plan = result.plan;
    for (const auto& f : source.files())
        if (same_file(f, plan.output)) fail("{}: output would overwrite the input file", plan.output);
    if (options.dry_run) {
        result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        return result;
    }

    CalibratedWeights calibrated;
    if (!options.calibrate_path.empty()) {
        calibrated = calibrate_weights(options, plan, source);
        result.calib_tokens = calibrated.run.tokens;
        result.calib_seconds = calibrated.run.seconds;
        result.calib_with_feedback = calibrated.with_feedback;
        result.calib_without_feedback = calibrated.without_feedback;
    }

    std::vector<GgufTensorPlan> layout;
    layout.reserve(plan.tensors.size());
    for (const auto& t : plan.tensors) layout.push_back({t.name, t.shape, t.type});

    OutputFile out(plan.output, options.overwrite);
    GgufWriter writer(out, plan.metadata, layout);
    if (writer.file_bytes() != plan.file_bytes)
        fail("{}: internal error: planned {} bytes, writer expects {}", plan.output, plan.file_bytes, writer.file_bytes());
    uint64_t total_elements = plan.n_params;
    Progress progress(options.progress ? "quantize" : "", options.progress ? total_elements * 4 : 0);
    RowConverter rows(options.threads);
    auto sink = [&](std::span<const std::byte> bytes) { writer.write_tensor_data(bytes); };
    auto on_progress = [&](uint64_t elements) {
        if (options.progress) progress.advance(elements * 4);
    };
    for (const auto& t : plan.tensors) {
        if (options.progress) progress.set_item(t.name);
        if (const auto c = calibrated.bytes.find(t.name); c != calibrated.bytes.end()) {
            sink(c->second);
            source.release(t.source_index);
            on_progress(static_cast<uint64_t>(t.shape.at(0) * t.shape.at(1)));
            continue;
        }
        if (t.copy) {
            sink(source.raw_bytes(t.source_index));
            source.release(t.source_index);
            int64_t n = 1;
            for (int64_t dim : t.shape) n *= dim;
            on_progress(static_cast<uint64_t>(n));
            continue;
        }
        std::span<const float> importance;
        if (t.uses_imatrix) {
            const std::vector<float>* entry = imatrix->find(t.name);
            importance = std::span<const float>(*entry);
        }
        rows.convert_rows(
            t.name, t.shape, t.type, importance,
            [&](int64_t first, int64_t count, float* dst) {
                source.read_rows_f32(t.source_index, first, count, dst);
                source.release_rows(t.source_index, first, count);
            },
            sink, on_progress, quantize_fn_for(t.type, options));
        source.release(t.source_index);
    }
    writer.finish();
    if (out.bytes_written() != plan.file_bytes)
        fail("{}: internal error: wrote {} bytes, planned {}", plan.output, out.bytes_written(), plan.file_bytes);
    out.commit();
    progress.finish();
    result.written = true;
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
}

}  // namespace qf
