#!/usr/bin/env python3
# Regenerates the two small byte-level BPE tokenizers used by test_tokenizer_export:
#   bpe-tiny/        laid out like Meta-Llama-3.1-Instruct (Llama-3 Split regex, pair merges,
#                    TemplateProcessing post-processor, specials after a hole in the ids)
#   bpe-tiny-qwen2/  laid out like Qwen2.5-Instruct (Qwen2 Split regex, string merges, NFC
#                    normalizer, <tool_call> as a non-special added token, list chat template)
# Vocab: the 256 GPT-2 byte tokens in bytes_to_unicode order (as ids 0..255 of GPT-2, Llama 3
# and Qwen2), then the tokens of BPE merges learnt here from a few sentences. Standard library
# only; output is deterministic. Run: python3 tests/data/bpe-tiny/generate.py
import collections
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)

LLAMA3_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

CORPUS = """Once upon a time there was a little girl who lived in a village near the forest.
Whenever she went out, the little girl wore a red riding cloak, so everyone in the village called her
Little Red Riding Hood. One morning she said to her mother that she would visit her grandmother.
The weather was fine and the birds were singing in the trees when she started on the path."""


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return bs, [chr(c) for c in cs]


def learn_merges(n_merges):
    bs, cs = bytes_to_unicode()
    byte_char = dict(zip(bs, cs))
    words = collections.Counter()
    for line in CORPUS.split("\n"):
        for i, w in enumerate(line.split(" ")):
            text = (" " if i else "") + w
            words[tuple(byte_char[b] for b in text.encode("utf-8"))] += 1
    merges = []
    for _ in range(n_merges):
        pairs = collections.Counter()
        for word, count in words.items():
            for a, b in zip(word, word[1:]):
                pairs[(a, b)] += count
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        merged = collections.Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += count
        words = merged
    return cs, merges


def added(id_, content, special, normalized=False):
    return {"id": id_, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": normalized, "special": special}


def decoder_entry(a):
    return {"content": a["content"], "lstrip": False, "normalized": a["normalized"], "rstrip": False,
            "single_word": False, "special": a["special"]}


def write(folder, name, obj):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def byte_level(**kw):
    return dict({"type": "ByteLevel"}, **kw)


def main():
    byte_tokens, merges = learn_merges(64)
    vocab = {t: i for i, t in enumerate(byte_tokens)}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    n_model = len(vocab)

    # ---- bpe-tiny: Llama 3.1 layout. Specials start at a round id, leaving a hole (PAD).
    first_special = (n_model + 7) // 8 * 8 + 8
    llama_added = [
        added(first_special + 0, "<|begin_of_text|>", True),
        added(first_special + 1, "<|end_of_text|>", True),
        added(first_special + 2, "<|start_header_id|>", True),
        added(first_special + 3, "<|end_header_id|>", True),
        added(first_special + 4, "<|eot_id|>", True),
        added(first_special + 5, "<|reserved_special_token_0|>", True),
        # Test-only entries: an added token marked non-special that looks special (-> CONTROL),
        # a non-normalized user token that the converter's encode/decode round trip turns into
        # " ,my_tok" and then clean_up_tokenization into ",my_tok", and a normalized user token
        # whose U+2581 becomes a space.
        added(first_special + 6, "<|fim_hole|>", False),
        added(first_special + 7, "\u0120,my_tok", False, normalized=False),
        added(first_special + 8, "my\u2581tok", False, normalized=True),
    ]
    bot = {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": llama_added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated", "invert": False},
            byte_level(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]},
        "post_processor": {"type": "Sequence", "processors": [
            byte_level(add_prefix_space=True, trim_offsets=False, use_regex=True),
            {"type": "TemplateProcessing",
             "single": [bot, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [bot, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [first_special],
                                                      "tokens": ["<|begin_of_text|>"]}}},
        ]},
        "decoder": byte_level(add_prefix_space=True, trim_offsets=True, use_regex=True),
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }
    llama_template = (
        "{{- bos_token }}{%- for message in messages %}"
        "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
        "{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}")
    config = {
        "added_tokens_decoder": {str(a["id"]): decoder_entry(a) for a in llama_added},
        "bos_token": "<|begin_of_text|>",
        "chat_template": llama_template,
        "clean_up_tokenization_spaces": True,
        "eos_token": "<|eot_id|>",
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 131072,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    vocab_size = first_special + 16
    folder = os.path.join(DATA, "bpe-tiny")
    write(folder, "tokenizer.json", tokenizer)
    write(folder, "tokenizer_config.json", config)
    write(folder, "special_tokens_map.json", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})
    write(folder, "config.json", {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                                  "bos_token_id": first_special,
                                  "eos_token_id": [first_special + 1, first_special + 4], "vocab_size": vocab_size})

    # ---- bpe-tiny-qwen2: Qwen2.5 layout. Added tokens follow the model vocab directly.
    qwen_added = [
        added(n_model + 0, "<|endoftext|>", True),
        added(n_model + 1, "<|im_start|>", True),
        added(n_model + 2, "<|im_end|>", True),
        added(n_model + 3, "<tool_call>", False),
        added(n_model + 4, "</tool_call>", False),
    ]
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": qwen_added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_REGEX}, "behavior": "Isolated", "invert": False},
            byte_level(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]},
        "post_processor": byte_level(add_prefix_space=False, trim_offsets=False, use_regex=False),
        "decoder": byte_level(add_prefix_space=False, trim_offsets=False, use_regex=False),
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": [a + " " + b for a, b in merges]},
    }
    qwen_template = (
        "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
        "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
    tool_template = "{%- if tools %}{{- '<|im_start|>system\\n# Tools<|im_end|>\\n' }}{%- endif %}" + qwen_template
    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {str(a["id"]): decoder_entry(a) for a in qwen_added},
        "bos_token": None,
        "chat_template": [{"name": "default", "template": qwen_template}, {"name": "tool_use", "template": tool_template}],
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    folder = os.path.join(DATA, "bpe-tiny-qwen2")
    write(folder, "tokenizer.json", tokenizer)
    write(folder, "tokenizer_config.json", config)
    write(folder, "config.json", {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
                                  "bos_token_id": n_model, "eos_token_id": n_model + 2,
                                  "vocab_size": (n_model + len(qwen_added) + 63) // 64 * 64})


if __name__ == "__main__":
    main()
