// "Will it run?": where llama.cpp would put a planned model's layers on a set of devices,
// how much memory that takes on each side, the largest context that still fits, and an
// upper bound of the decode speed.
//
// Placement follows llama.cpp's loader (facts §7.1): token_embd always stays in host memory;
// n_gpu_layers = k offloads the output layer first and then the last k-1 repeating layers,
// each with its KV cache (offload_kqv). A tied embedding is duplicated as the output matrix
// on the GPU. NVIDIA GPUs store tensors as CUDA does (128-byte aligned, quantized rows padded
// to a multiple of 512 values once per tensor). Every GPU holds a compute buffer (compute_buffer_estimate) plus a fixed
// per-device overhead for the runtime (CUDA/ROCm context and workspaces), which llama.cpp
// does not report: an assumption, shown in the output.
//
// Decode speed is memory-bound: each token reads every weight once (for MoE only the routed
// share of the experts) and the whole KV cache at the context; the bound is
// 1 / Σ(bytes on a device / its bandwidth). Real speeds are lower (typically 60-80%).
#pragma once
#include "plan/hardware.h"
#include "plan/kv_plan.h"
#include "plan/size_plan.h"

#include <cstdint>
#include <string>
#include <vector>

namespace qf {

struct FitRequest {
    ContextOptions context;
    std::vector<Device> gpus;        // empty: CPU only
    uint64_t ram_bytes = 0;          // host memory a model may use
    double ram_bandwidth_gbs = 0;    // host memory bandwidth
    int n_gpu_layers = -1;           // -1: as many as fit; else forced (0 .. n_layer+1)
    uint64_t gpu_overhead_bytes = 512ull << 20;  // per discrete GPU (not for unified memory)
};

enum class FitVerdict { Fits, Partial, No };
const char* verdict_name(FitVerdict v);  // "fits", "partial", "no"

struct FitResult {
    FitVerdict verdict = FitVerdict::No;
    int n_gpu_layers = 0;    // offloaded (llama.cpp -ngl semantics), of n_offloadable
    int n_offloadable = 0;   // n_layer + 1 (the output layer)
    uint64_t gpu_capacity = 0, ram_capacity = 0;
    uint64_t gpu_weights = 0, gpu_kv = 0, gpu_compute = 0, gpu_overhead = 0;
    uint64_t ram_weights = 0, ram_kv = 0, ram_buffers = 0;  // buffers: output + host compute
    uint64_t gpu_bytes() const { return gpu_weights + gpu_kv + gpu_compute + gpu_overhead; }
    uint64_t ram_bytes() const { return ram_weights + ram_kv + ram_buffers; }
    uint64_t kv_bytes = 0;          // whole cache at the requested context
    uint64_t compute_bytes = 0;     // one compute buffer
    uint32_t max_context = 0;       // largest n_ctx (multiple of 256, at most n_ctx_train) that keeps the
                                    // verdict at this placement's best (fits: all on the GPUs); 0 if none
    double tokens_per_second = 0;   // decode upper bound at the requested context, 0 if unknown
};

FitResult plan_fit(const PlanModel& model, const SizePlan& size, const FitRequest& request);

// Index into plans of the recommended type: the largest file that fits entirely at the
// requested context, else the largest that runs partially offloaded; -1 if none runs.
int recommend(const std::vector<SizePlan>& plans, const std::vector<FitResult>& fits);

// The file types planned when --type is not given.
std::vector<const FileTypeInfo*> default_plan_types();

}  // namespace qf
