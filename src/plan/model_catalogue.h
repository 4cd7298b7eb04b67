// The model catalogue (data/models.json, compiled in): popular open models as the config.json
// values they publish, with the address of that file and the parameter count of the model
// card. `qforge plan MODEL` and `qforge serve` take a catalogue id where no file or folder of
// that name exists: "meta-llama/Llama-3.1-8B-Instruct", or just "Llama-3.1-8B-Instruct"
// (case ignored).
#pragma once
#include "plan/plan_model.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace qf {

struct CatalogueModel {
    std::string id;      // "meta-llama/Llama-3.1-8B-Instruct"
    double params_b = 0; // the model card's parameter count, billions
    std::string source;  // where the config values come from
    nlohmann::json config;
};

const std::vector<CatalogueModel>& model_catalogue();
// nullptr when no id matches (with or without the "org/" part, case ignored).
const CatalogueModel* find_catalogue_model(const std::string& name);
// The planner's model for a catalogue row: its config.json, named after the id's last part
// (general.name, as a folder of that name would give), no tokenizer files.
PlanModel catalogue_plan_model(const CatalogueModel& row);
// MODEL as `qforge plan` takes it: an existing file or folder, else a catalogue id; an error
// names MODEL and says both were tried.
PlanModel resolve_plan_model(const std::string& model);

}  // namespace qf
