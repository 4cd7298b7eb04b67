// The one matrix-product kernel of the forward pass: a panel of 16 output columns times a
// block of rows of activations, f32 in and out, f32 accumulation.
//
//   y[t*ldy + j] = sum_{k<K} x[t*ldx + k] * w[k*ldw + j]      t < n_rows, j < n_cols <= 16
//
// `w` is read as 16 floats per k-row even when n_cols < 16 (callers pad: the extra columns
// are computed and dropped). The weight products dequantize 16 weight rows into such a
// panel; attention uses K^T and V in place. On x86-64 CPUs with AVX2+FMA the kernel is
// written with intrinsics (6 rows x 16 columns of accumulators in 12 registers), elsewhere it
// falls back to plain loops the compiler vectorizes. The choice is made once, at run time.
#pragma once
#include <cstdint>

namespace qf::gemm {

inline constexpr int kPanelCols = 16;

void panel_product(const float* x, int64_t ldx, int64_t n_rows, const float* w, int64_t ldw, int64_t K, float* y,
                   int64_t ldy, int n_cols);

// "avx512f", "avx2+fma" or "generic": what panel_product runs on this CPU (the benchmark
// prints it). QFORGE_GEMM=avx2 or =generic in the environment forces a narrower kernel.
const char* kernel_name();

// y = x rounded to the nearest f16 (ties to even) and widened back, as ggml's fp32->fp16.
void round_through_f16(const float* x, float* y, int64_t n);

}  // namespace qf::gemm
