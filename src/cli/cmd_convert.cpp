#include "cli/commands.h"
#include "common/error.h"
#include "pipeline/convert.h"

#include <fmt/format.h>

namespace qf::cli {

void register_convert(CLI::App& app) {
    auto* cmd = app.add_subcommand("convert", "Convert a Hugging Face checkpoint folder to a GGUF file (f32/f16/bf16)");
    auto opts = std::make_shared<ConvertOptions>();
    auto outtype = std::make_shared<std::string>("f16");
    cmd->add_option("HF_DIR", opts->input_dir,
                    "Folder with config.json, *.safetensors (single or sharded) and tokenizer.model/tokenizer.json")
        ->required();
    cmd->add_option("-o,--output", opts->output, "Output GGUF path (default: ./<folder>-<outtype>.gguf)");
    cmd->add_option("--outtype", *outtype,
                    "f32: exact copy of F32/F16/BF16 weights; f16: half the size, rounds BF16 values that f16 cannot "
                    "hold; bf16: exact for BF16 checkpoints")
        ->check(CLI::IsMember({"f32", "f16", "bf16"}, CLI::ignore_case))
        ->capture_default_str();
    cmd->add_flag("-f,--force", opts->overwrite, "Overwrite the output file if it exists");
    cmd->add_option("-t,--threads", opts->threads, "Worker threads (default: all cores)");
    cmd->footer(
        "Norms and biases stay F32 as llama.cpp's converter writes them. The output is written to OUT.tmp and\n"
        "renamed when complete; Ctrl-C or an error leaves nothing behind.\n"
        "Example: qforge convert ./models/prose-tiny -o prose-tiny-f16.gguf");
    cmd->callback([opts, outtype] {
        const TypeTraits* t = find_type_by_name(*outtype);
        if (!t) fail("convert: unknown --outtype '{}'", *outtype);
        opts->outtype = t->id;
        ConvertResult r = convert_hf_to_gguf(*opts);
        fmt::print("wrote {}: {} tensors, {:.2f} M parameters, {} bytes in {:.2f} s\n", r.output, r.n_tensors,
                   r.n_params / 1e6, r.file_bytes, r.seconds);
    });
}

}  // namespace qf::cli
