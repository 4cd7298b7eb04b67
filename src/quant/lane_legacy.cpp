// Runtime dispatch of the legacy-format kernels (lane_legacy.inc, compiled three times by
// lane_legacy_{avx512,avx2,sse2}.cpp). See lane_legacy.h.
#include "quant/lane_legacy.h"

#include "quant/llama_reference.h"
#include "quant/simd_isa.h"

#include <cstdint>
#include <string_view>

#define QF_DECLARE_LEGACY_PATH(ns)                                                                            \
    namespace qf::legacy_lanes::ns {                                                                           \
    void encode(int kind, int polish, const float* x, const float* qw, float sigma2, int64_t nb, uint8_t* out, \
                uint8_t* fallback);                                                                           \
    }
QF_DECLARE_LEGACY_PATH(sse2)
#if defined(__x86_64__)
QF_DECLARE_LEGACY_PATH(avx2)
QF_DECLARE_LEGACY_PATH(avx512)
#endif

namespace qf::legacy_lanes {
namespace {

struct Path {
    decltype(&sse2::encode) encode;
};

Path make_path(simd::Isa isa) {
#if defined(__x86_64__)
    if (isa == simd::Isa::kAvx512) return {avx512::encode};
    if (isa == simd::Isa::kAvx2) return {avx2::encode};
#endif
    (void)isa;
    return {sse2::encode};
}

using Kernels = simd::Dispatcher<Path, make_path>;
const Path& path() { return Kernels::get().table; }

}  // namespace

bool use_path(std::string_view name) { return Kernels::get().use(name); }

const char* dispatch_path() { return simd::isa_name(Kernels::get().isa); }

int default_polish(Format f, bool importance) {
    switch (f) {
        case Format::Q8_0: return 1;  // llama.cpp's Q8_0 is a single cheap pass, importance or not
        case Format::IQ4_NL:
        case Format::IQ4_XS: return 3;  // llama.cpp's 16-trial search dwarfs any polish
        default: return importance ? 3 : 1;  // with importance llama.cpp runs a search; without, one pass
    }
}

void quantize_row(Format f, int polish, const float* src, void* dst, int64_t n, const float* importance,
                  uint8_t* fallback) {
    const int64_t block = f == Format::IQ4_XS ? 256 : 32;
    // Q4_0..Q5_1's importance weights use the whole row's mean square (llama.cpp's sigma2).
    const bool row_sigma = importance && f != Format::Q8_0 && f != Format::IQ4_NL && f != Format::IQ4_XS;
    const float sigma2 = row_sigma ? llama_ref::row_sigma2(src, n) : 0.0f;
    polish = polish < 0 ? 0 : (polish > 3 ? 3 : polish);
    path().encode(static_cast<int>(f), polish, src, importance, sigma2, n / block, static_cast<uint8_t*>(dst),
                  fallback);
}

}  // namespace qf::legacy_lanes
