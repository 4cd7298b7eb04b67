#include "support/quant_data.h"

#include "hf/safetensors.h"

#include <cmath>
#include <filesystem>

namespace qf::test {
namespace {

// Small self-contained generator so the data is the same with every standard library.
class Rng {
public:
    explicit Rng(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {}
    uint64_t next() {  // splitmix64
        uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1p-53; }  // (0, 1)
    double normal() {  // Box-Muller, one value per call
        return std::sqrt(-2.0 * std::log(uniform())) * std::cos(6.283185307179586 * uniform());
    }
    double laplace() { return uniform() < 0.5 ? std::log(uniform()) : -std::log(uniform()); }
    double student_t3() {
        const double z = normal();
        const double a = normal(), b = normal(), c = normal();
        const double chi2 = a * a + b * b + c * c;
        return z / std::sqrt(chi2 / 3.0);
    }
    int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }

private:
    uint64_t state_;
};

}  // namespace

std::vector<RowSet> synthetic_rowsets(int64_t n_per_row, int64_t rows_each, uint32_t seed) {
    const char* kinds[] = {"gaussian", "laplace", "student_t3", "outliers", "shifted",
                           "constant", "zeros",   "tiny",       "huge",     "denormals"};
    std::vector<RowSet> sets;
    uint32_t kind_index = 0;
    for (const char* kind : kinds) {
        Rng rng(static_cast<uint64_t>(seed) * 131 + kind_index++);
        RowSet set{std::string("synthetic:") + kind, n_per_row, std::vector<float>(n_per_row * rows_each)};
        const std::string k = kind;
        for (int64_t r = 0; r < rows_each; ++r) {
            float* row = set.data.data() + r * n_per_row;
            // Row scales spread over two decades, as real layers differ.
            const double sigma = 0.01 * std::pow(10.0, 2.0 * static_cast<double>(r) / std::max<int64_t>(1, rows_each - 1));
            for (int64_t j = 0; j < n_per_row; ++j) {
                double v = 0;
                if (k == "gaussian") v = sigma * rng.normal();
                else if (k == "laplace") v = sigma * rng.laplace();
                else if (k == "student_t3") v = sigma * rng.student_t3();
                else if (k == "outliers") v = sigma * rng.normal();
                else if (k == "shifted") v = sigma * (3.0 + rng.normal());
                else if (k == "constant") v = (r % 2 ? -1.0 : 1.0) * sigma * 12.3456789;
                else if (k == "zeros") v = 0;
                else if (k == "tiny") v = 1e-6 * rng.normal();
                else if (k == "huge") v = 1e3 * rng.normal();
                else if (k == "denormals") v = (rng.uniform() < 0.3 ? 0.0 : 1e-39 * rng.normal());
                row[j] = static_cast<float>(v);
            }
            if (k == "outliers") {  // about one 20-sigma value per 64, random sign and place
                for (int64_t c = 0; c < std::max<int64_t>(1, n_per_row / 64); ++c)
                    row[rng.below(n_per_row)] = static_cast<float>((rng.uniform() < 0.5 ? -20.0 : 20.0) * sigma);
            }
        }
        sets.push_back(std::move(set));
    }
    return sets;
}

std::vector<RowSet> model_rowsets(const std::string& hf_dir, int64_t max_rows_per_tensor) {
    namespace fs = std::filesystem;
    fs::path dir = fs::path(hf_dir).lexically_normal();
    if (dir.filename().empty()) dir = dir.parent_path();
    std::string model = dir.filename().string();
    if (model == "hf" && dir.has_parent_path()) model = dir.parent_path().filename().string();

    const SafetensorsModel st = SafetensorsModel::open_dir(hf_dir);
    std::vector<RowSet> sets;
    for (const StTensor& t : st.tensors()) {
        if (t.shape.size() < 2) continue;
        const int64_t n_per_row = t.shape.back();
        if (n_per_row <= 0) continue;
        const int64_t rows = t.n_elements() / n_per_row;
        const int64_t take = std::min(rows, max_rows_per_tensor);
        RowSet set{model + ":" + t.name, n_per_row, std::vector<float>(take * n_per_row)};
        for (int64_t i = 0; i < take; ++i) {
            const int64_t row = i * rows / take;  // evenly spread
            convert_to_f32(t, row * n_per_row, n_per_row, set.data.data() + i * n_per_row);
        }
        sets.push_back(std::move(set));
    }
    return sets;
}

std::vector<float> random_importance(int64_t n, uint32_t seed) {
    Rng rng(0xA5A5A5A5ull ^ seed);
    std::vector<float> w(n);
    for (int64_t j = 0; j < n; ++j) {
        double v = std::exp(1.5 * rng.normal());
        if (rng.uniform() < 0.02) v *= 50;  // a few columns that dominate, as in real imatrices
        w[j] = static_cast<float>(v);
    }
    return w;
}

double ErrorStats::rmse() const { return sum_w > 0 ? std::sqrt(sum_w_err2 / sum_w) : 0.0; }

void ErrorStats::add(const float* x, const float* y, const float* w, int64_t n) {
    for (int64_t j = 0; j < n; ++j) {
        const double wj = w ? w[j] : 1.0;
        const double diff = static_cast<double>(x[j]) - static_cast<double>(y[j]);
        sum_w_err2 += wj * diff * diff;
        sum_w += wj;
    }
}

}  // namespace qf::test
