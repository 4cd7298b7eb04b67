#include "cli/commands.h"

namespace qf::cli {
void register_convert(CLI::App& app) { (void)app; }
}  // namespace qf::cli
