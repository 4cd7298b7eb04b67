#include "common/text_file.h"

#include "common/error.h"

#include <fstream>
#include <sstream>

namespace qf {

std::string read_text_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("{}: cannot open the text file", path);
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) fail("{}: cannot read the text file", path);
    return ss.str();
}

}  // namespace qf
