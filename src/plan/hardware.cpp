#include "plan/hardware.h"

#include "common/embedded.h"
#include "common/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

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
    c.origins.push_back(label);
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
        d.origin = label;
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

HardwareCatalogue builtin_hardware_catalogue() {
    const std::optional<std::string_view> text = embedded_file("hardware.json");
    if (!text) fail("hardware.json: not compiled into this build (QFORGE_EMBEDDED_FILES)");
    json j = json::parse(text->begin(), text->end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) fail("{}: not valid JSON", kBuiltinOrigin);
    return parse_hardware_catalogue(j, kBuiltinOrigin);
}

std::string user_hardware_catalogue_path() {
    const char* xdg = std::getenv("XDG_CONFIG_HOME");
    if (xdg && *xdg == '/') return (fs::path(xdg) / "qforge" / "hardware.json").string();
    const char* home = std::getenv("HOME");
    if (home && *home) return (fs::path(home) / ".config" / "qforge" / "hardware.json").string();
    return {};
}

void merge_hardware_catalogue(HardwareCatalogue& base, const HardwareCatalogue& extra) {
    auto lower = [](std::string s) {
        std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
        return s;
    };
    for (const Device& d : extra.devices) {
        auto same = std::find_if(base.devices.begin(), base.devices.end(),
                                 [&](const Device& b) { return lower(b.name) == lower(d.name); });
        if (same != base.devices.end())
            *same = d;
        else
            base.devices.push_back(d);
    }
    base.origins.insert(base.origins.end(), extra.origins.begin(), extra.origins.end());
    base.path = fmt::format("{} + {}", base.path, extra.path);
}

HardwareCatalogue load_default_hardware_catalogue(const std::string& extra_path) {
    HardwareCatalogue c = builtin_hardware_catalogue();
    std::error_code ec;
    if (const std::string user = user_hardware_catalogue_path(); !user.empty() && fs::exists(user, ec))
        merge_hardware_catalogue(c, load_hardware_catalogue(user));
    if (!extra_path.empty()) merge_hardware_catalogue(c, load_hardware_catalogue(extra_path));
    return c;
}

std::string render_catalogue_text(const HardwareCatalogue& c) {
    std::string out = "hardware catalogue:";
    for (const std::string& origin : c.origins) {
        const auto n = std::count_if(c.devices.begin(), c.devices.end(), [&](const Device& d) { return d.origin == origin; });
        out += fmt::format(" {} ({} devices in use)", origin, n);
        if (&origin != &c.origins.back()) out += ",";
    }
    out += fmt::format("\n\n{:<36} {:<8} {:>10} {:>10} {:>9}  {}\n", "name", "kind", "memory", "usable", "GB/s", "from");
    for (const Device& d : c.devices)
        out += fmt::format("{:<36} {:<8} {:>6.2f} GiB {:>6.2f} GiB {:>9.1f}  {}\n", d.name, d.kind,
                           static_cast<double>(d.memory_bytes) / (1ull << 30), static_cast<double>(d.usable_bytes()) / (1ull << 30),
                           d.bandwidth_gbs, d.origin);
    return out;
}

json render_catalogue_json(const HardwareCatalogue& c) {
    json devices = json::array();
    for (const Device& d : c.devices)
        devices.push_back({{"name", d.name},
                           {"id", device_short_name(c, d)},
                           {"kind", d.kind},
                           {"vendor", d.vendor},
                           {"memory_bytes", d.memory_bytes},
                           {"usable_bytes", d.usable_bytes()},
                           {"bandwidth_gbs", d.bandwidth_gbs},
                           {"source", d.source},
                           {"origin", d.origin}});
    return {{"origins", c.origins}, {"devices", devices}};
}

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

std::string device_short_name(const HardwareCatalogue& c, const Device& d) {
    static const std::set<std::string> brand = {"nvidia", "geforce", "amd", "radeon", "apple", "instinct"};
    std::string full, shortened;
    bool leading = true;
    size_t start = 0;
    while (start < d.name.size()) {
        size_t end = d.name.find(' ', start);
        if (end == std::string::npos) end = d.name.size();
        const std::string word = d.name.substr(start, end - start);
        start = end + 1;
        if (word.empty()) continue;
        full += (full.empty() ? "" : "-") + word;
        std::string lower = word;
        std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return std::tolower(ch); });
        if (leading && brand.count(lower)) continue;
        leading = false;
        shortened += (shortened.empty() ? "" : "-") + word;
    }
    try {
        if (!shortened.empty() && &find_device(c, shortened) == &d) return shortened;
    } catch (const Error&) {
        // ambiguous: the full name below
    }
    return full;
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
