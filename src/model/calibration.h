// Sequential calibration statistics for error-feedback quantization (GPTQ's order): the
// calibration text runs through the model one stage at a time, and every weight product's
// input second moment H = sum x x^T is complete before that product is quantized; the
// quantized matrix is then swapped in, so later products see the inputs the quantized model
// gives them (layer L is calibrated on layers 0..L-1 already quantized, and inside a layer
// attn_output on quantized q/k/v, ffn_down on quantized gate/up).
//
// Memory: the activations of the whole calibration text at one stage (tokens x (n_embd +
// n_ff) floats) and one group's statistics (n_in x n_in doubles); the weights stay mapped.
#pragma once
#include "model/model.h"

#include <functional>
#include <span>
#include <string>
#include <vector>

namespace qf {

// H = sum over calibration tokens of x x^T for the input x of a group of weight products that
// read the same input (q/k/v; gate/up; attn_output; ffn_down; output).
struct InputStats {
    int64_t n = 0;          // input width
    int64_t n_tokens = 0;   // rows summed
    std::vector<double> H;  // n x n, row-major, symmetric
    // diag(H) / n_tokens: the mean square of each input, what llama-imatrix records.
    std::vector<float> mean_square() const;
};

// What the caller made of one weight: its type and bytes (rows in the file's layout, owned by
// the caller, alive as long as the model is used), swapped into the model for the rest of the
// run. Empty bytes: the weight is kept as it is.
struct QuantizedWeight {
    GgmlType type = GgmlType::F32;
    std::span<const std::byte> bytes;
};

struct CalibrationOptions {
    int64_t n_ctx = 512;
    int64_t max_chunks = 0;  // 0: every whole chunk of the text
    bool calibrate_output = true;  // also the output product (output.weight or tied token_embd)
    // names: the group's weights ("blk.3.attn_q.weight", ...), all reading the input `stats`
    // describes; returns one entry per name. Called in model order.
    std::function<std::vector<QuantizedWeight>(std::span<const std::string> names, const InputStats& stats)> quantize;
    // After each layer (and once for the output): layer index (n_layer for the output), seconds so far.
    std::function<void(int64_t layer, int64_t n_layer, double seconds)> on_layer;
};

struct CalibrationResult {
    int64_t chunks = 0, tokens = 0;
    double seconds = 0;
};

// tokens: the tokenized calibration text; bos >= 0 replaces the first token of every chunk
// (llama.cpp's perplexity/imatrix chunking). Throws qf::Error when the text is shorter than one
// chunk or activations turn non-finite. The model's weight overrides stay in place afterwards.
CalibrationResult run_calibration(Transformer& model, std::span<const int32_t> tokens, int32_t bos,
                                  const CalibrationOptions& options);

}  // namespace qf
