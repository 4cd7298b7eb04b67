#include "cli/commands.h"

namespace qf::cli {
void register_inspect(CLI::App& app) { (void)app; }
}  // namespace qf::cli
