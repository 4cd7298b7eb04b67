// A tiny hand-written GGUF byte builder for the GGUF tests. It is deliberately separate
// from src/gguf/ so the tests check the writer and the reader against the layout as the
// reference describes it (llamacpp-quant-facts.md §1), not against themselves.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string_view>
#include <vector>

namespace qf::test {

struct GgufBytes {
    std::vector<std::byte> b;

    template <class T>
    GgufBytes& scalar(T v) {
        const auto* p = reinterpret_cast<const std::byte*>(&v);
        b.insert(b.end(), p, p + sizeof v);
        return *this;
    }
    GgufBytes& u8(uint8_t v) { return scalar(v); }
    GgufBytes& u32(uint32_t v) { return scalar(v); }
    GgufBytes& i32(int32_t v) { return scalar(v); }
    GgufBytes& u64(uint64_t v) { return scalar(v); }
    GgufBytes& i64(int64_t v) { return scalar(v); }
    GgufBytes& str(std::string_view s) {
        u64(s.size());
        const auto* p = reinterpret_cast<const std::byte*>(s.data());
        b.insert(b.end(), p, p + s.size());
        return *this;
    }
    GgufBytes& append(const GgufBytes& other) {
        b.insert(b.end(), other.b.begin(), other.b.end());
        return *this;
    }
    GgufBytes& zeros(size_t n) {
        b.insert(b.end(), n, std::byte{0});
        return *this;
    }
    GgufBytes& pad_to(size_t alignment) { return zeros((alignment - b.size() % alignment) % alignment); }
    // n bytes of a recognisable pattern starting at `seed`
    GgufBytes& pattern(size_t n, uint8_t seed) {
        for (size_t k = 0; k < n; ++k) b.push_back(static_cast<std::byte>(static_cast<uint8_t>(seed + 7 * k)));
        return *this;
    }

    // Pieces of a file
    GgufBytes& header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
        b.insert(b.end(), {std::byte{'G'}, std::byte{'G'}, std::byte{'U'}, std::byte{'F'}});
        return u32(version).u64(n_tensors).u64(n_kv);
    }
    GgufBytes& kv_u32(std::string_view key, uint32_t v) { return str(key).u32(4).u32(v); }
    GgufBytes& kv_str(std::string_view key, std::string_view v) { return str(key).u32(8).str(v); }
    GgufBytes& tensor_info(std::string_view name, std::initializer_list<int64_t> ne, uint32_t type, uint64_t offset) {
        str(name).u32(static_cast<uint32_t>(ne.size()));
        for (int64_t d : ne) i64(d);
        return u32(type).u64(offset);
    }
};

}  // namespace qf::test
