#include "serve/api.h"

#include "common/embedded.h"
#include "common/error.h"
#include "plan/hardware.h"
#include "plan/model_catalogue.h"
#include "plan/plan_report.h"
#include "recipe/recipe.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>

namespace qf::serve {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A 4xx answer: thrown inside a route, turned into {"error": ...} by handle_http.
struct HttpError {
    int status;
    std::string message;
};

[[noreturn]] void reject(int status, std::string message) { throw HttpError{status, std::move(message)}; }

int64_t integer(const json& v, const char* key, int64_t lo, int64_t hi) {
    if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi)
        reject(400, fmt::format("{}: must be an integer from {} to {}", key, lo, hi));
    return v.get<int64_t>();
}

std::string text(const json& v, const char* key) {
    if (!v.is_string()) reject(400, fmt::format("{}: must be a string", key));
    return v.get<std::string>();
}

// A "path" must resolve (symlinks followed) inside one of the --models-dir folders.
std::string allowed_path(const ServeConfig& cfg, const std::string& path) {
    if (cfg.model_roots.empty()) reject(403, "path: this server reads no local models (start it with --models-dir DIR)");
    for (const std::string& root_text : cfg.model_roots) {
        const fs::path root(root_text);
        std::error_code ec;
        const fs::path p = fs::weakly_canonical(root / path, ec);
        if (ec) continue;
        if (std::mismatch(root.begin(), root.end(), p.begin(), p.end()).first == root.end()) {
            if (!fs::exists(p, ec)) reject(404, fmt::format("path: {} does not exist", path));
            return p.string();
        }
    }
    reject(403, fmt::format("path: {} is outside the folders this server may read (--models-dir)", path));
}

PlanArgs plan_request(const ServeConfig& cfg, const json& req) {
    if (!req.is_object()) reject(400, "request: expected a JSON object");
    PlanArgs a;
    PlanOptions o;
    int models = 0;
    for (const auto& [key, v] : req.items()) {
        if (key == "model") {
            const std::string id = text(v, "model");
            const CatalogueModel* row = find_catalogue_model(id);
            if (!row) reject(404, fmt::format("model: '{}' is not in the catalogue (GET /api/models)", id));
            a.model = row->id;
            a.model_from_catalogue = true;
            ++models;
        } else if (key == "config") {
            if (!v.is_object()) reject(400, "config: must be the JSON object of a config.json");
            a.config = std::make_shared<const json>(v);
            ++models;
        } else if (key == "name") {
            a.config_name = text(v, "name");
            if (a.config_name.empty() || a.config_name.find('/') != std::string::npos) reject(400, "name: must be a non-empty name without '/'");
        } else if (key == "path") {
            a.model = allowed_path(cfg, text(v, "path"));
            ++models;
        } else if (key == "ctx") {
            o.n_ctx = static_cast<uint32_t>(integer(v, "ctx", 1, 1 << 24));
        } else if (key == "ctk") {
            o.type_k = text(v, "ctk");
        } else if (key == "ctv") {
            o.type_v = text(v, "ctv");
        } else if (key == "np") {
            a.context.n_seq = static_cast<uint32_t>(integer(v, "np", 1, 256));
        } else if (key == "gpu") {
            a.gpus = text(v, "gpu");
        } else if (key == "vram") {
            o.vram = text(v, "vram");
        } else if (key == "ram") {
            o.ram = text(v, "ram");
        } else if (key == "ram_bw") {
            if (!v.is_number() || !(v.get<double>() > 0)) reject(400, "ram_bw: must be a positive number (GB/s)");
            o.ram_bandwidth_gbs = v.get<double>();
        } else if (key == "type") {
            a.types = text(v, "type");
        } else if (key == "ngl") {
            a.n_gpu_layers = static_cast<int>(integer(v, "ngl", -1, 100000));
        } else {
            reject(400, fmt::format("request: unknown field '{}'", key));
        }
    }
    if (models != 1) reject(400, "request: give exactly one of 'model' (catalogue id), 'config' or 'path'");
    return apply_plan_options(a, o);
}

json models_json() {
    json rows = json::array();
    for (const CatalogueModel& m : model_catalogue())
        rows.push_back({{"id", m.id},
                        {"params_b", m.params_b},
                        {"source", m.source},
                        {"model_type", m.config.value("model_type", "")},
                        {"context_length", m.config.value("max_position_embeddings", 0)}});
    return {{"models", rows}};
}

