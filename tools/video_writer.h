// VideoWriter: encodes frames into a video file through an ffmpeg child process, raw RGB piped to its stdin
// (no folder of temporary images). The file appears atomically: ffmpeg writes a hidden temporary file
// beside the target, renamed over it by finish(); a writer destroyed without finish() removes it.
// ffmpeg runs in its own process group, so a terminal's Ctrl-C reaches only the caller, which can still
// finish() the frames written so far. Callers should ignore SIGPIPE (a dead ffmpeg then gives an Error).
// Shapes: H x W frame.
#pragma once

#include <ATen/core/Tensor.h>

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>

namespace clipguide::tools {

struct VideoOptions {
  int64_t width = 0;               // frame width in pixels (odd sizes are padded by one black pixel)
  int64_t height = 0;              // frame height in pixels
  double fps = 30.0;               // frames per second of the frames written
  double interpolate_fps = 0.0;    // > 0: the video is motion-interpolated (ffmpeg minterpolate) to this rate
  int crf = 17;                    // x264 quality (lower: better, bigger)
  std::string comment;             // stored as the file's "comment" metadata
  std::string ffmpeg = "ffmpeg";   // program name (looked up on PATH) or path
};

// Error unless `path` ends in .mp4, .mkv or .mov (what VideoWriter writes); `what` names the setting.
void check_video_path(const std::filesystem::path& path, const std::string& what = "video");

// The path of `program` (a name looked up on PATH, or a path), or empty when it is not an executable.
std::filesystem::path find_program(const std::string& program);

class VideoWriter {
 public:
  // Starts ffmpeg for `path` (.mp4, .mkv or .mov: H.264). Error when ffmpeg is missing, the extension is
  // not one of those, the size is not positive, or the folder cannot be written.
  VideoWriter(std::filesystem::path path, VideoOptions options);
  ~VideoWriter();  // without finish(): stops ffmpeg and removes the temporary file
  VideoWriter(const VideoWriter&) = delete;
  VideoWriter& operator=(const VideoWriter&) = delete;

  // One frame: (3, H, W) or (1, 3, H, W) in [0, 1] (rounded to 8 bits), any device. Error (with the tail
  // of ffmpeg's output) when ffmpeg has stopped or the size differs.
  void write(const at::Tensor& frame);
  // Closes the pipe, waits for ffmpeg and renames the temporary file onto the target. Error with the tail
  // of ffmpeg's output when it fails (the temporary file is removed). No frames: Error, nothing written.
  void finish();

  int64_t frames() const { return frames_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  int wait_child();             // waits for ffmpeg; its exit status (or 128 + signal)
  std::string stderr_tail() const;
  void cleanup();               // closes descriptors, removes temporary files

  std::filesystem::path path_;  // the target
  std::filesystem::path temp_;  // what ffmpeg writes
  std::filesystem::path log_;   // ffmpeg's stderr
  VideoOptions options_;
  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  int64_t frames_ = 0;
  bool finished_ = false;
};

}  // namespace clipguide::tools
