// Lane-parallel copies of llama_ref's group searches. Read llama_reference.cpp first: every
// kernel below is that code with the group loop turned inside out, so that the innermost loop
// runs over kLanes independent groups and the compiler turns it into SIMD. Per lane, the float
// operations, their order and the integer conversions are exactly llama_ref's:
//  - sums are accumulated element by element in the same order (the lane loop is inside the
//    element loop, never across it);
//  - branches become selects: every lane computes both outcomes and keeps the one the scalar
//    code would have taken, so a lane that the scalar code would have left early keeps its
//    state unchanged;
//  - implicit weights (x^2, |x|, ...) are computed up front; they are pure functions of x.
// tests/unit/test_quant_lanes.cpp compares every kernel with llama_ref on many groups and
// tests/interop/ compares the resulting bytes with libggml.
#include "quant/lane_search.h"

#include "quant/simd_isa.h"
//
// The kernels live in lane_kernels.inc, compiled three times with different instruction sets:
// AVX-512 (16 lanes), AVX2 (8 lanes), SSE2 (4 lanes, the x86-64 baseline; on other CPUs the
// compiler lowers the vectors to whatever it has). The choice is made once, from the CPU.

#include <cstdint>
#include <cstdlib>
#include <string_view>

// Entry points of one compiled copy of lane_kernels.inc.
#define QF_DECLARE_LANE_PATH(ns)                                                                              \
    namespace qf::lanes::ns {                                                                                  \
    void qkx_batch(bool qkx3, bool mad, int count, int n, int nmax, const float* x, const float* weights,      \
                   uint8_t* L, float* scales, float* mins, float rmin, float rdelta, int nstep);              \
    void qx_batch(int count, int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw,      \
                  float* scales);                                                                             \
    void q3_batch(int count, int n, int nmax, const float* x, int8_t* L, float* scales);                      \
    void asym_refit_batch(int count, int n, int qmax, int smax, const float* x, const float* w, const float* d, \
                          const float* dmin, const int32_t* sc0, const int32_t* m0, int32_t* sc_out,           \
                          int32_t* m_out, uint8_t* q_out);                                                     \
    void sym_refit_batch(int count, int n, int qmin, int qmax, int smin, int smax, const float* x,             \
                         const float* w, const float* d, const int32_t* sc0, int32_t* sc_out, int8_t* q_out);  \
    }
QF_DECLARE_LANE_PATH(sse2)
#if defined(__x86_64__)
QF_DECLARE_LANE_PATH(avx2)
QF_DECLARE_LANE_PATH(avx512)
#endif

namespace qf::lanes {
namespace {

struct Path {
    decltype(&sse2::qkx_batch) qkx;
    decltype(&sse2::qx_batch) qx;
    decltype(&sse2::q3_batch) q3;
    decltype(&sse2::asym_refit_batch) asym_refit;
    decltype(&sse2::sym_refit_batch) sym_refit;
};

#define QF_PATH(ns) Path{ns::qkx_batch, ns::qx_batch, ns::q3_batch, ns::asym_refit_batch, ns::sym_refit_batch}

Path make_path(simd::Isa isa) {
#if defined(__x86_64__)
    if (isa == simd::Isa::kAvx512) return QF_PATH(avx512);
    if (isa == simd::Isa::kAvx2) return QF_PATH(avx2);
#endif
    (void)isa;
    return QF_PATH(sse2);
}

using Kernels = simd::Dispatcher<Path, make_path>;
const Path& path() { return Kernels::get().table; }

}  // namespace

bool use_path(std::string_view name) { return Kernels::get().use(name); }

void make_qkx_quants(bool qkx3, int count, int n, int nmax, const float* x, const float* weights, uint8_t* L,
                     float* scales, float* mins, float rmin, float rdelta, int nstep, bool use_mad) {
    path().qkx(qkx3, use_mad, count, n, nmax, x, weights, L, scales, mins, rmin, rdelta, nstep);
}

void make_qx_quants(int count, int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw,
                    float* scales) {
    path().qx(count, n, nmax, x, L, rmse_type, qw, scales);
}

void make_q3_quants(int count, int n, int nmax, const float* x, int8_t* L, float* scales) {
    path().q3(count, n, nmax, x, L, scales);
}

void asym_refit(int count, int n, int qmax, int smax, const float* x, const float* w, const float* d,
                const float* dmin, const int32_t* sc0, const int32_t* m0, int32_t* sc_out, int32_t* m_out,
                uint8_t* q_out) {
    path().asym_refit(count, n, qmax, smax, x, w, d, dmin, sc0, m0, sc_out, m_out, q_out);
}

void sym_refit(int count, int n, int qmin, int qmax, int smin, int smax, const float* x, const float* w,
               const float* d, const int32_t* sc0, int32_t* sc_out, int8_t* q_out) {
    path().sym_refit(count, n, qmin, qmax, smin, smax, x, w, d, sc0, sc_out, q_out);
}

const char* dispatch_path() { return simd::isa_name(Kernels::get().isa); }

}  // namespace qf::lanes
