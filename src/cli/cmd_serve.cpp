// `qforge serve`: the "Will it run?" page and its JSON API (src/serve/api.h) over HTTP with
// cpp-httplib (Debian libcpp-httplib-dev). Binds 127.0.0.1 unless --host says otherwise.
#include "cli/commands.h"
#include "common/error.h"
#include "serve/api.h"

#include <fmt/format.h>
#include <httplib.h>

#include <filesystem>

namespace qf::cli {

void register_serve(CLI::App& app) {
    auto* cmd = app.add_subcommand("serve", "A local \"Will it run?\" web page and JSON API over the plan of any model and device");
    auto host = std::make_shared<std::string>("127.0.0.1");
    auto port = std::make_shared<int>(8080);
    auto roots = std::make_shared<std::vector<std::string>>();
    cmd->add_option("--host", *host, "Address to listen on (default 127.0.0.1: only this machine can connect)");
    cmd->add_option("--port", *port, "TCP port (default 8080; 0 picks a free one and prints it)")->check(CLI::Range(0, 65535));
    cmd->add_option("--models-dir", *roots,
                    "A folder whose model folders and GGUF files the page may plan by path (repeatable; default: none)");
    cmd->footer("The page offers the built-in model catalogue (qforge plan --list-models), a pasted config.json, or\n"
                "a path under --models-dir (only config.json, tokenizer files and GGUF headers are read).\n"
                "POST /api/plan returns what 'qforge plan --json' prints for the same inputs.\n"
                "Examples:\n"
                "  qforge serve                      # http://127.0.0.1:8080/\n"
                "  qforge serve --port 9000 --models-dir ~/models");
    cmd->callback([=] {
        serve::ServeConfig cfg;
        for (const std::string& r : *roots) {
            std::error_code ec;
            const auto canon = std::filesystem::canonical(r, ec);
            if (ec || !std::filesystem::is_directory(canon)) fail("--models-dir {}: not a folder", r);
            cfg.model_roots.push_back(canon.string());
        }
        httplib::Server server;
        server.set_payload_max_length(serve::kMaxBodyBytes);
        auto handler = [cfg](const httplib::Request& req, httplib::Response& res) {
            const serve::HttpReply r = serve::handle_http(cfg, req.method, req.path, req.body);
            res.status = r.status;
            res.set_content(r.body, r.content_type.c_str());
        };
        server.Get(".*", handler);
        server.Post(".*", handler);
        // Answers httplib makes itself (413 for a body over the limit, 400 for a broken request)
        // get the same one-line JSON error as ours.
        server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
            if (!res.body.empty()) return;
            const std::string why = res.status == 413 ? fmt::format("request body: more than {} bytes", serve::kMaxBodyBytes)
                                                      : fmt::format("HTTP {}", res.status);
            const serve::HttpReply r = serve::error_reply(res.status, why);
            res.set_content(r.body, r.content_type.c_str());
        });
        int bound = *port;
        if (*port == 0) {
            bound = server.bind_to_any_port(host->c_str());
            if (bound <= 0) fail("--host {}: cannot listen", *host);
        } else if (!server.bind_to_port(host->c_str(), *port)) {
            fail("--host {} --port {}: cannot listen (in use, or not an address of this machine)", *host, *port);
        }
        const bool local = *host == "127.0.0.1" || *host == "localhost" || *host == "::1";
        fmt::print("qforge serve: http://{}:{}/\n", *host, bound);
        fmt::print("{}\n", local ? "listening on this machine only (--host 0.0.0.0 to let others connect)"
                                 : "listening on the network: anyone who can reach this address can use the page");
        std::fflush(stdout);
        if (!server.listen_after_bind()) fail("--port {}: the server stopped with an error", bound);
    });
}

}  // namespace qf::cli
