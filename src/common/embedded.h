// Files compiled into the qforge binary, so that it runs from anywhere without a data folder.
// The list is QFORGE_EMBEDDED_FILES in CMakeLists.txt (one line per file, "name=path");
// cmake/embed_files.cmake turns it into a generated source defining embedded_files().
#pragma once
#include <optional>
#include <span>
#include <string_view>

namespace qf {

struct EmbeddedFile {
    std::string_view name;  // e.g. "hardware.json"
    std::string_view data;  // the file's bytes (followed by a NUL that is not part of it)
};

std::span<const EmbeddedFile> embedded_files();

inline std::optional<std::string_view> embedded_file(std::string_view name) {
    for (const EmbeddedFile& f : embedded_files())
        if (f.name == name) return f.data;
    return std::nullopt;
}

}  // namespace qf
