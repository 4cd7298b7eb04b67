#include "quant/quant_common.h"

#include <cmath>
#include <limits>

namespace qf::quant {

// The llama_* functions below must keep ggml's exact sequence of float operations (sums in
// index order, the same association in products); do not "simplify" them.

float llama_row_sigma2(const float* x, int64_t n) {
    float sum_x2 = 0;
    for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
    return sum_x2 / static_cast<float>(n);
}

float llama_make_qx_quants(int n, int nmax, const float* x, int8_t* L, const float* w) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.0f;
    }
    float iscale = static_cast<float>(-nmax) / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = std::max(-nmax, std::min(nmax - 1, l));
        L[i] = static_cast<int8_t>(l + nmax);
        const float fl = static_cast<float>(l);
        sumlx += w[i] * x[i] * fl;
        suml2 += w[i] * fl * fl;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * x[i]);
            l = std::max(-nmax, std::min(nmax - 1, l));
            const float fl = static_cast<float>(l);
            sumlx += w[i] * x[i] * fl;
            suml2 += w[i] * fl * fl;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                const int l = nearest_int(iscale * x[i]);
                L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

float llama_make_qkx3_quants(int n, int nmax, const float* x, const float* w, uint8_t* L, float* the_min,
                             uint8_t* Laux, float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max <= min) {
        std::memset(L, 0, static_cast<size_t>(n));
        *the_min = -min;
        return 0.0f;
    }
    float iscale = static_cast<float>(nmax) / (max - min);
    float scale = 1 / iscale;
    float best_err = 0;
    for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
        float diff = scale * static_cast<float>(L[i]) + min - x[i];
        diff = diff * diff;
        best_err += w[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * (x[i] - min));
            l = std::max(0, std::min(nmax, l));
            Laux[i] = static_cast<uint8_t>(l);
            const float fl = static_cast<float>(l);
            sum_l += w[i] * fl;
            sum_l2 += w[i] * fl * fl;
            sum_xl += w[i] * fl * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
                diff = diff * diff;
                err += w[i] * diff;
            }
            if (err < best_err) {
                std::memcpy(L, Laux, static_cast<size_t>(n));
                best_err = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

namespace {

float affine_level(float v, float nmax) {
    v = v < 0.0f ? 0.0f : v;
    v = v > nmax ? nmax : v;
    return (v + 12582912.0f) - 12582912.0f;  // round half to even
}

// Error of the decoded pair (d, m) with every element on its nearest level.
float affine_error(float nmax, const float* x, const float* w, int n, float d, float m) {
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    float acc[kLanes] = {};
    for (int j = 0; j < n; j += kLanes) {
        for (int k = 0; k < kLanes; ++k) {
            const float l = affine_level((x[j + k] - m) * id, nmax);
            const float diff = x[j + k] - (l * d + m);  // the decoder's expression
            acc[k] += w[j + k] * diff * diff;
        }
    }
    return lane_sum(acc);
}

// Block constants of the weighted least-squares fit.
struct AffineMoments {
    double sw = 0, sx = 0, sxx = 0;
};

// Levels of (x - origin) * iscale, then the weighted least-squares (d, m) for them and the
// resulting error estimate sxx - d sxl - m sx. False when the levels are all equal.
bool affine_fit(float nmax, const float* x, const float* w, int n, const AffineMoments& mo, float iscale, float origin,
                float* d, float* m, double* err) {
    float al[kLanes] = {}, all[kLanes] = {}, axl[kLanes] = {};
    for (int j = 0; j < n; j += kLanes) {
        for (int k = 0; k < kLanes; ++k) {
            const float l = affine_level((x[j + k] - origin) * iscale, nmax);
            const float wl = w[j + k] * l;
            al[k] += wl;
            all[k] += wl * l;
            axl[k] += wl * x[j + k];
        }
    }
    const double sl = lane_sum(al), sll = lane_sum(all), sxl = lane_sum(axl);
    const double det = mo.sw * sll - sl * sl;
    if (!(det > 0)) return false;
    const double dd = (mo.sw * sxl - mo.sx * sl) / det;
    const double mm = (sll * mo.sx - sl * sxl) / det;
    *d = static_cast<float>(dd);
    *m = static_cast<float>(mm);
    *err = mo.sxx - dd * sxl - mm * mo.sx;
    return std::isfinite(*d) && std::isfinite(*m);
}

}  // namespace

float search_affine(int nmax, const float* x, const float* w, int n, float rmin, float rdelta, int nstep,
                    uint16_t* d_out, uint16_t* m_out, uint8_t* L) {
    const float fmax_level = static_cast<float>(nmax);
    float min = x[0], max = x[0];
    AffineMoments mo;
    for (int j = 0; j < n; ++j) {
        min = std::min(min, x[j]);
        max = std::max(max, x[j]);
        mo.sw += w[j];
        mo.sx += static_cast<double>(w[j]) * x[j];
        mo.sxx += static_cast<double>(w[j]) * x[j] * x[j];
    }
    uint16_t best_dh = 0, best_mh = f32_to_f16_finite(min);
    float best = affine_error(fmax_level, x, w, n, 0.0f, f16_to_f32(best_mh));
    auto consider_bits = [&](uint16_t dh, uint16_t mh) {
        if (dh == best_dh && mh == best_mh) return false;
        const float e = affine_error(fmax_level, x, w, n, f16_to_f32(dh), f16_to_f32(mh));
        if (e < best) {
            best = e;
            best_dh = dh;
            best_mh = mh;
            return true;
        }
        return false;
    };
    auto consider = [&](float d, float m) { return consider_bits(f32_to_f16(Fp16Scale::apply(d)), f32_to_f16_finite(m)); };

    if (max > min) {
        // Screen starting scales by their least-squares error; keep the two best fits.
        double top_err[2] = {INFINITY, INFINITY};
        float top_d[2] = {0, 0}, top_m[2] = {0, 0};
        const float range = max - min;
        for (int is = 0; is <= nstep; ++is) {
            const float iscale = (fmax_level + rmin + rdelta * static_cast<float>(is)) / range;
            float d, m;
            double e;
            if (!affine_fit(fmax_level, x, w, n, mo, iscale, min, &d, &m, &e)) continue;
            if (e < top_err[0]) {
                top_err[1] = top_err[0];
                top_d[1] = top_d[0];
                top_m[1] = top_m[0];
                top_err[0] = e;
                top_d[0] = d;
                top_m[0] = m;
            } else if (e < top_err[1]) {
                top_err[1] = e;
                top_d[1] = d;
                top_m[1] = m;
            }
        }
        consider(range / fmax_level, min);
        for (int c = 0; c < 2; ++c)
            if (top_err[c] < INFINITY) consider(top_d[c], top_m[c]);
    }
    // Local improvement: refit for the current levels, then step the fp16 scale and offset.
    for (int round = 0; round < 4 && best_dh != 0; ++round) {
        const uint16_t dh = best_dh, mh = best_mh;
        const float d = f16_to_f32(dh), m = f16_to_f32(mh);
        bool improved = false;
        float fd, fm;
        double e;
        if (affine_fit(fmax_level, x, w, n, mo, 1.0f / d, m, &fd, &fm, &e)) improved |= consider(fd, fm);
        for (int sd = -1; sd <= 1; ++sd) {
            for (int sm = -1; sm <= 1; ++sm) {
                if (sd == 0 && sm == 0) continue;
                uint16_t ndh = dh, nmh = mh;
                if (sd != 0 && !f16_step(dh, sd, &ndh)) continue;
                if (sm != 0) {
                    if ((mh & 0x7FFFu) == 0) nmh = sm > 0 ? 0x0001u : 0x8001u;  // smallest values either side of 0
                    else if (!f16_step(mh, sm, &nmh)) continue;
                }
                improved |= consider_bits(ndh, nmh);
            }
        }
        if (!improved) break;
    }
    const float d = f16_to_f32(best_dh), m = f16_to_f32(best_mh);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < n; ++j) L[j] = static_cast<uint8_t>(affine_level((x[j] - m) * id, fmax_level));
    *d_out = best_dh;
    *m_out = best_mh;
    return best;
}

}  // namespace qf::quant
