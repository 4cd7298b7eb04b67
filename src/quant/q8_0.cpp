#include "quant/q8_0.h"

#include "quant/quant_common.h"

namespace qf {
namespace {

using namespace quant;

struct Q8_0 {
    static constexpr int kElems = 32, kBytes = 34;
    struct RowContext {};

    static RowContext row_context(const float*, int64_t, const float*) { return {}; }

    static void dequantize_block(const uint8_t* block, float* y) {
        const float d = f16_to_f32(load_u16(block));
        for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(block[2 + j])) * d;
    }

    // quantize_row_q8_0_ref: d = max|x| / 127, q = roundf(x / d) (half away from zero).
    static void llama_block(const RowContext&, const float* x, const float*, uint8_t* block) {
        float amax = 0;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_u16(block, f32_to_f16(d));
        for (int j = 0; j < 32; ++j) block[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::round(x[j] * id)));
    }

    static void search_block(const float* x, const float* w, uint8_t* block) {
        constexpr UniformGrid kGrid{-128, 127};
        const float d = search_symmetric<Fp16Scale>(kGrid, x, w, 32, ScaleSpread{-0.03f, 0.01f, 5});
        uint8_t idx[32];
        symmetric_indices(kGrid, x, 32, d, idx);
        store_u16(block, f32_to_f16(d));
        for (int j = 0; j < 32; ++j) block[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(idx[j] - 128));
    }
};

}  // namespace

void dequantize_row_q8_0(const void* src, float* dst, int64_t n) { dequantize_row_blocks<Q8_0>(src, dst, n); }
void quantize_row_q8_0(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_fast<Q8_0>(legacy_lanes::Format::Q8_0, src, dst, n, importance);
}
void quantize_row_q8_0_thorough(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_best<Q8_0>(src, dst, n, importance);
}
void quantize_row_q8_0_llama(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_llama<Q8_0>(src, dst, n, importance);
}

void set_codes_q8_0(void* block, const uint8_t* codes) {
    auto* b = static_cast<uint8_t*>(block);
    for (int j = 0; j < 32; ++j) b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(codes[j] - 128));
}

}  // namespace qf
