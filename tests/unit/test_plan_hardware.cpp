// qforge plan: the hardware catalogue (data/hardware.json) and device lookup.
#include "common/error.h"
#include "plan/hardware.h"
#include "plan/kv_plan.h"
#include "support/test_paths.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

namespace qf {
namespace {

HardwareCatalogue catalogue() { return load_hardware_catalogue(test::source_dir() + "/data/hardware.json"); }

TEST(PlanHardware, CatalogueIsCompleteAndSourced) {
    HardwareCatalogue c = catalogue();
    EXPECT_GE(c.devices.size(), 40u);
    std::set<std::string> names;
    for (const Device& d : c.devices) {
        EXPECT_TRUE(names.insert(d.name).second) << "duplicate " << d.name;
        EXPECT_GE(d.source.size(), 10u) << d.name;
        EXPECT_GE(d.memory_bytes, uint64_t{4} << 30) << d.name;
        EXPECT_GT(d.bandwidth_gbs, 20.0) << d.name;
        EXPECT_LT(d.bandwidth_gbs, 10000.0) << d.name;
    }
    // Spot checks against the vendors' spec sheets.
    const Device& r4090 = find_device(c, "RTX 4090");
    EXPECT_EQ(r4090.memory_bytes, uint64_t{24} << 30);
    EXPECT_DOUBLE_EQ(r4090.bandwidth_gbs, 1008.0);
    EXPECT_DOUBLE_EQ(find_device(c, "H100 SXM").bandwidth_gbs, 3350.0);
    EXPECT_EQ(find_device(c, "MI300X").memory_bytes, uint64_t{192} << 30);
}

TEST(PlanHardware, FuzzyLookup) {
    HardwareCatalogue c = catalogue();
    EXPECT_EQ(find_device(c, "4090").name, "NVIDIA GeForce RTX 4090");
    EXPECT_EQ(find_device(c, "rtx-4090").name, "NVIDIA GeForce RTX 4090");
    EXPECT_EQ(find_device(c, "RTX4090").name, "NVIDIA GeForce RTX 4090");
    EXPECT_EQ(find_device(c, "4080").name, "NVIDIA GeForce RTX 4080");
    EXPECT_EQ(find_device(c, "3090").name, "NVIDIA GeForce RTX 3090");
    EXPECT_EQ(find_device(c, "M3 Max 64").name, "Apple M3 Max 64GB");
    EXPECT_EQ(find_device(c, "m4 max 128gb").name, "Apple M4 Max 128GB");
    EXPECT_NEAR(find_device(c, "M3 Max 64").usable_fraction, 0.75, 1e-9);
    EXPECT_EQ(find_device(c, "7900 xtx").name, "AMD Radeon RX 7900 XTX");
    EXPECT_EQ(find_device(c, "a6000").name, "NVIDIA RTX A6000");
}

TEST(PlanHardware, AmbiguousAndUnknownListNames) {
    HardwareCatalogue c = catalogue();
    try {
        find_device(c, "H100");
        FAIL();
    } catch (const Error& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("ambiguous"), std::string::npos) << m;
        EXPECT_NE(m.find("H100 PCIe"), std::string::npos) << m;
        EXPECT_NE(m.find("H100 SXM"), std::string::npos) << m;
    }
    try {
        find_device(c, "RTX 9999");
        FAIL();
    } catch (const Error& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("no device matches"), std::string::npos) << m;
        EXPECT_NE(m.find("RTX"), std::string::npos) << m;  // close names listed
    }
}

TEST(PlanHardware, GpuListsAndSizes) {
    HardwareCatalogue c = catalogue();
    auto two = parse_gpu_list(c, "2x3090");
    ASSERT_EQ(two.size(), 2u);
    EXPECT_EQ(two[1].name, "NVIDIA GeForce RTX 3090");
    EXPECT_EQ(parse_gpu_list(c, "4090,3090").size(), 2u);
    EXPECT_EQ(parse_memory_size("24GiB"), uint64_t{24} << 30);
    EXPECT_EQ(parse_memory_size("24 GB"), uint64_t{24} << 30);
    EXPECT_EQ(parse_memory_size("512MiB"), uint64_t{512} << 20);
    EXPECT_EQ(parse_memory_size("1000"), 1000u);
    EXPECT_THROW(parse_memory_size("12 parsecs"), Error);
    EXPECT_THROW(parse_memory_size("GiB"), Error);
}

