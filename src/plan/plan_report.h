// `qforge plan`: everything the command computes, and its text and JSON renderings.
#pragma once
#include "plan/fit.h"

#include <nlohmann/json_fwd.hpp>

#include <optional>
#include <string>
#include <vector>

namespace qf {

struct PlanArgs {
    std::string model;                     // model folder, config.json or GGUF file
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
