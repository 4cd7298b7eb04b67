#include "model/calibration.h"

#include "common/error.h"
#include "model/gemm.h"

#include <omp.h>

#include <algorithm>
#include <chrono>

namespace qf {

std::vector<float> InputStats::mean_square() const {
    std::vector<float> out(static_cast<size_t>(n));
    const double scale = n_tokens > 0 ? 1.0 / static_cast<double>(n_tokens) : 0.0;
    for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = static_cast<float>(H[static_cast<size_t>(i * n + i)] * scale);
    return out;
}

namespace {

// H += X^T X for T rows of n floats. The product runs through the forward pass's panel kernel:
// X^T (n x T) times 16-column panels of X, in f32 per chunk, then added to H in double.
void accumulate(InputStats& s, const float* x, int64_t T) {
    const int64_t n = s.n;
    constexpr int P = gemm::kPanelCols;
    const int64_t n_pad = (n + P - 1) / P * P;
    std::vector<float> xt(static_cast<size_t>(n * T)), xp(static_cast<size_t>(T * n_pad), 0.0f);
    for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < n; ++i) {
            xt[static_cast<size_t>(i * T + t)] = x[t * n + i];
            xp[static_cast<size_t>(t * n_pad + i)] = x[t * n + i];
        }
    const int64_t n_panels = n_pad / P;
#pragma omp parallel
    {
        std::vector<float> g(static_cast<size_t>(n * P));
#pragma omp for schedule(dynamic, 1)
        for (int64_t p = 0; p < n_panels; ++p) {
            const int64_t j0 = p * P;
            const int nc = static_cast<int>(std::min<int64_t>(P, n - j0));
            // Rows i >= j0 only (the upper triangle is mirrored at the end).
            gemm::panel_product(xt.data() + j0 * T, T, n - j0, xp.data() + j0, n_pad, T, g.data(), P, nc);
            for (int64_t i = j0; i < n; ++i)
                for (int c = 0; c < nc; ++c)
                    s.H[static_cast<size_t>(i * n + j0 + c)] += static_cast<double>(g[static_cast<size_t>((i - j0) * P + c)]);
        }
    }
    s.n_tokens += T;
}

void mirror(InputStats& s) {
    const int64_t n = s.n;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = i + 1; j < n; ++j) s.H[static_cast<size_t>(i * n + j)] = s.H[static_cast<size_t>(j * n + i)];
}

InputStats new_stats(int64_t n) {
    InputStats s;
    s.n = n;
    s.H.assign(static_cast<size_t>(n * n), 0.0);
    return s;
}

}  // namespace

CalibrationResult run_calibration(Transformer& model, std::span<const int32_t> tokens, int32_t bos,
                                  const CalibrationOptions& options) {
    const ModelHparams& hp = model.hparams();
    const std::string& label = model.file().path();
    const int64_t T = options.n_ctx;
    if (T < 2) fail("{}: calibration context {} is too small", label, T);
    int64_t n_chunks = static_cast<int64_t>(tokens.size()) / T;
    if (options.max_chunks > 0) n_chunks = std::min(n_chunks, options.max_chunks);
    if (n_chunks < 1)
        fail("{}: the calibration text tokenizes to {} tokens, shorter than one chunk of {}", label, tokens.size(), T);
    if (!options.quantize) fail("{}: calibration needs a quantizer", label);
    const auto start = std::chrono::steady_clock::now();
    auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };

    const int64_t E = hp.n_embd, A = hp.n_head * hp.head_dim, F = hp.n_ff;
    auto rows_of = [&](std::vector<float>& v, int64_t c, int64_t width) { return v.data() + c * T * width; };
    std::vector<float> x(static_cast<size_t>(n_chunks * T * E));
    std::vector<float> att, h;  // per stage, all chunks
    std::vector<float> xn(static_cast<size_t>(T * E));

    std::vector<int32_t> chunk(static_cast<size_t>(T));
    for (int64_t c = 0; c < n_chunks; ++c) {
        std::copy(tokens.begin() + c * T, tokens.begin() + (c + 1) * T, chunk.begin());
        if (bos >= 0) chunk[0] = bos;
        model.embed(chunk, rows_of(x, c, E));
    }

    // Quantizes a group reading `stats` and swaps the results into the model.
    auto quantize_group = [&](std::vector<std::string> names, InputStats& stats) {
        mirror(stats);
        const std::vector<QuantizedWeight> made = options.quantize(names, stats);
        if (made.size() != names.size()) fail("{}: calibration quantizer returned {} weights for {}", label, made.size(), names.size());
        for (size_t i = 0; i < names.size(); ++i)
            if (!made[i].bytes.empty()) model.override_weight(names[i], made[i].type, made[i].bytes);
    };

    for (int64_t il = 0; il < hp.n_layer; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        {   // q, k, v read the normed residual.
            InputStats s = new_stats(E);
            for (int64_t c = 0; c < n_chunks; ++c) {
                model.attention_input(il, rows_of(x, c, E), T, xn.data());
                accumulate(s, xn.data(), T);
            }
            quantize_group({p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight"}, s);
        }
        {   // attn_output reads the attention of the quantized q/k/v.
            att.assign(static_cast<size_t>(n_chunks * T * A), 0.0f);
            InputStats s = new_stats(A);
            for (int64_t c = 0; c < n_chunks; ++c) {
                model.attention_input(il, rows_of(x, c, E), T, xn.data());
                model.attention(il, xn.data(), T, rows_of(att, c, A), nullptr);
                accumulate(s, rows_of(att, c, A), T);
            }
            quantize_group({p + "attn_output.weight"}, s);
            for (int64_t c = 0; c < n_chunks; ++c) model.attention_output(il, rows_of(att, c, A), T, rows_of(x, c, E), nullptr);
            std::vector<float>().swap(att);
        }
        {   // gate and up read the normed residual.
            InputStats s = new_stats(E);
            for (int64_t c = 0; c < n_chunks; ++c) {
                model.ffn_input(il, rows_of(x, c, E), T, xn.data());
                accumulate(s, xn.data(), T);
            }
            quantize_group({p + "ffn_gate.weight", p + "ffn_up.weight"}, s);
        }
        {   // ffn_down reads silu(gate) * up of the quantized gate/up.
            h.assign(static_cast<size_t>(n_chunks * T * F), 0.0f);
            InputStats s = new_stats(F);
            for (int64_t c = 0; c < n_chunks; ++c) {
                model.ffn_input(il, rows_of(x, c, E), T, xn.data());
                model.ffn_hidden(il, xn.data(), T, rows_of(h, c, F), nullptr);
                accumulate(s, rows_of(h, c, F), T);
            }
            quantize_group({p + "ffn_down.weight"}, s);
            for (int64_t c = 0; c < n_chunks; ++c) model.ffn_output(il, rows_of(h, c, F), T, rows_of(x, c, E), nullptr);
            std::vector<float>().swap(h);
        }
        if (options.on_layer) options.on_layer(il, hp.n_layer, seconds());
    }
    if (options.calibrate_output) {
        InputStats s = new_stats(E);
        for (int64_t c = 0; c < n_chunks; ++c) {
            model.output_input(rows_of(x, c, E), T, xn.data());
            accumulate(s, xn.data(), T);
        }
        const std::string out_name = model.weight_shape("output.weight") ? "output.weight" : "token_embd.weight";
        quantize_group({out_name}, s);
        if (options.on_layer) options.on_layer(hp.n_layer, hp.n_layer, seconds());
    }
    CalibrationResult r;
    r.chunks = n_chunks;
    r.tokens = n_chunks * T;
    r.seconds = seconds();
    return r;
}

}  // namespace qf
