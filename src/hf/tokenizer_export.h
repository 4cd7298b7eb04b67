// Tokenizer export for the HF -> GGUF converter: reads a Hugging Face checkpoint folder's
// tokenizer files and appends the tokenizer.* metadata exactly as llama.cpp's
// convert_hf_to_gguf.py writes it (same keys, same value types, same order), so that a
// converted file is byte-identical to the reference converter's and loads in llama.cpp.
//
// Two tokenizer kinds are supported, chosen the way the converter's LlamaModel does:
//  - tokenizer.model present: SentencePiece (tokenizer.ggml.model "llama", pre "default"),
//    with pieces, scores and types from libsentencepiece, added_tokens.json and the
//    tokenizer_config.json added_tokens_decoder overrides, [PAD{i}] up to vocab_size.
//  - else tokenizer.json with a byte-level BPE model (tokenizer.ggml.model "gpt2"): tokens
//    by id, added tokens as CONTROL / USER_DEFINED, merges, and tokenizer.ggml.pre detected
//    from the pre-tokenizer's Split regex (the converter hashes the token ids of a test
//    string instead, which needs the Python tokenizers library).
// Special token ids, add_bos/add_eos/add_sep, the chat template and normalizer flags follow
// gguf-py's SpecialVocab (tokenizer_config.json resolved through tokenizer.json added_tokens,
// then config.json *_token_id). special_tokens_map.json is not read: the converter does not.
#pragma once
#include "gguf/gguf_value.h"

#include <cstdint>
#include <optional>
#include <string>

namespace qf {

struct TokenizerExportOptions {
    // config.json vocab_size: the token list is padded with [PAD{i}] up to it (0 = not given:
    // the tokenizer's own size is used).
    uint32_t vocab_size = 0;
    // config.json bos_token_id / eos_token_id. When set they stand in for the values the
    // converter would read from config.json (the last, lowest-priority source of special ids).
    std::optional<uint32_t> bos_token_id = std::nullopt, eos_token_id = std::nullopt;
    // The extras of the converter's LlamaModel.set_vocab: tokenizer.ggml.add_space_prefix from
    // tokenizer_config.json add_prefix_space (written before tokenizer.ggml.model), CodeLlama's
    // eot id (vocab_size 32016) and add_bos_token=false for Granite-small (vocab_size 49152).
    // Set false for Qwen2/Qwen3, whose converter classes write none of these.
    bool llama_model_quirks = true;
};

// Appends the tokenizer.* keys to md (GgufMetadata::set: an existing key is replaced in place).
// Throws qf::Error with a one-line message naming the file and the problem, e.g.
// "DIR: no tokenizer.model or tokenizer.json", "DIR/tokenizer.json: unrecognised pre-tokenizer ...".
void add_tokenizer_metadata(const std::string& hf_dir, const TokenizerExportOptions& opt, GgufMetadata& md);

}  // namespace qf
