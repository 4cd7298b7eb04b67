// File sizes of a model at each llama.cpp file type, from config.json alone.
//
// F32 / F16 / BF16 are what `qforge convert` (and convert_hf_to_gguf.py) writes; every other
// type is what llama-quantize writes from that F16 file: the same metadata with
// general.file_type replaced, each tensor's type decided by the recipe (recipe/recipe.h,
// llama.cpp's rules) and the file laid out by gguf_file_bytes. So the planned size is exact
// whenever the metadata is: llama / mistral / qwen2 / qwen3 with tokenizer files next to
// config.json. Without tokenizer files, or for the archs hf/model_config does not know, the
// metadata is estimated and PlanMetadata::note says how.
//
// For a GGUF file the sizes are those of requantizing it with llama-quantize
// (--allow-requantize, no imatrix): its metadata kept with general.file_type and
// general.quantization_version re-set and split.* dropped, the recipe applied to its tensors
// from their stored types. plan_as_is describes the file itself.
#pragma once
#include "gguf/gguf_value.h"
#include "plan/plan_model.h"
#include "recipe/recipe.h"

#include <cstdint>
#include <string>
#include <vector>

namespace qf {

struct PlanMetadata {
    GgufMetadata md;           // built with general.file_type = MOSTLY_F16 (GGUF: the file's); replaced per type
    bool exact = false;        // md is byte-for-byte what the converter writes
    uint64_t extra_bytes = 0;  // estimated metadata bytes not in md (a tokenizer we could not read)
    std::string note;          // what was assumed, empty when exact
};

// Arch metadata (add_arch_metadata) + tokenizer metadata (add_tokenizer_metadata) when the
// tokenizer files are in model.dir. A GGUF model: the file's metadata, exact.
PlanMetadata plan_metadata(const PlanModel& model);

struct PlannedTensor {
    GgufTensorPlan tensor;  // name, shape, type in the planned file
    uint64_t bytes = 0;     // data bytes (unpadded, as ggml_nbytes)
    std::string rule;       // what chose the type (recipe row), empty for float files
};

struct SizePlan {
    const FileTypeInfo* file_type = nullptr;  // as_is: the file's general.file_type, nullptr if unknown
    bool as_is = false;           // the GGUF file itself, not a planned file
    std::vector<PlannedTensor> tensors;
    uint64_t n_params = 0;        // elements of every tensor written
    uint64_t tensor_bytes = 0;    // sum of tensor data bytes (what llama.cpp's "file size" BPW uses)
    uint64_t metadata_bytes = 0;  // header + KVs + tensor infos + padding to the data section
    uint64_t file_bytes = 0;      // exact on-disk size (plus PlanMetadata::extra_bytes when estimated)
    std::string name() const;     // "Q4_K_M"; "as-is" for the GGUF file itself
    double bpw() const { return n_params ? static_cast<double>(tensor_bytes) * 8.0 / static_cast<double>(n_params) : 0; }
};

// Throws qf::Error when llama-quantize would fail for this model and type (e.g. a type
// requiring an importance matrix).
SizePlan plan_size(const PlanModel& model, const PlanMetadata& metadata, const FileTypeInfo& file_type);

// The GGUF file a model was loaded from, as it is: its tensor types and its real size.
// Throws qf::Error for a model that did not come from a GGUF file.
SizePlan plan_as_is(const PlanModel& model);

// Parses "Q4_K_M,Q8_0" (names or aliases find_file_type takes); throws naming the bad entry.
std::vector<const FileTypeInfo*> parse_file_types(const std::string& list);

}  // namespace qf
