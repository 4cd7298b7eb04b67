// Which instruction set the run-time-dispatched kernels (lane_search, lane_legacy) use. Each
// kernel family is compiled once per set; this picks one from the CPU, or from a name (tests
// and benchmarks force narrower paths to prove that every path writes the same bytes).
#pragma once
#include <string_view>

namespace qf::simd {

enum class Isa { kSse2, kAvx2, kAvx512 };  // kSse2 is the portable build on non-x86 CPUs

// The widest set this CPU supports.
inline Isa best_isa() {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return Isa::kAvx512;
    if (__builtin_cpu_supports("avx2")) return Isa::kAvx2;
#endif
    return Isa::kSse2;
}

// "sse2", "avx2", "avx512f" or "best"; false when unknown or not supported by this CPU.
inline bool parse_isa(std::string_view name, Isa& out) {
    if (name == "best") {
        out = best_isa();
        return true;
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (name == "sse2") out = Isa::kSse2;
    else if (name == "avx2" && __builtin_cpu_supports("avx2")) out = Isa::kAvx2;
    else if (name == "avx512f" && __builtin_cpu_supports("avx512f")) out = Isa::kAvx512;
    else return false;
    return true;
#else
    if (name != "generic") return false;
    out = Isa::kSse2;
    return true;
#endif
}

inline const char* isa_name(Isa isa) {
#if defined(__x86_64__)
    switch (isa) {
        case Isa::kAvx512: return "avx512f";
        case Isa::kAvx2: return "avx2";
        default: return "sse2";
    }
#else
    (void)isa;
    return "generic";
#endif
}

// The kernel table of one dispatched family: make(isa) builds it; starts at the best ISA.
template <class Table, Table (*make)(Isa)>
struct Dispatcher {
    Isa isa = best_isa();
    Table table = make(isa);

    static Dispatcher& get() {
        static Dispatcher d;
        return d;
    }
    bool use(std::string_view name) {
        Isa chosen;
        if (!parse_isa(name, chosen)) return false;
        isa = chosen;
        table = make(chosen);
        return true;
    }
};

}  // namespace qf::simd
