#include "model/gemm.h"

#include "common/half.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QF_GEMM_X86 1
#endif

namespace qf::gemm {

namespace {

constexpr int kTileRows = 6;  // rows of x per register tile: 6 x 2 vectors = 12 accumulators

// Portable version: accumulators in a small array; the loop over the 16 columns is an
// element-wise update (no reduction), which GCC vectorizes without reassociating anything.
template <int R>
void tile_generic(const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t K, float* y, int64_t ldy,
                  int n_cols) {
    float acc[R][kPanelCols] = {};
    for (int64_t k = 0; k < K; ++k) {
        const float* wk = w + k * ldw;
        for (int r = 0; r < R; ++r) {
            const float xv = x[r * ldx + k];
            for (int j = 0; j < kPanelCols; ++j) acc[r][j] += xv * wk[j];
        }
    }
    for (int r = 0; r < R; ++r) std::memcpy(y + r * ldy, acc[r], sizeof(float) * static_cast<size_t>(n_cols));
}

void product_generic(const float* x, int64_t ldx, int64_t n_rows, const float* w, int64_t ldw, int64_t K, float* y,
                     int64_t ldy, int n_cols) {
    int64_t t = 0;
    for (; t + kTileRows <= n_rows; t += kTileRows)
        tile_generic<kTileRows>(x + t * ldx, ldx, w, ldw, K, y + t * ldy, ldy, n_cols);
    for (; t < n_rows; ++t) tile_generic<1>(x + t * ldx, ldx, w, ldw, K, y + t * ldy, ldy, n_cols);
}

#ifdef QF_GEMM_X86
// Explicit FMA: the project builds with -ffp-contract=off (for the quantizers' bit-exactness),
// so a*b+c would stay two instructions; an evaluation needs no bit-exactness, only speed.
template <int R>
__attribute__((target("avx2,fma"))) void tile_avx2(const float* x, int64_t ldx, const float* w, int64_t ldw,
                                                   int64_t K, float* y, int64_t ldy, int n_cols) {
    __m256 acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
        const __m256 w0 = _mm256_loadu_ps(w + k * ldw);
        const __m256 w1 = _mm256_loadu_ps(w + k * ldw + 8);
        for (int r = 0; r < R; ++r) {
            const __m256 xv = _mm256_broadcast_ss(x + r * ldx + k);
            acc0[r] = _mm256_fmadd_ps(xv, w0, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(xv, w1, acc1[r]);
        }
    }
    if (n_cols == kPanelCols) {
        for (int r = 0; r < R; ++r) {
            _mm256_storeu_ps(y + r * ldy, acc0[r]);
            _mm256_storeu_ps(y + r * ldy + 8, acc1[r]);
        }
    } else {
        alignas(32) float tmp[kPanelCols];
        for (int r = 0; r < R; ++r) {
            _mm256_store_ps(tmp, acc0[r]);
            _mm256_store_ps(tmp + 8, acc1[r]);
            std::memcpy(y + r * ldy, tmp, sizeof(float) * static_cast<size_t>(n_cols));
        }
    }
}

__attribute__((target("avx2,fma"))) void product_avx2(const float* x, int64_t ldx, int64_t n_rows, const float* w,
                                                      int64_t ldw, int64_t K, float* y, int64_t ldy, int n_cols) {
    int64_t t = 0;
    for (; t + kTileRows <= n_rows; t += kTileRows)
        tile_avx2<kTileRows>(x + t * ldx, ldx, w, ldw, K, y + t * ldy, ldy, n_cols);
    switch (n_rows - t) {
        case 5: tile_avx2<5>(x + t * ldx, ldx, w, ldw, K, y + t * ldy, ldy, n_cols); break;
        case 4: tile_avx2<4>(x + t * ldx, ldx, w, ldw, K, y + t * ldy, ldy, n_cols); break;
        case 3: tile_avx2<3>(x + t * ldx, ldx, w, ldw, K, y + t * ldy, ldy, n_cols); break;
        case 2: tile_avx2<2>(x + t * ldx, ldx, w, ldw, K, y + t * ldy, ldy, n_cols); break;
        case 1: tile_avx2<1>(x + t * ldx, ldx, w, ldw, K, y + t * ldy, ldy, n_cols); break;
        default: break;
    }
}
// AVX-512: one 16-float register per row, 12 rows per tile (12 accumulators; each k step is
// one panel load, 12 broadcasts and 12 FMAs), twice the width of the AVX2 tile.
template <int R>
__attribute__((target("avx512f"))) void tile_avx512(const float* x, int64_t ldx, const float* w, int64_t ldw,
                                                   int64_t K, float* y, int64_t ldy, int n_cols) {
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
        const __m512 wk = _mm512_loadu_ps(w + k * ldw);
        for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(x[r * ldx + k]), wk, acc[r]);
    }
    const __mmask16 mask = static_cast<__mmask16>((1u << n_cols) - 1u);
    for (int r = 0; r < R; ++r) _mm512_mask_storeu_ps(y + r * ldy, mask, acc[r]);
}

