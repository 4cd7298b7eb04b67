#include "cli/commands.h"
#include "report/inspect.h"

#include <fmt/format.h>

namespace qf::cli {

void register_inspect(CLI::App& app) {
    auto* cmd = app.add_subcommand("inspect", "Show a GGUF file's or HF folder's metadata, tensors and bits per weight");
    auto path = std::make_shared<std::string>();
    auto json = std::make_shared<bool>(false);
    cmd->add_option("FILE", *path, "A .gguf file or a Hugging Face model folder")->required();
    cmd->add_flag("--json", *json, "Machine-readable output");
    cmd->footer("Bits per weight = tensor data bytes * 8 / parameters (as llama.cpp's loader prints it).\n"
                "Example: qforge inspect prose-tiny-f16.gguf --json | jq '.tensors[0]'");
    cmd->callback([path, json] {
        InspectReport r = inspect_path(*path);
        if (*json)
            fmt::print("{}\n", render_inspect_json(r).dump(2));
        else
            fmt::print("{}", render_inspect_text(r));
    });
}

}  // namespace qf::cli
