#include "quant/q4_0.h"

#include "quant/quant_common.h"

namespace qf {
namespace {

using namespace quant;

struct Q4_0 {
    static constexpr int kElems = 32, kBytes = 18;
    struct RowContext {
        float sigma2;
    };

    static RowContext row_context(const float* row, int64_t n, const float* importance) {
        return {importance ? llama_ref::row_sigma2(row, n) : 0.0f};
    }

    static void pack(uint8_t* block, uint16_t d, const uint8_t* q) {
        store_u16(block, d);
        for (int j = 0; j < 16; ++j) block[2 + j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
    }

    static void dequantize_block(const uint8_t* block, float* y) {
        const float d = f16_to_f32(load_u16(block));
        for (int j = 0; j < 16; ++j) {
            y[j] = static_cast<float>((block[2 + j] & 0x0F) - 8) * d;
            y[j + 16] = static_cast<float>((block[2 + j] >> 4) - 8) * d;
        }
    }

    // quantize_row_q4_0_ref without importance, quantize_row_q4_0_impl with it.
    static void llama_block(const RowContext& ctx, const float* x, const float* qw, uint8_t* block) {
        uint8_t q[32];
        const float d = llama_symmetric_block(8, ctx.sigma2, x, qw, q);
        pack(block, f32_to_f16(d), q);
    }

    static void search_block(const float* x, const float* w, uint8_t* block) {
        constexpr UniformGrid kGrid{-8, 7};
        const float d = search_symmetric<Fp16Scale>(kGrid, x, w, 32, ScaleSpread{-0.25f, 0.10f, 15});
        uint8_t idx[32];  // level - lowest level = the stored code
        symmetric_indices(kGrid, x, 32, d, idx);
        pack(block, f32_to_f16(d), idx);
    }
};

}  // namespace

void dequantize_row_q4_0(const void* src, float* dst, int64_t n) { dequantize_row_blocks<Q4_0>(src, dst, n); }
void quantize_row_q4_0(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_fast<Q4_0>(legacy_lanes::Format::Q4_0, src, dst, n, importance);
}
void quantize_row_q4_0_thorough(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_best<Q4_0>(src, dst, n, importance);
}
void quantize_row_q4_0_llama(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_llama<Q4_0>(src, dst, n, importance);
}

void set_codes_q4_0(void* block, const uint8_t* codes) {
    auto* b = static_cast<uint8_t*>(block);
    for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<uint8_t>(codes[j] | (codes[j + 16] << 4));
}

}  // namespace qf
