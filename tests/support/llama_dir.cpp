#include "support/llama_dir.h"

#include <cstdlib>

namespace qf::test {
std::string llama_lib_dir() {
    if (const char* env = std::getenv("QFORGE_LLAMA_DIR"); env && *env) return env;
    return QFORGE_LLAMA_DIR;
}
}  // namespace qf::test
