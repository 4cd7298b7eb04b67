// Reading Hugging Face safetensors checkpoints (one file or a sharded set), memory mapped.
//
// File layout (all untrusted):
//   1. u64 little endian N: length of the JSON header
//   2. N bytes of JSON: {"name": {"dtype": "BF16", "shape": [rows, cols], "data_offsets": [begin, end]},
//                        ..., "__metadata__": {"format": "pt"}}
//   3. the data area; data_offsets are relative to its start, end exclusive.
// Only float dtypes that the llama family ships are accepted (F32, F16, BF16); everything is
// validated before a tensor is handed out, so consumers may read StTensor::data freely.
#pragma once
#include "common/mapped_file.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qf {

enum class StDtype { F32, F16, BF16 };

const char* st_dtype_name(StDtype dtype);  // "F32", "F16", "BF16" (safetensors spelling)
size_t st_dtype_size(StDtype dtype);       // bytes per element

struct StTensor {
    std::string name;
    StDtype dtype = StDtype::F32;
    std::vector<int64_t> shape;         // as stored, outermost first (torch order)
    std::span<const std::byte> data;    // inside the mmap, exactly n_elements() * dtype size bytes
    std::string file;                   // which shard (path as opened)
    int64_t n_elements() const;         // product of shape (1 for a scalar)
};

// A name taken from a file, made safe for a one-line message (control characters replaced,
// long names shortened).
std::string printable_name(std::string_view name);

// Parses and validates a whole safetensors file held in memory. Errors are one line:
// "LABEL: problem" or "LABEL: tensor 'x': problem". The spans point into `file`.
std::vector<StTensor> parse_safetensors(std::span<const std::byte> file, const std::string& label);

// Writes `count` elements starting at `first_element` (flat, row-major) as f32. F16/BF16
// widen exactly. Throws if the range is outside the tensor.
void convert_to_f32(const StTensor& t, int64_t first_element, int64_t count, float* dst);

class SafetensorsModel {
public:
    // model.safetensors.index.json when present (every listed shard must exist and hold exactly
    // the tensors the index gives it), else model.safetensors, else every *.safetensors in the
    // folder sorted by file name. A tensor name appearing in two shards is an error.
    static SafetensorsModel open_dir(const std::string& dir);
    static SafetensorsModel open_file(const std::string& path);

    // Shard files in file-name order; within a file, header (JSON) order.
    const std::vector<StTensor>& tensors() const { return tensors_; }
    const StTensor* find(std::string_view name) const;
    // Shard paths in the order their tensors appear in tensors().
    std::vector<std::string> files() const;
    // What was opened (the folder or the single file): used to label whole-model errors.
    const std::string& source() const { return source_; }

private:
    void add_file(const std::string& path);
    std::string source_;
    std::vector<MappedFile> maps_;  // the mapped bytes do not move when the vector grows
    std::vector<StTensor> tensors_;
    std::map<std::string, size_t, std::less<>> by_name_;
};

}  // namespace qf
