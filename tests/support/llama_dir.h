#pragma once
#include <string>
namespace qf::test {
// Folder holding llama.cpp's prebuilt libraries: $QFORGE_LLAMA_DIR, else the one
// scripts/setup.sh unpacked (fixed at configure time).
std::string llama_lib_dir();
}  // namespace qf::test
