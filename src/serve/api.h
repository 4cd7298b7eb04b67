// `qforge serve`: the page and the JSON API, independent of the HTTP library (src/cli/cmd_serve.cpp
// hands every request to handle_http), so the routes are tested without a socket.
//
//   GET  /, /app.js, /style.css   the page (web/, compiled in)
//   GET  /api/models              the model catalogue (data/models.json)
//   GET  /api/devices             the hardware catalogue as `qforge plan --list-gpus --json` gives it
//   GET  /api/options             KV cache types, file types, the default plan types
//   POST /api/plan                a plan request (below) -> exactly `qforge plan --json` for the same inputs
//   POST /api/rank                a plan request with one "type" -> every catalogue device, best first
//
// A plan request is a JSON object with one model: "model" (a catalogue id), "config" (the content
// of a config.json) or "path" (a model folder, config.json or GGUF file on this machine, inside a
// --models-dir; "name" names a pasted config, default "model"); and the options of `qforge plan`: ctx, ctk, ctv, np, gpu, vram, ram, ram_bw,
// type, ngl. Any other field, a bad value or a model that cannot be planned is a 4xx answer
// {"error": "one line"}.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace qf::serve {

inline constexpr size_t kMaxBodyBytes = 1 << 20;

struct ServeConfig {
    std::vector<std::string> model_roots;  // canonical folders a "path" may lie in; none: paths refused
};

struct HttpReply {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
};

HttpReply handle_http(const ServeConfig& config, const std::string& method, const std::string& path, const std::string& body);
// {"error": message} with the status, for answers made outside handle_http (e.g. body too large).
HttpReply error_reply(int status, const std::string& message);

}  // namespace qf::serve
