#include "quant/q5_1.h"

#include "quant/quant_common.h"


namespace qf {
namespace {

using namespace quant;

struct Q5_1 {
    static constexpr int kElems = 32, kBytes = 24;
    struct RowContext {
        float sigma2;
    };

    static RowContext row_context(const float* row, int64_t n, const float* importance) {
        return {importance ? llama_ref::row_sigma2(row, n) : 0.0f};
    }

    static void pack(uint8_t* block, uint16_t d, uint16_t m, const uint8_t* q) {
        store_u16(block, d);
        store_u16(block + 2, m);
        uint32_t qh = 0;
        for (int j = 0; j < 32; ++j) qh |= static_cast<uint32_t>((q[j] >> 4) & 1u) << j;
        store_u32(block + 4, qh);
        for (int j = 0; j < 16; ++j) block[8 + j] = static_cast<uint8_t>((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
    }

    static void dequantize_block(const uint8_t* block, float* y) {
        const float d = f16_to_f32(load_u16(block));
        const float m = f16_to_f32(load_u16(block + 2));
        const uint32_t qh = load_u32(block + 4);
        for (int j = 0; j < 16; ++j) {
            const int q0 = (block[8 + j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
            const int q1 = (block[8 + j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
            y[j] = static_cast<float>(q0) * d + m;
            y[j + 16] = static_cast<float>(q1) * d + m;
        }
    }

    // quantize_row_q5_1_ref without importance (note: no clamp to 31 there, none needed),
    // quantize_row_q5_1_impl with it.
    static void llama_block(const RowContext& ctx, const float* x, const float* qw, uint8_t* block) {
        uint8_t q[32];
        float min;
        const float d = llama_affine_block(31, false, ctx.sigma2, x, qw, q, &min);
        pack(block, f32_to_f16(d), f32_to_f16(min), q);
    }

    static void search_block(const float* x, const float* w, uint8_t* block) {
        uint8_t L[32];
        uint16_t d, m;
        search_affine(31, x, w, 32, -1.0f, 0.1f, 16, &d, &m, L);
        pack(block, d, m, L);
    }
};

}  // namespace

void dequantize_row_q5_1(const void* src, float* dst, int64_t n) { dequantize_row_blocks<Q5_1>(src, dst, n); }
void quantize_row_q5_1(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_fast<Q5_1>(legacy_lanes::Format::Q5_1, src, dst, n, importance);
}
void quantize_row_q5_1_thorough(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_best<Q5_1>(src, dst, n, importance);
}
void quantize_row_q5_1_llama(const float* src, void* dst, int64_t n, const float* importance) {
    quantize_row_llama<Q5_1>(src, dst, n, importance);
}

void set_codes_q5_1(void* block, const uint8_t* codes) {
    auto* b = static_cast<uint8_t*>(block);
    uint32_t qh = 0;
    for (int j = 0; j < 32; ++j) qh |= static_cast<uint32_t>((codes[j] >> 4) & 1u) << j;
    quant::store_u32(b + 4, qh);
    for (int j = 0; j < 16; ++j) b[8 + j] = static_cast<uint8_t>((codes[j] & 0x0F) | ((codes[j + 16] & 0x0F) << 4));
}

}  // namespace qf
