#include "common/output_file.h"

#include "common/error.h"

#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace qf {
namespace {

// Pending temporary files, readable from a signal handler (fixed storage, no allocation).
constexpr int kMaxPending = 16;
constexpr size_t kMaxPath = 4096;
struct PendingSlot {
    std::atomic<bool> used{false};
    char path[kMaxPath];
};
std::array<PendingSlot, kMaxPending> g_pending;

int register_pending(const std::string& path) {
    if (path.size() + 1 > kMaxPath) return -1;
    for (int i = 0; i < kMaxPending; ++i) {
        bool expected = false;
        if (g_pending[i].used.load()) continue;
        std::memcpy(g_pending[i].path, path.c_str(), path.size() + 1);
        if (g_pending[i].used.compare_exchange_strong(expected, true)) return i;
    }
    return -1;
}

void unregister_pending(int slot) {
    if (slot >= 0) g_pending[slot].used.store(false);
}

extern "C" void on_interrupt(int sig) {
    for (auto& slot : g_pending)
        if (slot.used.load()) ::unlink(slot.path);
    static const char msg[] = "\nqforge: interrupted, partial output removed\n";
    ssize_t ignored = ::write(2, msg, sizeof msg - 1);
    (void)ignored;
    ::_exit(128 + sig);
}

constexpr size_t kBufferSize = 8u << 20;

}  // namespace

ScratchFile::ScratchFile(std::string path) : path_(std::move(path)), slot_(register_pending(path_)) {}

ScratchFile::~ScratchFile() {
    ::unlink(path_.c_str());
    unregister_pending(slot_);
}

void install_interrupt_cleanup() {
    struct sigaction sa {};
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
}

bool same_file(const std::string& a, const std::string& b) {
    struct stat sa {}, sb {};
    if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

OutputFile::OutputFile(const std::string& path, bool overwrite) : path_(path), tmp_path_(path + ".tmp") {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
        if (S_ISDIR(st.st_mode)) fail("{}: is a directory, expected an output file name", path);
        if (!overwrite) fail("{}: already exists (use --force to overwrite)", path);
    }
    slot_ = register_pending(tmp_path_);
    fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) {
        int e = errno;
        unregister_pending(slot_);
        fail("{}: cannot create output: {}", tmp_path_, std::strerror(e));
    }
    buffer_.resize(kBufferSize);
}

OutputFile::~OutputFile() {
    if (!committed_) {
        if (fd_ >= 0) ::close(fd_);
        ::unlink(tmp_path_.c_str());
    }
    unregister_pending(slot_);
}

void OutputFile::flush_buffer() {
    size_t done = 0;
    while (done < used_) {
        ssize_t n = ::write(fd_, buffer_.data() + done, used_ - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            if (e == ENOSPC || e == EDQUOT) fail("{}: disk full while writing (no output kept)", path_);
            fail("{}: write failed: {} (no output kept)", path_, std::strerror(e));
        }
        done += static_cast<size_t>(n);
    }
    used_ = 0;
}

void OutputFile::write(const void* data, size_t n) {
    const auto* p = static_cast<const std::byte*>(data);
    written_ += n;
    while (n > 0) {
        size_t take = std::min(n, buffer_.size() - used_);
        std::memcpy(buffer_.data() + used_, p, take);
        used_ += take;
        p += take;
        n -= take;
        if (used_ == buffer_.size()) flush_buffer();
    }
}

void OutputFile::write_zeros(size_t n) {
    static const std::array<std::byte, 256> zeros{};
    while (n > 0) {
        size_t take = std::min(n, zeros.size());
        write(zeros.data(), take);
        n -= take;
    }
}

void OutputFile::commit() {
    if (committed_) return;
    flush_buffer();
    if (::fsync(fd_) != 0) {
        int e = errno;
        if (e == ENOSPC || e == EDQUOT) fail("{}: disk full while writing (no output kept)", path_);
        fail("{}: fsync failed: {}", path_, std::strerror(e));
    }
    if (::close(fd_) != 0) {
        int e = errno;
        fd_ = -1;
        fail("{}: close failed: {}", path_, std::strerror(e));
    }
    fd_ = -1;
    if (::rename(tmp_path_.c_str(), path_.c_str()) != 0)
        fail("{}: cannot rename temporary output into place: {}", path_, std::strerror(errno));
    committed_ = true;
}

}  // namespace qf
