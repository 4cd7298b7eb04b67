#include "plan/fit.h"

#include "common/error.h"

#include <algorithm>
#include <charconv>

namespace qf {

namespace {

// Weights of a planned file grouped the way llama.cpp's loader places them.
struct LayerBytes {
    std::vector<uint64_t> stored, stored_gpu, read;  // per repeating layer: bytes held (host / GPU), read per token
    uint64_t input = 0;                  // token_embd and other model-level tensors (host)
    uint64_t output = 0, output_gpu = 0, output_read = 0;  // the output layer (output_norm + output matrix)
    uint64_t tied_output_gpu = 0;        // token_embd duplicated as the output matrix when offloaded
};

// A tensor's size in a CUDA buffer (facts §7.1): quantized rows whose length is not a multiple
// of 512 get one padding row segment (MATRIX_ROW_PADDING), and tensors are 128-byte aligned.
// Other backends: the plain size.
uint64_t device_bytes(const PlannedTensor& t, bool cuda) {
    if (!cuda) return t.bytes;
    uint64_t b = t.bytes;
    const int64_t ne0 = t.tensor.shape.empty() ? 0 : t.tensor.shape[0];
    if (is_quantized(t.tensor.type) && ne0 % 512 != 0)
        if (auto pad = row_bytes(t.tensor.type, 512 - ne0 % 512)) b += *pad;
    return (b + 127) / 128 * 128;
}

bool is_expert_tensor(const std::string& name) { return name.find("_exps.") != std::string::npos; }

LayerBytes group_layers(const PlanModel& m, const SizePlan& size, bool cuda) {
    LayerBytes g;
    g.stored.assign(m.n_layer, 0);
    g.stored_gpu.assign(m.n_layer, 0);
    g.read.assign(m.n_layer, 0);
    const double expert_share = m.n_expert ? static_cast<double>(m.n_expert_used) / m.n_expert : 1.0;
    for (const PlannedTensor& t : size.tensors) {
        const std::string& name = t.tensor.name;
        if (name.rfind("blk.", 0) == 0) {
            uint32_t il = 0;
            const char* first = name.data() + 4;
            auto [p, ec] = std::from_chars(first, name.data() + name.size(), il);
            if (ec != std::errc() || il >= m.n_layer) fail("plan: tensor {} outside the {} layers", name, m.n_layer);
            g.stored[il] += t.bytes;
            g.stored_gpu[il] += device_bytes(t, cuda);
            g.read[il] += is_expert_tensor(name) ? static_cast<uint64_t>(static_cast<double>(t.bytes) * expert_share)
                                                 : t.bytes;
        } else if (name == "output.weight" || name == "output_norm.weight") {
            g.output += t.bytes;
            g.output_gpu += device_bytes(t, cuda);
            g.output_read += t.bytes;
        } else {
            g.input += t.bytes;
            if (name == "token_embd.weight" && m.tied) {
                g.tied_output_gpu = device_bytes(t, cuda);
                g.output_read += t.bytes;  // the output matmul reads the whole matrix every token
            }
        }
    }
    return g;
}

struct Evaluator {
    const PlanModel& m;
    const FitRequest& req;
    LayerBytes g;
    uint64_t gpu_capacity = 0;
    int n_discrete = 0;

