// The legacy-format kernels for avx512 (16 lanes); built with -mavx512f (see CMakeLists.txt).
#define QF_LANE_NS avx512
#define QF_LANE_BYTES 64
#if defined(__x86_64__)
#include "quant/lane_legacy.inc"
#endif
