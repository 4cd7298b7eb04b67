// The legacy-format kernels for avx2 (8 lanes); built with -mavx2 (see CMakeLists.txt).
#define QF_LANE_NS avx2
#define QF_LANE_BYTES 32
#if defined(__x86_64__)
#include "quant/lane_legacy.inc"
#endif
