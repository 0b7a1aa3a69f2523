// clip-studio: the interactive steering GUI. Thin: flags → StudioOptions, a GLFW window with an OpenGL 3
// context, Dear ImGui's frame loop around StudioApp, screenshots read back from the framebuffer. Exits
// non-zero with one clear line when there is no display or no OpenGL.
#include "app/cli.h"
#include "core/error.h"
#include "core/image_io.h"
#include "core/memory.h"
#include "generators/generator.h"
#include "gui/studio_app.h"

#include <ATen/Parallel.h>
#include <ATen/ops/from_blob.h>
#include <GLFW/glfw3.h>
#include <backends/imgui_impl_glfw.h>
#include <backends/imgui_impl_opengl3.h>
#include <imgui.h>

#include <algorithm>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace cs = clipguide::studio;

namespace {

// The UI thread (and a software rasteriser such as llvmpipe) needs a core of its own. With every core in
// torch's CPU pool, each op's threads wait at its barrier for the one the UI has just preempted: on a loaded
// 2-core machine the loop stepped about 80x slower than clip-guide's. A pool the user sized below the core
// count (OMP_NUM_THREADS) is left as it is.
void leave_a_core_to_the_ui() {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  if (cores > 1 && at::get_num_threads() >= cores) at::set_num_threads(cores - 1);
}

std::string g_glfw_error;  // the last GLFW error, for the one-line message
void on_glfw_error(int code, const char* text) { g_glfw_error = text ? text : ("GLFW error " + std::to_string(code)); }

// The window's framebuffer (what was just rendered) → PNG.
void write_screenshot(GLFWwindow* window, const std::string& path) {
  int w = 0, h = 0;
  glfwGetFramebufferSize(window, &w, &h);
  std::vector<unsigned char> pixels(static_cast<size_t>(w) * h * 3);
  glPixelStorei(GL_PACK_ALIGNMENT, 1);
  glReadBuffer(GL_BACK);
  glReadPixels(0, 0, w, h, GL_RGB, GL_UNSIGNED_BYTE, pixels.data());
  // GL rows run bottom-up: flip to (H, W, 3) top-down, then (3, H, W).
  auto image = at::from_blob(pixels.data(), {h, w, 3}, at::kByte).flip({0}).permute({2, 0, 1}).contiguous();
  clipguide::write_image(path, image);
}

// Flags (and the shipped model's settings as defaults) → `opt`; an exit code when the program should stop
// (--help, a bad flag or value), nothing to go on.
std::optional<int> parse_options(int argc, char** argv, cs::StudioOptions& opt) {
  opt.run.seed = 0;
  CLI::App app{"clip-studio: steer CLIP-guided image generation interactively"};
  app.option_defaults()->always_capture_default();
  clipguide::app::add_settings(app, opt.run, cs::studio_setting_keys());  // clip-guide's names and TOML keys
  app.add_option("--generator_config,--generator-config", opt.run.vqgan_config, "VQGAN YAML (as --vqgan_config)");
  app.add_option("--width", opt.window_width, "Window width in screen pixels");
  app.add_option("--height", opt.window_height, "Window height in screen pixels");
  app.add_option("--script", opt.script, "Scripted input: one command per line (see gui/studio_script.cpp), for tests");
  app.add_option("--screenshot-dir,--screenshot_dir", opt.screenshot_dir, "Where the script's 'screenshot NAME' writes NAME.png");
  app.add_option("--output-dir,--output_dir", opt.output_dir, "Folder for saved PNGs and exports given as relative paths");
  // Without --clip_model, the shipped model with the settings it renders best with (<model>/clip-guide.toml,
  // clip-guide's file: keys clip-studio has no use for, such as iterations, are ignored) as the defaults;
  // --config replaces them (a clip-guide TOML or a studio export), flags override.
  std::string config_default;
  std::vector<std::string> args;
  try {
    args = clipguide::app::normalise_args(
        argc, argv, {"--config", "--help", "--generator_config", "--width", "--height", "--script", "--screenshot_dir",
                     "--output_dir"});
  } catch (const CLI::ParseError& e) {
    std::cerr << "clip-studio: error: " << e.what() << " (see --help)\n";
    return 2;
  }
  if (!clipguide::app::flag_given(args, {"--clip_model"})) {
    if (auto shipped = clipguide::app::shipped_model()) {
      opt.run.clip_models = {shipped->model.string()};
      config_default = shipped->settings;
    }
  }
  app.set_config("--config", config_default, "TOML file with the same settings as the flags (clip-guide's keys; flags win)");
  app.allow_config_extras(CLI::config_extras_mode::ignore);
  if (auto code = clipguide::app::parse(app, args, "clip-studio")) return *code;
  try {
    if (opt.run.seed < 0) throw clipguide::Error("--seed: expected >= 0, got " + std::to_string(opt.run.seed));
    clipguide::generators::parse_extra(opt.run.generator_options, "--generator_option");
  } catch (const std::exception& e) {
    clipguide::app::report("clip-studio", e);
    return 2;
  }
  return std::nullopt;
}

// A window with an OpenGL 3 context and Dear ImGui on it; nullptr after one clear line on stderr.
GLFWwindow* open_window(const cs::StudioOptions& opt) {
  glfwSetErrorCallback(on_glfw_error);
  if (!glfwInit()) {
    std::cerr << "clip-studio: error: cannot open a window (no display? set DISPLAY or run under xvfb-run): "
              << g_glfw_error << "\n";
    return nullptr;
  }
  glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
  glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 0);
  GLFWwindow* window = glfwCreateWindow(opt.window_width, opt.window_height, "clip-studio", nullptr, nullptr);
  if (!window) {
    std::cerr << "clip-studio: error: cannot create an OpenGL 3.0 window (no OpenGL driver?): " << g_glfw_error << "\n";
    glfwTerminate();
    return nullptr;
  }
  glfwMakeContextCurrent(window);
  glfwSwapInterval(1);
  IMGUI_CHECKVERSION();
  ImGui::CreateContext();
  ImGui::GetIO().IniFilename = nullptr;  // the layout is fixed; no imgui.ini beside the user's files
  ImGui::StyleColorsDark();
  ImGui_ImplGlfw_InitForOpenGL(window, true);
  ImGui_ImplOpenGL3_Init("#version 130");
  return window;
}

