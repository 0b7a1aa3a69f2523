// VideoWriter: ffmpeg as a child process (posix_spawn, own process group), raw rgb24 frames on its stdin,
// its stderr in a log file whose tail goes into errors; H.264 into a temporary file renamed on success.
#include "tools/video_writer.h"

#include "core/error.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

extern char** environ;

namespace clipguide::tools {
namespace {

std::string lowercase(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string format_number(double v) {
  std::ostringstream out;
  out.precision(10);
  out << v;
  return out.str();
}

}  // namespace

void check_video_path(const std::filesystem::path& path, const std::string& what) {
  const std::string ext = lowercase(path.extension().string());
  if (ext != ".mp4" && ext != ".mkv" && ext != ".mov") {
    throw Error(what + " '" + path.string() + "': expected a .mp4, .mkv or .mov file name");
  }
}

std::filesystem::path find_program(const std::string& program) {
  if (program.empty()) return {};
  if (program.find('/') != std::string::npos) {
    return access(program.c_str(), X_OK) == 0 ? std::filesystem::path(program) : std::filesystem::path();
  }
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) dir = ".";
    std::filesystem::path candidate = std::filesystem::path(dir) / program;
    std::error_code ec;
    if (std::filesystem::is_regular_file(candidate, ec) && access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

VideoWriter::VideoWriter(std::filesystem::path path, VideoOptions options)
    : path_(std::move(path)), options_(std::move(options)) {
  check_video_path(path_);
  const std::string ext = lowercase(path_.extension().string());
  if (options_.width <= 0 || options_.height <= 0) {
    throw Error("video '" + path_.string() + "': frame size must be positive, got " + std::to_string(options_.width) +
                "x" + std::to_string(options_.height));
  }
  if (!(options_.fps > 0)) throw Error("video '" + path_.string() + "': fps must be > 0, got " + format_number(options_.fps));
  if (options_.interpolate_fps < 0) {
    throw Error("video '" + path_.string() + "': interpolation fps must be >= 0, got " + format_number(options_.interpolate_fps));
  }
  const std::filesystem::path ffmpeg = find_program(options_.ffmpeg);
  if (ffmpeg.empty()) {
    throw Error("'" + options_.ffmpeg + "' not found on PATH: ffmpeg is needed to write the video '" + path_.string() +
                "' (Debian: apt-get install ffmpeg)");
  }
  const std::filesystem::path dir = path_.parent_path().empty() ? std::filesystem::path(".") : path_.parent_path();
  if (!std::filesystem::is_directory(dir)) throw Error("video '" + path_.string() + "': no folder '" + dir.string() + "'");

  static std::atomic<int> counter{0};
  const std::string tag = std::to_string(getpid()) + "-" + std::to_string(counter++);
  temp_ = dir / ("." + path_.stem().string() + ".partial-" + tag + path_.extension().string());  // ffmpeg picks the muxer by extension
  log_ = std::filesystem::temp_directory_path() / ("clipguide-ffmpeg-" + tag + ".log");

  std::vector<std::string> args = {ffmpeg.string(), "-hide_banner", "-loglevel", "error", "-y",
                                    "-f", "rawvideo", "-pix_fmt", "rgb24",
                                    "-s", std::to_string(options_.width) + "x" + std::to_string(options_.height),
                                    "-framerate", format_number(options_.fps), "-i", "pipe:0"};
  std::string filters;
  if (options_.width % 2 || options_.height % 2) filters = "pad=ceil(iw/2)*2:ceil(ih/2)*2";  // yuv420p: even sides
  if (options_.interpolate_fps > 0) {  // generate.py's motion-compensated interpolation to a higher rate
    filters += (filters.empty() ? "" : ",") +
               std::string("minterpolate=mi_mode=mci:me=hexbs:me_mode=bidir:mc_mode=aobmc:vsbmc=1:mb_size=8:"
                           "search_param=32:fps=") +
               format_number(options_.interpolate_fps);
  }
  if (!filters.empty()) args.insert(args.end(), {"-vf", filters});
  args.insert(args.end(), {"-c:v", "libx264", "-preset", "medium", "-crf", std::to_string(options_.crf),
                           "-pix_fmt", "yuv420p"});
  if (ext != ".mkv") args.insert(args.end(), {"-movflags", "+faststart"});
  if (!options_.comment.empty()) args.insert(args.end(), {"-metadata", "comment=" + options_.comment});
  args.push_back(temp_.string());

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw Error(std::string("video: cannot create a pipe: ") + std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[0], 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Own process group: a terminal's Ctrl-C goes to clip-guide only, which then finishes the video itself.
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t defaults, empty;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGINT);
  sigemptyset(&empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int rc = posix_spawn(&pid_, argv[0], &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(fds[0]);
  if (rc != 0) {
    close(fds[1]);
    pid_ = -1;
    cleanup();
    throw Error("cannot start '" + ffmpeg.string() + "': " + std::strerror(rc));
  }
  stdin_fd_ = fds[1];
}

VideoWriter::~VideoWriter() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    wait_child();
  }
  cleanup();
}

void VideoWriter::write(const at::Tensor& frame) {
  if (finished_ || stdin_fd_ < 0) throw Error("video '" + path_.string() + "': write after finish()");
  at::Tensor f = frame.dim() == 4 ? frame.squeeze(0) : frame;  // (3, H, W)
  if (f.dim() != 3 || f.size(0) != 3 || f.size(1) != options_.height || f.size(2) != options_.width) {
    throw Error("video '" + path_.string() + "': frame must be (3, " + std::to_string(options_.height) + ", " +
                std::to_string(options_.width) + "), got " + std::to_string(frame.dim()) + "-d tensor [" +
                [&] {
                  std::string s;
                  for (auto d : frame.sizes()) s += (s.empty() ? "" : ", ") + std::to_string(d);
                  return s;
                }() + "]");
  }
  at::Tensor bytes = f.detach().to(c10::kCPU, c10::kFloat).mul(255).round().clamp(0, 255).to(c10::kByte)
                         .permute({1, 2, 0}).contiguous();  // (H, W, 3) rgb24
  const char* data = static_cast<const char*>(bytes.data_ptr());
  size_t left = static_cast<size_t>(bytes.numel());
  while (left > 0) {
    const ssize_t n = ::write(stdin_fd_, data, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string why = errno == EPIPE ? "ffmpeg stopped" : std::string(std::strerror(errno));
      close(stdin_fd_);
      stdin_fd_ = -1;
      const int status = wait_child();
      throw Error("video '" + path_.string() + "': " + why + " (exit " + std::to_string(status) + "): " + stderr_tail());
    }
    data += n;
    left -= static_cast<size_t>(n);
  }
  ++frames_;
}

void VideoWriter::finish() {
  if (finished_) return;
  if (stdin_fd_ >= 0) {
    close(stdin_fd_);
    stdin_fd_ = -1;
  }
  if (frames_ == 0) {
    throw Error("video '" + path_.string() + "': no frames were written");  // the destructor stops ffmpeg
  }
  const int status = wait_child();
  if (status != 0) {
    const std::string tail = stderr_tail();
    cleanup();
    throw Error("video '" + path_.string() + "': ffmpeg failed (exit " + std::to_string(status) + "): " + tail);
  }
  std::error_code ec;
  std::filesystem::rename(temp_, path_, ec);
  if (ec) {
    cleanup();
    throw Error("video '" + path_.string() + "': cannot rename '" + temp_.string() + "' onto it: " + ec.message());
  }
  finished_ = true;
  cleanup();
}

int VideoWriter::wait_child() {
  if (pid_ <= 0) return -1;
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0) {
    if (errno != EINTR) {
      pid_ = -1;
      return -1;
    }
  }
  pid_ = -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::string VideoWriter::stderr_tail() const {
  std::ifstream in(log_);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") != std::string::npos) lines.push_back(line);
  }
  if (lines.empty()) return "(ffmpeg printed nothing)";
  std::string tail;  // the last lines on one line, so a tool's error stays one line
  for (size_t i = lines.size() > 4 ? lines.size() - 4 : 0; i < lines.size(); ++i) {
    tail += (tail.empty() ? "" : " | ") + lines[i];
  }
  return tail.size() > 1200 ? "..." + tail.substr(tail.size() - 1200) : tail;
}

void VideoWriter::cleanup() {
  if (stdin_fd_ >= 0) {
    close(stdin_fd_);
    stdin_fd_ = -1;
  }
  std::error_code ec;
  if (!finished_ && !temp_.empty()) std::filesystem::remove(temp_, ec);
  if (!log_.empty()) std::filesystem::remove(log_, ec);
}

}  // namespace clipguide::tools
