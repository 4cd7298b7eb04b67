#include "quant/kquant_common.h"

#include "quant/lane_search.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace qf::kquant {

double weighted_sq_error(const float* x, const float* y, const float* w, int n) {
    // Eight interleaved double partial sums added in a fixed order: the same result however the
    // compiler vectorises it, and no loop-carried dependency on one accumulator.
    double acc[8] = {};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k) {
            const double diff = static_cast<double>(x[i + k]) - static_cast<double>(y[i + k]);
            acc[k] += (w ? static_cast<double>(w[i + k]) : 1.0) * diff * diff;
        }
    for (; i < n; ++i) {
        const double diff = static_cast<double>(x[i]) - static_cast<double>(y[i]);
        acc[0] += (w ? static_cast<double>(w[i]) : 1.0) * diff * diff;
    }
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// ---- Scale packing -------------------------------------------------------------------------

void pack_scale_min_k4(const uint8_t sc[8], const uint8_t m[8], uint8_t out[12]) {
    for (int j = 0; j < 4; ++j) {
        // Bytes 0..3: scale j (6 bits) + top 2 bits of scale j+4; bytes 4..7: the same for mins.
        out[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        out[j + 4] = static_cast<uint8_t>((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        // Bytes 8..11: low nibbles of scale and min j+4.
        out[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
    }
}

void unpack_scale_min_k4(const uint8_t in[12], uint8_t sc[8], uint8_t m[8]) {
    for (int j = 0; j < 4; ++j) {
        sc[j] = in[j] & 63;
        m[j] = in[j + 4] & 63;
        sc[j + 4] = static_cast<uint8_t>((in[j + 8] & 0xF) | ((in[j] >> 6) << 4));
        m[j + 4] = static_cast<uint8_t>((in[j + 8] >> 4) | ((in[j + 4] >> 6) << 4));
    }
}

void pack_scales_q3_k(const int8_t sc[16], uint8_t out[12]) {
    std::memset(out, 0, 12);
    for (int j = 0; j < 16; ++j) {
        const int u = sc[j] + 32;  // stored biased, 0..63
        // Low nibble: bytes 0..7 (sub-blocks 0..7 low half, 8..15 high half of the same bytes).
        out[j % 8] |= static_cast<uint8_t>((u & 0xF) << (4 * (j / 8)));
        // High two bits: byte 8 + j%4, bit pair j/4.
        out[8 + j % 4] |= static_cast<uint8_t>((u >> 4) << (2 * (j / 4)));
    }
}

void unpack_scales_q3_k(const uint8_t in[12], int8_t sc[16]) {
    for (int j = 0; j < 16; ++j) {
        const int low = (in[j % 8] >> (4 * (j / 8))) & 0xF;
        const int high = (in[8 + j % 4] >> (2 * (j / 4))) & 3;
        sc[j] = static_cast<int8_t>((low | (high << 4)) - 32);
    }
}

// ---- Search ---------------------------------------------------------------------------------

namespace {

constexpr float kF16Max = 65504.0f;

// Round half to even for 0 <= |t| < 2^22, the rounding of ggml's nearest_int, kept in float so
// the loops vectorise.
inline float round_even(float t) { return (t + 12582912.f) - 12582912.f; }

// fp16 value of a continuous super-scale, kept finite.
inline uint16_t to_f16_finite(float v) {
    v = std::min(std::max(v, -kF16Max), kF16Max);
    return f32_to_f16(v);
}

// fp16 code of a super-scale candidate: finite, and a non-zero value that underflows becomes
// the smallest subnormal of its sign instead of 0 (tiny blocks still get a usable scale).
inline uint16_t nonzero_f16(float v) {
    const uint16_t h = to_f16_finite(v);
    if ((h & 0x7FFF) == 0 && v != 0) return static_cast<uint16_t>((h & 0x8000) | 1);
    return h;
}

// Neighbouring fp16 code of the same sign (dir +1: next larger magnitude, -1: next smaller);
// false when that would leave the finite range or cross zero.
inline bool f16_step(uint16_t h, int dir, uint16_t& out) {
    const int mag = h & 0x7FFF;
    const int next = mag + dir;
    if (next < 0 || next >= 0x7C00) return false;
    out = static_cast<uint16_t>((h & 0x8000) | next);
    return true;
}

// ---------------- asymmetric formats: y = (d*sc)*q - dmin*m ----------------

// Sums over a sub-block are kept in kLanes interleaved partial sums and added up in a fixed
// order at the end: the loops vectorise without the compiler reassociating anything, so the
// result is the same whether or not they are vectorised. Sub-blocks are 16 or 32 values.
constexpr int kLanes = 8;

inline float lane_sum(const float* acc) {
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// Error of one sub-block for the given dl = d*sc and ml = dmin*m, every quant at its nearest level.
inline float asym_sub_error(const float* x, const float* w, int n, float dl, float ml, float qmax) {
    float acc[kLanes] = {};
    if (dl > 0) {
        const float inv = 1.0f / dl;
        for (int i = 0; i < n; i += kLanes) {
            for (int k = 0; k < kLanes; ++k) {
                float t = (x[i + k] + ml) * inv;
                t = std::min(std::max(t, 0.0f), qmax);
                const float diff = x[i + k] - (dl * round_even(t) - ml);
                acc[k] += w[i + k] * diff * diff;
            }
        }
    } else {
        for (int i = 0; i < n; i += kLanes) {
            for (int k = 0; k < kLanes; ++k) {
                const float diff = x[i + k] - (0.0f - ml);
                acc[k] += w[i + k] * diff * diff;
            }
        }
    }
    return lane_sum(acc);
}

inline void asym_sub_quants(const float* x, int n, float dl, float ml, int qmax, uint8_t* q) {
    if (!(dl > 0)) {
        std::memset(q, 0, static_cast<size_t>(n));
        return;
    }
    const float inv = 1.0f / dl;
    for (int i = 0; i < n; ++i) {
        float t = (x[i] + ml) * inv;
        t = std::min(std::max(t, 0.0f), static_cast<float>(qmax));
        q[i] = static_cast<uint8_t>(round_even(t));
    }
}

// Continuous fit of one sub-block: y = scale*l - min with l in [0, qmax], min >= 0, minimising
// sum w (x - y)^2. A grid of inverse scales around qmax/(max - min) proposes the quants, each
// proposal gets its weighted least-squares (scale, min), and the best is polished by
// re-rounding the quants for the fitted line (Lloyd steps).
struct LineFit {
    float scale = 0, min = 0;  // y = scale*l - min
    float sens_scale = 0;      // sum w l^2: how strongly the error reacts to the scale
    float sens_min = 0;        // sum w: how strongly it reacts to the min
};

// positive_offset selects the mirrored family y = scale*l + |min| (dmin < 0), which only helps
// sub-blocks whose values are all positive.
LineFit fit_asym_sub(const float* x, const float* w, int n, int qmax, float rmin, float rdelta, int nstep,
                     bool positive_offset) {
    LineFit fit;
    float lo = x[0], hi = x[0];
    float acc_w[kLanes] = {}, acc_x[kLanes] = {};
    for (int i = 0; i < n; i += kLanes) {
        for (int k = 0; k < kLanes; ++k) {
            lo = std::min(lo, x[i + k]);
            hi = std::max(hi, x[i + k]);
            acc_w[k] += w[i + k];
            acc_x[k] += w[i + k] * x[i + k];
        }
    }
    const double sum_w = lane_sum(acc_w), sum_x = lane_sum(acc_x);
    lo = positive_offset ? std::max(lo, 0.0f) : std::min(lo, 0.0f);
    fit.sens_min = static_cast<float>(sum_w);
    if (!(hi > lo)) {  // constant values on the offset's side of 0: the offset alone represents them
        fit.min = -lo;
        return fit;
    }
    const float fqmax = static_cast<float>(qmax);
    float L[32];
    float best_err = std::numeric_limits<float>::infinity();
    float best_a = (hi - lo) / fqmax, best_b = lo;
    // Weighted least-squares line through the quants L, kept if its error is the best so far.
    auto try_quants = [&]() {
        float acc_l[kLanes] = {}, acc_l2[kLanes] = {}, acc_xl[kLanes] = {};
        for (int i = 0; i < n; i += kLanes) {
            for (int k = 0; k < kLanes; ++k) {
                const float wl = w[i + k] * L[i + k];
                acc_l[k] += wl;
                acc_l2[k] += wl * L[i + k];
                acc_xl[k] += wl * x[i + k];
            }
        }
        const double sl = lane_sum(acc_l), sl2 = lane_sum(acc_l2), sxl = lane_sum(acc_xl);
        double a, b;
        const double D = sum_w * sl2 - sl * sl;
        if (D > 0) {
            a = (sum_w * sxl - sum_x * sl) / D;
            b = (sl2 * sum_x - sl * sxl) / D;
            if (positive_offset ? b < 0 : b > 0) {
                b = 0;
                a = sxl / sl2;
            }
        } else if (sl2 > 0) {
            a = sxl / sl2;
            b = 0;
        } else {
            return;
        }
        if (!(a > 0)) return;
        const float fa = static_cast<float>(a), fb = static_cast<float>(b);
        float acc_e[kLanes] = {};
        for (int i = 0; i < n; i += kLanes) {
            for (int k = 0; k < kLanes; ++k) {
                const float diff = fa * L[i + k] + fb - x[i + k];
                acc_e[k] += w[i + k] * diff * diff;
            }
        }
        const float err = lane_sum(acc_e);
        if (err < best_err) {
            best_err = err;
            best_a = fa;
            best_b = fb;
        }
    };
    auto round_for = [&](float inv, float off) {
        for (int i = 0; i < n; ++i) L[i] = round_even(std::min(std::max((x[i] - off) * inv, 0.0f), fqmax));
    };
    const float range = hi - lo;
    for (int is = 0; is <= nstep; ++is) {
        round_for((fqmax + rmin + rdelta * is) / range, lo);
        try_quants();
    }
    for (int it = 0; it < 3; ++it) {  // Lloyd: re-round for the best line, refit
        const float prev = best_err;
        round_for(1.0f / best_a, best_b);
        try_quants();
        if (!(best_err < prev)) break;
    }
    fit.scale = best_a;
    fit.min = -best_b;
    round_for(1.0f / best_a, best_b);
    float acc_s[kLanes] = {};
    for (int i = 0; i < n; i += kLanes)
        for (int k = 0; k < kLanes; ++k) acc_s[k] += w[i + k] * L[i + k] * L[i + k];
    fit.sens_scale = lane_sum(acc_s);
    return fit;
}

struct SubChoice {
    int sc = 0, m = 0;
    float err = 0;
};

// Best integer (sc, m) of one sub-block for fixed d, dmin: hill climbing on the 3x3
// neighbourhood from (sc0, m0), each point scored with its re-rounded quants.
SubChoice refine_asym_sub(const float* x, const float* w, int n, int qmax, int smax, float d, float dmin, int sc0,
                          int m0) {
    const bool vary_sc = d > 0, vary_m = dmin != 0;
    sc0 = vary_sc ? std::clamp(sc0, 0, smax) : 0;
    m0 = vary_m ? std::clamp(m0, 0, smax) : 0;
    const float fq = static_cast<float>(qmax);
    auto eval = [&](int sc, int m) {
        return asym_sub_error(x, w, n, d * static_cast<float>(sc), dmin * static_cast<float>(m), fq);
    };
    SubChoice best{sc0, m0, eval(sc0, m0)};
    // Moves: scale alone, min alone, and both together in the direction where a larger scale
    // is compensated by a larger offset (the error valley of y = dl*q - ml runs along it).
    const int diag = dmin >= 0 ? 1 : -1;
    const int moves[8][2] = {{1, 0}, {-1, 0}, {0, 1}, {0, -1}, {1, diag}, {-1, -diag}, {1, -diag}, {-1, diag}};
    for (int step = 0; step < 32; ++step) {
        SubChoice cand = best;
        for (int mv = 0; mv < 8; ++mv) {
            const int ds = moves[mv][0], dm = moves[mv][1];
            if ((ds && !vary_sc) || (dm && !vary_m)) continue;
            const int sc = best.sc + ds, m = best.m + dm;
            if (sc < 0 || sc > smax || m < 0 || m > smax) continue;
            const float e = eval(sc, m);
            if (e < cand.err) cand = {sc, m, e};
        }
        if (cand.sc == best.sc && cand.m == best.m) break;
        best = cand;
    }
    return best;
}

// Candidate super-scales for non-negative sub-block values v_j with sensitivities s_j: the
// max-based one (largest value -> smax) and a sensitivity-weighted least-squares fit of
// v_j ~ d*k_j iterated with k_j = round(v_j/d).
int super_scale_candidates(const float* v, const float* sens, int n_sub, int smax, float out[4]) {
    float vmax = 0;
    for (int j = 0; j < n_sub; ++j) vmax = std::max(vmax, v[j]);
    if (!(vmax > 0)) {
        out[0] = 0;
        return 1;
    }
    int count = 0;
    out[count++] = vmax / smax;
    double d = vmax / smax;
    for (int it = 0; it < 4; ++it) {
        double num = 0, den = 0;
        for (int j = 0; j < n_sub; ++j) {
            const double k = std::clamp(std::nearbyint(v[j] / d), 0.0, static_cast<double>(smax));
            num += static_cast<double>(sens[j]) * v[j] * k;
            den += static_cast<double>(sens[j]) * k * k;
        }
        if (!(den > 0)) break;
        d = num / den;
    }
    out[count++] = static_cast<float>(d);
    return count;
}

struct AsymState {
    float d = 0, dmin = 0;
    int sc[16] = {}, m[16] = {};
    double err = std::numeric_limits<double>::infinity();
};

// Scores fp16 super-scales (hd, hm): every sub-block re-fits its integer (sc, m) by hill
// climbing from the rounding of its continuous scale and min (or of a previous choice).
double eval_asym_scales(const AsymSpec& spec, const float* x, const float* w, uint16_t hd, uint16_t hm,
                        const float* start_scale, const float* start_min, AsymState& st) {
    const float d = f16_to_f32(hd), dmin = f16_to_f32(hm);
    st.d = d;
    st.dmin = dmin;
    double total = 0;
    for (int j = 0; j < spec.n_sub; ++j) {
        const int sc0 = d > 0 ? static_cast<int>(std::nearbyint(std::clamp(start_scale[j] / d, -1e6f, 1e6f))) : 0;
        const int m0 = dmin != 0 ? static_cast<int>(std::nearbyint(std::clamp(start_min[j] / dmin, -1e6f, 1e6f))) : 0;
        const int off = j * spec.sub_elems;
        const SubChoice c = refine_asym_sub(x + off, w + off, spec.sub_elems, spec.qmax, spec.smax, d, dmin, sc0, m0);
        st.sc[j] = c.sc;
        st.m[j] = c.m;
        total += c.err;
    }
    st.err = total;
    return total;
}

// ---------------- symmetric formats: y = (d*sc)*q ----------------

inline float sym_sub_error(const float* x, const float* w, int n, float dl, float qmin, float qmax) {
    float acc[kLanes] = {};
    if (dl != 0) {
        const float inv = 1.0f / dl;
        for (int i = 0; i < n; i += kLanes) {
            for (int k = 0; k < kLanes; ++k) {
                float t = x[i + k] * inv;
                t = std::min(std::max(t, qmin), qmax);
                const float diff = x[i + k] - dl * round_even(t);
                acc[k] += w[i + k] * diff * diff;
            }
        }
    } else {
        for (int i = 0; i < n; i += kLanes)
            for (int k = 0; k < kLanes; ++k) acc[k] += w[i + k] * x[i + k] * x[i + k];
    }
    return lane_sum(acc);
}

inline void sym_sub_quants(const float* x, int n, float dl, int qmin, int qmax, int8_t* q) {
    if (dl == 0) {
        std::memset(q, 0, static_cast<size_t>(n));
        return;
    }
    const float inv = 1.0f / dl;
    for (int i = 0; i < n; ++i) {
        float t = x[i] * inv;
        t = std::min(std::max(t, static_cast<float>(qmin)), static_cast<float>(qmax));
        q[i] = static_cast<int8_t>(round_even(t));
    }
}

struct SymFit {
    float scale = 0;      // best signed scale
    float alt_scale = 0;  // best scale of the opposite sign (the other side gets the extra level)
    float sens = 0;       // sum w l^2
};

// Continuous fit of one sub-block y = scale*l, l in [qmin, qmax]: for both orientations, a grid
// of inverse scales that put the largest |x| near the end level proposes quants, each gets its
// least-squares scale, and the best of each orientation is polished with Lloyd steps.
SymFit fit_sym_sub(const float* x, const float* w, int n, int qmin, int qmax, int nstep, float step) {
    SymFit fit;
    float amax = 0, vmax = 0;
    for (int i = 0; i < n; ++i) {
        if (std::fabs(x[i]) > amax) {
            amax = std::fabs(x[i]);
            vmax = x[i];
        }
    }
    if (!(amax >= kGroupMaxEps)) return fit;
    const float fqmin = static_cast<float>(qmin), fqmax = static_cast<float>(qmax);
    float best_err[2] = {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::infinity()};
    float best_a[2] = {0, 0};
    float L[32];
    // Least-squares scale through the quants L, kept if best for its sign.
    auto try_quants = [&]() {
        float acc_xl[kLanes] = {}, acc_l2[kLanes] = {};
        for (int i = 0; i < n; i += kLanes) {
            for (int k = 0; k < kLanes; ++k) {
                const float wl = w[i + k] * L[i + k];
                acc_xl[k] += wl * x[i + k];
                acc_l2[k] += wl * L[i + k];
            }
        }
        const float sl2 = lane_sum(acc_l2);
        if (!(sl2 > 0)) return;
        const float a = lane_sum(acc_xl) / sl2;
        float acc_e[kLanes] = {};
        for (int i = 0; i < n; i += kLanes) {
            for (int k = 0; k < kLanes; ++k) {
                const float diff = x[i + k] - a * L[i + k];
                acc_e[k] += w[i + k] * diff * diff;
            }
        }
        const float err = lane_sum(acc_e);
        const int side = a > 0 ? 0 : 1;
        if (err < best_err[side]) {
            best_err[side] = err;
            best_a[side] = a;
        }
    };
    auto quants_for = [&](float iscale) {
        for (int i = 0; i < n; ++i) L[i] = round_even(std::min(std::max(iscale * x[i], fqmin), fqmax));
    };
    for (int target : {qmin, qmax}) {
        const float sgn = target < 0 ? -1.0f : 1.0f;
        for (int is = -nstep; is <= nstep; ++is) {
            quants_for((static_cast<float>(target) + sgn * step * is) / vmax);
            try_quants();
        }
    }
    for (int side = 0; side < 2; ++side) {
        for (int it = 0; it < 3 && best_a[side] != 0; ++it) {
            const float prev = best_err[side];
            quants_for(1.0f / best_a[side]);
            try_quants();
            if (!(best_err[side] < prev)) break;
        }
    }
    const int best_side = best_err[0] <= best_err[1] ? 0 : 1;
    fit.scale = best_a[best_side];
    fit.alt_scale = best_a[1 - best_side];
    if (fit.scale != 0) {
        quants_for(1.0f / fit.scale);
        float acc[kLanes] = {};
        for (int i = 0; i < n; i += kLanes)
            for (int k = 0; k < kLanes; ++k) acc[k] += w[i + k] * L[i + k] * L[i + k];
        fit.sens = lane_sum(acc);
    }
    return fit;
}

struct SymState {
    float d = 0;
    int sc[16] = {};
    double err = std::numeric_limits<double>::infinity();
};

// Best integer sub-scale for a fixed super-scale d: a window around the rounding of each
// starting scale, then hill climbing.
SubChoice refine_sym_sub(const float* x, const float* w, int n, const SymSpec& spec, float d, const float* starts,
                         int n_starts) {
    const float fqmin = static_cast<float>(spec.qmin), fqmax = static_cast<float>(spec.qmax);
    auto eval = [&](int sc) { return sym_sub_error(x, w, n, d * static_cast<float>(sc), fqmin, fqmax); };
    SubChoice best{0, 0, eval(0)};
    if (d == 0) return best;
    for (int s = 0; s < n_starts; ++s) {
        if (starts[s] == 0) continue;
        const float r = std::min(std::max(starts[s] / d, -1e6f), 1e6f);
        const int c = std::clamp(static_cast<int>(std::nearbyint(r)), spec.smin, spec.smax);
        for (int sc = std::max(spec.smin, c - 1); sc <= std::min(spec.smax, c + 1); ++sc) {
            if (sc == 0) continue;
            const float e = eval(sc);
            if (e < best.err) best = {sc, 0, e};
        }
    }
    for (int step = 0; step < 64; ++step) {
        SubChoice cand = best;
        for (int ds : {-1, 1}) {
            const int sc = best.sc + ds;
            if (sc < spec.smin || sc > spec.smax || sc == 0) continue;
            const float e = eval(sc);
            if (e < cand.err) cand = {sc, 0, e};
        }
        if (cand.sc == best.sc) break;
        best = cand;
    }
    return best;
}

// Scores an fp16 super-scale: every sub-block picks its best integer scale near its fitted
// scale, its opposite-sign alternative and (when polishing) its previous choice.
double eval_sym_scale(const SymSpec& spec, const float* x, const float* w, uint16_t hd, const float* fit_scale,
                      const float* alt_scale, const float* prev_scale, SymState& st) {
    const float d = f16_to_f32(hd);
    st.d = d;
    double total = 0;
    for (int j = 0; j < spec.n_sub; ++j) {
        const int off = j * spec.sub_elems;
        float starts[3] = {fit_scale[j], alt_scale[j], prev_scale ? prev_scale[j] : 0.0f};
        const SubChoice c = refine_sym_sub(x + off, w + off, spec.sub_elems, spec, d, starts, 3);
        st.sc[j] = c.sc;
        total += c.err;
    }
    st.err = total;
    return total;
}

}  // namespace

namespace {

// One offset family of search_asym: sign = +1 is the usual y = (d*sc)*q - dmin*m with dmin >= 0;
// sign = -1 uses dmin <= 0, i.e. non-negative offsets, for blocks of mostly positive values.
// ggml's dequantization and dot products are linear in dmin, so a negative dmin is valid data.
void search_asym_family(const AsymSpec& spec, const float* x, const float* w, int sign, AsymState& best,
                        uint16_t& best_hd, uint16_t& best_hm) {
    const int n = spec.sub_elems;
    const bool positive_offset = sign < 0;
    float scale[16] = {}, minv[16] = {}, abs_min[16] = {}, sens_s[16] = {}, sens_m[16] = {};
    const bool small = spec.qmax <= 3;
    for (int j = 0; j < spec.n_sub; ++j) {
        // Grids of inverse scales (qmax + rmin + rdelta*k)/range; 2-bit quants need the finer one.
        const LineFit f = small ? fit_asym_sub(x + j * n, w + j * n, n, spec.qmax, -0.9f, 0.1f, 18, positive_offset)
                                : fit_asym_sub(x + j * n, w + j * n, n, spec.qmax, -1.0f, 0.2f, 10, positive_offset);
        scale[j] = f.scale;
        minv[j] = f.min;
        abs_min[j] = std::max(0.0f, sign * f.min);
        sens_s[j] = f.sens_scale;
        sens_m[j] = f.sens_min;
    }
    float dc[4], mc[4];
    const int nd = super_scale_candidates(scale, sens_s, spec.n_sub, spec.smax, dc);
    const int nm = super_scale_candidates(abs_min, sens_m, spec.n_sub, spec.smax, mc);

    AsymState cur;
    uint16_t tried[32][2];
    int n_tried = 0;
    auto try_pair = [&](uint16_t hd, uint16_t hm, const float* s0, const float* m0) {
        for (int t = 0; t < n_tried; ++t)
            if (tried[t][0] == hd && tried[t][1] == hm) return;
        if (n_tried < 32) {
            tried[n_tried][0] = hd;
            tried[n_tried][1] = hm;
            ++n_tried;
        }
        if (eval_asym_scales(spec, x, w, hd, hm, s0, m0, cur) < best.err) {
            best = cur;
            best_hd = hd;
            best_hm = hm;
        }
    };
    for (int a = 0; a < nd; ++a)
        for (int b = 0; b < nm; ++b)
            try_pair(nonzero_f16(dc[a]), nonzero_f16(sign * mc[b]), scale, minv);
    // A coarser lattice can fit the sub-blocks' scales (or mins) better than the finest one:
    // a few super-scales that map the largest value below smax, each with the best partner.
    float vmax = 0, mmax = 0;
    for (int j = 0; j < spec.n_sub; ++j) {
        vmax = std::max(vmax, scale[j]);
        mmax = std::max(mmax, abs_min[j]);
    }
    const uint16_t hm_best = best_hm;
    for (int k = 1; k <= 2 && vmax > 0; ++k) try_pair(nonzero_f16(vmax / (spec.smax - k)), hm_best, scale, minv);
    const uint16_t hd_best = best_hd;
    for (int k = 1; k <= 2 && mmax > 0; ++k)
        try_pair(hd_best, nonzero_f16(sign * mmax / (spec.smax - k)), scale, minv);

    // Polish: least-squares refit of (d, dmin) for the chosen integers, then re-fit the integers.
    for (int round = 0; round < 2; ++round) {
        double s_aa = 0, s_ab = 0, s_bb = 0, s_xa = 0, s_xb = 0;
        for (int j = 0; j < spec.n_sub; ++j) {
            uint8_t q[32];
            asym_sub_quants(x + j * n, n, best.d * best.sc[j], best.dmin * best.m[j], spec.qmax, q);
            for (int i = 0; i < n; ++i) {
                const double wi = w[j * n + i];
                const double a = static_cast<double>(best.sc[j]) * q[i], b = -static_cast<double>(best.m[j]);
                s_aa += wi * a * a;
                s_ab += wi * a * b;
                s_bb += wi * b * b;
                s_xa += wi * x[j * n + i] * a;
                s_xb += wi * x[j * n + i] * b;
            }
        }
        const double det = s_aa * s_bb - s_ab * s_ab;
        double nd_ = best.d, nm_ = best.dmin;
        if (det > 0) {
            nd_ = (s_xa * s_bb - s_xb * s_ab) / det;
            nm_ = (s_aa * s_xb - s_ab * s_xa) / det;
        } else if (s_aa > 0) {
            nd_ = s_xa / s_aa;
        }
        if (!(nd_ >= 0)) nd_ = best.d;
        if (!(sign * nm_ >= 0)) nm_ = best.dmin;
        float prev_s[16], prev_m[16];
        for (int j = 0; j < spec.n_sub; ++j) {
            prev_s[j] = best.d * best.sc[j];
            prev_m[j] = best.dmin * best.m[j];
        }
        const double before = best.err;
        const uint16_t hd = nonzero_f16(static_cast<float>(nd_)), hm = nonzero_f16(static_cast<float>(nm_));
        try_pair(hd, hm, prev_s, prev_m);
        uint16_t h2;
        for (int dir : {-1, 1}) {
            if (f16_step(hd, dir, h2)) try_pair(h2, hm, prev_s, prev_m);
            if (f16_step(hm, dir, h2)) try_pair(hd, h2, prev_s, prev_m);
        }
        if (!(best.err < before)) break;
    }
}

}  // namespace

double search_asym(const AsymSpec& spec, const float* x, const float* w, AsymBlock& out) {
    const int n = spec.sub_elems;
    AsymState best;
    uint16_t best_hd = 0, best_hm = 0;
    search_asym_family(spec, x, w, +1, best, best_hd, best_hm);
    // The mirrored family only when some sub-block lies entirely above zero.
    bool any_positive = false;
    for (int j = 0; j < spec.n_sub && !any_positive; ++j)
        any_positive = *std::min_element(x + j * n, x + j * n + n) > 0;
    if (any_positive) search_asym_family(spec, x, w, -1, best, best_hd, best_hm);

    out.d = best_hd;
    out.dmin = best_hm;
    for (int j = 0; j < spec.n_sub; ++j) {
        out.sc[j] = static_cast<uint8_t>(best.sc[j]);
        out.m[j] = static_cast<uint8_t>(best.m[j]);
        asym_sub_quants(x + j * n, n, best.d * static_cast<float>(best.sc[j]),
                        best.dmin * static_cast<float>(best.m[j]), spec.qmax, out.q + j * n);
    }
    return best.err;
}

double search_sym(const SymSpec& spec, const float* x, const float* w, SymBlock& out) {
    const int n = spec.sub_elems;
    float scale[16] = {}, alt[16] = {}, sens[16] = {};
    for (int j = 0; j < spec.n_sub; ++j) {
        // A coarse grid is enough: the integer search below does the fine work.
        const SymFit f = fit_sym_sub(x + j * n, w + j * n, n, spec.qmin, spec.qmax, 3, 0.3f);
        scale[j] = f.scale;
        alt[j] = f.alt_scale;
        sens[j] = f.sens;
    }
    // Super-scale candidates: the sub-scale of largest magnitude mapped to either end of the
    // signed range, and sensitivity-weighted least-squares fits started from each.
    float smax_v = 0, amax = 0;
    for (int j = 0; j < spec.n_sub; ++j)
        if (std::fabs(scale[j]) > amax) {
            amax = std::fabs(scale[j]);
            smax_v = scale[j];
        }
    float dc[4];
    int nd = 0;
    if (amax > 0) {
        for (int end : {spec.smin, spec.smax}) {
            double d = static_cast<double>(smax_v) / end;
            dc[nd++] = static_cast<float>(d);
            for (int it = 0; it < 4; ++it) {
                double num = 0, den = 0;
                for (int j = 0; j < spec.n_sub; ++j) {
                    const double k =
                        std::clamp(std::nearbyint(scale[j] / d), static_cast<double>(spec.smin), static_cast<double>(spec.smax));
                    num += static_cast<double>(sens[j]) * scale[j] * k;
                    den += static_cast<double>(sens[j]) * k * k;
                }
                if (!(den > 0)) break;
                d = num / den;
            }
            dc[nd++] = static_cast<float>(d);
        }
    } else {
        dc[nd++] = 0;
    }

    SymState best, cur;
    uint16_t best_hd = 0;
    uint16_t tried[32];
    int n_tried = 0;
    auto try_d = [&](uint16_t hd, const float* prev) {
        for (int t = 0; t < n_tried; ++t)
            if (tried[t] == hd) return;
        if (n_tried < 32) tried[n_tried++] = hd;
        if (eval_sym_scale(spec, x, w, hd, scale, alt, prev, cur) < best.err) {
            best = cur;
            best_hd = hd;
        }
    };
    for (int a = 0; a < nd; ++a) try_d(nonzero_f16(dc[a]), nullptr);

    // Polish: least-squares refit of d for the chosen integers, then re-fit the integers.

    for (int round = 0; round < 2 && best.d != 0; ++round) {
        double s_aa = 0, s_xa = 0;
        for (int j = 0; j < spec.n_sub; ++j) {
            int8_t q[32];
            sym_sub_quants(x + j * n, n, best.d * static_cast<float>(best.sc[j]), spec.qmin, spec.qmax, q);
            for (int i = 0; i < n; ++i) {
                const double wi = w[j * n + i];
                const double a = static_cast<double>(best.sc[j]) * q[i];
                s_aa += wi * a * a;
                s_xa += wi * x[j * n + i] * a;
            }
        }
        if (!(s_aa > 0)) break;
        float prev[16];
        for (int j = 0; j < spec.n_sub; ++j) prev[j] = best.d * best.sc[j];
        const double before = best.err;
        const uint16_t hd = nonzero_f16(static_cast<float>(s_xa / s_aa));
        try_d(hd, prev);
        uint16_t h2;
        for (int dir : {-1, 1})
            if (f16_step(hd, dir, h2)) try_d(h2, prev);
        if (!(best.err < before)) break;
    }

    out.d = best_hd;
    for (int j = 0; j < spec.n_sub; ++j) {
        out.sc[j] = static_cast<int8_t>(best.sc[j]);
        sym_sub_quants(x + j * n, n, best.d * static_cast<float>(best.sc[j]), spec.qmin, spec.qmax, out.q + j * n);
    }
    return best.err;
}

// ---- Polishing llama.cpp's encoding -----------------------------------------------------------

const float* unit_weights() {
    static const auto* ones = [] {
        auto* v = new float[kBatchBlocks * kBlockElems];
        std::fill(v, v + kBatchBlocks * kBlockElems, 1.0f);
        return v;
    }();
    return ones;
}

void polish_asym_batch(const AsymSpec& spec, const float* x, const float* w, int nb, AsymBlock* io) {
    const int n = spec.sub_elems, ns = spec.n_sub;
    float d[kBatchBlocks * 16] = {}, dm[kBatchBlocks * 16] = {};
    int32_t sc0[kBatchBlocks * 16] = {}, m0[kBatchBlocks * 16] = {}, sc[kBatchBlocks * 16], m[kBatchBlocks * 16];
    uint8_t q[kBatchBlocks * kBlockElems];
    for (int b = 0; b < nb; ++b) {
        AsymBlock& blk = io[b];
        const float* xb = x + b * kBlockElems;
        const float* wb = w + b * kBlockElems;
        const float d0 = f16_to_f32(blk.d), dmin0 = f16_to_f32(blk.dmin);
        // Least-squares (d, dmin) for the block's integers and their re-rounded quants. Per
        // sub-block in float (a proposal only: the exact error decides), then summed in double:
        // with a = sc*q and c = -m, s_aa = sum sc^2 w q^2, s_ab = -sc m sum w q, s_bb = m^2 sum w, ...
        double s_aa = 0, s_ab = 0, s_bb = 0, s_xa = 0, s_xb = 0;
        for (int j = 0; j < ns; ++j) {
            uint8_t qj[32];
            const float* xs = xb + j * n;
            const float* ws = wb + j * n;
            asym_sub_quants(xs, n, d0 * blk.sc[j], dmin0 * blk.m[j], spec.qmax, qj);
            float sw = 0, swq = 0, swq2 = 0, swx = 0, swxq = 0;
            for (int i = 0; i < n; ++i) {
                const float q = qj[i];
                sw += ws[i];
                swq += ws[i] * q;
                swq2 += ws[i] * q * q;
                swx += ws[i] * xs[i];
                swxq += ws[i] * xs[i] * q;
            }
            const double sc = blk.sc[j], m = blk.m[j];
            s_aa += sc * sc * swq2;
            s_ab -= sc * m * swq;
            s_bb += m * m * sw;
            s_xa += sc * swxq;
            s_xb -= m * swx;
        }
        const double det = s_aa * s_bb - s_ab * s_ab;
        if (det > 0) {
            const double nd = (s_xa * s_bb - s_xb * s_ab) / det;
            const double nm = (s_aa * s_xb - s_ab * s_xa) / det;
            if (nd > 0 && nm >= 0) {
                blk.d = nonzero_f16(static_cast<float>(nd));
                blk.dmin = to_f16_finite(static_cast<float>(nm));
            }
        }
        const float D = f16_to_f32(blk.d), M = f16_to_f32(blk.dmin);
        for (int j = 0; j < ns; ++j) {
            const int g = b * ns + j;
            d[g] = D;
            dm[g] = M;
            sc0[g] = D > 0 ? static_cast<int>(std::nearbyint(std::clamp(d0 * blk.sc[j] / D, -1e6f, 1e6f))) : 0;
            m0[g] = M != 0 ? static_cast<int>(std::nearbyint(std::clamp(dmin0 * blk.m[j] / M, -1e6f, 1e6f))) : 0;
        }
    }
    lanes::asym_refit(nb * ns, n, spec.qmax, spec.smax, x, w, d, dm, sc0, m0, sc, m, q);
    for (int b = 0; b < nb; ++b) {
        for (int j = 0; j < ns; ++j) {
            io[b].sc[j] = static_cast<uint8_t>(sc[b * ns + j]);
            io[b].m[j] = static_cast<uint8_t>(m[b * ns + j]);
        }
        std::memcpy(io[b].q, q + b * kBlockElems, kBlockElems);
    }
}

void polish_sym_batch(const SymSpec& spec, const float* x, const float* w, int nb, SymBlock* io) {
    const int n = spec.sub_elems, ns = spec.n_sub;
    float d[kBatchBlocks * 16] = {};
    int32_t sc0[kBatchBlocks * 16] = {}, sc[kBatchBlocks * 16];
    int8_t q[kBatchBlocks * kBlockElems];
    for (int b = 0; b < nb; ++b) {
        SymBlock& blk = io[b];
        const float* xb = x + b * kBlockElems;
        const float* wb = w + b * kBlockElems;
        const float d0 = f16_to_f32(blk.d);
        double s_aa = 0, s_xa = 0;
        for (int j = 0; j < ns; ++j) {
            int8_t qj[32];
            const float* xs = xb + j * n;
            const float* ws = wb + j * n;
            sym_sub_quants(xs, n, d0 * static_cast<float>(blk.sc[j]), spec.qmin, spec.qmax, qj);
            float swq2 = 0, swxq = 0;  // per sub-block in float (a proposal only), then double
            for (int i = 0; i < n; ++i) {
                const float q = qj[i];
                swq2 += ws[i] * q * q;
                swxq += ws[i] * xs[i] * q;
            }
            const double sc = blk.sc[j];
            s_aa += sc * sc * swq2;
            s_xa += sc * swxq;
        }
        if (s_aa > 0) blk.d = nonzero_f16(static_cast<float>(s_xa / s_aa));
        const float D = f16_to_f32(blk.d);
        for (int j = 0; j < ns; ++j) {
            const int g = b * ns + j;
            d[g] = D;
            sc0[g] = D != 0 ? static_cast<int>(std::nearbyint(
                                  std::clamp(d0 * static_cast<float>(blk.sc[j]) / D, -1e6f, 1e6f)))
                            : 0;
        }
    }
    lanes::sym_refit(nb * ns, n, spec.qmin, spec.qmax, spec.smin, spec.smax, x, w, d, sc0, sc, q);
    for (int b = 0; b < nb; ++b) {
        for (int j = 0; j < ns; ++j) io[b].sc[j] = static_cast<int8_t>(sc[b * ns + j]);
        std::memcpy(io[b].q, q + b * kBlockElems, kBlockElems);
    }
}

// ---- llama.cpp's Q4_K / Q5_K encoder -------------------------------------------------------

namespace {

// The requantization step both llama.cpp paths end with: every value re-rounded with its
// decoded sub-block scale and min (sub-blocks whose scale decodes to 0 keep their quants).
void llama_requantize(int qmax, const float* x, const LlamaScaleMinBlock& b, uint8_t* L) {
    uint8_t sc[8], m[8];
    unpack_scale_min_k4(b.scales, sc, m);
    for (int j = 0; j < 8; ++j) {
        const float d = f16_to_f32(b.d) * sc[j];
        if (!d) continue;
        const float dm = f16_to_f32(b.dmin) * m[j];
        for (int ii = 0; ii < 32; ++ii) {
            const int l = nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(qmax, l)));
        }
    }
}

// quantize_row_q{4,5}_K_ref for one block, from its sub-block searches.
void llama_scale_min_plain(const LlamaScaleMinSpec& spec, const float* x, const GroupSearch& gs,
                           LlamaScaleMinBlock& b) {
    std::memcpy(b.q, gs.L, kBlockElems);
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
        if (gs.scales[j] > max_scale) max_scale = gs.scales[j];
        if (gs.mins[j] > max_min) max_min = gs.mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; ++j) {
        ls[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * gs.scales[j])));
        lm[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * gs.mins[j])));
    }
    pack_scale_min_k4(ls, lm, b.scales);
    b.d = f32_to_f16(max_scale / 63.f);
    b.dmin = f32_to_f16(max_min / 63.f);
    llama_requantize(spec.qmax, x, b, b.q);
}

