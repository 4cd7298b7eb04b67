// The hardware catalogue of `qforge plan` (data/hardware.json): devices with their memory,
// peak memory bandwidth and the spec sheet each number comes from, and a forgiving lookup
// ("4090", "rtx-4090", "M3 Max 64", "2x3090").
//
// The file is read at run time, found in this order: $QFORGE_DATA_DIR/hardware.json,
// <executable dir>/../data/hardware.json, <executable dir>/../../data/hardware.json (the
// build tree: build/src/... or build/qforge), then ./data/hardware.json.
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
    uint64_t usable_bytes() const { return static_cast<uint64_t>(static_cast<double>(memory_bytes) * usable_fraction); }
};

struct HardwareCatalogue {
    std::string path;
    std::vector<Device> devices;
};

// Errors name the file and the row.
HardwareCatalogue parse_hardware_catalogue(const nlohmann::json& j, const std::string& label);
HardwareCatalogue load_hardware_catalogue(const std::string& path);
// Searches the places listed above; throws listing them when none has the file.
HardwareCatalogue load_default_hardware_catalogue();
std::string find_hardware_catalogue();

// Finds one device. Query words must all appear in the device's name (case, spaces, dashes
// and "GB" ignored; letters and digits split: "rtx4090" = "rtx 4090"); among several matches
// the one with the fewest extra words wins ("4080" = RTX 4080, not RTX 4080 Super). Throws
// qf::Error when nothing or several equally good devices match, listing close names.
const Device& find_device(const HardwareCatalogue& catalogue, std::string_view query);

// "--gpu 3090,4090" or "2x3090" or "3090,3090": one entry per physical device.
std::vector<Device> parse_gpu_list(const HardwareCatalogue& catalogue, std::string_view list);

// "24GiB", "24GB" (GiB: the way VRAM is sold), "512MiB", "1.5TiB", "25769803776" (bytes).
uint64_t parse_memory_size(std::string_view text);

}  // namespace qf
