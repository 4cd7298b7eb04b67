// The legacy-format kernels for sse2 (4 lanes); built with the baseline flags.
#define QF_LANE_NS sse2
#define QF_LANE_BYTES 16
#include "quant/lane_legacy.inc"
