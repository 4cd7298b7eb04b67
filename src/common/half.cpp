#include "common/half.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace qf {

#if defined(__x86_64__)
namespace {
__attribute__((target("avx2,f16c"))) void f16_to_f32_row_f16c(const uint16_t* src, float* dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
    for (; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}
}  // namespace
#endif

bool cpu_has_f16c() {
#if defined(__x86_64__)
    // F16C is CPUID leaf 1, ECX bit 29 (read directly: clang's __builtin_cpu_supports has no "f16c").
    static const bool yes = [] {
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
        return __builtin_cpu_supports("avx2") && __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
    }();
    return yes;
#else
    return false;
#endif
}

void f16_to_f32_row(const uint16_t* src, float* dst, int64_t n) {
#if defined(__x86_64__)
    if (cpu_has_f16c()) return f16_to_f32_row_f16c(src, dst, n);
#endif
    for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

}  // namespace qf
