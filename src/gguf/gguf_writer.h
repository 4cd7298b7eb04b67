// Streaming GGUF v3 writer: the constructor writes header, KVs, tensor infos and the
// padding to the data section; tensor bytes then arrive in plan order, in as many pieces
// as the caller likes, and the writer inserts the zero padding after each tensor. The
// file never has to exist in memory, and its exact size is known before the first byte
// (gguf_file_bytes), which the memory planner and the pipeline rely on.
//
// Layout rules follow what llama.cpp's reader accepts: offsets are the running sums of
// padded sizes, every tensor (the last included) is padded, no nested arrays, tensor
// names at most 63 bytes, strings and arrays at most 2^30 long.
#pragma once
#include "common/output_file.h"
#include "gguf/gguf_value.h"
#include "quant/types.h"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace qf {

struct GgufTensorPlan {
    std::string name;
    std::vector<int64_t> shape;  // ne, innermost first; n_dims written = shape.size() (1..4)
    GgmlType type = GgmlType::F32;
};

// Alignment used: general.alignment from md if present (must be a u32 power of two;
// an explicit non-default `alignment` argument must then agree with it), otherwise
// `alignment`. When `alignment` is not 32 and md lacks general.alignment, the writer
// appends general.alignment (u32) as the last KV so readers find the same alignment;
// the sizes below count that extra KV.

// Header + KVs + tensor infos, padded to the alignment: the data section offset.
uint64_t gguf_metadata_bytes(const GgufMetadata& md, const std::vector<GgufTensorPlan>& tensors,
                             uint32_t alignment = 32);
// Exact final file size: metadata bytes plus every tensor's bytes padded to the alignment.
uint64_t gguf_file_bytes(const GgufMetadata& md, const std::vector<GgufTensorPlan>& tensors,
                         uint32_t alignment = 32);
// Exact bytes of one tensor's data; throws qf::Error for a shape the type cannot hold.
uint64_t gguf_tensor_bytes(const GgufTensorPlan& tensor);

class GgufWriter {
public:
    // Validates everything (throws qf::Error naming out.path() before writing a byte),
    // then writes all metadata and the padding to the data section.
    GgufWriter(OutputFile& out, const GgufMetadata& md, std::vector<GgufTensorPlan> tensors, uint32_t alignment = 32);

    // Appends bytes of the current tensor. A piece may not run past the end of the
    // current tensor (throws); when a tensor is complete its padding is written and the
    // next tensor becomes current. Zero-byte tensors are skipped automatically.
    void write_tensor_data(std::span<const std::byte> bytes);
    // Index in plan order of the tensor awaiting bytes (== tensor count when all are done).
    size_t current_tensor() const { return current_; }
    uint64_t current_tensor_bytes_missing() const;
    uint32_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }  // relative to where the writer started
    uint64_t file_bytes() const { return file_bytes_; }
    // Throws unless every tensor got exactly its bytes. Does NOT commit the OutputFile.
    void finish();

private:
    void complete_finished_tensors();

    OutputFile& out_;
    std::vector<GgufTensorPlan> tensors_;
    std::vector<uint64_t> nbytes_;
    uint32_t alignment_ = 32;
    uint64_t start_ = 0;  // out.bytes_written() at construction
    uint64_t data_offset_ = 0;
    uint64_t file_bytes_ = 0;
    size_t current_ = 0;
    uint64_t received_ = 0;  // bytes of the current tensor so far
};

}  // namespace qf
