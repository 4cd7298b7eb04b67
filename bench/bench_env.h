// What every benchmark prints in its header so figures can be read later: the CPU (with its
// wide vector sets), the commit (dirty or not), the load average at the time of the run.
#pragma once
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace qf::bench {

// First line(s) a shell command prints, without the trailing newline ("" on failure).
inline std::string run_line(const std::string& command) {
    std::string out;
    if (FILE* p = ::popen(command.c_str(), "r")) {
        char buf[256];
        while (std::fgets(buf, sizeof buf, p)) out += buf;
        ::pclose(p);
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out;
}

inline std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::string line, model = "unknown", flags;
    while (std::getline(in, line)) {
        const auto colon = line.find(':');
        if (colon == std::string::npos || colon == 0) continue;
        const std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
        const std::string val = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
        if (key == "model name" && model == "unknown") model = val;
        if (key == "flags" && flags.empty()) flags = " " + val + " ";
    }
    // The SIMD level matters for reading the figures: say which wide vector sets exist.
    std::string simd;
    for (const char* f : {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "neon", "asimd"})
        if (flags.find(std::string(" ") + f + " ") != std::string::npos) simd += std::string(simd.empty() ? "" : " ") + f;
    return simd.empty() ? model : model + " (" + simd + ")";
}

// $QFORGE_COMMIT, else the source tree's short hash, marked when tracked files are modified.
inline std::string git_commit() {
    if (const char* c = std::getenv("QFORGE_COMMIT"); c && *c) return c;
    const std::string c = run_line(fmt::format("git -C '{}' rev-parse --short HEAD 2>/dev/null", QFORGE_SOURCE_DIR));
    const std::string dirty =
        run_line(fmt::format("git -C '{}' status --porcelain --untracked-files=no 2>/dev/null | head -1", QFORGE_SOURCE_DIR));
    return c.empty() ? "unknown" : (dirty.empty() ? c : c + " (with uncommitted changes)");
}

inline std::string load_average() {
    std::ifstream in("/proc/loadavg");
    std::string a, b, c;
    in >> a >> b >> c;
    return a.empty() ? "unknown" : a + " " + b + " " + c;
}

}  // namespace qf::bench