// quantize_row_q{4,5}_K_impl for one block (the importance path), from its sub-block searches.
void llama_scale_min_weighted(const LlamaScaleMinSpec& spec, const float* x, const GroupSearch& gs,
                              LlamaScaleMinBlock& b) {
    std::memcpy(b.q, gs.L, kBlockElems);
    uint8_t Ls[8], Lm[8];
    const float d_block = llama_ref::make_qp_quants(8, 63, gs.scales, Ls, gs.sw);
    const float m_block = llama_ref::make_qp_quants(8, 63, gs.mins, Lm, gs.sw);
    if (spec.clamp_weighted_codes) {
        for (int j = 0; j < 8; ++j) {
            Ls[j] = std::min<uint8_t>(63, Ls[j]);
            Lm[j] = std::min<uint8_t>(63, Lm[j]);
        }
    }
    // Packed as ggml does, without masking: make_qp_quants limits the codes to 63 unless a
    // negative value wrapped (Q4_K only), whose stray high bits then land exactly where ggml's
    // packing puts them. For codes <= 63 this equals pack_scale_min_k4.
    std::memset(b.scales, 0, sizeof b.scales);
    for (int j = 0; j < 8; ++j) {
        if (j < 4) {
            b.scales[j] = Ls[j];
            b.scales[j + 4] = Lm[j];
        } else {
            b.scales[j + 4] = static_cast<uint8_t>((Ls[j] & 0xF) | ((Lm[j] & 0xF) << 4));
            b.scales[j - 4] |= static_cast<uint8_t>((Ls[j] >> 4) << 6);
            b.scales[j] |= static_cast<uint8_t>((Lm[j] >> 4) << 6);
        }
    }
    b.d = f32_to_f16(d_block);
    b.dmin = f32_to_f16(m_block);
    llama_requantize(spec.qmax, x, b, b.q);
}

}  // namespace

