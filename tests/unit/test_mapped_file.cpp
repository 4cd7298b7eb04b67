// MappedFile::release_pages: the pages go out of the resident set, the bytes stay readable.
#include "common/mapped_file.h"
#include "support/test_paths.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <unistd.h>
#include <vector>

namespace {

// Resident pages of this process (second field of /proc/self/statm).
long resident_pages() {
    std::ifstream in("/proc/self/statm");
    long size = 0, resident = 0;
    in >> size >> resident;
    return resident;
}

std::string write_pattern_file(size_t bytes) {
    const std::string path = qf::test::scratch_dir() + "/pattern.bin";
    std::vector<uint8_t> data(bytes);
    for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<uint8_t>((i * 2654435761u) >> 13);
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data.data()),
                                                static_cast<std::streamsize>(data.size()));
    return path;
}

uint64_t checksum(std::span<const std::byte> bytes) {
    uint64_t h = 1469598103934665603ull;
    for (std::byte b : bytes) h = (h ^ static_cast<uint8_t>(b)) * 1099511628211ull;
    return h;
}

}  // namespace

TEST(MappedFile, ReleasePagesDropsThemFromTheResidentSetAndKeepsTheBytes) {
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    const size_t n_pages = 4096;  // 16 MiB with 4 KiB pages
    qf::MappedFile file(write_pattern_file(n_pages * page));
    const uint64_t before = checksum(file.bytes());  // touches every page

    const long resident_mapped = resident_pages();
    qf::MappedFile::release_pages(file.bytes());
    const long resident_released = resident_pages();
    EXPECT_GE(resident_mapped - resident_released, static_cast<long>(n_pages * 3 / 4))
        << "resident pages: " << resident_mapped << " before, " << resident_released << " after release";

    // Reading again brings the same bytes back from the file.
    EXPECT_EQ(checksum(file.bytes()), before);
    EXPECT_GE(resident_pages() - resident_released, static_cast<long>(n_pages * 3 / 4));
}

TEST(MappedFile, ReleasePagesKeepsPagesSharedWithNeighbouringBytes) {
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    qf::MappedFile file(write_pattern_file(8 * page));
    const uint64_t before = checksum(file.bytes());
    // Ranges that cover no whole page, an empty one, and one with ragged ends: none may fail or
    // change what is read.
    qf::MappedFile::release_pages(file.bytes().subspan(1, page - 2));
    qf::MappedFile::release_pages(file.bytes().subspan(page / 2, page));
    qf::MappedFile::release_pages({});
    qf::MappedFile::release_pages(file.bytes().subspan(100, 5 * page));
    EXPECT_EQ(checksum(file.bytes()), before);
}