TEST(PlanHardware, BadCatalogueRowsNamed) {
    nlohmann::json j = {{"devices", {{{"name", "X"}, {"kind", "gpu"}, {"vendor", "v"}, {"source", "s"}, {"memory_bytes", 0},
                                      {"bandwidth_gbs", 100}}}}};
    try {
        parse_hardware_catalogue(j, "hw.json");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("hw.json: device 0"), std::string::npos) << e.what();
    }
}

// KV cache arithmetic that the interop test cannot reach through llama.cpp's API here:
// parallel sequences (non-unified streams) and sliding-window layers.
TEST(PlanKv, StreamsAndSlidingWindow) {
    PlanModel m;
    m.n_layer = 32;
    m.n_head = 32;
    m.n_head_kv = 8;
    m.head_dim = 128;
    ContextOptions o;
    o.n_ctx = 8192;
    KvPlan kv = plan_kv_cache(m, o);
    EXPECT_EQ(kv.bytes(), uint64_t{1} << 30);  // facts §7.2: Llama-3-8B, 8192 tokens f16 = 1 GiB
    o.type_k = o.type_v = GgmlType::Q8_0;
    EXPECT_EQ(plan_kv_cache(m, o).bytes(), 69632ull * 8192);
    o.type_k = o.type_v = GgmlType::F16;
    o.n_ctx = 1000;
    o.n_seq = 3;  // PAD(1024 / 3, 256) = 512 cells per stream, 3 streams
    kv = plan_kv_cache(m, o);
    EXPECT_EQ(kv.n_ctx_seq, 512u);
    EXPECT_EQ(kv.n_ctx, 1536u);
    o.kv_unified = true;
    EXPECT_EQ(plan_kv_cache(m, o).n_ctx, 1024u);

    m.n_swa = 4096;
    o = ContextOptions{};
    o.n_ctx = 32768;
    kv = plan_kv_cache(m, o);
    EXPECT_EQ(kv.swa_cells, 4608u);  // PAD(4096 + 512, 256)
    EXPECT_EQ(kv.bytes(), 16ull * 32768 * 131072 / 32 + 16ull * 4608 * 131072 / 32);
    o.type_v = GgmlType::Q8_0;
    o.flash_attn = false;
    EXPECT_THROW(plan_kv_cache(m, o), Error);
}

// The compiled-in catalogue is data/hardware.json, row for row, and says where it came from.
TEST(PlanHardware, BuiltinCatalogueIsTheDataFile) {
    const HardwareCatalogue file = catalogue();
    const HardwareCatalogue builtin = builtin_hardware_catalogue();
    ASSERT_EQ(builtin.devices.size(), file.devices.size());
    for (size_t i = 0; i < file.devices.size(); ++i) {
        EXPECT_EQ(builtin.devices[i].name, file.devices[i].name);
        EXPECT_EQ(builtin.devices[i].memory_bytes, file.devices[i].memory_bytes);
        EXPECT_EQ(builtin.devices[i].bandwidth_gbs, file.devices[i].bandwidth_gbs);
        EXPECT_EQ(builtin.devices[i].source, file.devices[i].source);
        EXPECT_EQ(builtin.devices[i].origin, "built-in");
    }
    EXPECT_EQ(builtin.origins, std::vector<std::string>{"built-in"});
}

