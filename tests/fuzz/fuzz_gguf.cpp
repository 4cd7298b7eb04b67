// libFuzzer target: the GGUF reader on arbitrary bytes. Every input must either parse or
// raise qf::Error; after a successful parse every tensor span must lie inside the input
// (ASan checks the reads below), and the metadata must survive being displayed.
#include "common/error.h"
#include "gguf/gguf_reader.h"

#include <cstddef>
#include <cstdint>
#include <span>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    try {
        qf::GgufFile f = qf::GgufFile::from_bytes(bytes, "fuzz.gguf");
        unsigned sum = 0;
        for (const auto& t : f.tensors()) {
            auto span = f.tensor_data(t);
            if (span.data() < bytes.data() || span.data() + span.size() > bytes.data() + bytes.size()) __builtin_trap();
            for (std::byte b : span) sum += static_cast<unsigned>(b);
            if (f.find_tensor(t.name) != &t) __builtin_trap();
            (void)t.n_elements();
            (void)t.n_rows();
        }
        for (const auto& kv : f.metadata().entries()) sum += static_cast<unsigned>(kv.value.to_display_string().size());
        if (f.data_offset() > f.file_size()) __builtin_trap();
        volatile unsigned sink = sum;
        (void)sink;
    } catch (const qf::Error&) {
    }
    return 0;
}