void llama_scale_min_groups(const LlamaScaleMinSpec& spec, const float* x, const float* qw, int nb, GroupSearch* gs) {
    float weights[kBatchBlocks * kBlockElems];
    float scales[kBatchBlocks * 8], mins[kBatchBlocks * 8];
    uint8_t L[kBatchBlocks * kBlockElems];
    for (int b = 0; b < nb; ++b) {
        const float* xb = x + b * kBlockElems;
        float* wb = weights + b * kBlockElems;
        if (!qw) {  // _ref: av_x + |x| per sub-block
            for (int j = 0; j < 8; ++j) {
                float sum_x2 = 0;
                for (int l = 0; l < 32; ++l) sum_x2 += xb[32 * j + l] * xb[32 * j + l];
                const float av_x = std::sqrt(sum_x2 / 32);
                for (int l = 0; l < 32; ++l) wb[32 * j + l] = av_x + std::fabs(xb[32 * j + l]);
            }
        } else {  // _impl: importance * sqrt(sigma2 + x^2), sigma2 per super-block
            const float* qb = qw + b * kBlockElems;
            float sum_x2 = 0;
            for (int l = 0; l < kBlockElems; ++l) sum_x2 += xb[l] * xb[l];
            const float sigma2 = 2 * sum_x2 / kBlockElems;
            for (int j = 0; j < 8; ++j) {
                float sumw = 0;
                for (int l = 0; l < 32; ++l) {
                    wb[32 * j + l] = qb[32 * j + l] * std::sqrt(sigma2 + xb[32 * j + l] * xb[32 * j + l]);
                }
                for (int l = 0; l < 32; ++l) sumw += wb[32 * j + l];
                gs[b].sw[j] = sumw;
            }
        }
    }
    if (!qw)
        lanes::make_qkx_quants(false, nb * 8, 32, spec.qmax, x, weights, L, scales, mins, spec.plain_rmin, 0.1f,
                               spec.plain_nstep, false);
    else
        lanes::make_qkx_quants(true, nb * 8, 32, spec.qmax, x, weights, L, scales, mins, -0.9f, 0.05f, 36, false);
    for (int b = 0; b < nb; ++b) {
        std::memcpy(gs[b].scales, scales + 8 * b, 8 * sizeof(float));
        std::memcpy(gs[b].mins, mins + 8 * b, 8 * sizeof(float));
        std::memcpy(gs[b].L, L + b * kBlockElems, kBlockElems);
    }
}

void llama_scale_min_finish(const LlamaScaleMinSpec& spec, const float* x, const float* qw, const GroupSearch& gs,
                            LlamaScaleMinBlock& out) {
    if (qw) llama_scale_min_weighted(spec, x, gs, out);
    else llama_scale_min_plain(spec, x, gs, out);
}

void llama_scale_min_block(const LlamaScaleMinSpec& spec, const float* x, const float* qw, LlamaScaleMinBlock& out) {
    GroupSearch gs;
    llama_scale_min_groups(spec, x, qw, 1, &gs);
    llama_scale_min_finish(spec, x, qw, gs, out);
}

}  // namespace qf::kquant
