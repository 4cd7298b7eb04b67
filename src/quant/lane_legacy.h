// The fast default encoders of the 32-element block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
// IQ4_NL) and IQ4_XS. Per block: llama.cpp's own encoding, computed exactly (bit-identical to
// ggml_quantize_chunk on every CPU path), then a cheap polish (least-squares refits of the fp16
// scale (and min) for the chosen codes, with re-rounded codes); the encoding whose decoded
// values have the lower weighted squared error is stored, ties keeping llama.cpp's bytes. So the
// error is never above llama.cpp's, block by block. The float work runs on SIMD (one block per
// vector, or one block per lane for llama.cpp's sequential sums), with runtime dispatch to
// AVX-512 / AVX2 / baseline x86-64; every path gives the same bytes.
#pragma once
#include <cstdint>
#include <string_view>

namespace qf::legacy_lanes {

enum class Format : int { Q4_0 = 0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, IQ4_XS };

// Polish levels (each candidate is kept only where it decodes closer than llama.cpp's):
//  0: none: llama.cpp's encoding exactly (what ggml_quantize_chunk writes);
//  1: the least-squares fp16 scale (and min) for llama.cpp's codes, codes kept; decided from the
//     block's sums with bounds on every rounding, without decoding (the cheapest);
//  2: that scale with the codes re-rounded, judged by the decoded error;
//  3: two rounds of 2.
// The default per format and importance: as cheap as keeps it well above llama.cpp's speed.
int default_polish(Format f, bool importance);

// Encodes the row src[0 .. n) (n a multiple of the block size, 256 for IQ4_XS); importance may
// be null. When fallback is given, fallback[b] = 1 marks blocks whose result decodes to
// non-finite values (fp16 scale overflow on huge inputs): the caller re-encodes those another way.
void quantize_row(Format f, int polish, const float* src, void* dst, int64_t n, const float* importance,
                  uint8_t* fallback = nullptr);

// The code path in use: "avx512f", "avx2", "sse2" (x86-64), or "generic" elsewhere.
const char* dispatch_path();
// Switches to a path ("sse2", "avx2", "avx512f", or "best"); false when the CPU lacks it. For
// tests and benchmarks: all paths give the same bytes. Not thread-safe.
bool use_path(std::string_view name);

}  // namespace qf::legacy_lanes