void close_window(GLFWwindow* window) {
  ImGui_ImplOpenGL3_Shutdown();
  ImGui_ImplGlfw_Shutdown();
  ImGui::DestroyContext();
  glfwDestroyWindow(window);
  glfwTerminate();
}

// The frame loop until the window closes or the app quits: the exit code.
int run_frames(GLFWwindow* window, const cs::StudioOptions& opt) {
  int code = 0;
  cs::StudioApp studio(opt);
  studio.set_wake([] { glfwPostEmptyEvent(); });  // thread-safe; the worker calls it
  while (!glfwWindowShouldClose(window) && !studio.quit_requested()) {
    // 60 frames a second while the run steps; paused and idle, sleep until input or the worker wakes us.
    const double wait = studio.wait_seconds();
    if (wait > 0.0) {
      const double before = glfwGetTime();
      glfwWaitEventsTimeout(wait);
      if (glfwGetTime() - before < 0.9 * wait) studio.note_activity();
    } else {
      glfwPollEvents();
    }
    studio.run_script();
    ImGui_ImplOpenGL3_NewFrame();
    ImGui_ImplGlfw_NewFrame();
    ImGui::NewFrame();
    int w = 0, h = 0;
    glfwGetFramebufferSize(window, &w, &h);
    studio.draw(w, h);
    ImGui::Render();
    glViewport(0, 0, w, h);
    glClearColor(0.08f, 0.08f, 0.1f, 1.0f);
    glClear(GL_COLOR_BUFFER_BIT);
    ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());
    if (auto shot = studio.take_screenshot_request()) {
      try {
        write_screenshot(window, *shot);
        std::cerr << "clip-studio: screenshot " << *shot << "\n";
      } catch (const std::exception& e) {
        std::cerr << "clip-studio: error: screenshot " << *shot << ": " << clipguide::error_text(e) << "\n";
        code = 1;
      }
    }
    glfwSwapBuffers(window);
  }
  return std::max(code, studio.exit_code());
}  // the worker thread is joined here (~StudioApp), before the caller closes the GL context

}  // namespace

int main(int argc, char** argv) {
  clipguide::keep_freed_memory();  // large CPU tensors reuse freed pages (core/memory.h)
  cs::StudioOptions opt;
  if (auto code = parse_options(argc, argv, opt)) return *code;
  GLFWwindow* window = open_window(opt);
  if (!window) return 1;
  leave_a_core_to_the_ui();
  const int code = run_frames(window, opt);
  close_window(window);
  return code;
}
