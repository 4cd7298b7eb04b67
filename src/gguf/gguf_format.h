// Constants and checked size arithmetic shared by the GGUF reader and writer, so both
// agree byte for byte on what a valid file is (values from ggml: include/gguf.h, src/gguf.cpp).
#pragma once
#include "common/error.h"
#include "quant/types.h"

#include <bit>
#include <cstdint>
#include <limits>
#include <span>

namespace qf::gguf {

static_assert(std::endian::native == std::endian::little, "GGUF is read and written as little-endian in place");

inline constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
inline constexpr uint32_t kVersion = 3;
inline constexpr uint32_t kDefaultAlignment = 32;
inline constexpr uint64_t kMaxStringLength = uint64_t{1} << 30;  // GGUF_MAX_STRING_LENGTH
inline constexpr uint64_t kMaxArrayElements = uint64_t{1} << 30;  // GGUF_MAX_ARRAY_ELEMENTS
inline constexpr uint64_t kMaxTensorName = 63;                     // GGML_MAX_NAME - 1 (NUL)
inline constexpr uint32_t kMaxDims = 4;                            // GGML_MAX_DIMS
inline constexpr uint64_t kHeaderBytes = 4 + 4 + 8 + 8;
inline constexpr const char* kAlignmentKey = "general.alignment";

inline bool is_power_of_two(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// x rounded up to a multiple of alignment (a power of two); false on overflow.
inline bool checked_pad(uint64_t x, uint64_t alignment, uint64_t* out) {
    uint64_t bumped;
    if (add_overflows(x, alignment - 1, &bumped)) return false;
    *out = bumped & ~(alignment - 1);
    return true;
}

// Product of all dims, which must each be >= 0; false when it exceeds INT64_MAX.
inline bool checked_element_count(std::span<const int64_t> shape, int64_t* out) {
    // The product of the non-zero dimensions must fit too: a zero-sized dimension must not
    // let sub-products (rows = ne1*ne2*ne3, found by the fuzzer) overflow elsewhere.
    uint64_t nonzero = 1;
    bool any_zero = false;
    for (int64_t d : shape) {
        if (d < 0) return false;
        if (d == 0) {
            any_zero = true;
            continue;
        }
        if (mul_overflows(nonzero, static_cast<uint64_t>(d), &nonzero)) return false;
    }
    if (nonzero > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    *out = any_zero ? 0 : static_cast<int64_t>(nonzero);
    return true;
}

// Exact bytes of a tensor: (ne0 / block) * block_bytes * ne1 * ne2 * ne3. Assumes the
// element count was checked and ne0 is a multiple of the block size; false on overflow.
inline bool checked_tensor_nbytes(const TypeTraits& t, std::span<const int64_t> shape, uint64_t* out) {
    if (shape.empty() || t.block_elems <= 0 || t.block_bytes <= 0) return false;
    uint64_t bytes;
    if (mul_overflows(static_cast<uint64_t>(shape[0] / t.block_elems), static_cast<uint64_t>(t.block_bytes), &bytes))
        return false;
    for (size_t k = 1; k < shape.size(); ++k)
        if (mul_overflows(bytes, static_cast<uint64_t>(shape[k]), &bytes)) return false;
    *out = bytes;
    return true;
}

}  // namespace qf::gguf
