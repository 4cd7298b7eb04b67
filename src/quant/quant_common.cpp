#include "quant/quant_common.h"

#include <cfloat>
#include <cmath>
#include <limits>

namespace qf::quant {

float llama_symmetric_block(int nmax, float sigma2, const float* x, const float* qw, uint8_t* q) {
    if (!qw) {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; ++j) {
            if (amax < std::fabs(x[j])) {
                amax = std::fabs(x[j]);
                max = x[j];
            }
        }
        const float d = max / -static_cast<float>(nmax);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const float offset = static_cast<float>(nmax) + 0.5f;  // 8.5f / 16.5f, exact
        for (int j = 0; j < 32; ++j) q[j] = static_cast<uint8_t>(std::min(2 * nmax - 1, static_cast<int>(x[j] * id + offset)));
        return d;
    }
    float weight[32];
    for (int j = 0; j < 32; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
    int8_t L[32];
    const float d = llama_ref::make_qx_quants(32, nmax, x, L, 1, weight);
    for (int j = 0; j < 32; ++j) q[j] = static_cast<uint8_t>(L[j]);
    return d;
}

float llama_affine_block(int nmax, bool clamp_ref_codes, float sigma2, const float* x, const float* qw, uint8_t* q,
                         float* min_out) {
    if (!qw) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < 32; ++j) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / static_cast<float>(nmax);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < 32; ++j) {
            const int l = static_cast<int>((x[j] - min) * id + 0.5f);
            q[j] = static_cast<uint8_t>(clamp_ref_codes ? std::min(nmax, l) : l);
        }
        *min_out = min;
        return d;
    }
    float weight[32];
    for (int j = 0; j < 32; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
    uint8_t Laux[32];
    float the_min;
    const float d = llama_ref::make_qkx3_quants(32, nmax, x, weight, q, &the_min, Laux, -0.9f, 0.05f, 36, false);
    *min_out = -the_min;
    return d;
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
