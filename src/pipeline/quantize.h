// `qforge quantize`: a HF folder or an F32/F16/BF16 GGUF -> a llama.cpp file type (Q4_K_M,
// Q8_0, ...), byte for byte what llama-quantize writes from the same GGUF.
//
// Everything is planned first (per-tensor types from the recipe, imatrix checks, metadata,
// the exact file size via gguf_file_bytes); only then are rows read (as f32), quantized in
// parallel (same bytes for any thread count) and streamed to OUT.tmp, renamed when complete.
// Tensor order is llama-quantize's (llama_quantize_order); metadata follows llama-quantize:
// the input's KVs, general.quantization_version and general.file_type re-set at the end,
// split.* removed, quantize.imatrix.* added when an imatrix is used.
#pragma once
#include "gguf/gguf_value.h"
#include "quant/types.h"
#include "recipe/recipe.h"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace qf {

class TensorSource;
struct Imatrix;

struct QuantizeOptions {
    std::string input;   // HF folder or GGUF file
    std::string output;  // empty: default_quantize_output_name(input, ftype) in the current directory
    FileType ftype = FileType::Q4_K_M;
    std::string imatrix_path;  // empty: none
    std::optional<GgmlType> output_tensor_type, token_embedding_type;
    std::vector<TensorTypeOverride> overrides;  // first match wins
    bool pure = false;
    bool leave_output_tensor = false;
    bool allow_requantize = false;
    bool dry_run = false;    // plan only, write nothing
    // Use llama.cpp's own block algorithms (ggml quantize_row_*_ref / the imatrix search), so
    // the bytes equal llama-quantize's. Default: the type table's kernels, which write the
    // same formats and sizes but search harder (never a larger error per block).
    bool llama_exact = false;
    // The wider (slower) per-block search instead of the default polish of llama.cpp's
    // encoding (lower error again, several times slower). F32/F16/BF16: no change.
    bool thorough = false;
    // Calibrated quantization (pipeline/calibrate.h): a text whose statistics drive error
    // feedback in every weight product; empty: none. Chunks of calib_ctx tokens, at most
    // calib_chunks of them (0: all); calib_damp: GPTQ's relative dampening of H.
    std::string calibrate_path;
    int64_t calib_ctx = 512;
    int64_t calib_chunks = 0;
    double calib_damp = 0.01;
    bool overwrite = false;
    int threads = 0;         // 0: all cores
    bool progress = true;    // bar on a terminal only
};

struct QuantizeTensorPlan {
    std::string name;
    std::vector<int64_t> shape;
    GgmlType source_type = GgmlType::F32;
    GgmlType type = GgmlType::F32;
    size_t source_index = 0;  // index into the source's tensor list
    bool copy = false;        // stored bytes copied unchanged (type == source type, GGUF input)
    bool uses_imatrix = false;
    std::string reason;       // the recipe's rule (and fallback note)
    uint64_t bytes = 0;       // data bytes in the output, unpadded
};

struct QuantizePlan {
    std::string output;
    std::vector<QuantizeTensorPlan> tensors;  // in output order
    GgufMetadata metadata;
    uint64_t file_bytes = 0;    // exact size of the file that will be written
    uint64_t tensor_bytes = 0;  // sum of tensor data bytes (unpadded)
    uint64_t n_params = 0;
    std::vector<std::string> warnings;  // one line each (requantizing, imatrix entries not used, ...)
    double bits_per_weight() const { return n_params ? tensor_bytes * 8.0 / n_params : 0.0; }
};

struct QuantizeResult {
    QuantizePlan plan;
    bool written = false;  // false for a dry run
    double seconds = 0;
    // --calibrate: tokens the statistics were summed over, seconds spent calibrating, and how
    // many tensors got error feedback (the rest: their type's search with the same statistics).
    int64_t calib_tokens = 0;
    double calib_seconds = 0;
    int64_t calib_with_feedback = 0, calib_without_feedback = 0;
};

// Plans without writing anything; throws qf::Error for whatever would make the run fail
// (unknown type for a row length, imatrix mismatch, requantizing without permission, ...).
// imatrix: nullptr when none is used.
QuantizePlan plan_quantize(const QuantizeOptions& options, const TensorSource& source, const Imatrix* imatrix);

// Plans, then (unless dry_run) writes the file. Refuses OUTPUT == INPUT.
QuantizeResult quantize_model(const QuantizeOptions& options);

// "prose-tiny" -> "prose-tiny-Q4_K_M.gguf"; "x/prose-tiny-f16.gguf" -> "prose-tiny-Q4_K_M.gguf"
// (a trailing -f32/-f16/-bf16 of a GGUF name is dropped).
std::string default_quantize_output_name(const std::string& input, std::string_view ftype_name);

// The row kernel that reproduces llama.cpp's bytes for a type (F32/F16/BF16: the plain
// conversion); nullptr where qforge has none.
QuantizeRowFn llama_exact_quantize_fn(GgmlType type);
// The row quantizer the options select for a type (nullptr: qforge cannot write it).
QuantizeRowFn quantize_fn_for(GgmlType type, const QuantizeOptions& options);

// "REGEX=TYPE" as llama-quantize's --tensor-type takes it: the pattern lower-cased, the type a
// ggml type name (case-insensitive). Throws qf::Error naming the bad spec.
TensorTypeOverride parse_tensor_type_override(std::string_view spec);
// A --tensor-type-file: whitespace-separated REGEX=TYPE specs.
std::vector<TensorTypeOverride> read_tensor_type_file(const std::string& path);

// "Q4_0, Q4_1, ..." for error messages.
std::string valid_file_type_names();

}  // namespace qf
