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
//
// The writers produce what llama-imatrix (tools/imatrix/imatrix.cpp) saves:
//  - GGUF v3, alignment 32, KVs in this order: general.type = "imatrix" (string),
//    imatrix.datasets (array of string), imatrix.chunk_count (u32), imatrix.chunk_size (u32);
//    per weight, in byte order of the names, `<name>.in_sum2` (F32, ne = [ne0, n_mat]) then
//    `<name>.counts` (F32, ne = [1, n_mat]); trailing dimensions of 1 are dropped from the
//    tensor info as ggml_n_dims does (so a dense weight's sums are 1-D [ne0], its counts [1]).
//  - legacy .dat: per entry ncall = ceil(max count / chunk_size) and values
//    (sum / count) * ncall (1 * ncall where a matrix has no data), entries sorted by name,
//    entries without any data skipped; then the chunk count and the first dataset.
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

// Raw sums as llama-imatrix collects them, before any division: what the writers store.
struct ImatrixSums {
    std::vector<float> in_sum2;   // ne0 * counts.size() sums of squared activations
    std::vector<int64_t> counts;  // tokens seen per matrix (1 entry for a dense weight)
};

struct ImatrixData {
    std::map<std::string, ImatrixSums, std::less<>> entries;  // weight name -> sums
    std::vector<std::string> datasets;  // the text files the sums were collected from
    uint32_t chunk_count = 0;
    uint32_t chunk_size = 0;  // tokens per chunk (the context size)
};

// Writes llama-imatrix's GGUF format atomically (PATH.tmp renamed when complete). Refuses an
// existing PATH unless overwrite; throws qf::Error for an entry whose sums do not divide into
// its counts, a name longer than ggml allows, or non-finite sums.
void save_imatrix(const ImatrixData& data, const std::string& path, bool overwrite);
// The same data in llama-imatrix's legacy .dat format (--output-format dat).
void save_imatrix_legacy(const ImatrixData& data, const std::string& path, bool overwrite);

// Throws qf::Error "PATH: problem" for an unreadable, truncated or inconsistent file, an
// empty one, or a non-finite importance value (llama-quantize refuses those too).
Imatrix load_imatrix(const std::string& path);

}  // namespace qf
