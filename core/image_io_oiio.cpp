// image_io.h through OpenImageIO: decoding matches PIL's convert("RGB") (unassociated alpha dropped),
// writes go to a temporary file that is renamed into place.
#include "core/image_io.h"

#include "core/error.h"

#include <ATen/ops/empty.h>
#include <OpenImageIO/filesystem.h>
#include <OpenImageIO/imageio.h>

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <vector>

namespace clipguide {

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

// check_complete_image on the whole of a file; an empty file is incomplete too. Throws Error naming `path`.
void check_complete_file(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (!file.good() && !file.eof()) throw Error("cannot read image file '" + path.string() + "'");
  if (bytes.empty()) throw Error("image file '" + path.string() + "' is empty");
  check_complete_image(bytes.data(), bytes.size(), path.string());
}

}  // namespace

at::Tensor read_image(const std::filesystem::path& path, bool keep_alpha) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) throw Error("image file '" + path.string() + "' does not exist");
  if (!std::filesystem::is_regular_file(status)) {
    throw Error("image file '" + path.string() + "' is not a regular file (a device, folder or pipe is not an image)");
  }
  check_complete_file(path);  // a cut PNG or JPEG: one clear error, before libpng prints its own or libjpeg fills in grey
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

namespace {

// `path` in the folder it will be written to ("out.png" is in ".").
std::filesystem::path folder_of(const std::filesystem::path& path) {
  return path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
}

// A name beside `path` that nothing else uses: ".<stem>.tmp-<random><ext>" (the extension picks the format).
std::filesystem::path temporary_beside(const std::filesystem::path& path) {
  std::random_device rd;
  return folder_of(path) / ("." + path.stem().string() + ".tmp-" + std::to_string(rd()) + path.extension().string());
}

}  // namespace

void check_image_output(const std::filesystem::path& path, const std::string& what) {
  const std::string name = what + " '" + path.string() + "'";
  if (path.filename().empty() || path.extension().empty()) {
    throw Error(name + ": expected a file name with an image extension (.png, .jpg, ...)");
  }
  if (!std::unique_ptr<OIIO::ImageOutput>(OIIO::ImageOutput::create(path.string()))) {
    throw Error(name + ": cannot write '" + path.extension().string() + "' images (expected .png, .jpg, .tif, ...)");
  }
  const std::filesystem::path folder = folder_of(path);
  std::error_code ec;
  if (!std::filesystem::is_directory(folder, ec)) {
    throw Error(name + ": the folder '" + folder.string() + "' " +
                (std::filesystem::exists(folder, ec) ? "is not a folder" : "does not exist"));
  }
  if (std::filesystem::is_directory(path, ec)) throw Error(name + " is a folder, expected an image file name");
  // Permissions alone do not tell (root, read-only mounts, ACLs): create and remove a file there.
  const std::filesystem::path probe = temporary_beside(path);
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) {
    throw Error(name + ": cannot create files in '" + folder.string() + "': " + std::strerror(errno));
  }
  ::close(fd);
  std::filesystem::remove(probe, ec);
}

void write_image(const std::filesystem::path& path, const at::Tensor& image,
                 const std::map<std::string, std::string>& metadata) {
  if (image.dim() != 3 || image.size(0) != 3) {
    throw Error("write_image('" + path.string() + "'): expected a (3, H, W) image, got " + shape_str(image.sizes()));
  }
  at::Tensor u8;
  if (image.scalar_type() == at::kByte) {
    u8 = image;
  } else {
    const at::Tensor f = image.detach().to(at::kFloat);
    if (!f.isfinite().all().item<bool>()) {  // NaN would become an arbitrary byte: never written
      throw Error("write_image('" + path.string() + "'): the image has non-finite (NaN or inf) pixels");
    }
    u8 = f.clamp(0, 1).mul(255).round().to(at::kByte);
  }
  u8 = u8.cpu().permute({1, 2, 0}).contiguous();  // (H, W, 3)
  const int h = static_cast<int>(u8.size(0)), w = static_cast<int>(u8.size(1));

  const std::filesystem::path tmp = temporary_beside(path);
  auto fail = [&](const std::string& why) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw Error("cannot write image file '" + path.string() + "': " + why);
  };
  auto out = OIIO::ImageOutput::create(tmp.string());
  if (!out) throw Error("cannot write image file '" + path.string() + "': " + OIIO::geterror());
  OIIO::ImageSpec spec(w, h, 3, OIIO::TypeDesc::UINT8);
  for (const auto& [key, value] : metadata) spec.attribute(key, value);
  bool ok = out->open(tmp.string(), spec) && out->write_image(OIIO::TypeDesc::UINT8, u8.data_ptr()) && out->close();
  if (!ok) fail(out->geterror());
  // The encoder does not always see a failed write (a full disk can end in a short file and success):
  // the file on disk must be a complete image, and it must reach the disk before it replaces `path`.
  try {
    check_complete_file(tmp);
  } catch (const Error& e) {
    struct statvfs fs {};
    const bool full = ::statvfs(folder_of(path).c_str(), &fs) == 0 && fs.f_bavail * fs.f_frsize < u8.numel() + 65536;
    fail(full ? "no space left on the device of '" + folder_of(path).string() + "' (the image was not written)"
              : std::string("the written file is incomplete: ") + e.what());
  }
  const int fd = ::open(tmp.c_str(), O_RDONLY);
  if (fd < 0 || ::fsync(fd) != 0) {
    const std::string why = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    fail("cannot flush the written file to disk: " + why);
  }
  ::close(fd);
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) fail("cannot move the finished image into place: " + ec.message());
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

}  // namespace clipguide
