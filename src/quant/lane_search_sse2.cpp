// The lane kernels for sse2 (4 lanes); built with the baseline flags (see CMakeLists.txt).
#define QF_LANE_NS sse2
#define QF_LANE_BYTES 16
#include "quant/lane_kernels.inc"
