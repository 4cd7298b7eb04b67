#include "cli/commands.h"
#include "plan/hardware.h"
#include "plan/model_catalogue.h"
#include "plan/plan_report.h"
#include "common/error.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <iterator>

namespace qf::cli {

void register_plan(CLI::App& app) {
    auto* cmd = app.add_subcommand("plan", "Will it run? File sizes, memory, context and speed from config.json alone, or of a GGUF file");
    auto a = std::make_shared<PlanArgs>();
    auto o = std::make_shared<PlanOptions>();
    auto json_out = std::make_shared<bool>(false);
    auto verbose = std::make_shared<bool>(false);
    auto list_gpus = std::make_shared<bool>(false);
    auto list_models = std::make_shared<bool>(false);
    cmd->add_option("MODEL", a->model,
                    "Hugging Face model folder or its config.json (no weights needed), a GGUF file (its own tensor "
                    "types: an 'as-is' row, then the size of requantizing it to each type), or a model id of the "
                    "built-in catalogue (--list-models), e.g. Llama-3.1-8B-Instruct");
    cmd->add_option("--type", a->types, "File types to plan, comma-separated (default F16,Q8_0,Q6_K,Q5_K_M,Q4_K_M,IQ4_XS,Q3_K_M,Q2_K)");
    cmd->add_option("-c,--ctx-size", o->n_ctx, "Context size in tokens (default 4096)");
    cmd->add_option("--ctk,--cache-type-k", o->type_k, "KV cache type for K: f16, q8_0, q4_0, ... (llama.cpp -ctk)");
    cmd->add_option("--ctv,--cache-type-v", o->type_v, "KV cache type for V (a quantized V needs flash attention)");
    cmd->add_option("--np,--parallel", a->context.n_seq, "Parallel sequences (llama.cpp -np; default 1)");
    cmd->add_option("-b,--batch-size", a->context.n_batch, "Logical batch size (default 2048)");
    cmd->add_option("--ub,--ubatch-size", a->context.n_ubatch, "Physical batch size (default 512)");
    cmd->add_flag("--kv-unified", o->kv_unified, "One KV stream shared by all sequences");
    cmd->add_flag("--no-flash-attn", o->no_flash_attn, "Plan without flash attention (bigger compute buffer)");
    cmd->add_option("--gpu", a->gpus, "GPU(s) from the hardware catalogue (--list-gpus): '4090', 'M3 Max 64', '4090,3090', '2x3090'");
    cmd->add_option("--vram", o->vram, "Memory per GPU, e.g. 24GiB (overrides the catalogue)");
    cmd->add_option("--ram", o->ram, "Host memory available, e.g. 64GiB (default 32GiB)");
    cmd->add_option("--ram-bw", o->ram_bandwidth_gbs, "Host memory bandwidth in GB/s (default 89.6, DDR5-5600 dual channel)");
    cmd->add_option("--ngl,--n-gpu-layers", a->n_gpu_layers, "Layers to offload (llama.cpp -ngl; default: as many as fit)");
    cmd->add_option("--hardware", a->hardware_path,
                    "A hardware.json that extends the built-in catalogue (same names replace rows; "
                    "$XDG_CONFIG_HOME/qforge/hardware.json is read first if it exists)");
    cmd->add_flag("--list-models", *list_models, "List the built-in model catalogue (ids, parameters, sources), then exit");
    cmd->add_flag("--list-gpus", *list_gpus, "List the known devices and where each comes from (built-in or a file), then exit");
    cmd->add_flag("--json", *json_out, "Machine-readable output");
    cmd->add_flag("--verbose", *verbose, "Tensor types and memory breakdown per file type");
    cmd->footer("Sizes are exact for llama/mistral/qwen2/qwen3 folders with tokenizer files (same bytes as\n"
                "'qforge convert' / llama-quantize); the context defaults to 4096 tokens. For a GGUF file the\n"
                "first row is the file itself; the others are what llama-quantize --allow-requantize would write.\n"
                "Examples:\n"
                "  qforge plan examples/llama-3.1-8b --gpu 4090\n"
                "  qforge plan ./Qwen3-8B --type Q4_K_M,Q8_0 -c 32768 --ctk q8_0 --ctv q8_0 --gpu 'M3 Max 64'\n"
                "  qforge plan ./Mixtral-8x7B --gpu 2x3090 --ram 64GiB --json\n"
                "  qforge plan model-Q4_K_M.gguf --type Q8_0 --gpu 4090\n"
                "  qforge plan --list-gpus --hardware my-gpus.json");
    cmd->callback([=] {
        if (*list_gpus) {
            const HardwareCatalogue cat = load_default_hardware_catalogue(a->hardware_path);
            if (*json_out)
                fmt::print("{}\n", render_catalogue_json(cat).dump(2));
            else
                fmt::print("{}", render_catalogue_text(cat));
            return;
        }
        if (*list_models) {
            for (const CatalogueModel& m : model_catalogue())
                fmt::print("{:<40} {:>7.2f} B  {:<10} {}\n", m.id, m.params_b, m.config.value("model_type", ""), m.source);
            return;
        }
        if (a->model.empty()) fail("plan: MODEL is required (a model folder, config.json or GGUF file), or --list-gpus");
        const PlanArgs args = apply_plan_options(*a, *o);
        PlanReport report = build_plan_report(args);
        if (*json_out)
            fmt::print("{}\n", render_plan_json(report, *verbose).dump(2));
        else
            fmt::print("{}", render_plan_text(report, *verbose));
    });
}

}  // namespace qf::cli
