// Small string helpers shared across modules (header-only).
#pragma once
#include <cctype>
#include <cstddef>
#include <string_view>

namespace qf {

// ASCII case-insensitive equality, for user-typed names such as "Q4_K_M" vs "q4_k_m".
inline bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

}  // namespace qf