    FitResult at(int k, uint32_t n_ctx) const {
        ContextOptions o = req.context;
        o.n_ctx = n_ctx;
        const KvPlan kv = plan_kv_cache(m, o);
        FitResult r;
        r.n_offloadable = static_cast<int>(m.n_layer) + 1;
        r.n_gpu_layers = req.gpus.empty() ? 0 : std::clamp(k, 0, r.n_offloadable);
        r.gpu_capacity = gpu_capacity;
        r.ram_capacity = req.ram_bytes;
        r.kv_bytes = kv.bytes();
        r.compute_bytes = compute_buffer_estimate(m, o);
        const int n_gpu = static_cast<int>(req.gpus.size());
        const uint32_t first_gpu_layer = m.n_layer - static_cast<uint32_t>(std::max(r.n_gpu_layers - 1, 0));
        double gpu_read = 0, cpu_read = 0;
        r.ram_weights = g.input;
        if (r.n_gpu_layers >= 1) {
            r.gpu_weights += g.output_gpu + g.tied_output_gpu;
            gpu_read += static_cast<double>(g.output_read);
        } else {
            r.ram_weights += g.output;
            cpu_read += static_cast<double>(g.output_read);
        }
        for (uint32_t il = 0; il < m.n_layer; ++il) {
            const uint64_t layer_kv = kv.bytes_per_layer(m, il, o);
            const bool on_gpu = r.n_gpu_layers >= 1 && il >= first_gpu_layer;
            if (on_gpu) r.gpu_weights += g.stored_gpu[il];
            else r.ram_weights += g.stored[il];
            (on_gpu ? r.gpu_kv : r.ram_kv) += layer_kv;
            (on_gpu ? gpu_read : cpu_read) += static_cast<double>(g.read[il] + layer_kv);
        }
        if (r.n_gpu_layers >= 1) {
            r.gpu_compute = static_cast<uint64_t>(n_gpu) * r.compute_bytes;
            r.gpu_overhead = static_cast<uint64_t>(n_discrete) * req.gpu_overhead_bytes;
        }
        // Host: the logits buffer, and a CPU compute buffer when layers run there (with full
        // offload only the input embedding rows are computed on the host).
        const uint64_t n_tok = std::min<uint64_t>(o.n_ubatch, kv.n_ctx);
        r.ram_buffers = output_buffer_bytes(m, o) +
                        (r.n_gpu_layers < r.n_offloadable ? r.compute_bytes : 4 * n_tok * uint64_t{m.n_embd});

        const bool gpu_ok = r.gpu_bytes() <= r.gpu_capacity;
        const bool ram_ok = r.ram_bytes() <= r.ram_capacity;
        if (gpu_ok && ram_ok)
            r.verdict = (req.gpus.empty() || r.n_gpu_layers == r.n_offloadable) ? FitVerdict::Fits : FitVerdict::Partial;

        // Speed bound: GPU layers run on the devices in turn, each over its share of them.
        double seconds = 0;
        bool known = true;
        if (gpu_read > 0) {
            for (const Device& d : req.gpus) {
                if (d.bandwidth_gbs <= 0) known = false;
                const double share = static_cast<double>(d.usable_bytes()) / static_cast<double>(gpu_capacity ? gpu_capacity : 1);
                if (known) seconds += gpu_read * share / (d.bandwidth_gbs * 1e9);
            }
        }
        if (cpu_read > 0) {
            if (req.ram_bandwidth_gbs <= 0) known = false;
            else seconds += cpu_read / (req.ram_bandwidth_gbs * 1e9);
        }
        r.tokens_per_second = known && seconds > 0 ? 1.0 / seconds : 0;
        return r;
    }
};

}  // namespace

const char* verdict_name(FitVerdict v) {
    switch (v) {
        case FitVerdict::Fits: return "fits";
        case FitVerdict::Partial: return "partial";
        case FitVerdict::No: return "no";
    }
    return "?";
}

FitResult plan_fit(const PlanModel& m, const SizePlan& size, const FitRequest& req) {
    // CUDA pads quantized rows; a mix of vendors is planned with the padding (the larger).
    bool cuda = false;
    for (const Device& d : req.gpus) cuda = cuda || d.vendor == "nvidia";
    Evaluator ev{m, req, group_layers(m, size, cuda)};
    for (const Device& d : req.gpus) {
        ev.gpu_capacity += d.usable_bytes();
        if (d.kind != "unified") ++ev.n_discrete;
    }
    const int n_off = static_cast<int>(m.n_layer) + 1;
    const uint32_t n_ctx = req.context.n_ctx;

    // Layers: forced, or the most that fit on the GPUs (memory grows with every layer).
    int k = 0;
    if (req.gpus.empty()) {
        k = 0;
    } else if (req.n_gpu_layers >= 0) {
        k = std::min(req.n_gpu_layers, n_off);
    } else {
        for (k = n_off; k > 0; --k) {
            FitResult r = ev.at(k, n_ctx);
            if (r.gpu_bytes() <= r.gpu_capacity) break;
        }
    }
    FitResult best = ev.at(k, n_ctx);

    // Largest context keeping this placement (all memory grows with n_ctx, so bisect).
    const uint32_t limit = std::max<uint32_t>(m.context_length, 256);
    auto keeps = [&](uint32_t c) {
        FitResult r = ev.at(k, c);
        return r.verdict != FitVerdict::No && (best.verdict != FitVerdict::Fits || r.verdict == FitVerdict::Fits);
    };
    if (best.verdict != FitVerdict::No || keeps(256)) {
        uint32_t lo = 0, hi = (limit + 255) / 256;  // in units of 256 cells
        while (lo < hi) {
            const uint32_t mid = (lo + hi + 1) / 2;
            if (keeps(mid * 256)) lo = mid;
            else hi = mid - 1;
        }
        best.max_context = lo * 256;
    }
    return best;
}

int recommend(const std::vector<SizePlan>& plans, const std::vector<FitResult>& fits) {
    int best = -1;
    for (FitVerdict want : {FitVerdict::Fits, FitVerdict::Partial}) {
        for (size_t i = 0; i < plans.size() && i < fits.size(); ++i)
            if (fits[i].verdict == want && (best < 0 || plans[i].tensor_bytes > plans[static_cast<size_t>(best)].tensor_bytes))
                best = static_cast<int>(i);
        if (best >= 0) return best;
    }
    return -1;
}

std::vector<const FileTypeInfo*> default_plan_types() {
    std::vector<const FileTypeInfo*> out;
    for (const char* name : {"F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "IQ4_XS", "Q3_K_M", "Q2_K"})
        out.push_back(find_file_type(name));
    return out;
}

}  // namespace qf
