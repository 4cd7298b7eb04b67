// Plain float formats: F32, F16, BF16 (row "quantization" is a rounding conversion).
#pragma once
#include <cstdint>

namespace qf {
void dequantize_row_f32(const void* src, float* dst, int64_t n);
void dequantize_row_f16(const void* src, float* dst, int64_t n);
void dequantize_row_bf16(const void* src, float* dst, int64_t n);
void quantize_row_f32(const float* src, void* dst, int64_t n, const float* importance);
void quantize_row_f16(const float* src, void* dst, int64_t n, const float* importance);
void quantize_row_bf16(const float* src, void* dst, int64_t n, const float* importance);
}  // namespace qf
