// qforge imatrix: collect an importance matrix the way llama-imatrix does, for
// `qforge quantize --imatrix` and llama-quantize alike.
#include "cli/commands.h"
#include "common/error.h"
#include "common/output_file.h"
#include "eval/imatrix_collect.h"
#include "gguf/gguf_reader.h"
#include "model/model.h"
#include "common/text_file.h"
#include "model/tokenizer.h"
#include "pipeline/imatrix_file.h"

#include <fmt/format.h>
#include <omp.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace qf::cli {

namespace {

// llama.cpp's -f drops one trailing newline before tokenizing.
std::string read_imatrix_text(const std::string& path) {
    std::string text = read_text_file(path);
    if (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
}

// MoE models are refused before the forward pass is even built, with a message that says why.
void refuse_moe(const GgufFile& file) {
    const GgufValue* arch = file.metadata().find("general.architecture");
    if (arch && arch->type == GgufValueType::STRING) {
        const GgufValue* experts = file.metadata().find(arch->as_string() + ".expert_count");
        if (experts && experts->is_integer() && experts->as_u64() > 0)
            fail("{}: MoE models ({} experts) are not supported by qforge imatrix (no ffn_*_exps collection)",
                 file.path(), experts->as_u64());
    }
    for (const auto& t : file.tensors())
        if (is_expert_weight(t.name))
            fail("{}: MoE expert tensor '{}' is not supported by qforge imatrix", file.path(), t.name);
}

}  // namespace

void register_imatrix(CLI::App& app) {
    auto* cmd = app.add_subcommand("imatrix", "Collect an importance matrix over a text (as llama-imatrix does)");
    struct Args {
        std::string model, text, output = "imatrix.gguf", format = "gguf";
        int64_t n_ctx = 512, chunks = -1;
        int threads = 0;
        bool process_output = false, force = false;
    };
    auto a = std::make_shared<Args>();
    cmd->add_option("MODEL", a->model, "GGUF model (F32/F16/BF16 or quantized, llama-family)")->required();
    cmd->add_option("--text,--file", a->text, "Calibration text file")->required();
    cmd->add_option("-o,--output", a->output, "Output imatrix (default: imatrix.gguf)");
    cmd->add_option("-c,--ctx-size", a->n_ctx, "Tokens per chunk (default: 512)");
    cmd->add_option("--chunks", a->chunks, "Process at most N chunks (default: all whole chunks of the text)");
    cmd->add_option("-t,--threads", a->threads, "Worker threads (default: all cores)");
    cmd->add_flag("--process-output", a->process_output, "Also collect output.weight");
    cmd->add_option("--output-format", a->format, "gguf (default) or dat (llama.cpp's legacy format)")
        ->check(CLI::IsMember({"gguf", "dat"}));
    cmd->add_flag("-f,--force", a->force, "Overwrite the output file if it exists");
    cmd->footer(
        "Same procedure as llama-imatrix: the text (one trailing newline dropped) is tokenized with BOS and cut\n"
        "into chunks of CTX tokens, each starting with BOS; every blk.* weight product's input is summed\n"
        "(squared, per column) over all tokens. The text needs at least 2*CTX tokens. The output is\n"
        "written to OUT.tmp and renamed when complete.\n"
        "Example: qforge imatrix prose-tiny-f16.gguf --text calib.txt -o imatrix.gguf --chunks 100");
    cmd->callback([a] {
        if (a->n_ctx < kImatrixMinRows) fail("imatrix: -c must be at least {} (got {})", kImatrixMinRows, a->n_ctx);
        if (a->threads < 0) fail("imatrix: -t must be positive (got {})", a->threads);
        if (a->chunks == 0 || a->chunks < -1) fail("imatrix: --chunks must be positive (got {})", a->chunks);
        // Refuse an existing output now rather than after minutes of collection.
        if (std::filesystem::exists(a->output)) {
            if (same_file(a->model, a->output) || same_file(a->text, a->output))
                fail("{}: output would overwrite an input file", a->output);
            if (!a->force) fail("{}: output exists (use --force to overwrite)", a->output);
        }
        if (a->threads > 0) omp_set_num_threads(a->threads);

        {
            GgufFile probe(a->model);
            refuse_moe(probe);
        }
        const std::string text = read_imatrix_text(a->text);
        Transformer model(a->model);
        const int64_t n_ctx_train = model.hparams().n_ctx_train;
        if (n_ctx_train > 0 && a->n_ctx > n_ctx_train)
            fmt::print(stderr, "qforge: warning: {}: model was trained on only {} context tokens ({} specified)\n",
                       a->model, n_ctx_train, a->n_ctx);
        const Tokenizer tokenizer = Tokenizer::from_gguf(model.file());
        const std::vector<int32_t> tokens = tokenizer.encode(text, true);
        const int32_t bos = tokenizer.adds_bos() ? tokenizer.bos_id() : -1;
        if (static_cast<int64_t>(tokens.size()) < 2 * a->n_ctx)
            fail("{}: the text tokenizes to {} tokens; a context of {} needs at least {} (two chunks)", a->text,
                 tokens.size(), a->n_ctx, 2 * a->n_ctx);

        ImatrixRunOptions opts;
        opts.n_ctx = a->n_ctx;
        opts.max_chunks = a->chunks;
        opts.process_output = a->process_output;
        opts.dataset = a->text;
        const bool tty = ::isatty(2) != 0;
        fmt::print(stderr, "imatrix: {} tokens from {}, chunks of {}\n", tokens.size(), a->text, a->n_ctx);
        opts.on_chunk = [tty](int64_t done, int64_t total, double seconds, double ppl) {
            const double eta = seconds / static_cast<double>(done) * static_cast<double>(total - done);
            const int64_t every = std::max<int64_t>(1, total / 20);
            if (tty)
                fmt::print(stderr, "\rimatrix: chunk {}/{}  {:.2f} s/chunk  ETA {:.0f} s  PPL {:.4f}   {}", done, total,
                           seconds / static_cast<double>(done), eta, ppl, done == total ? "\n" : "");
            else if (done % every == 0 || done == total)
                fmt::print(stderr, "imatrix: chunk {}/{}  {:.2f} s/chunk  ETA {:.0f} s  PPL {:.4f}\n", done, total,
                           seconds / static_cast<double>(done), eta, ppl);
        };
        const ImatrixRunResult r = collect_imatrix(model, tokens, bos, opts);

        if (a->format == "dat") save_imatrix_legacy(r.data, a->output, a->force);
        else save_imatrix(r.data, a->output, a->force);
        fmt::print("wrote {}: {} chunks of {} tokens ({} tokens), {} tensors collected, PPL {:.4f}, {:.2f} s "
                   "({:.0f} tokens/s)\n",
                   a->output, r.chunks, a->n_ctx, r.tokens, r.data.entries.size(), r.ppl, r.seconds,
                   r.seconds > 0 ? static_cast<double>(r.tokens) / r.seconds : 0.0);
    });
}

}  // namespace qf::cli
