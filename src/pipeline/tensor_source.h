// A common read-only view of a quantizer's input: a Hugging Face checkpoint folder or a
// GGUF file. Both become a tensor list in the input's own order (name, ne, source type)
// whose rows can be read as f32, so `qforge quantize` treats them alike.
//
// HF folders appear exactly as `qforge convert --outtype f32` would write them (every
// tensor F32, q/k permutation applied, convert's metadata), which makes HF -> TYPE give the
// same bytes as HF -> F32 GGUF -> TYPE. GGUF tensors keep their stored type; F32/F16/BF16
// rows are widened exactly, already-quantized rows are dequantized (lossy, hence the
// --allow-requantize gate in the quantizer, not here).
#pragma once
#include "gguf/gguf_value.h"
#include "quant/types.h"
#include "recipe/recipe.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace qf {

class TensorSource {
public:
    // A folder is read as a HF checkpoint, anything else as a GGUF file. Throws qf::Error.
    static TensorSource open(const std::string& path);
    TensorSource(TensorSource&&) noexcept;
    TensorSource& operator=(TensorSource&&) noexcept;
    ~TensorSource();

    const std::string& path() const { return path_; }
    bool is_gguf() const;
    // name, shape (ne, innermost first) and type of every tensor, in the input's order.
    const std::vector<RecipeTensor>& tensors() const { return tensors_; }
    // GGUF: the file's metadata. HF: what convert writes for an F32 output (file_type 0).
    const GgufMetadata& metadata() const { return metadata_; }
    // What the recipe needs to know about the model (arch, layers, heads, experts).
    RecipeModel recipe_model() const;
    // Every file the input consists of (so an output never overwrites one of them).
    std::vector<std::string> files() const;

    // Rows [first_row, first_row + n_rows) of tensor `index` (row = ne[0] values) as f32.
    // Throws for a stored type qforge cannot decode.
    void read_rows_f32(size_t index, int64_t first_row, int64_t n_rows, float* dst) const;
    // The stored bytes of a GGUF tensor, to copy unchanged. HF input: throws.
    std::span<const std::byte> raw_bytes(size_t index) const;
    // Done with tensor `index` for now: its mapped input pages are handed back to the kernel
    // (MappedFile::release_pages), so reading a whole model keeps only a few tensors resident.
    // Reading the tensor again still works (the pages come back from the file).
    void release(size_t index) const;
    // The same for rows [first_row, first_row + n_rows) of a GGUF tensor (rows are contiguous
    // there), so even one large tensor (token_embd, output) is never resident whole. HF input:
    // does nothing (permuted rows are read from elsewhere; release() covers the tensor).
    void release_rows(size_t index, int64_t first_row, int64_t n_rows) const;

private:
    struct Impl;
    TensorSource() = default;
    std::string path_;
    std::vector<RecipeTensor> tensors_;
    GgufMetadata metadata_;
    std::unique_ptr<Impl> impl_;
};

}  // namespace qf
