#include "quant/q4_1.h"

#include "quant/quant_common.h"


namespace qf {
namespace {

using namespace quant;

struct Q4_1 {
    static constexpr int kElems = 32, kBytes = 20;
    struct RowContext {
        float sigma2;
    };

    static RowContext row_context(const float* row, int64_t n, const float* importance) {
        return {importance ? llama_ref::row_sigma2(row, n) : 0.0f};
    }

    static void pack(uint8_t* block, uint16_t d, uint16_t m, const uint8_t* q) {
        store_u16(block, d);
        store_u16(block + 2, m);
        for (int j = 0; j < 16; ++j) block[4 + j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
    }

    static void dequantize_block(const uint8_t* block, float* y) {
        const float d = f16_to_f32(load_u16(block));
        const float m = f16_to_f32(load_u16(block + 2));
        for (int j = 0; j < 16; ++j) {
            y[j] = static_cast<float>(block[4 + j] & 0x0F) * d + m;
            y[j + 16] = static_cast<float>(block[4 + j] >> 4) * d + m;
        }
    }

    // quantize_row_q4_1_ref without importance, quantize_row_q4_1_impl with it.
    static void llama_block(const RowContext& ctx, const float* x, const float* qw, uint8_t* block) {
        uint8_t q[32];
        float min;
        const float d = llama_affine_block(15, true, ctx.sigma2, x, qw, q, &min);
        pack(block, f32_to_f16(d), f32_to_f16(min), q);
    }

    static void search_block(const float* x, const float* w, uint8_t* block) {
        uint8_t L[32];
        uint16_t d, m;
        search_affine(15, x, w, 32, -1.0f, 0.1f, 16, &d, &m, L);
        pack(block, d, m, L);
    }
};

}  // namespace

void dequantize_row_q4_1(const void* src, float* dst, int64_t n) { dequantize_row_blocks<Q4_1>(src, dst, n); }
void quantize_row_q4_1(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_fast<Q4_1>(legacy_lanes::Format::Q4_1, src, dst, n, importance);
}
void quantize_row_q4_1_thorough(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_best<Q4_1>(src, dst, n, importance);
}
void quantize_row_q4_1_llama(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_llama<Q4_1>(src, dst, n, importance);
}

void set_codes_q4_1(void* block, const uint8_t* codes) {
    auto* b = static_cast<uint8_t*>(block);
    for (int j = 0; j < 16; ++j) b[4 + j] = static_cast<uint8_t>(codes[j] | (codes[j + 16] << 4));
}

}  // namespace qf
