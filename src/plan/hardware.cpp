#include "plan/hardware.h"

#include "common/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <unistd.h>

namespace qf {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Lower-case words, split at anything not a letter or digit and between letters and digits;
// size units dropped so "64GB", "64 gb" and "64" are the same word.
std::vector<std::string> words(std::string_view text) {
    std::vector<std::string> out;
    std::string cur;
    auto flush = [&] {
        if (!cur.empty() && cur != "gb" && cur != "gib" && cur != "g") out.push_back(cur);
        cur.clear();
    };
    for (char c : text) {
        const unsigned char u = static_cast<unsigned char>(c);
        if (!std::isalnum(u)) {
            flush();
            continue;
        }
        const char l = static_cast<char>(std::tolower(u));
        if (!cur.empty() && (std::isdigit(static_cast<unsigned char>(cur.back())) != 0) != (std::isdigit(u) != 0)) flush();
        cur += l;
    }
    flush();
    return out;
}

// Words a user never needs to type: vendor and brand names, the memory size.
bool optional_word(const std::string& w, const Device& d) {
    static const std::set<std::string> brand = {"nvidia", "geforce", "amd", "radeon", "apple", "instinct"};
    return brand.count(w) > 0 || w == std::to_string(d.memory_bytes >> 30);
}

uint64_t checked_u64(const json& row, const char* key, const std::string& where) {
    auto it = row.find(key);
    if (it == row.end() || !it->is_number_unsigned() || it->get<uint64_t>() == 0)
        fail("{}: '{}' must be a positive integer", where, key);
    return it->get<uint64_t>();
}

}  // namespace

HardwareCatalogue parse_hardware_catalogue(const json& j, const std::string& label) {
    HardwareCatalogue c;
    c.path = label;
    auto devs = j.find("devices");
    if (!j.is_object() || devs == j.end() || !devs->is_array()) fail("{}: expected an object with a 'devices' array", label);
    for (size_t i = 0; i < devs->size(); ++i) {
        const json& row = (*devs)[i];
        const std::string where = fmt::format("{}: device {}", label, i);
        if (!row.is_object()) fail("{} is not an object", where);
        Device d;
        for (auto [key, dst] : {std::pair{"name", &d.name}, {"kind", &d.kind}, {"vendor", &d.vendor}, {"source", &d.source}}) {
            auto it = row.find(key);
            if (it == row.end() || !it->is_string() || it->get<std::string>().empty())
                fail("{}: '{}' must be a non-empty string", where, key);
            *dst = it->get<std::string>();
        }
        d.memory_bytes = checked_u64(row, "memory_bytes", where);
        auto bw = row.find("bandwidth_gbs");
        if (bw == row.end() || !bw->is_number() || !(bw->get<double>() > 0)) fail("{}: 'bandwidth_gbs' must be positive", where);
        d.bandwidth_gbs = bw->get<double>();
        if (auto u = row.find("usable_fraction"); u != row.end()) {
            if (!u->is_number() || !(u->get<double>() > 0 && u->get<double>() <= 1))
                fail("{}: 'usable_fraction' must be in (0, 1]", where);
            d.usable_fraction = u->get<double>();
        }
        c.devices.push_back(std::move(d));
    }
    if (c.devices.empty()) fail("{}: no devices", label);
    return c;
}

HardwareCatalogue load_hardware_catalogue(const std::string& path) {
    std::ifstream in(path);
    if (!in) fail("{}: cannot open the hardware catalogue", path);
    json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) fail("{}: not valid JSON", path);
    return parse_hardware_catalogue(j, path);
}

std::string find_hardware_catalogue() {
    std::vector<fs::path> candidates;
    if (const char* env = std::getenv("QFORGE_DATA_DIR"); env && *env) candidates.push_back(fs::path(env) / "hardware.json");
    std::error_code ec;
    fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        candidates.push_back(exe.parent_path() / ".." / "data" / "hardware.json");
        candidates.push_back(exe.parent_path() / ".." / ".." / "data" / "hardware.json");
        candidates.push_back(exe.parent_path() / ".." / ".." / ".." / "data" / "hardware.json");
    }
#ifdef QFORGE_DATA_DIR_DEFAULT
    candidates.push_back(fs::path(QFORGE_DATA_DIR_DEFAULT) / "hardware.json");  // the source tree it was built from
#endif
    candidates.push_back(fs::path("data") / "hardware.json");
    std::string tried;
    for (const auto& p : candidates) {
        if (fs::is_regular_file(p, ec)) return p.lexically_normal().string();
        tried += (tried.empty() ? "" : ", ") + p.lexically_normal().string();
    }
    fail("hardware.json: not found (set QFORGE_DATA_DIR; tried {})", tried);
}

