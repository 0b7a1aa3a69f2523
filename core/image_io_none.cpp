// image_io.h for builds without OpenImageIO (e.g. a GPU box with LibTorch only): clear errors on use.
#include "core/error.h"
#include "core/image_io.h"

namespace clipguide {
namespace {
[[noreturn]] void unavailable(const std::filesystem::path& path) {
  throw Error("cannot read or write image file '" + path.string() +
              "': clipguide was built without OpenImageIO (reconfigure with -DCLIPGUIDE_WITH_OIIO=ON)");
}
}  // namespace

bool image_io_available() { return false; }
at::Tensor read_image(const std::filesystem::path& path, bool) { unavailable(path); }
at::Tensor decode_image(const void*, size_t, const std::string& name, bool) { unavailable(name); }
void write_image(const std::filesystem::path& path, const at::Tensor&, const std::map<std::string, std::string>&) {
  unavailable(path);
}
void check_image_output(const std::filesystem::path& path, const std::string&) { unavailable(path); }
std::map<std::string, std::string> read_image_metadata(const std::filesystem::path& path) { unavailable(path); }

}  // namespace clipguide