// A user file replaces rows with the same name (any case) and adds the others, in order.
TEST(PlanHardware, UserFileExtendsAndOverrides) {
    HardwareCatalogue c = builtin_hardware_catalogue();
    const size_t n = c.devices.size();
    const nlohmann::json extra = nlohmann::json::parse(R"({"devices": [
        {"name": "nvidia geforce rtx 4090", "kind": "gpu", "vendor": "nvidia", "memory_bytes": 1073741824, "bandwidth_gbs": 1, "source": "mine"},
        {"name": "My Card 9", "kind": "gpu", "vendor": "me", "memory_bytes": 2147483648, "bandwidth_gbs": 2, "source": "mine"}]})");
    merge_hardware_catalogue(c, parse_hardware_catalogue(extra, "/home/me/hw.json"));
    EXPECT_EQ(c.devices.size(), n + 1);
    const Device& r4090 = find_device(c, "4090");
    EXPECT_EQ(r4090.memory_bytes, uint64_t{1} << 30);
    EXPECT_EQ(r4090.origin, "/home/me/hw.json");
    EXPECT_EQ(c.devices.back().name, "My Card 9");
    EXPECT_EQ(&find_device(c, "my card 9"), &c.devices.back());
    EXPECT_EQ(find_device(c, "3090").origin, "built-in");
    EXPECT_EQ(c.origins, (std::vector<std::string>{"built-in", "/home/me/hw.json"}));
    // --list-gpus names both parts and the origin of each row.
    const std::string text = render_catalogue_text(c);
    EXPECT_NE(text.find(fmt::format("hardware catalogue: built-in ({} devices in use), /home/me/hw.json (2 devices in use)", n - 1)),
              std::string::npos) << text.substr(0, 200);
    EXPECT_EQ(render_catalogue_json(c)["devices"].back()["origin"], "/home/me/hw.json");
}

// The default catalogue reads $XDG_CONFIG_HOME/qforge/hardware.json when it exists, then
// --hardware; a bad user file is an error naming that file.
TEST(PlanHardware, DefaultCatalogueReadsTheUserPath) {
    const std::string dir = test::scratch_dir();
    const char* old = std::getenv("XDG_CONFIG_HOME");
    const std::string saved = old ? old : "";
    ::setenv("XDG_CONFIG_HOME", dir.c_str(), 1);
    const std::string user = dir + "/qforge/hardware.json";
    EXPECT_EQ(user_hardware_catalogue_path(), user);
    EXPECT_EQ(load_default_hardware_catalogue().origins, std::vector<std::string>{"built-in"});
    std::filesystem::create_directories(dir + "/qforge");
    std::ofstream(user) << R"({"devices": [{"name": "Box 1", "kind": "cpu", "vendor": "x", "memory_bytes": 1073741824, "bandwidth_gbs": 5, "source": "s"}]})";
    const std::string extra = dir + "/extra.json";
    std::ofstream(extra) << R"({"devices": [{"name": "Box 1", "kind": "cpu", "vendor": "x", "memory_bytes": 2147483648, "bandwidth_gbs": 5, "source": "s"}]})";
    HardwareCatalogue c = load_default_hardware_catalogue(extra);
    EXPECT_EQ(c.origins, (std::vector<std::string>{"built-in", user, extra}));
    EXPECT_EQ(find_device(c, "box 1").memory_bytes, uint64_t{2} << 30);  // --hardware last
    std::ofstream(user) << "{not json";
    try {
        load_default_hardware_catalogue();
        ADD_FAILURE() << "a broken user file was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(user), std::string::npos) << e.what();
    }
    if (old) ::setenv("XDG_CONFIG_HOME", saved.c_str(), 1); else ::unsetenv("XDG_CONFIG_HOME");
}

// The words bash completion offers for --gpu resolve to their own device.
TEST(PlanHardware, ShortNamesResolveToTheirDevice) {
    const HardwareCatalogue c = builtin_hardware_catalogue();
    std::set<std::string> seen;
    for (const Device& d : c.devices) {
        const std::string w = device_short_name(c, d);
        EXPECT_EQ(w.find(' '), std::string::npos) << w;
        EXPECT_TRUE(seen.insert(w).second) << "twice: " << w;
        EXPECT_EQ(&find_device(c, w), &d) << w;
    }
    EXPECT_EQ(device_short_name(c, find_device(c, "4090")), "RTX-4090");
    EXPECT_EQ(device_short_name(c, find_device(c, "M3 Max 64")), "M3-Max-64GB");
}

}  // namespace
}  // namespace qf
