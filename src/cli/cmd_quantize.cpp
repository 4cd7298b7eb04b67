#include "cli/commands.h"
#include "common/error.h"
#include "pipeline/quantize.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <charconv>

namespace qf::cli {

namespace {

GgmlType parse_ggml_type_option(const std::string& option, const std::string& value) {
    const TypeTraits* t = find_type_by_name(value);
    if (!t) fail("{}: unknown ggml type '{}'", option, value);
    return t->id;
}

const FileTypeInfo& parse_file_type(const std::string& value) {
    const FileTypeInfo* ft = find_file_type(value);
    if (!ft) fail("quantize: unknown type '{}'; valid types: {}", value, valid_file_type_names());
    return *ft;
}

std::string shape_text(const std::vector<int64_t>& shape) {
    std::string s;
    for (int64_t d : shape) s += (s.empty() ? "" : ", ") + std::to_string(d);
    return "[" + s + "]";
}

nlohmann::json plan_json(const QuantizeOptions& opts, const QuantizeResult& r) {
    const QuantizePlan& p = r.plan;
    nlohmann::json tensors = nlohmann::json::array();
    for (const auto& t : p.tensors)
        tensors.push_back({{"name", t.name},
                           {"shape", t.shape},
                           {"source_type", type_name(t.source_type)},
                           {"type", type_name(t.type)},
                           {"bytes", t.bytes},
                           {"imatrix", t.uses_imatrix},
                           {"reason", t.reason}});
    return {{"input", opts.input},
            {"output", p.output},
            {"ftype", file_type_info(opts.ftype).name},
            {"dry_run", opts.dry_run},
            {"written", r.written},
            {"file_bytes", p.file_bytes},
            {"tensor_bytes", p.tensor_bytes},
            {"n_params", p.n_params},
            {"bits_per_weight", p.bits_per_weight()},
            {"seconds", r.seconds},
            {"calibration", opts.calibrate_path.empty()
                                ? nlohmann::json(nullptr)
                                : nlohmann::json{{"text", opts.calibrate_path},
                                                 {"tokens", r.calib_tokens},
                                                 {"seconds", r.calib_seconds},
                                                 {"tensors_with_error_feedback", r.calib_with_feedback},
                                                 {"tensors_without", r.calib_without_feedback}}},
            {"warnings", p.warnings},
            {"tensors", tensors}};
}

}  // namespace

void register_quantize(CLI::App& app) {
    auto* cmd = app.add_subcommand(
        "quantize", "Quantize a HF folder or an F32/F16/BF16 GGUF to a llama.cpp file type (Q4_K_M, Q8_0, ...)");
    struct Args {
        std::vector<std::string> positional;
        QuantizeOptions opts;
        std::string output_tensor_type, token_embedding_type, tensor_type_file;
        std::vector<std::string> tensor_types;
        bool json = false;
    };
    auto a = std::make_shared<Args>();
    cmd->add_option("ARGS", a->positional, "INPUT [OUTPUT] TYPE [NTHREADS], as llama-quantize takes them")
        ->required()
        ->expected(2, 4);
    cmd->add_option("--imatrix", a->opts.imatrix_path, "Importance matrix (llama-imatrix GGUF or legacy .dat)");
    cmd->add_option("--output-tensor-type", a->output_tensor_type, "ggml type for output.weight");
    cmd->add_option("--token-embedding-type", a->token_embedding_type, "ggml type for token_embd.weight");
    cmd->add_option("--tensor-type", a->tensor_types,
                    "REGEX=TYPE: tensors whose name matches get TYPE (repeatable, first match wins)");
    cmd->add_option("--tensor-type-file", a->tensor_type_file, "File of REGEX=TYPE specs, whitespace separated");
    cmd->add_flag("--pure", a->opts.pure, "Every quantizable tensor gets the file type's default type");
    cmd->add_flag("--leave-output-tensor", a->opts.leave_output_tensor, "Do not quantize output.weight");
    cmd->add_flag("--allow-requantize", a->opts.allow_requantize,
                  "Accept already-quantized input tensors (dequantized first; lower quality)");
    cmd->add_flag("--dry-run", a->opts.dry_run, "Print each tensor's type, the reason and the exact output size; write nothing");
    cmd->add_flag("--llama-exact", a->opts.llama_exact,
                  "Use llama.cpp's own block algorithms: bytes identical to llama-quantize's (default: qforge's "
                  "kernels, same formats and sizes, never a larger error per block)");
    cmd->add_flag("--thorough", a->opts.thorough,
                  "A wider block search (a little lower error again, several times slower than the default, which "
                  "polishes llama.cpp's encoding)");
    cmd->add_option("--calibrate", a->opts.calibrate_path,
                    "Calibration text: quantize every weight product with error feedback (GPTQ-style) from its\n"
                    "input statistics on this text; same tensor types and sizes as with an imatrix, lower KL divergence");
    cmd->add_option("--calib-chunks", a->opts.calib_chunks, "Calibration chunks used (default: all whole chunks of the text)")
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--calib-ctx", a->opts.calib_ctx, "Tokens per calibration chunk (default 512)")->check(CLI::Range(16, 1 << 20));
    cmd->add_option("-t,--threads", a->opts.threads, "Worker threads (default: all cores)");
    cmd->add_flag("--json", a->json, "Machine-readable summary");
    cmd->add_flag("-f,--force", a->opts.overwrite, "Overwrite the output file if it exists");
    cmd->footer(
        "TYPE: " + valid_file_type_names() +
        " (case-insensitive).\n"
        "Tensor order, types, metadata and size equal llama-quantize's from the same GGUF (the bytes too with\n"
        "--llama-exact). The output is written to OUT.tmp and renamed when complete; Ctrl-C or an error leaves\n"
        "nothing behind. Default OUTPUT: ./<model>-<TYPE>.gguf.\n"
        "Example: qforge quantize prose-tiny-f16.gguf Q4_K_M --imatrix imatrix.gguf");
    cmd->callback([a] {
        QuantizeOptions& o = a->opts;
        const auto& pos = a->positional;
        o.input = pos[0];
        size_t next = 1;
        // OUTPUT is optional: when the second argument is a file type, there is none.
        if (!(pos.size() <= 3 && find_file_type(pos[1]))) {
            if (pos.size() < 3) {
                // "INPUT X": X must be the type.
                parse_file_type(pos[1]);
            }
            o.output = pos[1];
            next = 2;
        }
        o.ftype = parse_file_type(pos.at(next)).id;
        if (next + 1 < pos.size()) {
            const std::string& n = pos[next + 1];
            int threads = 0;
            auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), threads);
            if (ec != std::errc() || end != n.data() + n.size() || threads < 1)
                fail("quantize: NTHREADS must be a positive integer (got '{}')", n);
            o.threads = threads;
        }
        if (!a->output_tensor_type.empty())
            o.output_tensor_type = parse_ggml_type_option("--output-tensor-type", a->output_tensor_type);
        if (!a->token_embedding_type.empty())
            o.token_embedding_type = parse_ggml_type_option("--token-embedding-type", a->token_embedding_type);
        for (const auto& spec : a->tensor_types) o.overrides.push_back(parse_tensor_type_override(spec));
        if (!a->tensor_type_file.empty())
            for (auto& ov : read_tensor_type_file(a->tensor_type_file)) o.overrides.push_back(std::move(ov));
        o.progress = !a->json;
        if (!o.calibrate_path.empty() && !o.imatrix_path.empty())
            fail("quantize: --calibrate gathers its own statistics; it cannot be combined with --imatrix");
        if (!o.calibrate_path.empty() && o.llama_exact)
            fail("quantize: --llama-exact writes llama.cpp's bytes; it cannot be combined with --calibrate");

        QuantizeResult r = quantize_model(o);
        const QuantizePlan& p = r.plan;
        if (a->json) {
            fmt::print("{}\n", plan_json(o, r).dump(2));
            return;
        }
        for (const auto& w : p.warnings) fmt::print(stderr, "qforge: warning: {}\n", w);
        if (o.dry_run) {
            size_t i = 0;
            for (const auto& t : p.tensors)
                fmt::print("[{:4}/{:4}] {:<36} {:<22} {:>6} -> {:<6} {:>12} B{}  {}\n", ++i, p.tensors.size(), t.name,
                           shape_text(t.shape), type_name(t.source_type), type_name(t.type), t.bytes,
                           t.uses_imatrix ? " imatrix" : "", t.reason);
            fmt::print("dry run: {} would be {} bytes ({:.2f} MiB), {:.4f} bpw; nothing written\n", p.output,
                       p.file_bytes, p.file_bytes / 1048576.0, p.bits_per_weight());
            return;
        }
        if (!o.calibrate_path.empty())
            fmt::print("calibrated on {} tokens of {} in {:.1f} s: {} tensors with error feedback, {} without\n",
                       r.calib_tokens, o.calibrate_path, r.calib_seconds, r.calib_with_feedback, r.calib_without_feedback);
        fmt::print("wrote {}: {} tensors, {} bytes ({:.2f} MiB), {:.4f} bpw in {:.2f} s\n", p.output, p.tensors.size(),
                   p.file_bytes, p.file_bytes / 1048576.0, p.bits_per_weight(), r.seconds);
    });
}

}  // namespace qf::cli
