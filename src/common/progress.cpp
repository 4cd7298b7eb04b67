#include "common/progress.h"

#include <cstdio>
#include <fmt/format.h>
#include <unistd.h>

namespace qf {

bool Progress::enabled() {
    static const bool tty = ::isatty(STDERR_FILENO) != 0;
    return tty;
}

Progress::Progress(std::string label, uint64_t total_bytes)
    : label_(std::move(label)), total_(total_bytes), start_(std::chrono::steady_clock::now()),
      last_draw_(start_), active_(enabled()) {}

Progress::~Progress() { finish(); }

void Progress::set_item(const std::string& item) {
    std::lock_guard lock(mutex_);
    item_ = item;
    draw(false);
}

void Progress::advance(uint64_t bytes) {
    std::lock_guard lock(mutex_);
    done_ += bytes;
    draw(false);
}

void Progress::finish() {
    std::lock_guard lock(mutex_);
    if (finished_) return;
    finished_ = true;
    if (!active_) return;
    draw(true);
    std::fputc('\n', stderr);
}

void Progress::draw(bool force) {
    if (!active_) return;
    auto now = std::chrono::steady_clock::now();
    if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    double secs = std::chrono::duration<double>(now - start_).count();
    double frac = total_ ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
    if (frac > 1.0) frac = 1.0;
    double mbps = secs > 0 ? static_cast<double>(done_) / 1e6 / secs : 0.0;
    double eta = (frac > 0 && frac < 1) ? secs / frac - secs : 0.0;
    constexpr int kWidth = 28;
    int filled = static_cast<int>(frac * kWidth);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(kWidth, '.');
    std::string item = item_.size() > 32 ? item_.substr(0, 29) + "..." : item_;
    fmt::print(stderr, "\r{} [{}] {:5.1f}% {:7.1f} MB/s ETA {:4.0f}s  {:<32}", label_, bar, frac * 100, mbps, eta,
               item);
    std::fflush(stderr);
}

}  // namespace qf
