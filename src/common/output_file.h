// Output written to "PATH.tmp" and renamed to PATH only when complete and flushed.
// If the object is destroyed without commit() (error, exception) or the process gets
// SIGINT/SIGTERM, the temporary file is removed: no partial output is ever left.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace qf {

class OutputFile {
public:
    // Refuses an existing PATH unless overwrite is true. Callers that read an input
    // check same_file(input, output) first so an input is never overwritten.
    OutputFile(const std::string& path, bool overwrite);
    ~OutputFile();
    OutputFile(const OutputFile&) = delete;
    OutputFile& operator=(const OutputFile&) = delete;

    void write(const void* data, size_t n);
    void write(std::span<const std::byte> data) { write(data.data(), data.size()); }
    void write_zeros(size_t n);
    uint64_t bytes_written() const { return written_; }
    void commit();  // flush, fsync, close, rename PATH.tmp -> PATH

    const std::string& path() const { return path_; }

private:
    void flush_buffer();
    std::string path_;
    std::string tmp_path_;
    int fd_ = -1;
    int slot_ = -1;
    uint64_t written_ = 0;
    std::vector<std::byte> buffer_;
    size_t used_ = 0;
    bool committed_ = false;
};

// True when both paths name the same existing file (same device and inode).
bool same_file(const std::string& a, const std::string& b);

// Installs SIGINT/SIGTERM handlers that delete pending temporary outputs and exit 130.
void install_interrupt_cleanup();

// A scratch file of the program's own (e.g. a temporary conversion) that is deleted when this
// object goes, and by the SIGINT/SIGTERM handler above if the program is interrupted first.
class ScratchFile {
public:
    explicit ScratchFile(std::string path);
    ~ScratchFile();
    ScratchFile(const ScratchFile&) = delete;
    ScratchFile& operator=(const ScratchFile&) = delete;
    const std::string& path() const { return path_; }

private:
    std::string path_;
    int slot_ = -1;
};

}  // namespace qf
