// Text -> token ids from the vocabulary stored in a GGUF file, equal to llama.cpp's
// llama_tokenize (add_special = true, parse_special = false) for:
//  - tokenizer.ggml.model = "llama": SentencePiece-style BPE over scores, byte fallback <0xNN>,
//    leading space added, spaces as U+2581;
//  - tokenizer.ggml.model = "gpt2": byte-level BPE with tokenizer.ggml.merges and the
//    pre-tokenizer named by tokenizer.ggml.pre ("llama-bpe" = llama3, "qwen2", "gpt-2",
//    "default" or absent, and llama.cpp's aliases of these; see tokenizer.cpp). llama.cpp
//    spells GPT-2's pre-tokenizer "gpt-2": it refuses "gpt2", and so do we.
// Text with user-defined tokens is split around them first, as llama.cpp does; control
// tokens are not parsed from text.
#pragma once
#include "gguf/gguf_reader.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qf {

class Tokenizer {
public:
    // Throws qf::Error "PATH: problem" when the vocabulary is missing, malformed or of an
    // unsupported model / pre-tokenizer type.
    static Tokenizer from_gguf(const GgufFile& file);
    ~Tokenizer();
    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;

    // add_bos follows tokenizer.ggml.add_bos_token like llama.cpp when add_special is true
    // (and EOS is appended when tokenizer.ggml.add_eos_token is true). Throws qf::Error when
    // the vocabulary asks for a BOS/EOS token it does not have, or (SPM) a byte it cannot
    // spell; llama.cpp aborts there.
    std::vector<int32_t> encode(std::string_view text, bool add_special = true) const;
    std::string token_text(int32_t id) const;  // the vocabulary entry as stored
    int64_t n_vocab() const;
    int32_t bos_id() const;  // -1 when the vocabulary has none
    int32_t eos_id() const;
    bool adds_bos() const;
    // True when both vocabularies are identical (same model type, tokens and special ids):
    // eval refuses to compare models whose tokenizers differ.
    bool same_vocabulary(const Tokenizer& other) const;

private:
    Tokenizer();
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace qf
