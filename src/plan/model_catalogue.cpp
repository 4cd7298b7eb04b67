#include "plan/model_catalogue.h"

#include "common/embedded.h"
#include "common/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <filesystem>

namespace qf {

namespace {

using json = nlohmann::json;
constexpr const char* kLabel = "models.json (built-in)";

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
}

std::vector<CatalogueModel> parse_catalogue() {
    const auto text = embedded_file("models.json");
    if (!text) fail("models.json: not compiled into this build (QFORGE_EMBEDDED_FILES)");
    const json j = json::parse(text->begin(), text->end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.contains("models") || !j["models"].is_array()) fail("{}: expected a 'models' array", kLabel);
    std::vector<CatalogueModel> out;
    for (const json& row : j["models"]) {
        CatalogueModel m;
        if (!row.is_object() || !row.value("id", json()).is_string() || !row.value("source", json()).is_string() ||
            !row.value("params_b", json()).is_number() || !row.value("config", json()).is_object())
            fail("{}: row {} needs id, source, params_b and config", kLabel, out.size());
        m.id = row["id"].get<std::string>();
        m.source = row["source"].get<std::string>();
        m.params_b = row["params_b"].get<double>();
        m.config = row["config"];
        out.push_back(std::move(m));
    }
    return out;
}

}  // namespace

const std::vector<CatalogueModel>& model_catalogue() {
    static const std::vector<CatalogueModel> rows = parse_catalogue();
    return rows;
}

const CatalogueModel* find_catalogue_model(const std::string& name) {
    const std::string q = lower(name);
    for (const CatalogueModel& m : model_catalogue()) {
        const std::string id = lower(m.id);
        if (q == id || q == id.substr(id.find('/') + 1)) return &m;
    }
    return nullptr;
}

PlanModel catalogue_plan_model(const CatalogueModel& row) {
    // dir = the id: general.name is its last part, as a folder of that name would give.
    PlanModel m = parse_plan_model(row.config, fmt::format("{} ({})", row.id, kLabel), row.id);
    m.config_only = true;
    return m;
}

PlanModel resolve_plan_model(const std::string& model) {
    std::error_code ec;
    if (std::filesystem::exists(model, ec)) return load_plan_model(model);
    if (const CatalogueModel* row = find_catalogue_model(model)) return catalogue_plan_model(*row);
    fail("{}: no such file or folder, and not a model of the catalogue (qforge plan --list-models)", model);
}

}  // namespace qf
