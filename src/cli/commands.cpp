#include "cli/commands.h"

namespace qf::cli {
void register_commands(CLI::App& app) {
    register_convert(app);
    register_inspect(app);
    register_plan(app);
    register_quantize(app);
    register_eval(app);
    register_imatrix(app);
    register_serve(app);
    register_complete(app);
}
}  // namespace qf::cli
