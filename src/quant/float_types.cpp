#include "quant/float_types.h"

#include "common/half.h"

#include <cstring>

namespace qf {

void dequantize_row_f32(const void* src, float* dst, int64_t n) { std::memcpy(dst, src, sizeof(float) * n); }

void dequantize_row_f16(const void* src, float* dst, int64_t n) {
    f16_to_f32_row(static_cast<const uint16_t*>(src), dst, n);
}

void dequantize_row_bf16(const void* src, float* dst, int64_t n) {
    const auto* h = static_cast<const uint16_t*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(h[i]);
}

void quantize_row_f32(const float* src, void* dst, int64_t n, const float*) { std::memcpy(dst, src, sizeof(float) * n); }

void quantize_row_f16(const float* src, void* dst, int64_t n, const float*) {
    auto* h = static_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) h[i] = f32_to_f16(src[i]);
}

void quantize_row_bf16(const float* src, void* dst, int64_t n, const float*) {
    auto* h = static_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) h[i] = f32_to_bf16(src[i]);
}

}  // namespace qf
