// The model catalogue (data/models.json): every row plans, with the parameter count its model
// card states, and `qforge plan MODEL-ID` finds it.
#include "plan/model_catalogue.h"
#include "plan/plan_report.h"
#include "support/test_paths.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace qf {
namespace {

// Every catalogue row plans, and the planner's parameter count is within 2% of the model card's.
TEST(ModelCatalogue, EveryRowPlansWithItsPublishedParameterCount) {
    ASSERT_GE(model_catalogue().size(), 25u);
    for (const CatalogueModel& m : model_catalogue()) {
        EXPECT_NE(m.source.find("https://huggingface.co/" + m.id + "/"), std::string::npos) << m.id;
        PlanArgs a;
        a.model = m.id;
        a.model_from_catalogue = true;
        a.types = "F16";
        const PlanReport r = build_plan_report(apply_plan_options(a, {}));
        ASSERT_EQ(r.sizes.size(), 1u) << m.id;
        const double params_b = static_cast<double>(r.sizes[0].n_params) / 1e9;
        EXPECT_NEAR(params_b, m.params_b, m.params_b * 0.02) << m.id;
    }
    EXPECT_EQ(find_catalogue_model("llama-3.1-8b-instruct"), find_catalogue_model("meta-llama/Llama-3.1-8B-Instruct"));
    EXPECT_EQ(find_catalogue_model("Llama-3.1-8B"), nullptr);
}

// The CLI takes a catalogue id where no such path exists; the plan is the catalogue row's.
TEST(ModelCatalogue, PlanTakesAnId) {
    std::string out;
    ASSERT_EQ(test::run_command(fmt::format("cd '{}' && '{}' plan Qwen3-8B --type Q4_K_M --json", test::scratch_dir(),
                                            test::qforge_binary()),
                                &out),
              0)
        << out;
    const nlohmann::json j = nlohmann::json::parse(out);
    EXPECT_EQ(j["model"]["path"], "Qwen/Qwen3-8B");
    EXPECT_EQ(j["model"]["n_layer"], 36);
    EXPECT_NE(test::run_command(fmt::format("cd '{}' && '{}' plan No-Such-Model 2>&1", test::scratch_dir(), test::qforge_binary()), &out), 0);
    EXPECT_NE(out.find("No-Such-Model: no such file or folder, and not a model of the catalogue"), std::string::npos) << out;
    EXPECT_EQ(test::run_command(fmt::format("'{}' plan --list-models", test::qforge_binary()), &out), 0);
    EXPECT_NE(out.find("meta-llama/Llama-3.1-8B-Instruct"), std::string::npos) << out;
}

}  // namespace
}  // namespace qf
