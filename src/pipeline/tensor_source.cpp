#include "pipeline/tensor_source.h"

#include "common/error.h"
#include "common/mapped_file.h"
#include "gguf/gguf_reader.h"
#include "hf/arch_metadata.h"
#include "hf/model_config.h"
#include "hf/safetensors.h"
#include "hf/tensor_map.h"
#include "hf/tokenizer_export.h"

#include <filesystem>
#include <optional>

namespace qf {

namespace fs = std::filesystem;

struct TensorSource::Impl {
    // GGUF input
    std::optional<GgufFile> gguf;
    // HF input (MappedTensor points into st, so both live here and never move)
    std::optional<ModelConfig> cfg;
    std::optional<SafetensorsModel> st;
    std::vector<MappedTensor> mapped;
};

TensorSource::TensorSource(TensorSource&&) noexcept = default;
TensorSource& TensorSource::operator=(TensorSource&&) noexcept = default;
TensorSource::~TensorSource() = default;

TensorSource TensorSource::open(const std::string& path) {
    TensorSource src;
    src.path_ = path;
    src.impl_ = std::make_unique<Impl>();
    Impl& im = *src.impl_;
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        im.cfg = load_model_config(path);
        im.st = SafetensorsModel::open_dir(path);
        im.mapped = map_hf_tensors(*im.cfg, *im.st);
        // The metadata `qforge convert --outtype f32` writes, so HF -> TYPE equals HF -> F32 -> TYPE.
        add_arch_metadata(*im.cfg, 0, src.metadata_, count_parameters(im.mapped));
        TokenizerExportOptions tok{im.cfg->vocab_size, im.cfg->bos_token_id, im.cfg->eos_token_id,
                                   im.cfg->gguf_arch == "llama"};
        add_tokenizer_metadata(path, tok, src.metadata_);
        for (const auto& t : im.mapped) src.tensors_.push_back({t.gguf_name, t.shape, GgmlType::F32});
    } else {
        im.gguf.emplace(path);
        src.metadata_ = im.gguf->metadata();
        for (const auto& t : im.gguf->tensors()) src.tensors_.push_back({t.name, t.shape, t.type});
    }
    return src;
}

bool TensorSource::is_gguf() const { return impl_->gguf.has_value(); }

namespace {
uint32_t u32_key(const GgufMetadata& md, const std::string& key, const std::string& path, uint32_t fallback,
                 bool required) {
    const GgufValue* v = md.find(key);
    if (!v) {
        if (required) fail("{}: missing metadata key {}", path, key);
        return fallback;
    }
    // Per-layer arrays (e.g. head_count_kv of hybrid models): llama.cpp's recipe reads layer 0.
    const GgufValue& scalar = v->type == GgufValueType::ARRAY && !v->items.empty() ? v->items.front() : *v;
    if (!scalar.is_integer()) fail("{}: metadata key {} is not an integer", path, key);
    uint64_t x = scalar.as_u64();
    if (x > UINT32_MAX) fail("{}: metadata key {} is out of range ({})", path, key, x);
    return static_cast<uint32_t>(x);
}
}  // namespace

RecipeModel TensorSource::recipe_model() const {
    RecipeModel m;
    if (impl_->cfg) {
        const ModelConfig& c = *impl_->cfg;
        m.arch = c.gguf_arch;
        m.n_layer = c.n_layer;
        m.n_head = c.n_head;
        m.n_head_kv = c.n_head_kv;
    } else {
        const GgufValue* arch = metadata_.find("general.architecture");
        if (!arch || arch->type != GgufValueType::STRING) fail("{}: missing general.architecture", path_);
        m.arch = arch->as_string();
        m.n_layer = u32_key(metadata_, m.arch + ".block_count", path_, 0, true);
        m.n_head = u32_key(metadata_, m.arch + ".attention.head_count", path_, 0, false);
        m.n_head_kv = u32_key(metadata_, m.arch + ".attention.head_count_kv", path_, m.n_head, false);
        m.n_expert = u32_key(metadata_, m.arch + ".expert_count", path_, 0, false);
    }
    m.is_70b = is_70b_model(m.arch, m.n_layer, m.n_head, m.n_head_kv, m.n_expert);
    return m;
}

std::vector<std::string> TensorSource::files() const {
    if (impl_->gguf) return {path_};
    return impl_->st->files();
}

void TensorSource::read_rows_f32(size_t index, int64_t first_row, int64_t n_rows, float* dst) const {
    if (impl_->cfg) {
        qf::read_rows_f32(impl_->mapped.at(index), *impl_->cfg, first_row, n_rows, dst);
        return;
    }
    const GgufTensorInfo& t = impl_->gguf->tensors().at(index);
    const TypeTraits& tt = traits(t.type);
    if (!tt.dequantize) fail("{}: tensor '{}' has type {} which qforge cannot read", path_, t.name, tt.name);
    const int64_t ne0 = t.shape.at(0);
    const auto rb = row_bytes(t.type, ne0);
    if (!rb || first_row < 0 || n_rows < 0 || first_row > t.n_rows() || n_rows > t.n_rows() - first_row)
        fail("{}: tensor '{}': rows {}+{} out of range", path_, t.name, first_row, n_rows);
    std::span<const std::byte> data = impl_->gguf->tensor_data(t);
    for (int64_t r = 0; r < n_rows; ++r)
        tt.dequantize(data.data() + static_cast<uint64_t>(first_row + r) * *rb, dst + r * ne0, ne0);
}

std::span<const std::byte> TensorSource::raw_bytes(size_t index) const {
    if (!impl_->gguf) fail("{}: raw bytes are only available for GGUF input", path_);
    return impl_->gguf->tensor_data(impl_->gguf->tensors().at(index));
}

void TensorSource::release(size_t index) const {
    if (impl_->cfg) {
        const MappedTensor& t = impl_->mapped.at(index);
        if (t.source) MappedFile::release_pages(t.source->data);
        return;
    }
    MappedFile::release_pages(impl_->gguf->tensor_data(impl_->gguf->tensors().at(index)));
}

void TensorSource::release_rows(size_t index, int64_t first_row, int64_t n_rows) const {
    if (!impl_->gguf) return;
    const GgufTensorInfo& t = impl_->gguf->tensors().at(index);
    const auto rb = row_bytes(t.type, t.shape.at(0));
    if (!rb || first_row < 0 || n_rows < 0 || first_row > t.n_rows() || n_rows > t.n_rows() - first_row) return;
    std::span<const std::byte> data = impl_->gguf->tensor_data(t);
    MappedFile::release_pages(data.subspan(static_cast<uint64_t>(first_row) * *rb, static_cast<uint64_t>(n_rows) * *rb));
}

}  // namespace qf
