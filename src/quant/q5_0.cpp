#include "quant/q5_0.h"

#include "quant/quant_common.h"

namespace qf {
namespace {

using namespace quant;

struct Q5_0 {
    static constexpr int kElems = 32, kBytes = 22;
    struct RowContext {
        float sigma2;
    };

    static RowContext row_context(const float* row, int64_t n, const float* importance) {
        return {importance ? llama_ref::row_sigma2(row, n) : 0.0f};
    }

    static void pack(uint8_t* block, uint16_t d, const uint8_t* q) {
        store_u16(block, d);
        uint32_t qh = 0;
        for (int j = 0; j < 32; ++j) qh |= static_cast<uint32_t>((q[j] >> 4) & 1u) << j;
        store_u32(block + 2, qh);
        for (int j = 0; j < 16; ++j) block[6 + j] = static_cast<uint8_t>((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
    }

    static void dequantize_block(const uint8_t* block, float* y) {
        const float d = f16_to_f32(load_u16(block));
        const uint32_t qh = load_u32(block + 2);
        for (int j = 0; j < 16; ++j) {
            const int q0 = (block[6 + j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
            const int q1 = (block[6 + j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
            y[j] = static_cast<float>(q0 - 16) * d;
            y[j + 16] = static_cast<float>(q1 - 16) * d;
        }
    }

    // quantize_row_q5_0_ref without importance, quantize_row_q5_0_impl with it.
    static void llama_block(const RowContext& ctx, const float* x, const float* qw, uint8_t* block) {
        uint8_t q[32];
        const float d = llama_symmetric_block(16, ctx.sigma2, x, qw, q);
        pack(block, f32_to_f16(d), q);
    }

    static void search_block(const float* x, const float* w, uint8_t* block) {
        constexpr UniformGrid kGrid{-16, 15};
        const float d = search_symmetric<Fp16Scale>(kGrid, x, w, 32, ScaleSpread{-0.15f, 0.06f, 15});
        uint8_t idx[32];  // level - lowest level = the stored code
        symmetric_indices(kGrid, x, 32, d, idx);
        pack(block, f32_to_f16(d), idx);
    }
};

}  // namespace

void dequantize_row_q5_0(const void* src, float* dst, int64_t n) { dequantize_row_blocks<Q5_0>(src, dst, n); }
void quantize_row_q5_0(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_fast<Q5_0>(legacy_lanes::Format::Q5_0, src, dst, n, importance);
}
void quantize_row_q5_0_thorough(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_best<Q5_0>(src, dst, n, importance);
}
void quantize_row_q5_0_llama(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_llama<Q5_0>(src, dst, n, importance);
}

void set_codes_q5_0(void* block, const uint8_t* codes) {
    auto* b = static_cast<uint8_t*>(block);
    uint32_t qh = 0;
    for (int j = 0; j < 32; ++j) qh |= static_cast<uint32_t>((codes[j] >> 4) & 1u) << j;
    quant::store_u32(b + 2, qh);
    for (int j = 0; j < 16; ++j) b[6 + j] = static_cast<uint8_t>((codes[j] & 0x0F) | ((codes[j + 16] & 0x0F) << 4));
}

}  // namespace qf
