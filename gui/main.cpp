// clip-studio: the interactive steering GUI. Thin: flags → StudioOptions, a GLFW window with an OpenGL 3
// context, Dear ImGui's frame loop around StudioApp, screenshots read back from the framebuffer. Exits
// non-zero with one clear line when there is no display or no OpenGL.
#include "clipnet/error.h"
#include "clipnet/image_io.h"
#include "generators/generator.h"
#include "gui/studio_app.h"
#include "tools/cli.h"

#include <ATen/ops/from_blob.h>
#include <GLFW/glfw3.h>
#include <backends/imgui_impl_glfw.h>
#include <backends/imgui_impl_opengl3.h>
#include <imgui.h>

#include <cstring>
#include <iostream>
#include <string>
#include <vector>

namespace cs = clipguide::studio;

namespace {

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
  clipguide::clipnet::write_image(path, image);
}

}  // namespace

int main(int argc, char** argv) {
  cs::StudioOptions opt;
  CLI::App app{"clip-studio: steer CLIP-guided image generation interactively"};
  app.option_defaults()->always_capture_default();
  app.add_option("-m,--clip_model,--clip-model", opt.clip_models, "CLIP weights 'path[:weight]' (repeatable: an ensemble)");
  app.add_option("--vocab", opt.vocab, "BPE vocabulary (bpe_simple_vocab_16e6.txt.gz, vocab.json, tokenizer.json)");
  app.add_option("--generator", opt.generator, "pixel, fourier, primitives, vqgan or torchscript");
  std::vector<std::string> generator_options;  // key=value, parsed into opt.generator_options
  app.add_option("--generator_option,--generator-option", generator_options, "Generator setting key=value (repeatable)");
  app.add_option("--generator_weights,--generator-weights", opt.generator_weights, "VQGAN checkpoint or TorchScript module");
  app.add_option("--generator_config,--generator-config", opt.generator_config, "VQGAN YAML (optional)");
  app.add_option("-s,--size", opt.size, "Image width and height in pixels")->expected(2);
  app.add_option("-p,--prompts", opt.prompts, "Initial text prompts 'text[:weight[:stop]]|...'");
  app.add_option("--image_prompts,--image-prompts", opt.image_prompts, "Initial image prompts 'path[:weight[:stop]]|...'");
  app.add_option("--seed", opt.seed, "Generator and cutout seed")->check(CLI::NonNegativeNumber);
  app.add_option("--learning_rate,--lr", opt.learning_rate, "Optimiser learning rate");
  app.add_option("--num_cuts,--cutn", opt.num_cuts, "Cutouts per step");
  app.add_option("--cut_power,--cut_pow", opt.cut_power, "Cutout size exponent");
  app.add_option("--cut_min,--cut-min", opt.cut_min, "Smallest cutout side as a fraction of the image (0: the CLIP input size)");
  app.add_option("--cut_method", opt.cut_method, "random, latest or disco");
  app.add_option("--augments", opt.augments, "Augmentations, e.g. 'Af,Pe,Ji,Er'; 'none'");
  app.add_option("--device", opt.device, "cpu, cuda or auto");
  app.add_option("--width", opt.window_width, "Window width in screen pixels");
  app.add_option("--height", opt.window_height, "Window height in screen pixels");
  app.add_option("--script", opt.script, "Scripted input: one command per line (see gui/studio_app.cpp), for tests");
  app.add_option("--screenshot-dir,--screenshot_dir", opt.screenshot_dir, "Where the script's 'screenshot NAME' writes NAME.png");
  app.add_option("--output-dir,--output_dir", opt.output_dir, "Folder for saved PNGs and exports given as relative paths");
  // Without --clip_model, the shipped model with the settings it renders best with (<model>/clip-guide.toml,
  // clip-guide's file: keys clip-studio has no use for, such as iterations, are ignored) as the defaults;
  // --config replaces them, flags override.
  std::string config_default;
  if (!clipguide::cli::flag_given(argc, argv, {"-m", "--clip_model", "--clip-model"})) {
    if (auto shipped = clipguide::cli::shipped_model()) {
      opt.clip_models = {shipped->model.string()};
      config_default = shipped->settings;
    }
  }
  app.set_config("--config", config_default, "TOML file with the same settings as the flags (clip-guide's keys; flags win)");
  app.allow_config_extras(CLI::config_extras_mode::ignore);
  if (auto code = clipguide::cli::parse(app, argc, argv, "clip-studio")) return *code;
  try {
    opt.generator_options = clipguide::generators::parse_extra(generator_options, "--generator_option");
  } catch (const std::exception& e) {
    clipguide::cli::report("clip-studio", e);
    return 2;
  }

  glfwSetErrorCallback(on_glfw_error);
  if (!glfwInit()) {
    std::cerr << "clip-studio: error: cannot open a window (no display? set DISPLAY or run under xvfb-run): "
              << g_glfw_error << "\n";
    return 1;
  }
  glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
  glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 0);
  GLFWwindow* window = glfwCreateWindow(opt.window_width, opt.window_height, "clip-studio", nullptr, nullptr);
  if (!window) {
    std::cerr << "clip-studio: error: cannot create an OpenGL 3.0 window (no OpenGL driver?): " << g_glfw_error << "\n";
    glfwTerminate();
    return 1;
  }
  glfwMakeContextCurrent(window);
  glfwSwapInterval(1);

  IMGUI_CHECKVERSION();
  ImGui::CreateContext();
  ImGui::GetIO().IniFilename = nullptr;  // the layout is fixed; no imgui.ini beside the user's files
  ImGui::StyleColorsDark();
  ImGui_ImplGlfw_InitForOpenGL(window, true);
  ImGui_ImplOpenGL3_Init("#version 130");

  int code = 0;
  {
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
    code = std::max(code, studio.exit_code());
  }  // the worker thread is joined here, before the GL context goes

  ImGui_ImplOpenGL3_Shutdown();
  ImGui_ImplGlfw_Shutdown();
  ImGui::DestroyContext();
  glfwDestroyWindow(window);
  glfwTerminate();
  return code;
}
