#include "plan/size_plan.h"

#include "common/error.h"
#include "hf/arch_metadata.h"
#include "hf/tokenizer_export.h"

#include <filesystem>

namespace qf {

namespace fs = std::filesystem;

namespace {

constexpr uint32_t kF16FileType = static_cast<uint32_t>(FileType::MOSTLY_F16);

uint64_t total_elements(const std::vector<GgufTensorPlan>& tensors) {
    uint64_t n = 0;
    for (const auto& t : tensors) n += tensor_elements(t);
    return n;
}

// The arch keys of a family hf/model_config does not parse: the handful llama.cpp needs, so
// the estimate is of the right size (a few hundred bytes; the tokenizer dominates).
void add_generic_arch_metadata(const PlanModel& m, GgufMetadata& md) {
    const std::string a = m.gguf_arch;
    md.set("general.architecture", GgufValue::string(a));
    md.set("general.type", GgufValue::string("model"));
    md.set("general.name", GgufValue::string(fs::path(m.dir).filename().string()));
    md.set(a + ".block_count", GgufValue::u32(m.n_layer));
    md.set(a + ".context_length", GgufValue::u32(m.context_length));
    md.set(a + ".embedding_length", GgufValue::u32(m.n_embd));
    md.set(a + ".feed_forward_length", GgufValue::u32(m.n_ff));
    md.set(a + ".attention.head_count", GgufValue::u32(m.n_head));
    md.set(a + ".attention.head_count_kv", GgufValue::u32(m.n_head_kv));
    md.set(a + ".rope.freq_base", GgufValue::f32(10000.0f));
    md.set(a + ".attention.layer_norm_rms_epsilon", GgufValue::f32(1e-6f));
    md.set(a + ".attention.key_length", GgufValue::u32(m.head_dim));
    md.set(a + ".attention.value_length", GgufValue::u32(m.head_dim));
    if (m.n_expert) {
        md.set(a + ".expert_count", GgufValue::u32(m.n_expert));
        md.set(a + ".expert_used_count", GgufValue::u32(m.n_expert_used));
        md.set(a + ".expert_feed_forward_length", GgufValue::u32(m.n_ff_exp));
    }
    if (m.n_swa) md.set(a + ".attention.sliding_window", GgufValue::u32(m.n_swa));
    md.set("general.file_type", GgufValue::u32(kF16FileType));
    md.set("general.quantization_version", GgufValue::u32(2));
}

bool has_tokenizer_files(const std::string& dir) {
    std::error_code ec;
    return fs::exists(fs::path(dir) / "tokenizer.model", ec) || fs::exists(fs::path(dir) / "tokenizer.json", ec);
}

// A tokenizer we cannot read: tokens (u64 length + ~7 bytes text), scores (f32) and types
// (i32) per vocabulary entry; BPE merges, when the real tokenizer has them, are not counted.
uint64_t estimated_tokenizer_bytes(uint32_t n_vocab) { return uint64_t{n_vocab} * (8 + 7 + 4 + 4); }

}  // namespace

PlanMetadata plan_metadata(const PlanModel& m) {
    PlanMetadata out;
    if (m.gguf) {
        out.md = m.gguf->metadata;
        out.exact = true;
        return out;
    }
    const bool tokenizer = !m.config_only && has_tokenizer_files(m.dir);
    if (m.hf) {
        add_arch_metadata(*m.hf, kF16FileType, out.md, total_elements(plan_tensors(m)));
    } else {
        add_generic_arch_metadata(m, out.md);
        out.note = fmt::format("arch metadata of '{}' estimated (about a dozen keys)", m.model_type);
    }
    if (tokenizer && m.hf) {
        TokenizerExportOptions tok{m.hf->vocab_size, m.hf->bos_token_id, m.hf->eos_token_id, m.hf->gguf_arch == "llama"};
        add_tokenizer_metadata(m.dir, tok, out.md);
    } else {
        out.extra_bytes = estimated_tokenizer_bytes(m.n_vocab);
        std::string why = tokenizer ? "tokenizer files present but not read for this arch"
                                    : "no tokenizer.model / tokenizer.json next to config.json";
        out.note += fmt::format("{}{}: tokenizer metadata estimated as {} bytes ({} tokens x 23 B, BPE merges not "
                                "counted)",
                                out.note.empty() ? "" : "; ", why, out.extra_bytes, m.n_vocab);
    }
    out.exact = out.note.empty();
    return out;
}

SizePlan plan_size(const PlanModel& m, const PlanMetadata& meta, const FileTypeInfo& ft) {
    SizePlan plan;
    plan.file_type = &ft;
    const GgmlType def = ft.default_type;
    const bool float_file = def == GgmlType::F32 || def == GgmlType::F16 || def == GgmlType::BF16;

    // Quantized files are made from the converter's F16 file, as llama-quantize is run; a
    // GGUF input goes through llama-quantize whatever the type (F16 too: it converts
    // every quantizable tensor, dequantizing quantized ones).
    std::vector<GgufTensorPlan> tensors = plan_tensors(m, float_file ? def : GgmlType::F16);
    std::vector<std::string> rules(tensors.size());
    if (!float_file || m.gguf) {
        RecipeModel rm;
        rm.arch = m.gguf_arch;
        rm.n_layer = m.n_layer;
        rm.n_head = m.n_head;
        rm.n_head_kv = m.n_head_kv;
        rm.n_expert = m.n_expert;
        rm.is_70b = is_70b_model(rm.arch, rm.n_layer, rm.n_head, rm.n_head_kv, rm.n_expert);
        std::vector<RecipeTensor> rt;
        rt.reserve(tensors.size());
        for (const auto& t : tensors) rt.push_back({t.name, t.shape, t.type});
        RecipeOptions opt;
        opt.ftype = ft.id;
        std::vector<TensorDecision> d = decide_tensor_types(rm, rt, opt);
        for (size_t i = 0; i < tensors.size(); ++i) {
            // llama-quantize only checks tensors it converts (a GGUF input may hold the type already).
            if (d[i].type != tensors[i].type && tensor_requires_imatrix(tensors[i].name, d[i].type, ft.id))
                fail("plan: {} needs an importance matrix for {} ({}); not planned without one", ft.name,
                     tensors[i].name, type_name(d[i].type));
            tensors[i].type = d[i].type;
            rules[i] = d[i].rule;
        }
    }

    GgufMetadata md = meta.md;
    if (m.gguf) {
        // As llama-quantize: gguf_set_val_u32 removes a key and appends it; split.* dropped.
        for (const char* key : {"general.quantization_version", "general.file_type", "split.no", "split.count",
                                "split.tensors.count"})
            md.erase(key);
        md.set("general.quantization_version", GgufValue::u32(2));
    }
    md.set("general.file_type", GgufValue::u32(static_cast<uint32_t>(ft.id)));
    for (size_t i = 0; i < tensors.size(); ++i) {
        PlannedTensor p;
        p.bytes = gguf_tensor_bytes(tensors[i]);
        p.rule = std::move(rules[i]);
        plan.n_params += tensor_elements(tensors[i]);
        plan.tensor_bytes += p.bytes;
        p.tensor = tensors[i];
        plan.tensors.push_back(std::move(p));
    }
    plan.metadata_bytes = gguf_metadata_bytes(md, tensors) + meta.extra_bytes;
    plan.file_bytes = gguf_file_bytes(md, tensors) + meta.extra_bytes;
    return plan;
}

SizePlan plan_as_is(const PlanModel& m) {
    if (!m.gguf) fail("plan: {} is not a GGUF file", m.dir);
    const PlanGgufFile& g = *m.gguf;
    SizePlan plan;
    plan.as_is = true;
    plan.file_type = g.file_type;
    for (const GgufTensorPlan& t : g.tensors) {
        PlannedTensor p;
        p.tensor = t;
        p.bytes = gguf_tensor_bytes(t);
        p.rule = "as stored";
        plan.n_params += tensor_elements(t);
        plan.tensor_bytes += p.bytes;
        plan.tensors.push_back(std::move(p));
    }
    plan.metadata_bytes = g.data_offset;
    plan.file_bytes = g.file_bytes;
    return plan;
}

std::string SizePlan::name() const {
    if (as_is) return "as-is";
    return file_type ? file_type->name : "?";
}

std::vector<const FileTypeInfo*> parse_file_types(const std::string& list) {
    std::vector<const FileTypeInfo*> out;
    size_t start = 0;
    while (start <= list.size()) {
        size_t comma = list.find(',', start);
        if (comma == std::string::npos) comma = list.size();
        std::string item = list.substr(start, comma - start);
        if (!item.empty()) {
            const FileTypeInfo* ft = find_file_type(item);
            if (!ft) {
                std::string known;
                for (const auto& f : all_file_types()) known += (known.empty() ? "" : ", ") + std::string(f.name);
                fail("--type: unknown file type '{}' (known: {})", item, known);
            }
            out.push_back(ft);
        }
        start = comma + 1;
    }
    if (out.empty()) fail("--type: no file type given");
    return out;
}

}  // namespace qf
