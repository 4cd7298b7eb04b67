// Read-only memory map of a whole file (RAII). Inputs are never written to.
#pragma once
#include <cstddef>
#include <span>
#include <string>

namespace qf {

class MappedFile {
public:
    MappedFile() = default;
    explicit MappedFile(const std::string& path);  // throws qf::Error naming the path
    ~MappedFile();
    MappedFile(MappedFile&& other) noexcept;
    MappedFile& operator=(MappedFile&& other) noexcept;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    std::span<const std::byte> bytes() const { return {data_, size_}; }
    const std::byte* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }

    // Tells the kernel the pages lying wholly inside `range` are not needed for now. They stop
    // counting in the process's resident set; touching them again re-reads them from the file
    // (the mapping is read-only and private, so nothing is lost). The quantizer calls it on the
    // input rows it has read, so its peak RSS stays at a few chunks' worth instead of growing
    // to the whole input. Pages shared with the bytes before or after the range are kept.
    // Advisory: errors are ignored. `range` MUST lie inside a MappedFile's mapping: on heap or
    // other anonymous memory, MADV_DONTNEED would zero the data.
    static void release_pages(std::span<const std::byte> range);

private:
    void release();
    std::string path_;
    const std::byte* data_ = nullptr;
    size_t size_ = 0;
};

}  // namespace qf
