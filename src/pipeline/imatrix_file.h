// Importance matrices as llama-quantize reads them (tools/quantize/quantize.cpp load_imatrix,
// common/imatrix-loader.cpp), so the same file gives the same importance weights here:
//  - GGUF (llama-imatrix's default): per weight `<name>.in_sum2` (F32, ne0 x n_mat: sums of
//    squared activations) and `<name>.counts` (F32, n_mat token counts); importance =
//    in_sum2 / round(count) per matrix, all ones where the count is 0. The keys
//    imatrix.datasets, imatrix.chunk_count and imatrix.chunk_size are required.
//  - legacy .dat: i32 entry count, per entry (i32 name length, name, i32 ncall, i32 nval,
//    nval f32), then optionally i32 chunk count, i32 dataset length, dataset; importance =
//    value / ncall (values kept as stored when ncall is 0).
// Files that do not start with "GGUF" are read as legacy, as llama.cpp falls back to it.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace qf {

struct Imatrix {
    std::string path;
    // Weight name ("blk.0.attn_q.weight") -> importance, ne0 values per matrix (experts concatenated).
    std::map<std::string, std::vector<float>, std::less<>> entries;
    std::vector<std::string> datasets;
    int64_t chunk_count = 0;
    bool legacy = false;

    const std::vector<float>* find(std::string_view name) const {
        auto it = entries.find(name);
        return it == entries.end() ? nullptr : &it->second;
    }
};

// Throws qf::Error "PATH: problem" for an unreadable, truncated or inconsistent file, an
// empty one, or a non-finite importance value (llama-quantize refuses those too).
Imatrix load_imatrix(const std::string& path);

}  // namespace qf
