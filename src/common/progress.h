// A one-line progress bar on stderr, drawn only when stderr is a terminal
// (quiet in pipes, logs and CI). Thread-safe update().
#pragma once
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace qf {

class Progress {
public:
    Progress(std::string label, uint64_t total_bytes);
    ~Progress();
    void set_item(const std::string& item);  // e.g. the tensor being processed
    void advance(uint64_t bytes);
    void finish();
    static bool enabled();

private:
    void draw(bool force);
    std::string label_, item_;
    uint64_t total_, done_ = 0;
    std::chrono::steady_clock::time_point start_, last_draw_;
    std::mutex mutex_;
    bool active_;
    bool finished_ = false;
};

}  // namespace qf
