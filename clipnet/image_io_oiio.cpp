// image_io.h through OpenImageIO: decoding matches PIL's convert("RGB") (unassociated alpha dropped),
// writes go to a temporary file that is renamed into place.
#include "clipnet/image_io.h"

#include "clipnet/error.h"

#include <ATen/ops/empty.h>
#include <OpenImageIO/filesystem.h>
#include <OpenImageIO/imageio.h>

#include <fstream>
#include <iterator>
#include <random>
#include <vector>

namespace clipguide::clipnet {

bool image_io_available() { return true; }

namespace {

// Decodes an opened image into (3, H, W) or (4, H, W) uint8; `name` is for messages.
at::Tensor read_opened(OIIO::ImageInput& in, const std::string& name, bool keep_alpha) {
  const OIIO::ImageSpec& spec = in.spec();
  const int64_t w = spec.width, h = spec.height, c = spec.nchannels;
  if (w <= 0 || h <= 0 || c <= 0 || c > 4) {
    throw Error("image file '" + name + "': unsupported size " + std::to_string(w) + "x" + std::to_string(h) + " with " +
                std::to_string(c) + " channels (expected 1 to 4 channels: grey, grey + alpha, RGB, RGBA)");
  }
  if (w * h > max_image_pixels()) {
    throw Error("image file '" + name + "' is " + std::to_string(w) + "x" + std::to_string(h) + " = " +
                std::to_string(w * h) + " pixels, above the limit of " + std::to_string(max_image_pixels()) +
                " (set CLIPGUIDE_MAX_IMAGE_PIXELS to allow more)");
  }
  std::vector<uint8_t> pixels(static_cast<size_t>(w * h * c));
  // One thread: callers decode many images in parallel (training loaders); OIIO's own pool only adds
  // hand-offs for images this small and oversubscribes the cores.
  in.threads(1);
  if (!in.read_image(0, 0, 0, static_cast<int>(c), OIIO::TypeDesc::UINT8, pixels.data())) {
    throw Error("cannot decode image file '" + name + "': " + in.geterror());
  }
  in.close();
  // (H, W, C) uint8 → (3, H, W): grey replicated, alpha dropped unless asked for. A plain loop, not
  // permute().contiguous(): ATen would hand this small copy to its OpenMP team, which costs more than
  // the copy (milliseconds on a busy machine) and competes with the caller's own decoding threads.
  const bool has_alpha = spec.alpha_channel >= 0 || c == 2 || c == 4;
  const bool with_alpha = keep_alpha && has_alpha;
  const int64_t alpha = spec.alpha_channel >= 0 ? spec.alpha_channel : c - 1;
  const int64_t planes = with_alpha ? 4 : 3;
  at::Tensor out = at::empty({planes, h, w}, at::kByte);
  uint8_t* dst = out.data_ptr<uint8_t>();
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t src_channel = p == 3 ? alpha : (c >= 3 ? p : 0);
    const uint8_t* src = pixels.data() + src_channel;
    uint8_t* plane = dst + p * h * w;
    for (int64_t k = 0; k < h * w; ++k) plane[k] = src[k * c];
  }
  return out;
}

// PIL keeps colour unpremultiplied; OIIO would premultiply RGBA unless told otherwise.
OIIO::ImageSpec read_hints() {
  OIIO::ImageSpec hints;
  hints.attribute("oiio:UnassociatedAlpha", 1);
  return hints;
}

}  // namespace

at::Tensor read_image(const std::filesystem::path& path, bool keep_alpha) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) throw Error("image file '" + path.string() + "' does not exist");
  if (!std::filesystem::is_regular_file(status)) {
    throw Error("image file '" + path.string() + "' is not a regular file (a device, folder or pipe is not an image)");
  }
  {  // a cut PNG or JPEG: one clear error, before libpng prints its own or libjpeg fills in grey
    std::ifstream file(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    if (!file.good() && !file.eof()) throw Error("cannot read image file '" + path.string() + "'");
    check_complete_image(bytes.data(), bytes.size(), path.string());
  }
  OIIO::ImageSpec hints = read_hints();
  auto in = OIIO::ImageInput::open(path.string(), &hints);
  if (!in) throw Error("cannot read image file '" + path.string() + "': " + OIIO::geterror());
  return read_opened(*in, path.string(), keep_alpha);
}

