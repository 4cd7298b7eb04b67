// KL divergence of a model's next-token distributions from a base model's, measured by the
// real llama.cpp (its perplexity procedure: ctx 512, second half of each chunk scored), as
// llama-perplexity --kl-divergence computes it. Shared by the quantize and calibrate KLD tests.
#pragma once
#include "support/llama_api.h"

#include <string>
#include <vector>

namespace qf::test {

int test_threads();  // QFORGE_TEST_THREADS, else kDefaultThreads
// Chunks of valid.txt scored per model: QFORGE_KLD_CHUNKS, else 6 (enough for a figure whose
// standard error is well below the gaps the tests assert, small enough for `make test`).
int kld_chunks();

struct BaseLogProbs {
    int n_vocab = 0;
    std::vector<std::vector<double>> rows;  // per scored position: log p
    std::vector<int> argmax;
};

struct Divergence {
    double kld_mean = 0, kld_stderr = 0, ppl = 0, top1 = 0;
};

BaseLogProbs base_log_probs(const LlamaModel& model, const std::string& text, int chunks);
Divergence divergence(const LlamaModel& model, const std::string& text, int chunks, const BaseLogProbs& base);
// Loads `path` with llama.cpp and measures it against `base`.
Divergence divergence_of_file(const std::string& path, const std::string& text, int chunks, const BaseLogProbs& base);

}  // namespace qf::test
