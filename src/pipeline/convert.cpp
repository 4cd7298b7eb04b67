#include "pipeline/convert.h"

#include "common/error.h"
#include "common/output_file.h"
#include "common/progress.h"
#include "gguf/gguf_writer.h"
#include "hf/arch_metadata.h"
#include "hf/model_config.h"
#include "hf/safetensors.h"
#include "hf/tensor_map.h"
#include "hf/tokenizer_export.h"
#include "pipeline/row_convert.h"

#include <chrono>
#include <unistd.h>
#include <filesystem>

namespace qf {

namespace fs = std::filesystem;

std::string default_output_name(const std::string& input_dir, std::string_view type_suffix) {
    fs::path p = fs::path(input_dir).lexically_normal();
    std::string base = p.filename().string();
    if (base.empty() || base == ".") base = p.parent_path().filename().string();
    if (base.empty() || base == "." || base == "..") base = "model";
    return fmt::format("{}-{}.gguf", base, type_suffix);
}

uint32_t file_type_for_outtype(GgmlType outtype) {
    switch (outtype) {
        case GgmlType::F32: return 0;
        case GgmlType::F16: return 1;
        case GgmlType::BF16: return 32;
        default: fail("convert: --outtype must be f32, f16 or bf16 (got {}); use 'qforge quantize' for quantized types",
                      type_name(outtype));
    }
}

ConvertResult convert_hf_to_gguf(const ConvertOptions& options) {
    const auto start = std::chrono::steady_clock::now();
    const uint32_t file_type = file_type_for_outtype(options.outtype);

    // Plan: everything is decided and validated before the first byte is written.
    ModelConfig cfg = load_model_config(options.input_dir);
    SafetensorsModel st = SafetensorsModel::open_dir(options.input_dir);
    std::vector<MappedTensor> mapped = map_hf_tensors(cfg, st);

    GgufMetadata md;
    add_arch_metadata(cfg, file_type, md, count_parameters(mapped));
    TokenizerExportOptions tok{cfg.vocab_size, cfg.bos_token_id, cfg.eos_token_id, cfg.gguf_arch == "llama"};
    add_tokenizer_metadata(options.input_dir, tok, md);

    std::vector<GgufTensorPlan> plan;
    plan.reserve(mapped.size());
    uint64_t n_params = 0, total_elements = 0;
    for (const auto& t : mapped) {
        GgmlType type = t.keep_f32 ? GgmlType::F32 : options.outtype;
        plan.push_back({t.gguf_name, t.shape, type});
        int64_t n = 1;
        for (int64_t d : t.shape) n *= d;
        n_params += static_cast<uint64_t>(n);
        total_elements += static_cast<uint64_t>(n);
    }

    std::string out_path = options.output.empty()
                               ? default_output_name(options.input_dir, type_name(options.outtype))
                               : options.output;
    for (const auto& t : st.tensors())
        if (same_file(t.file, out_path)) fail("{}: output would overwrite the input file", out_path);

    OutputFile out(out_path, options.overwrite);
    GgufWriter writer(out, md, plan);
    Progress progress(options.progress ? "convert" : "", options.progress ? total_elements * 4 : 0);
    RowConverter rows(options.threads);
    for (size_t i = 0; i < mapped.size(); ++i) {
        if (options.progress) progress.set_item(mapped[i].gguf_name);
        rows.convert_tensor(
            mapped[i], cfg, plan[i].type, nullptr,
            [&](std::span<const std::byte> bytes) { writer.write_tensor_data(bytes); },
            [&](uint64_t elements) {
                if (options.progress) progress.advance(elements * 4);
            });
    }
    writer.finish();
    out.commit();
    progress.finish();

    ConvertResult result;
    result.output = out_path;
    result.file_bytes = out.bytes_written();
    result.n_tensors = mapped.size();
    result.n_params = n_params;
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
}

TemporaryF32Gguf::TemporaryF32Gguf(const std::string& hf_dir, int threads, std::string_view purpose)
    : file_((std::filesystem::temp_directory_path() / fmt::format("qforge-{}-{}-f32.gguf", purpose, ::getpid())).string()) {
    ConvertOptions o;
    o.input_dir = hf_dir;
    o.output = file_.path();
    o.outtype = GgmlType::F32;
    o.overwrite = true;
    o.threads = threads;
    o.progress = false;
    convert_hf_to_gguf(o);
}

}  // namespace qf
