// `qforge quantize --calibrate TEXT`: the weight products of the blocks (and the output) are
// quantized with error feedback (quant/error_feedback.h) from statistics of the calibration
// text, gathered sequentially through the model (model/calibration.h). The tensor types and
// sizes are those of the plan (llama.cpp's recipe with an importance matrix), so the file is a
// plain GGUF of the same layout; only the codes and scales inside the blocks differ.
#pragma once
#include "model/calibration.h"
#include "pipeline/quantize.h"

#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace qf {

class TensorSource;

struct CalibratedWeights {
    std::map<std::string, std::vector<std::byte>> bytes;  // tensor name -> its data, as planned
    CalibrationResult run;
    int64_t with_feedback = 0, without_feedback = 0;      // tensors of each kind
};

// Reads options.calibrate_path, runs the model (the input GGUF, or an F32 GGUF converted from
// the HF folder into a temporary folder) and returns the calibrated bytes of every weight
// product the plan quantizes. Throws qf::Error for a short text, an unsupported model or
// non-finite activations.
CalibratedWeights calibrate_weights(const QuantizeOptions& options, const QuantizePlan& plan, const TensorSource& source);

}  // namespace qf
