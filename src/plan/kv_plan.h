// KV cache and compute buffer of a llama.cpp context, from the model's hyperparameters
// (facts §7.2, §7.3; llama.cpp src/llama-context.cpp, llama-kv-cache.cpp, llama-kv-cache-iswa.cpp).
//
// The KV cache is exact: n_ctx is rounded up to 256; with a non-unified cache (the library
// default) each of the n_seq sequences gets its own stream of PAD(n_ctx / n_seq, 256) cells;
// every layer stores K [n_embd_k_gqa, cells] of type_k and V [n_embd_v_gqa, cells] of type_v.
// Sliding-window layers (gemma2) get PAD(min(cells, n_swa·(unified ? n_seq : 1) + n_ubatch), 256)
// cells per stream instead.
//
// The compute buffer is a ggml-alloc peak over llama.cpp's worst-case graph, which no closed
// formula reproduces; compute_buffer_estimate is calibrated against what llama.cpp logs for
// the CPU backend (tests/interop/test_plan_interop.cpp keeps it within 10%).
#pragma once
#include "plan/plan_model.h"
#include "quant/types.h"

#include <cstdint>
#include <optional>

namespace qf {

struct ContextOptions {
    uint32_t n_ctx = 4096;   // requested context (all sequences together)
    uint32_t n_seq = 1;      // -np: parallel sequences
    uint32_t n_batch = 2048, n_ubatch = 512;
    GgmlType type_k = GgmlType::F16, type_v = GgmlType::F16;
    bool kv_unified = false;
    bool swa_full = false;
    bool flash_attn = true;  // FA "auto" resolves to on where the backend supports it
};

struct KvPlan {
    uint32_t n_ctx = 0;      // cells of a full-attention layer, all streams (padded n_ctx)
    uint32_t n_ctx_seq = 0;  // cells per stream
    uint32_t n_stream = 1;
    uint32_t swa_cells = 0;  // cells of a sliding-window layer, all streams (0: no SWA layers)
    uint64_t k_bytes = 0, v_bytes = 0;
    uint64_t bytes() const { return k_bytes + v_bytes; }
    uint64_t bytes_per_layer(const PlanModel& m, uint32_t il, const ContextOptions& o) const;
};

// Throws qf::Error for a cache type whose block does not divide the K/V row width, or a
// quantized V cache without flash attention (llama.cpp refuses to create that context).
KvPlan plan_kv_cache(const PlanModel& model, const ContextOptions& options);

// Compute buffer estimate (bytes) for the backend that holds the output layer.
uint64_t compute_buffer_estimate(const PlanModel& model, const ContextOptions& options);

// Output buffer: logits of max(n_seq, 1) sequences, f32 (host memory).
uint64_t output_buffer_bytes(const PlanModel& model, const ContextOptions& options);

}  // namespace qf
