// libFuzzer target: the safetensors header parser on arbitrary bytes. Anything malformed must
// end in qf::Error; whatever it accepts must be safe to read through convert_to_f32.
#include "common/error.h"
#include "hf/safetensors.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
    try {
        const auto tensors = qf::parse_safetensors(file, "fuzz.safetensors");
        std::vector<float> values;
        for (const auto& t : tensors) {
            const int64_t n = t.n_elements();
            const int64_t head = std::min<int64_t>(n, 1024);
            values.resize(static_cast<size_t>(head));
            qf::convert_to_f32(t, 0, head, values.data());
            if (n > head) qf::convert_to_f32(t, n - 1, 1, values.data());  // the last element too
        }
    } catch (const qf::Error&) {
    }
    return 0;
}
