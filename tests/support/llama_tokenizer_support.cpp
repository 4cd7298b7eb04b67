#include "support/llama_tokenizer_support.h"

#include "common/error.h"

namespace qf::test {

std::unique_ptr<LlamaModel> load_vocab_only(const std::string& path) {
    auto& api = LlamaApi::get();
    api.require();
    const auto& fn = api.fn();
    llama_c::llama_model_params p = fn.llama_model_default_params();
    p.n_gpu_layers = 0;
    p.vocab_only = true;
    api.clear_log();
    llama_c::llama_model* m = fn.llama_model_load_from_file(path.c_str(), p);
    if (!m) {
        std::string tail;
        for (const auto& line : api.take_log()) tail = line.empty() ? tail : line;
        fail("{}: llama.cpp cannot load the vocabulary: {}", path, tail);
    }
    return std::make_unique<LlamaModel>(m, path);
}

}  // namespace qf::test
