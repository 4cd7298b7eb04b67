// llama.cpp's own importance-matrix collection, rebuilt on its public C API: libllama has no
// imatrix function, but llama_context_params.cb_eval is the hook llama-imatrix itself uses
// (ggml_backend_sched_eval_callback). The callback here applies llama-imatrix's
// collect_imatrix rules (tools/imatrix/imatrix.cpp) to the ggml graph's MUL_MAT nodes, and the
// run follows its compute_imatrix chunking, so the sums come from llama.cpp's forward pass,
// not ours: tests compare them with what `qforge imatrix` wrote.
#pragma once
#include "support/llama_api.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace qf::test {

struct LlamaImatrixEntry {
    std::vector<float> in_sum2;  // ne0 * n_mat float sums of squared activations
    int64_t count = 0;           // rows seen (llama-imatrix keeps one count per dense weight)
};

struct LlamaImatrix {
    std::map<std::string, LlamaImatrixEntry> entries;
    int chunks = 0;
    int64_t n_tokens = 0;  // the text's token count
};

// text: the file's contents (one trailing newline is dropped, as llama.cpp's -f does).
// Chunks of n_ctx tokens, first token BOS (when the vocabulary adds it), every token an
// output; at most max_chunks (> 0). Throws qf::Error when the ggml_tensor layout of the
// loaded library is not the one declared here, or the text is shorter than 2 * n_ctx.
LlamaImatrix llama_collect_imatrix(const LlamaModel& model, std::string text, int n_ctx, int max_chunks,
                                   bool process_output, int n_threads = kDefaultThreads);

}  // namespace qf::test
