// A whole text file (calibration, evaluation and imatrix texts) read into memory.
#pragma once
#include <string>

namespace qf {

// The file's bytes; throws qf::Error "PATH: cannot open the text file" / "... cannot read ...".
std::string read_text_file(const std::string& path);

}  // namespace qf