at::Tensor decode_image(const void* data, size_t size, const std::string& name, bool keep_alpha) {
  check_complete_image(data, size, name);
  OIIO::ImageSpec hints = read_hints();
  // The reader is chosen by the extension of `name` (create() given a name probes the file system, so it
  // gets the bare extension); PNG, JPEG and WebP read straight from the buffer.
  const std::string extension = std::filesystem::path(name).extension().string();
  OIIO::ImageInput::unique_ptr in;
  if (extension.size() > 1) in = OIIO::ImageInput::create(extension.substr(1), /*do_open=*/false, &hints);
  OIIO::geterror();  // an unknown extension leaves a message behind; the fallback reports its own
  if (in && in->supports("ioproxy")) {
    OIIO::Filesystem::IOMemReader proxy(data, size);
    in->set_ioproxy(&proxy);
    OIIO::ImageSpec spec;
    if (!in->open(name, spec, hints)) throw Error("cannot read image '" + name + "': " + in->geterror());
    return read_opened(*in, name, keep_alpha);
  }
  // Readers without memory input (or an unknown extension): through a temporary file.
  std::random_device rd;
  auto tmp = std::filesystem::temp_directory_path() /
             ("clipguide-decode-" + std::to_string(rd()) + std::filesystem::path(name).extension().string());
  {
    std::ofstream out(tmp, std::ios::binary);
    out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!out) throw Error("cannot decode image '" + name + "': cannot write temporary file '" + tmp.string() + "'");
  }
  try {
    auto tmp_in = OIIO::ImageInput::open(tmp.string(), &hints);
    if (!tmp_in) throw Error("cannot read image '" + name + "': " + OIIO::geterror());
    at::Tensor image = read_opened(*tmp_in, name, keep_alpha);
    std::filesystem::remove(tmp);
    return image;
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw;
  }
}

void write_image(const std::filesystem::path& path, const at::Tensor& image,
                 const std::map<std::string, std::string>& metadata) {
  if (image.dim() != 3 || image.size(0) != 3) {
    throw Error("write_image('" + path.string() + "'): expected a (3, H, W) image, got " + shape_str(image.sizes()));
  }
  at::Tensor u8 = image.scalar_type() == at::kByte
                      ? image
                      : image.detach().to(at::kFloat).clamp(0, 1).mul(255).round().to(at::kByte);
  u8 = u8.cpu().permute({1, 2, 0}).contiguous();  // (H, W, 3)
  const int h = static_cast<int>(u8.size(0)), w = static_cast<int>(u8.size(1));

  // Temporary name keeps the extension: OIIO picks the format from it.
  std::random_device rd;
  auto tmp = path.parent_path() / ("." + path.stem().string() + ".tmp-" + std::to_string(rd()) +
                                   path.extension().string());
  auto out = OIIO::ImageOutput::create(tmp.string());
  if (!out) throw Error("cannot write image file '" + path.string() + "': " + OIIO::geterror());
  OIIO::ImageSpec spec(w, h, 3, OIIO::TypeDesc::UINT8);
  for (const auto& [key, value] : metadata) spec.attribute(key, value);
  bool ok = out->open(tmp.string(), spec) && out->write_image(OIIO::TypeDesc::UINT8, u8.data_ptr()) && out->close();
  if (!ok) {
    std::string why = out->geterror();
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw Error("cannot write image file '" + path.string() + "': " + why);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw Error("cannot move finished image into place at '" + path.string() + "': " + ec.message());
  }
}

std::map<std::string, std::string> read_image_metadata(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw Error("image file '" + path.string() + "' " +
                (std::filesystem::exists(path, ec) ? "is not a regular file" : std::string("does not exist")));
  }
  auto in = OIIO::ImageInput::open(path.string());
  if (!in) throw Error("cannot read image file '" + path.string() + "': " + OIIO::geterror());
  std::map<std::string, std::string> result;
  for (const auto& param : in->spec().extra_attribs) {
    if (param.type() == OIIO::TypeDesc::STRING) result[param.name().string()] = param.get_string();
  }
  return result;
}

}  // namespace clipguide::clipnet