json options_json() {
    json file_types = json::array();
    for (const FileTypeInfo& t : all_file_types()) file_types.push_back(t.name);
    json defaults = json::array();
    for (const FileTypeInfo* t : default_plan_types()) defaults.push_back(t->name);
    return {{"cache_types", cache_type_names()}, {"file_types", file_types}, {"default_types", defaults}};
}

// Every catalogue device for one model and type: the same plan as /api/plan with "gpu" set to it.
json rank_json(const ServeConfig& cfg, const json& req) {
    PlanArgs base = plan_request(cfg, req);
    if (base.types.empty() || base.types.find(',') != std::string::npos) reject(400, "type: /api/rank needs exactly one file type");
    if (!base.gpus.empty()) reject(400, "gpu: /api/rank plans every device itself");
    const HardwareCatalogue cat = load_default_hardware_catalogue();
    json rows = json::array();
    for (const Device& d : cat.devices) {
        PlanArgs a = base;
        a.gpus = device_short_name(cat, d);
        const PlanReport r = build_plan_report(a);
        if (r.fits.empty()) reject(400, fmt::format("type {}: cannot be planned for this model", base.types));
        const FitResult& f = r.fits.front();
        rows.push_back({{"name", d.name},
                        {"kind", d.kind},
                        {"memory_bytes", d.memory_bytes},
                        {"bandwidth_gbs", d.bandwidth_gbs},
                        {"verdict", verdict_name(f.verdict)},
                        {"n_gpu_layers", f.n_gpu_layers},
                        {"n_offloadable", f.n_offloadable},
                        {"gpu_total", f.gpu_bytes()},
                        {"gpu_capacity", f.gpu_capacity},
                        {"max_context", f.max_context},
                        {"tokens_per_second_upper_bound", f.tokens_per_second},
                        {"file_bytes", r.sizes.front().file_bytes}});
    }
    auto rank = [](const json& row) {
        const std::string v = row["verdict"];
        return v == "fits" ? 0 : v == "partial" ? 1 : 2;
    };
    std::stable_sort(rows.begin(), rows.end(), [&](const json& x, const json& y) {
        if (rank(x) != rank(y)) return rank(x) < rank(y);
        return x["tokens_per_second_upper_bound"].get<double>() > y["tokens_per_second_upper_bound"].get<double>();
    });
    return {{"type", base.types}, {"devices", rows}};
}

HttpReply asset(const char* name, const char* type) {
    const auto data = embedded_file(name);
    if (!data) return error_reply(500, fmt::format("{}: not compiled into this build", name));
    return {200, type, std::string(*data)};
}

}  // namespace

HttpReply error_reply(int status, const std::string& message) { return {status, "application/json", json{{"error", message}}.dump()}; }

HttpReply handle_http(const ServeConfig& cfg, const std::string& method, const std::string& path, const std::string& body) {
    try {
        if (body.size() > kMaxBodyBytes) reject(413, fmt::format("request body: {} bytes, more than the {} allowed", body.size(), kMaxBodyBytes));
        if (method == "GET") {
            if (path == "/" || path == "/index.html") return asset("web/index.html", "text/html; charset=utf-8");
            if (path == "/app.js") return asset("web/app.js", "text/javascript; charset=utf-8");
            if (path == "/style.css") return asset("web/style.css", "text/css; charset=utf-8");
            if (path == "/api/models") return {200, "application/json", models_json().dump()};
            if (path == "/api/devices") return {200, "application/json", render_catalogue_json(load_default_hardware_catalogue()).dump()};
            if (path == "/api/options") return {200, "application/json", options_json().dump()};
        } else if (method == "POST" && (path == "/api/plan" || path == "/api/rank")) {
            const json req = json::parse(body, nullptr, /*allow_exceptions=*/false);
            if (req.is_discarded()) reject(400, "request body: not valid JSON");
            if (path == "/api/rank") return {200, "application/json", rank_json(cfg, req).dump()};
            return {200, "application/json", render_plan_json(build_plan_report(plan_request(cfg, req)), false).dump()};
        } else {
            return error_reply(405, fmt::format("{} {}: method not allowed", method, path));
        }
        return error_reply(404, fmt::format("{}: not found", path));
    } catch (const HttpError& e) {
        return error_reply(e.status, e.message);
    } catch (const Error& e) {
        return error_reply(400, e.what());  // the planner's own one-line message (file, option, model type)
    }
}

}  // namespace qf::serve
