#include "pipeline/calibrate.h"

#include "common/error.h"
#include "common/text_file.h"
#include "model/tokenizer.h"
#include "pipeline/convert.h"
#include "pipeline/row_convert.h"
#include "pipeline/tensor_source.h"
#include "quant/error_feedback.h"

#include <omp.h>

#include <memory>
#include <optional>

namespace qf {

CalibratedWeights calibrate_weights(const QuantizeOptions& options, const QuantizePlan& plan, const TensorSource& source) {
    const std::string text = read_text_file(options.calibrate_path);
    if (options.threads > 0) omp_set_num_threads(options.threads);
    std::unique_ptr<TemporaryF32Gguf> converted;
    if (!source.is_gguf()) converted = std::make_unique<TemporaryF32Gguf>(options.input, options.threads, "calibrate");
    Transformer model(converted ? converted->path() : options.input);
    const Tokenizer tokenizer = Tokenizer::from_gguf(model.file());
    const std::vector<int32_t> tokens = tokenizer.encode(text, true);
    const int32_t bos = tokenizer.adds_bos() ? tokenizer.bos_id() : -1;
    if (static_cast<int64_t>(tokens.size()) < options.calib_ctx)
        fail("{}: the calibration text tokenizes to {} tokens, shorter than one chunk of {} (--calib-ctx)",
             options.calibrate_path, tokens.size(), options.calib_ctx);

    std::map<std::string, const QuantizeTensorPlan*> by_name;
    for (const auto& t : plan.tensors) by_name.emplace(t.name, &t);

    CalibratedWeights result;
    CalibrationOptions co;
    co.n_ctx = options.calib_ctx;
    co.max_chunks = options.calib_chunks;
    co.quantize = [&](std::span<const std::string> names, const InputStats& stats) {
        std::vector<QuantizedWeight> made(names.size());
        const std::vector<float> importance = stats.mean_square();
        std::optional<FeedbackFactor> factor;
        for (size_t i = 0; i < names.size(); ++i) {
            const auto it = by_name.find(names[i]);
            if (it == by_name.end()) continue;  // not in the file (cannot happen for a model that loaded)
            const QuantizeTensorPlan& tp = *it->second;
            if (tp.copy || !is_quantized(tp.type) || tp.shape.size() != 2) continue;  // stays as stored
            const int64_t cols = tp.shape[0], rows = tp.shape[1];
            if (cols != stats.n) fail("{}: tensor '{}' has rows of {}, its input has {} values", source.path(), tp.name, cols, stats.n);
            std::vector<float> w(static_cast<size_t>(rows * cols));
            source.read_rows_f32(tp.source_index, 0, rows, w.data());
            check_finite_rows(tp.name, w.data(), rows, cols, 0);
            std::vector<std::byte>& bytes = result.bytes[tp.name];
            bytes.assign(tp.bytes, std::byte{0});
            const QuantizeRowFn encode = quantize_fn_for(tp.type, options);
            if (supports_error_feedback(tp.type)) {
                if (!factor) factor = feedback_factor(stats.H, stats.n, options.calib_damp);
                quantize_with_feedback(tp.type, encode, w.data(), rows, cols, *factor, importance.data(), bytes.data());
                ++result.with_feedback;
            } else {
                // No error feedback for this type: its own search, weighted by the same statistics.
                const uint64_t rb = tp.bytes / static_cast<uint64_t>(rows);
#pragma omp parallel for schedule(dynamic, 16)
                for (int64_t r = 0; r < rows; ++r)
                    encode(w.data() + r * cols, bytes.data() + static_cast<uint64_t>(r) * rb, cols,
                           traits(tp.type).uses_importance ? importance.data() : nullptr);
                ++result.without_feedback;
            }
            made[i] = {tp.type, bytes};
        }
        return made;
    };
    co.on_layer = [&](int64_t layer, int64_t n_layer, double seconds) {
        if (options.progress)
            fmt::print(stderr, "calibrate: {} {}/{} done, {:.1f} s\n", layer < n_layer ? "layer" : "output",
                       std::min(layer + 1, n_layer), n_layer, seconds);
    };
    result.run = run_calibration(model, tokens, bos, co);
    return result;
}

}  // namespace qf
