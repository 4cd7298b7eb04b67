// The hardware catalogue of `qforge plan`: devices with their memory, peak memory bandwidth and
// the spec sheet each number comes from, and a forgiving lookup ("4090", "rtx-4090",
// "M3 Max 64", "2x3090").
//
// data/hardware.json is compiled into the binary (the "built-in" catalogue). A user file in the
// same format extends it: $XDG_CONFIG_HOME/qforge/hardware.json (~/.config/qforge/hardware.json
// when XDG_CONFIG_HOME is unset) if it exists, then the file given with --hardware. A device
// whose name equals a known one (ignoring case) replaces it; other devices are added.
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qf {

struct Device {
    std::string name;             // "NVIDIA GeForce RTX 4090"
    std::string kind;             // "gpu", "unified" (Apple), "cpu"
    std::string vendor;
    uint64_t memory_bytes = 0;
    double bandwidth_gbs = 0;     // GB/s (10^9 bytes per second)
    double usable_fraction = 1.0; // share of memory_bytes a model may occupy
    std::string source;
    std::string origin;           // where the row came from: "built-in" or a file path
    uint64_t usable_bytes() const { return static_cast<uint64_t>(static_cast<double>(memory_bytes) * usable_fraction); }
};

inline constexpr const char* kBuiltinOrigin = "built-in";

struct HardwareCatalogue {
    std::string path;                  // for messages: "built-in + /home/me/.config/qforge/hardware.json"
    std::vector<Device> devices;
    std::vector<std::string> origins;  // each part, in the order merged
};

// Errors name the file and the row.
HardwareCatalogue parse_hardware_catalogue(const nlohmann::json& j, const std::string& label);
HardwareCatalogue load_hardware_catalogue(const std::string& path);
// data/hardware.json as compiled in.
HardwareCatalogue builtin_hardware_catalogue();
// $XDG_CONFIG_HOME/qforge/hardware.json, else $HOME/.config/qforge/hardware.json; "" without either.
std::string user_hardware_catalogue_path();
// Rows of `extra` replace rows of `base` with the same name (ignoring case); the others are added.
void merge_hardware_catalogue(HardwareCatalogue& base, const HardwareCatalogue& extra);
// Built-in, then the user file if it exists, then extra_path (unless empty): errors name the file.
HardwareCatalogue load_default_hardware_catalogue(const std::string& extra_path = "");

// `qforge plan --list-gpus`: where the catalogue came from, then one row per device with the
// origin of the row ("built-in" or the file). The JSON form: {"origins": [...], "devices": [...]}.
std::string render_catalogue_text(const HardwareCatalogue& catalogue);
nlohmann::json render_catalogue_json(const HardwareCatalogue& catalogue);

// Finds one device. Query words must all appear in the device's name (case, spaces, dashes
// and "GB" ignored; letters and digits split: "rtx4090" = "rtx 4090"); among several matches
// the one with the fewest extra words wins ("4080" = RTX 4080, not RTX 4080 Super). Throws
// qf::Error when nothing or several equally good devices match, listing close names.
const Device& find_device(const HardwareCatalogue& catalogue, std::string_view query);

// One shell word that find_device resolves to `d`: the name without leading brand words,
// dashes for spaces ("RTX-4090", "M3-Max-64GB"), or the whole name dashed when that is ambiguous.
std::string device_short_name(const HardwareCatalogue& catalogue, const Device& d);

// "--gpu 3090,4090" or "2x3090" or "3090,3090": one entry per physical device.
std::vector<Device> parse_gpu_list(const HardwareCatalogue& catalogue, std::string_view list);

// "24GiB", "24GB" (GiB: the way VRAM is sold), "512MiB", "1.5TiB", "25769803776" (bytes).
uint64_t parse_memory_size(std::string_view text);

}  // namespace qf
