// One error type for the whole project. Every message is a single line that names
// the file (or object) and the problem, e.g. "model.gguf: truncated tensor info 12".
#pragma once
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace qf {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
    throw Error(fmt::format(format, std::forward<Args>(args)...));
}

// Overflow-checked arithmetic for sizes read from untrusted files.
inline bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }
inline bool add_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_add_overflow(a, b, out); }

}  // namespace qf
