// HF checkpoint folder -> GGUF (F32 / F16 / BF16), in one streaming pass:
// config.json -> model description -> metadata + tensor plan -> rows converted in
// parallel -> written in order to OUT.tmp, renamed when complete.
#pragma once
#include "common/output_file.h"
#include "quant/types.h"

#include <cstdint>
#include <string>

namespace qf {

struct ConvertOptions {
    std::string input_dir;
    std::string output;        // empty: "<folder>-<outtype>.gguf" in the current directory
    GgmlType outtype = GgmlType::F16;
    bool overwrite = false;
    int threads = 0;           // 0: all cores
    bool progress = true;      // bar on a terminal only
};

struct ConvertResult {
    std::string output;
    uint64_t file_bytes = 0;
    size_t n_tensors = 0;
    uint64_t n_params = 0;
    double seconds = 0;
};

// Default output file name for a folder and type, e.g. "prose-tiny-f16.gguf".
std::string default_output_name(const std::string& input_dir, std::string_view type_suffix);

ConvertResult convert_hf_to_gguf(const ConvertOptions& options);

// llama_ftype id written as general.file_type for a plain output type (F32 0, F16 1, BF16 32).
uint32_t file_type_for_outtype(GgmlType outtype);

// A Hugging Face folder converted to an F32 GGUF in the temporary directory (for the forward
// pass, which reads GGUF), removed when this object goes, on errors and on Ctrl-C.
class TemporaryF32Gguf {
public:
    TemporaryF32Gguf(const std::string& hf_dir, int threads, std::string_view purpose);
    const std::string& path() const { return file_.path(); }

private:
    ScratchFile file_;
};

}  // namespace qf