HardwareCatalogue load_default_hardware_catalogue() { return load_hardware_catalogue(find_hardware_catalogue()); }

const Device& find_device(const HardwareCatalogue& c, std::string_view query) {
    const std::vector<std::string> q = words(query);
    if (q.empty()) fail("--gpu: empty device name");
    std::vector<std::pair<size_t, const Device*>> matches;  // (extra words, device)
    std::vector<std::pair<size_t, const Device*>> near;     // (query words found, device)
    for (const Device& d : c.devices) {
        const std::vector<std::string> dw = words(d.name);
        size_t found = 0;
        for (const auto& w : q) found += std::find(dw.begin(), dw.end(), w) != dw.end();
        if (found == q.size()) {
            size_t extra = 0;
            for (const auto& w : dw)
                if (std::find(q.begin(), q.end(), w) == q.end() && !optional_word(w, d)) ++extra;
            matches.push_back({extra, &d});
        } else if (found > 0) {
            near.push_back({found, &d});
        }
    }
    auto list = [](const std::vector<const Device*>& ds) {
        std::string s;
        for (size_t i = 0; i < ds.size() && i < 12; ++i) s += (i ? ", " : "") + ds[i]->name;
        if (ds.size() > 12) s += fmt::format(", ... ({} more)", ds.size() - 12);
        return s;
    };
    if (matches.empty()) {
        std::stable_sort(near.begin(), near.end(), [](auto& a, auto& b) { return a.first > b.first; });
        std::vector<const Device*> close;
        for (auto& [n, d] : near) close.push_back(d);
        fail("--gpu: no device matches '{}' in {}{}{}", query, c.path, close.empty() ? "" : "; close: ", list(close));
    }
    size_t best = SIZE_MAX;
    for (auto& [extra, d] : matches) best = std::min(best, extra);
    std::vector<const Device*> tied;
    for (auto& [extra, d] : matches)
        if (extra == best) tied.push_back(d);
    if (tied.size() > 1) fail("--gpu: '{}' is ambiguous: {}", query, list(tied));
    return *tied.front();
}

std::vector<Device> parse_gpu_list(const HardwareCatalogue& c, std::string_view list) {
    std::vector<Device> out;
    size_t start = 0;
    while (start <= list.size()) {
        size_t comma = list.find(',', start);
        if (comma == std::string_view::npos) comma = list.size();
        std::string_view item = list.substr(start, comma - start);
        while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
        if (!item.empty()) {
            // "2x3090": a count, 'x', then the device.
            unsigned n = 1;
            size_t digits = 0;
            while (digits < item.size() && std::isdigit(static_cast<unsigned char>(item[digits]))) ++digits;
            if (digits > 0 && digits < 3 && digits + 1 < item.size() && (item[digits] == 'x' || item[digits] == 'X')) {
                n = static_cast<unsigned>(std::stoul(std::string(item.substr(0, digits))));
                item.remove_prefix(digits + 1);
                if (n == 0 || n > 64) fail("--gpu: bad device count in '{}'", list);
            }
            const Device& d = find_device(c, item);
            for (unsigned i = 0; i < n; ++i) out.push_back(d);
        }
        start = comma + 1;
    }
    if (out.empty()) fail("--gpu: no device given");
    return out;
}

uint64_t parse_memory_size(std::string_view text) {
    std::string s(text);
    s.erase(std::remove(s.begin(), s.end(), ' '), s.end());
    size_t pos = 0;
    double v = 0;
    try {
        v = std::stod(s, &pos);
    } catch (const std::exception&) {
        fail("memory size '{}': expected a number with a unit, e.g. 24GiB", text);
    }
    std::string unit = s.substr(pos);
    std::transform(unit.begin(), unit.end(), unit.begin(), [](unsigned char c) { return std::tolower(c); });
    double mult = 0;
    if (unit.empty() || unit == "b") mult = 1;
    else if (unit == "k" || unit == "kb" || unit == "kib") mult = 1024.0;
    else if (unit == "m" || unit == "mb" || unit == "mib") mult = 1024.0 * 1024;
    else if (unit == "g" || unit == "gb" || unit == "gib") mult = 1024.0 * 1024 * 1024;
    else if (unit == "t" || unit == "tb" || unit == "tib") mult = 1024.0 * 1024 * 1024 * 1024;
    else fail("memory size '{}': unknown unit '{}' (use B, MiB, GiB, TiB)", text, unit);
    const double bytes = v * mult;
    if (!(bytes > 0) || bytes > 1e18) fail("memory size '{}' out of range", text);
    return static_cast<uint64_t>(std::llround(bytes));
}

}  // namespace qf
