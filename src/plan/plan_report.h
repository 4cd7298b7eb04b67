// `qforge plan`: everything the command computes, and its text and JSON renderings.
#pragma once
#include "plan/fit.h"

#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qf {

struct PlanArgs {
    std::string model;                     // model folder, config.json, GGUF file or catalogue id (resolve_plan_model)
    bool model_from_catalogue = false;     // `model` is a catalogue id, never a path (qforge serve)
    std::shared_ptr<const nlohmann::json> config;  // instead of `model`: a config.json's content (qforge serve)
    std::string config_name = "model";     // its name (general.name), as a folder name would give it
    std::string types;                     // "Q4_K_M,Q8_0"; empty: default_plan_types()
    ContextOptions context;                // n_ctx default 4096
    bool context_given = false;
    std::string gpus;                      // "4090", "2x3090", "4090,3090"; empty: none
    std::optional<uint64_t> vram_bytes;    // overrides each GPU's memory (or a GPU of unknown speed)
    std::optional<uint64_t> ram_bytes;     // host memory; default 32 GiB (unified: the CPU share)
    std::optional<double> ram_bandwidth_gbs;  // default 89.6 GB/s (DDR5-5600 dual channel)
    int n_gpu_layers = -1;
    std::string hardware_path;             // extends the built-in catalogue (load_default_hardware_catalogue)
};

// The options `qforge plan` and `qforge serve` take as text, before they become PlanArgs.
struct PlanOptions {
    uint32_t n_ctx = 0;                    // 0: 4096, noted as a default
    std::string type_k = "f16", type_v = "f16";
    bool no_flash_attn = false, kv_unified = false;
    std::string vram, ram;                 // "24GiB"; empty: catalogue / 32 GiB default
    double ram_bandwidth_gbs = 0;          // 0: default
};
// Checks the options (errors name the option: "--ctk: ...") and sets them on `args`.
PlanArgs apply_plan_options(PlanArgs args, const PlanOptions& options);
// The KV cache types --ctk/--ctv accept ("f16", "q8_0", ...).
std::vector<std::string> cache_type_names();

struct PlanReport {
    PlanModel model;
    PlanMetadata metadata;
    FitRequest request;
    std::vector<SizePlan> sizes;           // a GGUF model: the file as it is first (SizePlan::as_is)
    std::vector<FitResult> fits;
    int recommended = -1;
    std::vector<std::string> assumptions;  // printed under the table
};

PlanReport build_plan_report(const PlanArgs& args);
std::string render_plan_text(const PlanReport& report, bool verbose);
nlohmann::json render_plan_json(const PlanReport& report, bool verbose);

}  // namespace qf