template <int R>
__attribute__((target("avx512f"))) void tail_avx512(int rows, const float* x, int64_t ldx, const float* w, int64_t ldw,
                                                   int64_t K, float* y, int64_t ldy, int n_cols) {
    if constexpr (R > 0) {
        if (rows == R) return tile_avx512<R>(x, ldx, w, ldw, K, y, ldy, n_cols);
        tail_avx512<R - 1>(rows, x, ldx, w, ldw, K, y, ldy, n_cols);
    }
}

__attribute__((target("avx512f"))) void product_avx512(const float* x, int64_t ldx, int64_t n_rows, const float* w,
                                                      int64_t ldw, int64_t K, float* y, int64_t ldy, int n_cols) {
    constexpr int kRows = 12;
    int64_t t = 0;
    for (; t + kRows <= n_rows; t += kRows) tile_avx512<kRows>(x + t * ldx, ldx, w, ldw, K, y + t * ldy, ldy, n_cols);
    if (t < n_rows)
        tail_avx512<kRows - 1>(static_cast<int>(n_rows - t), x + t * ldx, ldx, w, ldw, K, y + t * ldy, ldy, n_cols);
}
#endif

using ProductFn = void (*)(const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t, int);

struct Kernel {
    ProductFn fn;
    const char* name;
};

Kernel pick_kernel() {
    // QFORGE_GEMM=avx2|generic forces a slower kernel (tests and benchmarks compare them).
    const char* env = std::getenv("QFORGE_GEMM");
    const std::string_view forced = env ? env : "";
    if (forced == "generic") return {product_generic, "generic"};
#ifdef QF_GEMM_X86
    if (forced == "avx2" && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return {product_avx2, "avx2+fma"};
    if (__builtin_cpu_supports("avx512f")) return {product_avx512, "avx512f"};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return {product_avx2, "avx2+fma"};
#endif
    return {product_generic, "generic"};
}

const Kernel& kernel() {
    static const Kernel k = pick_kernel();
    return k;
}

}  // namespace

void panel_product(const float* x, int64_t ldx, int64_t n_rows, const float* w, int64_t ldw, int64_t K, float* y,
                   int64_t ldy, int n_cols) {
    if (n_rows <= 0 || n_cols <= 0) return;
    kernel().fn(x, ldx, n_rows, w, ldw, K, y, ldy, std::min(n_cols, kPanelCols));
}

const char* kernel_name() { return kernel().name; }

namespace {

#ifdef QF_GEMM_X86
__attribute__((target("avx2,f16c"))) void round_f16_f16c(const float* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
    for (; i < n; ++i) y[i] = f16_to_f32(f32_to_f16(x[i]));
}

#endif

}  // namespace


void round_through_f16(const float* x, float* y, int64_t n) {
#ifdef QF_GEMM_X86
    if (cpu_has_f16c()) return round_f16_f16c(x, y, n);
#endif
    for (int64_t i = 0; i < n; ++i) y[i] = f16_to_f32(f32_to_f16(x[i]));
}

}  // namespace qf::gemm
