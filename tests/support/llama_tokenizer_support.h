// llama.cpp helpers for the tokenizer tests (issue 6): loading a GGUF's vocabulary only, so
// vocabularies of any size can be tried without weights that match them.
#pragma once
#include "support/llama_api.h"

#include <memory>
#include <string>

namespace qf::test {

// llama_model_load_from_file with vocab_only = true: reads the architecture's hyperparameters
// and the vocabulary, no tensors. Throws qf::Error "PATH: llama.cpp cannot load ..." on failure.
std::unique_ptr<LlamaModel> load_vocab_only(const std::string& path);

}  // namespace qf::test
