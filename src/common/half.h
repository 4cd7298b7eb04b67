// Scalar float16 / bfloat16 conversions with the exact rounding ggml uses
// (round to nearest even; f16: overflow to inf, NaN -> 0x7E00; bf16: NaN made quiet).
// Bit-exactness matters: quantized scales are stored as f16 and compared byte for byte.
#pragma once
#include <bit>
#include <cstdint>

namespace qf {

inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu;
    const uint32_t man = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {  // subnormal: value = man * 2^-24
            float v = static_cast<float>(man) * 0x1p-24f;
            bits = sign | std::bit_cast<uint32_t>(v);
        }
    } else if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    return std::bit_cast<float>(bits);
}

inline uint16_t f32_to_f16(float f) {
    const uint32_t x = std::bit_cast<uint32_t>(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t abs = x & 0x7FFFFFFFu;
    if (abs > 0x7F800000u) return 0x7E00u;                      // NaN
    if (abs >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds to >= 65520 -> inf
    if (abs < 0x38800000u) {
        // Result is subnormal (or zero) in f16: value / 2^-24 rounded to nearest even.
        // Adding 0.5f makes the FPU do the rounding in the mantissa (exact for this range).
        float v = std::bit_cast<float>(abs) + 0.5f;
        return static_cast<uint16_t>(sign | (std::bit_cast<uint32_t>(v) - 0x3F000000u));
    }
    // Normal: rebias exponent and round the 13 dropped mantissa bits to nearest even.
    uint32_t mant_odd = (abs >> 13) & 1u;
    uint32_t r = abs + 0xC8000FFFu + mant_odd;  // -(112 << 23) + 0xFFF + odd
    return static_cast<uint16_t>(sign | (r >> 13));
}

inline float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

inline uint16_t f32_to_bf16(float f) {
    uint32_t x = std::bit_cast<uint32_t>(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 64u);  // quiet NaN
    return static_cast<uint16_t>((x + (0x7FFFu + ((x >> 16) & 1u))) >> 16);
}

// Round half to even, as ggml's nearest_int (valid for |v| < 2^22).
inline int nearest_int(float v) {
    float val = v + 12582912.0f;
    int i = std::bit_cast<int>(val);
    return (i & 0x007FFFFF) - 0x00400000;
}

// Rows of values, converted as the scalar functions above do (the same floats for every input
// that is not a NaN): with F16C instructions where the CPU has them (checked once), scalar
// otherwise. Reading F16 weights is most of the work of an F16 -> Q8_0 pass.
void f16_to_f32_row(const uint16_t* src, float* dst, int64_t n);
bool cpu_has_f16c();

}  // namespace qf
