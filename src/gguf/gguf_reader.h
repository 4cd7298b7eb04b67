// Read-only view of a GGUF file (versions 2 and 3, little-endian).
//
// Layout (see ../shared/reference/llamacpp-quant-facts.md §1):
//   1. header: magic "GGUF", version u32, tensor count u64, KV count u64
//   2. KV pairs: key (u64 length + bytes), value type u32, value
//   3. tensor infos: name, n_dims u32, ne[n_dims] i64, ggml type u32, offset u64
//   4. zero padding to the alignment (general.alignment or 32)
//   5. data section: tensor bytes at their offsets, each padded to the alignment
//
// Everything in the file is checked at open, against the file size and with overflow-safe
// arithmetic, before any tensor byte is touched: after a successful open every
// tensor_data() span lies inside the file. Every problem is reported as one qf::Error line
// "PATH: what is wrong (at byte N)" or "... (tensor 'name')".
#pragma once
#include "common/mapped_file.h"
#include "gguf/gguf_value.h"
#include "quant/types.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qf {

struct GgufTensorInfo {
    std::string name;
    std::vector<int64_t> shape;  // ne, innermost first (ne[0] = row length), 1..4 entries
    GgmlType type = GgmlType::F32;
    uint64_t offset = 0;  // relative to the data section start
    uint64_t nbytes = 0;  // exact data bytes: row bytes of ne[0] times the other dims
    int64_t n_elements() const;
    int64_t n_rows() const;  // product of shape[1..]
};

class GgufFile {
public:
    explicit GgufFile(const std::string& path);  // maps the file; throws qf::Error("PATH: problem")
    // Parses bytes in place (no copy): the caller keeps them alive as long as the GgufFile.
    static GgufFile from_bytes(std::span<const std::byte> bytes, std::string label);

    GgufFile(GgufFile&&) noexcept = default;
    GgufFile& operator=(GgufFile&&) noexcept = default;

    const std::string& path() const { return path_; }  // the path, or the label of from_bytes
    uint32_t version() const { return version_; }
    const GgufMetadata& metadata() const { return metadata_; }
    const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
    const GgufTensorInfo* find_tensor(std::string_view name) const;
    uint32_t alignment() const { return alignment_; }
    // Absolute offset of the data section: the end of the tensor infos padded to the
    // alignment. (With no tensors and a file that ends unpadded, the unpadded end.)
    uint64_t data_offset() const { return data_offset_; }
    std::span<const std::byte> tensor_data(const GgufTensorInfo& t) const;
    uint64_t file_size() const { return bytes_.size(); }

    // Bytes of header + KVs + tensor infos, before the padding to the data section.
    uint64_t metadata_end() const { return metadata_end_; }
    // True when tensor offsets are exactly the running sums of padded sizes in record
    // order, as llama.cpp's reader demands. Other non-overlapping layouts are readable
    // here but llama.cpp would refuse them.
    bool has_llama_layout() const { return llama_layout_; }

private:
    GgufFile() = default;
    void parse();

    std::string path_;
    MappedFile mapped_;  // empty for from_bytes
    std::span<const std::byte> bytes_;
    uint32_t version_ = 0;
    GgufMetadata metadata_;
    std::vector<GgufTensorInfo> tensors_;
    std::map<std::string, size_t, std::less<>> tensor_index_;
    uint32_t alignment_ = 32;
    uint64_t metadata_end_ = 0;
    uint64_t data_offset_ = 0;
    bool llama_layout_ = true;
};

}  // namespace qf
