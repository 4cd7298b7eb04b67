// qforge serve's routes (src/serve/api.h) without a socket: the plan answer equals
// `qforge plan --json` for the same inputs; bad input is a 4xx with a one-line reason.
#include "plan/model_catalogue.h"
#include "plan/plan_report.h"
#include "serve/api.h"
#include "support/test_paths.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace qf {
namespace {

using json = nlohmann::json;
using serve::handle_http;
using serve::ServeConfig;

json body(const serve::HttpReply& r) { return json::parse(r.body); }

// A 4xx answer whose error is one line mentioning `what`.
void expect_error(const serve::HttpReply& r, int status, const std::string& what) {
    EXPECT_EQ(r.status, status) << r.body;
    const json j = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r.body;
    const std::string e = j["error"];
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
    EXPECT_NE(e.find(what), std::string::npos) << e;
}

TEST(ServeApi, PlanEqualsTheCliJson) {
    const ServeConfig cfg;
    const serve::HttpReply r = handle_http(cfg, "POST", "/api/plan",
                                           R"({"model": "Llama-3.1-8B-Instruct", "ctx": 8192, "gpu": "4090", "ctk": "q8_0", "ctv": "q8_0", "np": 2})");
    ASSERT_EQ(r.status, 200) << r.body;
    std::string out;
    ASSERT_EQ(test::run_command(fmt::format("cd '{}' && '{}' plan meta-llama/Llama-3.1-8B-Instruct --gpu 4090 -c 8192 -ctk q8_0 "
                                            "-ctv q8_0 -np 2 --json",
                                            test::scratch_dir(), test::qforge_binary()),
                                &out),
              0)
        << out;
    const json cli = json::parse(out);
    const json api = body(r);
    EXPECT_EQ(api, cli);
    EXPECT_EQ(api["plans"].size(), 8u);
    EXPECT_EQ(api["gpus"][0]["name"], "NVIDIA GeForce RTX 4090");
    EXPECT_EQ(api["context"]["n_ctx"], 8192);
}

// A pasted config.json, named as its folder, plans exactly like that folder.
TEST(ServeApi, PastedConfigPlansLikeTheFile) {
    const std::string dir = test::source_dir() + "/examples/llama-3.1-8b";
    std::ifstream in(dir + "/config.json");
    const json config = json::parse(in);
    const serve::HttpReply r =
        handle_http({}, "POST", "/api/plan", json{{"config", config}, {"name", "llama-3.1-8b"}, {"ctx", 4096}, {"gpu", "3090"}}.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    PlanArgs a;
    a.model = dir;
    a.gpus = "3090";
    PlanOptions o;
    o.n_ctx = 4096;
    json file = render_plan_json(build_plan_report(apply_plan_options(a, o)), false);
    json pasted = body(r);
    EXPECT_EQ(pasted["model"]["path"], "llama-3.1-8b");
    file["model"]["path"] = pasted["model"]["path"];
    EXPECT_EQ(pasted, file);
    // without a name it is called "model" (general.name and the keys derived from it change)
    const json unnamed = body(handle_http({}, "POST", "/api/plan", json{{"config", config}, {"ctx", 4096}, {"gpu", "3090"}}.dump()));
    EXPECT_EQ(unnamed["model"]["path"], "model");
    EXPECT_EQ(unnamed["plans"][0]["tensor_bytes"], file["plans"][0]["tensor_bytes"]);
    EXPECT_NE(unnamed["plans"][0]["metadata_bytes"], file["plans"][0]["metadata_bytes"]);
}

TEST(ServeApi, LocalPathsOnlyInsideModelsDir) {
    ServeConfig cfg;
    cfg.model_roots.push_back(std::filesystem::canonical(test::source_dir() + "/models").string());
    serve::HttpReply ok = handle_http(cfg, "POST", "/api/plan", R"({"path": "prose-tiny", "ctx": 512})");
    ASSERT_EQ(ok.status, 200) << ok.body;
    EXPECT_EQ(body(ok)["model"]["n_layer"], 6);
    expect_error(handle_http(cfg, "POST", "/api/plan", R"({"path": "../examples/llama-3.1-8b"})"), 403, "outside");
    expect_error(handle_http(cfg, "POST", "/api/plan", R"({"path": "/etc"})"), 403, "outside");
    expect_error(handle_http(cfg, "POST", "/api/plan", R"({"path": "no-such-model"})"), 404, "does not exist");
    expect_error(handle_http({}, "POST", "/api/plan", R"({"path": "prose-tiny"})"), 403, "--models-dir");
}

TEST(ServeApi, BadInputIsOneLine4xx) {
    const ServeConfig cfg;
    expect_error(handle_http(cfg, "POST", "/api/plan", "{\"model\": "), 400, "not valid JSON");
    expect_error(handle_http(cfg, "POST", "/api/plan", std::string(10 << 20, ' ')), 413, "more than");
    expect_error(handle_http(cfg, "POST", "/api/plan", R"({"model": "GPT-5"})"), 404, "not in the catalogue");
    expect_error(handle_http(cfg, "POST", "/api/plan", R"({"model": "Qwen3-8B", "ctx": -5})"), 400, "ctx");
    expect_error(handle_http(cfg, "POST", "/api/plan", R"({"model": "Qwen3-8B", "ctk": "q2_k"})"), 400, "--ctk");
    expect_error(handle_http(cfg, "POST", "/api/plan", R"({"model": "Qwen3-8B", "gpu": "voodoo5"})"), 400, "no device matches");
    expect_error(handle_http(cfg, "POST", "/api/plan", R"({"model": "Qwen3-8B", "colour": 1})"), 400, "unknown field 'colour'");
    expect_error(handle_http(cfg, "POST", "/api/plan", R"({"ctx": 100})"), 400, "exactly one of");
    std::ifstream in(test::source_dir() + "/examples/llama-3.1-8b/config.json");
    json bert = json::parse(in);
    bert["model_type"] = "bert";
    expect_error(handle_http(cfg, "POST", "/api/plan", json{{"config", bert}}.dump()), 400, "model_type 'bert' is not supported");
    expect_error(handle_http(cfg, "POST", "/api/rank", R"({"model": "Qwen3-8B"})"), 400, "exactly one file type");
    expect_error(handle_http(cfg, "GET", "/etc/passwd", ""), 404, "not found");
    expect_error(handle_http(cfg, "DELETE", "/api/plan", ""), 405, "not allowed");
    // and the next request is served as usual
    EXPECT_EQ(handle_http(cfg, "GET", "/api/models", "").status, 200);
}

TEST(ServeApi, RankListsEveryDeviceBestFirst) {
    const serve::HttpReply r = handle_http({}, "POST", "/api/rank", R"({"model": "Qwen3-8B", "type": "Q4_K_M", "ctx": 8192})");
    ASSERT_EQ(r.status, 200) << r.body;
    const json rows = body(r)["devices"];
    EXPECT_EQ(rows.size(), load_default_hardware_catalogue().devices.size());
    bool seen_other = false;
    for (const json& row : rows) {
        if (row["verdict"] != "fits") seen_other = true;
        else EXPECT_FALSE(seen_other) << "a fitting device after a non-fitting one: " << row["name"];
    }
    // one row checked against /api/plan for that device
    for (const json& row : rows)
        if (row["name"] == "NVIDIA GeForce RTX 4060") {
            const json p = body(handle_http({}, "POST", "/api/plan", R"({"model": "Qwen3-8B", "type": "Q4_K_M", "ctx": 8192, "gpu": "RTX 4060"})"));
            EXPECT_EQ(row["verdict"], p["plans"][0]["verdict"]);
            EXPECT_EQ(row["gpu_total"], p["plans"][0]["gpu"]["total"]);
            EXPECT_EQ(row["max_context"], p["plans"][0]["max_context"]);
        }
}

TEST(ServeApi, PageAndCatalogues) {
    const serve::HttpReply page = handle_http({}, "GET", "/", "");
    EXPECT_EQ(page.status, 200);
    EXPECT_NE(page.body.find("<script src=\"/app.js\">"), std::string::npos);
    EXPECT_EQ(handle_http({}, "GET", "/app.js", "").status, 200);
    EXPECT_EQ(handle_http({}, "GET", "/style.css", "").status, 200);
    const json models = body(handle_http({}, "GET", "/api/models", ""));
    EXPECT_EQ(models["models"].size(), model_catalogue().size());
    const json devices = body(handle_http({}, "GET", "/api/devices", ""));
    EXPECT_EQ(devices["devices"][0]["origin"], "built-in");
}

}  // namespace
}  // namespace qf
