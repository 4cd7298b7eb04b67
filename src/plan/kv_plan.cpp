#include "plan/kv_plan.h"

#include "common/error.h"

#include <algorithm>
#include <utility>

namespace qf {

namespace {

uint32_t pad256(uint64_t n) {
    const uint64_t p = (n + 255) / 256 * 256;
    if (p > UINT32_MAX) fail("plan: context of {} cells is too large", n);
    return static_cast<uint32_t>(p);
}

uint64_t kv_row(GgmlType type, uint32_t n, const char* which) {
    auto b = row_bytes(type, n);
    if (!b) fail("plan: {} cache type {} does not fit rows of {} values", which, type_name(type), n);
    return *b;
}

}  // namespace

KvPlan plan_kv_cache(const PlanModel& m, const ContextOptions& o) {
    if (o.n_seq == 0) fail("plan: -np must be at least 1");
    if (is_quantized(o.type_v) && !o.flash_attn)
        fail("plan: a quantized V cache ({}) needs flash attention", type_name(o.type_v));
    // llama.cpp checks the block against the head size, not only the row width.
    for (auto [t, head] : {std::pair{o.type_k, m.head_dim}, std::pair{o.type_v, m.v_head_dim()}})
        if (head % traits(t).block_elems != 0)
            fail("plan: cache type {} (block {}) does not divide the head size {}", type_name(t), traits(t).block_elems,
                 head);
    KvPlan kv;
    uint32_t n_ctx = pad256(std::max<uint32_t>(o.n_ctx, 1));
    if (o.kv_unified) {
        kv.n_ctx_seq = n_ctx;
        kv.n_stream = 1;
    } else {
        kv.n_ctx_seq = pad256(n_ctx / o.n_seq);
        if (kv.n_ctx_seq == 0) fail("plan: context {} is too small for {} sequences", o.n_ctx, o.n_seq);
        kv.n_stream = o.n_seq;
    }
    kv.n_ctx = kv.n_ctx_seq * kv.n_stream;
    if (m.n_swa) {
        uint32_t per_stream = o.swa_full ? kv.n_ctx_seq
                                         : pad256(std::min<uint64_t>(kv.n_ctx_seq, uint64_t{m.n_swa} * (o.kv_unified ? o.n_seq : 1) +
                                                                                       o.n_ubatch));
        kv.swa_cells = per_stream * kv.n_stream;
    }
    const uint64_t k_row = kv_row(o.type_k, m.n_embd_k_gqa(), "K");
    const uint64_t v_row = kv_row(o.type_v, m.n_embd_v_gqa(), "V");
    for (uint32_t il = 0; il < m.n_layer; ++il) {
        const uint64_t cells = m.is_swa_layer(il) ? kv.swa_cells : kv.n_ctx;
        kv.k_bytes += cells * k_row;
        kv.v_bytes += cells * v_row;
    }
    return kv;
}

uint64_t KvPlan::bytes_per_layer(const PlanModel& m, uint32_t il, const ContextOptions& o) const {
    const uint64_t cells = m.is_swa_layer(il) ? swa_cells : n_ctx;
    return cells * (kv_row(o.type_k, m.n_embd_k_gqa(), "K") + kv_row(o.type_v, m.n_embd_v_gqa(), "V"));
}

uint64_t compute_buffer_estimate(const PlanModel& m, const ContextOptions& o) {
    const KvPlan kv = plan_kv_cache(m, o);
    const uint64_t n_tok = std::min<uint64_t>(kv.n_ctx, std::min(o.n_ubatch, o.n_batch));
    // Calibrated on llama.cpp's CPU log (tests/interop/test_plan_interop.cpp). The peak is the
    // larger of three phases of the worst-case graph (n_tok = n_ubatch tokens, all outputs):
    //  - logits: n_vocab f32 per token next to about three residual-stream vectors;
    //  - attention without flash attention: the KQ scores of one layer (n_head x n_kv f32 per
    //    token), the f32 mask (n_kv per token) and about six n_embd-wide intermediates;
    //  - attention with flash attention: only the f16 mask is n_kv wide, plus about twelve
    //    n_embd-wide intermediates;
    //  - FFN: gate and up (n_ff wide, the routed experts' for MoE) and the residual stream.
    const uint64_t n_ff = m.n_expert ? uint64_t{m.n_ff_exp} * m.n_expert_used : m.n_ff;
    const uint64_t n_kv = kv.n_ctx_seq;
    const uint64_t E = m.n_embd;
    const uint64_t logits = 4 * n_tok * (m.n_vocab + 3 * E);
    const uint64_t ffn = 4 * n_tok * (2 * n_ff + 3 * E);
    const uint64_t attn = o.flash_attn ? n_tok * (2 * n_kv + 4 * 12 * E)
                                       : 4 * n_tok * (uint64_t{m.n_head} * n_kv + n_kv + 6 * E);
    return std::max({logits, ffn, attn});
}

uint64_t output_buffer_bytes(const PlanModel& m, const ContextOptions& o) {
    return 4 * uint64_t{m.n_vocab} * std::max<uint32_t>(o.n_seq, 1);
}

}  // namespace qf
